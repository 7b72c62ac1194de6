//! `netbridge-mangen DIR`: writes netbridge's manual pages into DIR from the
//! definitions the programs themselves use — the clap commands for
//! netbridge(8), one netbridge-VERB(8) per verb and netbridge-agent(8), the
//! configuration's key table for netbridge.toml(5) — so a new option or key
//! cannot be left out of the manual. `make man` runs it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_mangen::Man;
use netbridge::agent::AgentArgs;
use netbridge::cli::{Cli, Exit, ENVIRONMENT};
use netbridge::config::keys::{Table, KEYS};
use roff::{bold, italic, roman, Roff};

const MANUAL: &str = "System Administration";

#[derive(Debug, thiserror::Error)]
enum MangenError {
    #[error("usage: netbridge-mangen DIR (where the pages are written)")]
    Usage,
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let result = match (args.next(), args.next()) {
        (Some(dir), None) => write_all(Path::new(&dir)),
        _ => Err(MangenError::Usage),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netbridge-mangen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn source() -> String {
    format!("netbridge {}", env!("CARGO_PKG_VERSION"))
}

fn write_all(dir: &Path) -> Result<(), MangenError> {
    std::fs::create_dir_all(dir).map_err(|source| MangenError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    // Written beside and renamed into place: `make install`s running at once
    // (the tests run several) never copy a half-written page.
    let write = |name: &str, render: &dyn Fn(&mut dyn Write) -> std::io::Result<()>| {
        let path = dir.join(name);
        let partial = dir.join(format!(".{name}.{}", std::process::id()));
        let mut page = Vec::new();
        render(&mut page)
            .and_then(|()| std::fs::write(&partial, ascii_only(&page)))
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|source| MangenError::Write { path, source })
    };

    // No `help` verb in the manual: it only prints what the pages say.
    let mut netbridge = Cli::command().disable_help_subcommand(true);
    netbridge.build();
    write("netbridge.8", &|w| main_page(netbridge.clone(), w))?;
    for verb in netbridge.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("netbridge-{}.8", verb.get_name());
        write(&name, &|w| verb_page(verb.clone(), w))?;
    }
    write("netbridge-agent.8", &|w| agent_page(w))?;
    write("netbridge.toml.5", &|w| config_page(w))
}

/// The page with every non-ASCII character (the help texts' dashes and
/// arrows) as a groff escape: groff reads its input as Latin-1 unless
/// preconv runs, so raw UTF-8 would render as garbage and warn.
fn ascii_only(page: &[u8]) -> String {
    String::from_utf8_lossy(page)
        .chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                format!("\\[u{:04X}]", u32::from(c))
            }
        })
        .collect()
}

fn man(cmd: clap::Command) -> Man {
    Man::new(cmd).section("8").source(source()).manual(MANUAL)
}

/// Preformatted lines (the help texts' tables and examples keep their layout).
fn verbatim(roff: &mut Roff, text: &str) {
    roff.control("nf", []);
    for line in text.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
}

fn see_also(roff: &mut Roff, pages: &[&str]) {
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(pages.join(", "))]);
}

fn main_page(cmd: clap::Command, w: &mut dyn Write) -> std::io::Result<()> {
    let man = man(cmd.clone());
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;

    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for exit in Exit::ALL {
        roff.control("TP", [])
            .text([bold(exit.code().to_string())])
            .text([roman(exit.meaning())]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, meaning) in ENVIRONMENT {
        roff.control("TP", [])
            .text([bold(name)])
            .text([roman(meaning)]);
    }
    roff.control("SH", ["FILES"]);
    files(&mut roff);
    roff.control("SH", ["EXAMPLES"]);
    verbatim(
        &mut roff,
        "netbridge status\n\
         netbridge convert ens32 --dry-run\n\
         netbridge convert ens32 --bridge br0 --check tcp:192.0.2.1:22 --yes\n\
         netbridge revert br0 --yes\n\
         netbridge apply --config /etc/netbridge/netbridge.toml\n\
         netbridge create virbr1 --mode nat --address 192.168.107.1/24\n\
         netbridge completions bash > /usr/share/bash-completion/completions/netbridge",
    );
    let mut pages: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| format!("netbridge-{}(8)", s.get_name()))
        .collect();
    pages.extend(
        [
            "netbridge-agent(8)",
            "netbridge.toml(5)",
            "nmcli(1)",
            "NetworkManager(8)",
        ]
        .map(String::from),
    );
    see_also(
        &mut roff,
        &pages.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    roff.to_writer(w)
}

fn files(roff: &mut Roff) {
    for (path, what) in [
        (
            "/etc/netbridge/netbridge.toml",
            "the configuration `netbridge apply` and the agent bring the host to; see netbridge.toml(5)",
        ),
        (
            "/etc/netbridge/conf.d/*.toml",
            "drop-ins, read in name order after netbridge.toml",
        ),
        (
            "/var/lib/netbridge/",
            "the journal of an unfinished change, the lock, the last result per bridge",
        ),
    ] {
        roff.control("TP", []).text([italic(path)]).text([roman(what)]);
    }
}

fn verb_page(cmd: clap::Command, w: &mut dyn Write) -> std::io::Result<()> {
    let details = cmd.get_after_help().map(ToString::to_string);
    let man = man(cmd);
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    let mut roff = Roff::new();
    if let Some(details) = details {
        roff.control("SH", ["DETAILS"]);
        verbatim(&mut roff, &details);
    }
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman("As listed in netbridge(8).")]);
    see_also(&mut roff, &["netbridge(8)", "netbridge.toml(5)"]);
    roff.to_writer(w)
}

fn agent_page(w: &mut dyn Write) -> std::io::Result<()> {
    let cmd = AgentArgs::command();
    let details = cmd.get_after_help().map(ToString::to_string);
    let man = man(cmd);
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    let mut roff = Roff::new();
    if let Some(details) = details {
        roff.control("SH", ["SIGNALS, EXIT STATUS AND ENVIRONMENT"]);
        verbatim(&mut roff, &details);
    }
    roff.control("SH", ["FILES"]);
    files(&mut roff);
    roff.control("SH", ["EXAMPLES"]);
    verbatim(
        &mut roff,
        "cp /etc/netbridge/netbridge.toml.example /etc/netbridge/netbridge.toml\n\
         systemctl enable --now netbridge-agent\n\
         systemctl reload netbridge-agent\n\
         journalctl -u netbridge-agent",
    );
    see_also(
        &mut roff,
        &["netbridge(8)", "netbridge.toml(5)", "systemctl(1)"],
    );
    roff.to_writer(w)
}

/// netbridge.toml(5), from the key table the parser is tested against.
fn config_page(w: &mut dyn Write) -> std::io::Result<()> {
    let mut roff = Roff::new();
    roff.control("TH", ["NETBRIDGE.TOML", "5", "", &source(), "File Formats"]);
    roff.control("SH", ["NAME"]);
    roff.text([roman(
        "netbridge.toml - the bridges and networks a host should have",
    )]);
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([
        italic("/etc/netbridge/netbridge.toml"),
        roman(", "),
        italic("/etc/netbridge/conf.d/*.toml"),
    ]);
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([roman(
        "A TOML file read by netbridge-agent(8) at start and on reload, and by \
         `netbridge apply`. Drop-ins in conf.d/ are read in name order after it; a later \
         file overrides a [defaults] key, and a [[bridge]] with the same name replaces the \
         whole entry. Unknown keys, wrong types, duplicate bridges, two bridges on one \
         uplink and invalid values are errors naming the file, line and key; an invalid \
         configuration changes nothing. Each [[bridge]] is applied as one transaction \
         under a NetworkManager checkpoint, kept only if its checks pass.",
    )]);
    for (table, title, intro) in [
        (
            Table::Defaults,
            "[defaults]",
            "Optional; what every [[bridge]] gets unless it sets the key itself.",
        ),
        (
            Table::Bridge,
            "[[bridge]]",
            "One entry per bridge (mode = \"bridged\") or network (\"nat\", \"isolated\").",
        ),
    ] {
        roff.control("SH", [title]);
        roff.text([roman(intro)]);
        for key in KEYS.iter().filter(|k| k.table == table) {
            roff.control("TP", [])
                .text([bold(key.name), roman(": "), italic(key.kind)])
                .text([roman(key.description)])
                .control("br", [])
                .text([roman("Default: "), roman(key.default), roman(".")])
                .control("br", [])
                .text([roman("Example: "), bold(key.example)]);
        }
    }
    roff.control("SH", ["EXAMPLES"]);
    verbatim(
        &mut roff,
        "[defaults]\n\
         rollback-timeout = 30\n\
         \n\
         [[bridge]]\n\
         name = \"br0\"\n\
         uplink = \"default-route\"\n\
         checks = [\"tcp:192.0.2.1:22\"]\n\
         \n\
         [[bridge]]\n\
         name = \"virbr1\"\n\
         mode = \"nat\"\n\
         address = \"192.168.107.1/24\"",
    );
    roff.text([roman(
        "More, commented: /usr/share/doc/netbridge/examples/ and \
         /etc/netbridge/netbridge.toml.example.",
    )]);
    roff.control("SH", ["FILES"]);
    files(&mut roff);
    see_also(
        &mut roff,
        &["netbridge(8)", "netbridge-agent(8)", "netbridge-convert(8)"],
    );
    roff.to_writer(w)
}
