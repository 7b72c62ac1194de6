//! WIP
mod rootfs;

pub use rootfs::RootfsCache;

pub(crate) fn loud(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}
