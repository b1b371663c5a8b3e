//! Which home directory a command works on: `--home` wins over `KITH_HOME`, which wins over
//! the platform data directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::CliError;

/// The environment variable naming the home when `--home` is not given.
pub const HOME_ENV: &str = "KITH_HOME";

/// The API socket's file name inside a home (docs/api.md).
pub const SOCKET_FILE: &str = "api.sock";

/// A resolved home directory.
#[derive(Debug, Clone)]
pub struct Home {
    path: PathBuf,
    /// True when the user named it with `--home`: hints then repeat the flag.
    from_flag: bool,
}

impl Home {
    /// Resolves the home from the `--home` flag, the environment and the platform.
    pub fn resolve(flag: Option<PathBuf>) -> Result<Home, CliError> {
        Home::resolve_from(flag, std::env::var_os(HOME_ENV), platform_data_dir)
    }

    fn resolve_from(
        flag: Option<PathBuf>,
        env: Option<OsString>,
        platform: impl FnOnce() -> Option<PathBuf>,
    ) -> Result<Home, CliError> {
        let (path, from_flag) = if let Some(path) = flag.filter(|p| !p.as_os_str().is_empty()) {
            (path, true)
        } else if let Some(env) = env.filter(|e| !e.is_empty()) {
            (PathBuf::from(env), false)
        } else if let Some(path) = platform() {
            (path, false)
        } else {
            return Err(CliError::Rejected(format!(
                "cannot find a data directory for kith on this system; pass --home DIR or set \
                 {HOME_ENV}"
            )));
        };
        // Absolute, so messages and the printed home say exactly where it is.
        let path = std::path::absolute(&path).map_err(|e| {
            CliError::Rejected(format!("cannot use {} as the home: {e}", path.display()))
        })?;
        Ok(Home { path, from_flag })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// HOME/api.sock.
    pub fn socket(&self) -> PathBuf {
        self.path.join(SOCKET_FILE)
    }

    /// The command line running `kith SUBCOMMAND` on this home, for hints.
    pub fn command(&self, subcommand: &str) -> String {
        if self.from_flag {
            format!("kith {subcommand} --home {}", self.path.display())
        } else {
            format!("kith {subcommand}")
        }
    }
}

fn platform_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "kith").map(|dirs| dirs.data_dir().to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform() -> Option<PathBuf> {
        Some(PathBuf::from("/platform/kith"))
    }

    #[test]
    fn flag_wins_over_env_which_wins_over_platform() {
        let flag = Some(PathBuf::from("/flag"));
        let env = Some(OsString::from("/env"));
        let home = Home::resolve_from(flag, env.clone(), platform).map(|h| h.path);
        assert_eq!(home.ok(), Some(PathBuf::from("/flag")));
        let home = Home::resolve_from(None, env, platform).map(|h| h.path);
        assert_eq!(home.ok(), Some(PathBuf::from("/env")));
        let home = Home::resolve_from(None, Some(OsString::new()), platform).map(|h| h.path);
        assert_eq!(home.ok(), Some(PathBuf::from("/platform/kith")));
        assert!(Home::resolve_from(None, None, || None).is_err());
    }

    #[test]
    fn hints_repeat_the_flag() {
        let home = Home::resolve_from(Some(PathBuf::from("/h")), None, platform);
        assert_eq!(
            home.map(|h| h.command("up")).ok().as_deref(),
            Some("kith up --home /h")
        );
    }
}
