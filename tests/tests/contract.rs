//! The operator's contract, verb by verb and error path by error path: the
//! exit status (README, `netbridge --help`), the key words of the message
//! for people, and a `--json` document valid against schema/ with the
//! error's kind — the same run with and without `--json`.
//!
//! Paths that need no NetworkManager run netbridge in a network namespace
//! of its own with no system bus; the others in a lab.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{netbridge, Run, Running};
use netbridge_tests::lab::netbridge_bin;
use netbridge_tests::{Lab, Uplink};

/// One error path: the arguments (without `--json`), the exit status, and
/// words the message must contain.
struct Case<'a> {
    args: Vec<&'a str>,
    exit: i32,
    words: &'a [&'a str],
}

fn case<'a>(args: &[&'a str], exit: i32, words: &'a [&'a str]) -> Case<'a> {
    Case {
        args: args.to_vec(),
        exit,
        words,
    }
}

/// The `error.kind` of each exit status (README, schema/common.json).
fn kind(exit: i32) -> &'static str {
    match exit {
        2 => "refused",
        3 => "rolled-back",
        4 => "nm-unavailable",
        5 => "rollback-incomplete",
        6 => "busy",
        7 => "permission",
        8 => "after-commit",
        _ => "internal",
    }
}

/// Runs `case` twice through `run`: for people (the message on stderr) and
/// with `--json` (the document, validated, with the same status and words).
fn assert_contract(case: &Case<'_>, run: &dyn Fn(&[&str]) -> Run) {
    let human = run(&case.args);
    assert_eq!(
        human.code, case.exit,
        "{:?}: exit {} expected\nstdout: {}\nstderr: {}",
        case.args, case.exit, human.stdout, human.stderr
    );
    for word in case.words {
        assert!(
            human.stderr.contains(word),
            "{:?}: the message says {word:?}: {}",
            case.args,
            human.stderr
        );
    }
    let mut args = case.args.clone();
    args.push("--json");
    let machine = run(&args);
    assert_eq!(machine.code, case.exit, "{args:?}: {}", machine.stdout);
    let doc = machine.json();
    assert_eq!(doc["exit_code"], case.exit, "{doc:#}");
    assert_eq!(doc["error"]["kind"], kind(case.exit), "{doc:#}");
    let message = doc["error"]["message"].as_str().unwrap_or_default();
    for word in case.words {
        assert!(message.contains(word), "{args:?}: {word:?} in {doc:#}");
    }
}

/// netbridge in a network namespace of its own, with no system bus and a
/// fresh state directory: for the paths that end before NetworkManager.
fn offline(dir: &Path, args: &[&str]) -> Run {
    let bin = netbridge_bin().unwrap_or_else(|e| panic!("{e}"));
    Command::new("unshare")
        .arg("--net")
        .arg(bin)
        .args(args)
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            format!("unix:path={}", dir.join("no-bus").display()),
        )
        .env("NETBRIDGE_STATE_DIR", dir.join("state"))
        .env_remove("NETBRIDGE_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run netbridge under unshare --net")
        .into()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path.display().to_string()
}

#[test]
fn every_verb_refuses_bad_input_and_says_when_networkmanager_is_unavailable() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let bad_type = write(
        dir.path(),
        "bad.toml",
        "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nadopt = \"maybe\"\n",
    );
    let good = write(
        dir.path(),
        "good.toml",
        "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\n",
    );
    let missing = dir.path().join("none.toml").display().to_string();
    let cases = [
        // Argument errors (clap): a document under --json too.
        case(&["convert", "ens32", "--check", "bogus"], 2, &["bogus"]),
        case(&["convert"], 2, &["UPLINK"]),
        case(&["no-such-verb"], 2, &["no-such-verb"]),
        case(
            &["convert", "ens32", "--rollback-timeout", "0"],
            2,
            &["rollback"],
        ),
        case(&["status", "--no-such-option"], 2, &["--no-such-option"]),
        // Refused by netbridge before it needs NetworkManager.
        case(
            &["create", "virbr1", "--mode", "nat", "--address", "nonsense"],
            2,
            &["--address", "nothing was changed"],
        ),
        case(&["apply", "--config", &missing], 2, &["no configuration"]),
        case(&["apply", "--config", &bad_type], 2, &["bad.toml"]),
        case(
            &["apply", "--config", &bad_type, "--dry-run"],
            2,
            &["bad.toml"],
        ),
        case(
            &["guest-forwarding", "--config", &bad_type],
            2,
            &["bad.toml"],
        ),
        case(&["revert", "no/such/bridge"], 2, &["no/such/bridge"]),
        // No system bus: NetworkManager is unavailable.
        case(&["status"], 4, &["system bus"]),
        case(&["convert", "ens32", "--yes"], 4, &["system bus"]),
        case(&["convert", "ens32", "--dry-run"], 4, &["system bus"]),
        case(&["apply", "--config", &good], 4, &["system bus"]),
        case(&["revert", "br0", "--yes"], 4, &["system bus"]),
        case(&common::CREATE_NAT, 4, &["system bus"]),
        case(&["delete", "virbr1"], 4, &["system bus"]),
        case(&["recover"], 4, &["system bus"]),
    ];
    for c in &cases {
        assert_contract(c, &|args| offline(dir.path(), args));
    }
}

#[test]
fn an_argument_error_under_json_names_its_verb() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let run = offline(
        dir.path(),
        &["convert", "ens32", "--check", "bogus", "--json"],
    );
    let doc = run.json();
    assert_eq!(doc["command"], "convert", "{doc:#}");
    assert_eq!(doc["result"], "refused", "{doc:#}");
    assert_eq!(doc["schema_version"], 1, "{doc:#}");
    // --help is help, not an error, with or without --json.
    let help = offline(dir.path(), &["--help", "--json"]);
    assert_eq!(help.code, 0, "{}", help.stderr);
    assert!(help.stdout.contains("Exit status:"), "{}", help.stdout);
}

#[test]
fn the_exit_table_in_the_readme_is_the_one_in_help() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let help = offline(dir.path(), &["--help"]);
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    // "  CODE  MEANING", the meaning wrapped onto further lines.
    let mut rows: Vec<(String, String)> = Vec::new();
    for line in help
        .stdout
        .lines()
        .skip_while(|l| *l != "Exit status:")
        .skip(1)
        .take_while(|l| !l.is_empty())
    {
        match line.trim().split_once("  ") {
            Some((code, meaning)) if code.parse::<u8>().is_ok() => {
                rows.push((code.to_owned(), meaning.trim().to_owned()));
            }
            _ => {
                let (_, meaning) = rows.last_mut().expect("a row before its continuation");
                meaning.push(' ');
                meaning.push_str(line.trim());
            }
        }
    }
    let codes: Vec<&str> = rows.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        codes,
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
        "{}",
        help.stdout
    );
    for (code, meaning) in rows {
        let row = format!("| {code} | {meaning} |");
        assert!(readme.contains(&row), "README.md lacks the row {row:?}");
    }
}

#[test]
fn refusals_failures_and_busy_say_so_the_same_way_in_a_lab() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    let silent = "ping:172.25.250.99";
    let config = write(
        lab.dir(),
        "silent.toml",
        &format!("[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nchecks = [\"{silent}\"]\n"),
    );
    let cases = [
        // The same failing pre-check: exit 2 from convert and from apply,
        // with or without --dry-run.
        case(
            &["convert", "ens32", "--yes", "--check", silent],
            2,
            &["already fails"],
        ),
        case(
            &["convert", "ens32", "--dry-run", "--check", silent],
            2,
            &["already fails"],
        ),
        case(&["apply", "--config", &config], 2, &[]),
        case(&["apply", "--config", &config, "--dry-run"], 2, &[]),
        case(&["revert", "br0", "--yes"], 2, &["br0"]),
        case(&["delete", "nothing"], 2, &["no network named"]),
        case(&["convert", "no-such-nic", "--yes"], 2, &["no-such-nic"]),
    ];
    for c in &cases {
        assert_contract(c, &|args| netbridge(&lab, args));
        assert_eq!(lab.snapshot(), before, "{:?} changed nothing", c.args);
    }

    // The failing pre-check is in the document, structured.
    let run = netbridge(
        &lab,
        &["convert", "ens32", "--yes", "--json", "--check", silent],
    );
    let doc = run.json();
    let failed: Vec<_> = doc["checks"]["before"]
        .as_array()
        .expect("checks.before")
        .iter()
        .filter(|c| c["ok"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{doc:#}");
    assert_eq!(failed[0]["kind"], "ping");
    assert_eq!(failed[0]["target"], "172.25.250.99");
    // Per bridge, apply says refused, as convert does.
    let applied = netbridge(&lab, &["apply", "--config", &config, "--json"]).json();
    assert_eq!(applied["bridges"][0]["result"], "refused", "{applied:#}");

    // Busy: another netbridge holds the lock.
    let lock_path = lab.state_dir().join("lock");
    std::fs::create_dir_all(lab.state_dir()).expect("state directory");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .expect("open the lock");
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .unwrap_or_else(|(_, e)| panic!("take the lock: {e}"));
    assert_contract(
        &case(&["convert", "ens32", "--yes"], 6, &["another netbridge"]),
        &|args| netbridge(&lab, args),
    );
    drop(held);

    // A dry run that can be made: exit 0, result dry-run, checks before.
    let dry = netbridge(&lab, &["convert", "ens32", "--dry-run", "--json"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let doc = dry.json();
    assert_eq!(doc["result"], "dry-run");
    assert!(
        doc["checks"]["before"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{doc:#}"
    );
    assert_eq!(lab.snapshot(), before, "a dry run changes nothing");
}

#[test]
fn permission_denied_is_exit_7_and_says_run_as_root() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    // netbridge's own state directory, root's only; netbridge as nobody.
    let state = lab.dir().join("root-only");
    std::fs::create_dir_all(&state).expect("state directory");
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let good = write(
        lab.dir(),
        "good.toml",
        "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\n",
    );
    std::fs::set_permissions(
        lab.dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    std::fs::set_permissions(&good, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let as_nobody = |args: &[&str]| -> Run {
        let bin = netbridge_bin().unwrap_or_else(|e| panic!("{e}"));
        let mut argv = vec![
            "setpriv".to_owned(),
            "--reuid=nobody".to_owned(),
            "--regid=nogroup".to_owned(),
            "--clear-groups".to_owned(),
            bin.display().to_string(),
        ];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        lab.host_command(&argv)
            .env("NETBRIDGE_STATE_DIR", &state)
            .stdin(Stdio::null())
            .output()
            .expect("run netbridge as nobody")
            .into()
    };
    let before = lab.snapshot();
    for args in [
        vec!["convert", "ens32", "--yes"],
        vec!["apply", "--config", good.as_str()],
        vec!["recover"],
    ] {
        let run = as_nobody(&args);
        assert_eq!(run.code, 7, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("run netbridge as root"),
            "{args:?}: {}",
            run.stderr
        );
        let mut json = args.clone();
        json.push("--json");
        let doc = as_nobody(&json).json();
        assert_eq!(doc["error"]["kind"], "permission", "{doc:#}");
        assert_eq!(doc["exit_code"], 7, "{doc:#}");
    }
    assert_eq!(lab.snapshot(), before, "nothing changed");
}

#[test]
fn a_declined_prompt_is_exit_2_with_a_message() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    let bin = netbridge_bin().unwrap_or_else(|e| panic!("{e}"));
    // On a terminal (script's pseudo-terminal), answering "n".
    let command = format!("{} convert ens32 --no-default-checks", bin.display());
    let mut child = lab
        .host_command(["script", "-qec", command.as_str(), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run netbridge on a pseudo-terminal");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"n\n")
        .expect("answer the prompt");
    let run: Run = child.wait_with_output().expect("netbridge ends").into();
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("[y/N]"), "asked: {}", run.stdout);
    assert!(
        run.stdout
            .contains("declined at the prompt: nothing was changed"),
        "{}",
        run.stdout
    );
    assert_eq!(lab.snapshot(), before, "declining changes nothing");
}

#[test]
fn a_rolled_back_change_reports_its_checks_like_a_committed_one() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    // With --json there is no progress for people: the log says when the
    // change is under way.
    let mut command = lab.netbridge([
        "convert",
        "ens32",
        "--yes",
        "--json",
        "--no-default-checks",
        "--check",
        "ping:172.25.250.254",
    ]);
    command.env("NETBRIDGE_LOG", "info");
    let mut run = Running::spawn(command);
    run.wait_for("checkpoint", Duration::from_secs(20));
    // The gateway stops answering ping once the change is under way.
    let out = lab.lan(["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1"]);
    assert!(out.status.success());
    let (code, doc, log) = run.finish_json();
    lab.lan(["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=0"]);
    assert_eq!(code, 3, "exit 3 = rolled back:\n{log}");
    assert_eq!(doc["result"], "rolled-back", "{doc:#}");
    assert_eq!(doc["error"]["kind"], "rolled-back", "{doc:#}");
    let failed = |list: &serde_json::Value| {
        list.as_array().is_some_and(|l| {
            l.iter()
                .any(|c| c["target"] == "172.25.250.254" && c["ok"] == false)
        })
    };
    assert!(failed(&doc["checks"]["after"]), "{doc:#}");
    assert!(failed(&doc["outcome"]["checks"]), "{doc:#}");
    assert_eq!(doc["checks"]["before"][0]["ok"], true, "{doc:#}");
    assert_eq!(lab.snapshot(), before, "the host is exactly as before");
}
