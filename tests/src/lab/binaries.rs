//! Where the product's binaries are.

use std::path::{Path, PathBuf};

use super::LabError;

/// The `netbridge` binary: `$NETBRIDGE_BIN`, or `netbridge` in the cargo
/// profile directory this executable was built into.
pub fn netbridge_bin() -> Result<PathBuf, LabError> {
    let path = match std::env::var_os("NETBRIDGE_BIN") {
        Some(path) => PathBuf::from(path),
        None => profile_dir()?.join("netbridge"),
    };
    existing("netbridge", path)
}

/// The `netbridge-agent` binary: `$NETBRIDGE_AGENT_BIN`, or the
/// `netbridge-agent` next to [`netbridge_bin`]'s choice.
pub fn netbridge_agent_bin() -> Result<PathBuf, LabError> {
    let path = match std::env::var_os("NETBRIDGE_AGENT_BIN") {
        Some(path) => PathBuf::from(path),
        None => sibling_of_netbridge("netbridge-agent")?,
    };
    existing("netbridge-agent", path)
}

/// The directory that holds (or should hold) the netbridge binaries, to put
/// in front of PATH.
pub fn bin_dir() -> Result<PathBuf, LabError> {
    match std::env::var_os("NETBRIDGE_BIN") {
        Some(path) => Ok(parent(Path::new(&path))),
        None => profile_dir(),
    }
}

fn sibling_of_netbridge(name: &str) -> Result<PathBuf, LabError> {
    Ok(bin_dir()?.join(name))
}

/// `target/<profile>`, derived from the running executable: test binaries
/// live in `target/<profile>/deps`, binaries in `target/<profile>`.
fn profile_dir() -> Result<PathBuf, LabError> {
    let exe = std::env::current_exe()
        .map_err(|e| LabError::io("cannot find the running executable", "/proc/self/exe", e))?;
    let dir = parent(&exe);
    if dir.file_name().is_some_and(|n| n == "deps") {
        Ok(parent(&dir))
    } else {
        Ok(dir)
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_owned).unwrap_or_default()
}

fn existing(name: &str, path: PathBuf) -> Result<PathBuf, LabError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(LabError::BinaryMissing {
            name: name.to_owned(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let err = existing("netbridge", PathBuf::from("/nonexistent/netbridge")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/nonexistent/netbridge"), "{message}");
        assert!(
            message.contains("build it first: cargo build --workspace"),
            "{message}"
        );
    }

    #[test]
    fn test_executables_map_to_their_profile_dir() {
        let dir = profile_dir().expect("profile dir");
        assert_ne!(dir.file_name().and_then(|n| n.to_str()), Some("deps"));
        assert!(dir.join("deps").is_dir(), "{}", dir.display());
    }
}
