//! The node's home directory: keys, store, API socket and config.
//!
//! ```text
//! HOME/identity.key   ed25519 seed, 32 bytes, mode 0600
//! HOME/x25519.key     x25519 secret, 32 bytes, mode 0600
//! HOME/name           the user's display name (UTF-8), optional
//! HOME/store/         the sled store
//! HOME/api.sock       the local API socket, mode 0600, while the node runs
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kith_protocol::{Identity, PeerId};
use zeroize::Zeroizing;

use crate::{Error, Result};

pub const IDENTITY_FILE: &str = "identity.key";
pub const X25519_FILE: &str = "x25519.key";
pub const NAME_FILE: &str = "name";
pub const STORE_DIR: &str = "store";
pub const API_SOCKET: &str = "api.sock";

/// What `init` created.
#[derive(Debug, Clone)]
pub struct InitInfo {
    pub peer_id: PeerId,
    pub name: Option<String>,
    pub home: PathBuf,
}

/// The API socket path of a home.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join(API_SOCKET)
}

/// Whether the home holds an identity.
pub fn is_initialized(home: &Path) -> bool {
    home.join(IDENTITY_FILE).exists()
}

/// Creates a new identity in `home`. Refuses to overwrite an existing one.
pub fn init(home: &Path, name: Option<&str>) -> Result<InitInfo> {
    if let Some(n) = name {
        kith_protocol::text::check_name(n).map_err(|e| Error::InvalidInput(e.to_string()))?;
    }
    if is_initialized(home) {
        return Err(Error::AlreadyInitialized(home.to_path_buf()));
    }
    create_dir_private(home)?;
    let id = Identity::generate();
    write_secret(&home.join(IDENTITY_FILE), &id.ed25519_seed()[..])?;
    write_secret(&home.join(X25519_FILE), &id.x25519_secret()[..])?;
    if let Some(n) = name {
        write_secret(&home.join(NAME_FILE), n.as_bytes())?;
    }
    Ok(InitInfo {
        peer_id: id.peer_id(),
        name: name.map(str::to_string),
        home: home.to_path_buf(),
    })
}

/// Loads the identity of `home`.
pub fn load_identity(home: &Path) -> Result<Identity> {
    if !is_initialized(home) {
        return Err(Error::NotInitialized(home.to_path_buf()));
    }
    let seed = read_key(&home.join(IDENTITY_FILE))?;
    let x = read_key(&home.join(X25519_FILE))?;
    Ok(Identity::from_secrets(&seed, &x))
}

/// The display name stored in `home`, if any.
pub fn load_name(home: &Path) -> Option<String> {
    let bytes = fs::read(home.join(NAME_FILE)).ok()?;
    let s = String::from_utf8(bytes).ok()?;
    kith_protocol::text::check_name(&s).ok()?;
    Some(s)
}

fn read_key(path: &Path) -> Result<Zeroizing<[u8; 32]>> {
    let bytes = Zeroizing::new(
        fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?,
    );
    let mut out = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(Error::InvalidInput(format!(
            "{} is {} bytes, not a 32-byte key",
            path.display(),
            bytes.len()
        )));
    }
    out.copy_from_slice(&bytes);
    Ok(out)
}

/// Creates `dir` (and parents) with mode 0700 for the last component.
pub fn create_dir_private(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("setting permissions on {}", dir.display()), e))
}

/// Writes a file that is created with mode 0600 and synced to disk.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    let ctx = || format!("writing {}", path.display());
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(ctx(), e))?;
    f.write_all(bytes).map_err(|e| Error::io(ctx(), e))?;
    f.sync_all().map_err(|e| Error::io(ctx(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_refuses_overwrite_and_uses_0600() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("h");
        let info = init(&home, Some("alice")).unwrap();
        assert!(matches!(
            init(&home, None),
            Err(Error::AlreadyInitialized(_))
        ));
        for f in [IDENTITY_FILE, X25519_FILE] {
            let mode = fs::metadata(home.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        assert_eq!(load_identity(&home).unwrap().peer_id(), info.peer_id);
        assert_eq!(load_name(&home).as_deref(), Some("alice"));
    }

    #[test]
    fn invisible_name_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("h");
        assert!(matches!(
            init(&home, Some("\u{200b}")),
            Err(Error::InvalidInput(_))
        ));
        assert!(!is_initialized(&home));
    }
}
