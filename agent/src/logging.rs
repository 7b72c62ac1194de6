//! Diagnostics (`NETBRIDGE_LOG`) for both programs: journald's native
//! protocol when stderr is the journal, so entries keep their priority and
//! their fields (BRIDGE=, RESULT=, PHASE=); otherwise lines on stderr,
//! coloured only on a terminal and never with NO_COLOR set.
//!
//! No write may fail a change: the stderr writer's errors (closed pipe,
//! full disk, EIO) are dropped and never reported by a panicking print, and
//! the journald layer ignores a failed send.

use std::ffi::OsString;
use std::io::IsTerminal;

use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber; `default` is the filter without `NETBRIDGE_LOG`.
pub fn init(default: &str) {
    init_to(default, stderr_is_journal());
}

/// For the `--confirm` watcher. As a transient unit its stderr is the
/// journal's stream: lines there, which journald files under the unit even
/// when the watcher exits right after its last one (a native message from a
/// process that is gone may reach the journal without its unit). Detached
/// without systemd, its stderr is a file in the state directory: the
/// journal's native protocol when journald runs, that file otherwise.
pub fn init_detached(default: &str) {
    init_to(default, !stderr_is_journal());
}

fn init_to(default: &str, journal: bool) {
    let wanted = std::env::var("NETBRIDGE_LOG").unwrap_or_default();
    let filter = EnvFilter::try_new(directives(&wanted, default))
        .unwrap_or_else(|_| EnvFilter::new(default));
    if journal {
        // Without a reachable journald socket, lines on stderr still reach it.
        if let Ok(journald) = tracing_journald::layer() {
            let journald = journald
                .with_field_prefix(None)
                .with_priority_mappings(priorities());
            tracing_subscriber::registry()
                .with(filter)
                .with(journald)
                .init();
            return;
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .log_internal_errors(false)
        .init();
}

/// The filter for `NETBRIDGE_LOG`: a bare level (`debug`) is netbridge's
/// own, the libraries stay at `warn` (their debug output, such as the ping
/// library's failed socket attempts, means nothing to an operator); anything
/// with a target (`zbus=trace`) is taken as written.
fn directives(wanted: &str, default: &str) -> String {
    match wanted.trim() {
        "" => default.to_owned(),
        w if w.contains('=') => w.to_owned(),
        level => own(level),
    }
}

/// netbridge's own events at `level`, the libraries' at `warn`.
pub fn own(level: &str) -> String {
    format!("warn,netbridge={level},netbridge_agent={level},netbridge_dbus={level}")
}

/// Colour on a terminal, unless NO_COLOR is set to anything but the empty
/// string (<https://no-color.org>).
pub fn colour(terminal: bool, no_color: Option<OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// syslog's meaning of the levels: `journalctl -p warning` shows warnings
/// and errors, `-p info` the agent's routine progress too.
fn priorities() -> PriorityMappings {
    PriorityMappings {
        error: Priority::Error,
        warn: Priority::Warning,
        info: Priority::Informational,
        debug: Priority::Debug,
        trace: Priority::Debug,
    }
}

/// systemd sets JOURNAL_STREAM to the device and inode of the stream it
/// connected to stderr; a redirected stderr no longer matches.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    names_stream(&stream.to_string_lossy(), stat.st_dev, stat.st_ino)
}

/// Whether a JOURNAL_STREAM value (`DEVICE:INODE`, decimal) names this stream.
fn names_stream(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(!colour(false, None), "never into a pipe or file");
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(true, Some("0".into())), "any value but empty");
        assert!(colour(true, Some("".into())), "empty NO_COLOR is unset");
        assert!(!colour(false, Some("1".into())));
    }

    #[test]
    fn a_bare_level_is_netbridges_own_and_targets_are_taken_as_written() {
        assert_eq!(
            own("debug"),
            "warn,netbridge=debug,netbridge_agent=debug,netbridge_dbus=debug"
        );
        assert_eq!(directives("", "warn"), "warn", "the default as given");
        assert_eq!(directives("debug", "warn"), own("debug"));
        assert_eq!(directives("zbus=trace", "warn"), "zbus=trace");
        assert!(EnvFilter::try_new(directives("debug", "warn")).is_ok());
    }

    #[test]
    fn journal_stream_must_name_this_very_stream() {
        assert!(names_stream("8:123456", 8, 123456));
        assert!(!names_stream("8:123456", 8, 123457), "another inode");
        assert!(!names_stream("9:123456", 8, 123456), "another device");
        assert!(!names_stream("8", 8, 123456));
        assert!(!names_stream("", 8, 123456));
        assert!(!names_stream("x:y", 8, 123456));
    }
}
