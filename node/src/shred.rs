//! Crypto-shredding for content with a timer.
//!
//! sled does not erase what it deletes: old values stay readable in its files until they are
//! reused. So anything with a timer is written to sled only encrypted, under a key that lives
//! outside sled — one key file per expiry period in `HOME/shred/` — and the key file is deleted
//! when its period ends. After that, every copy left in sled's files is undecryptable noise.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use kith_protocol::disappearing::{period_of, period_over};
use kith_protocol::Timestamp;
use zeroize::Zeroizing;

use crate::{Error, Result};

/// Tag of a shredded value.
const TAG: u8 = b'S';

/// Per-period keys in a directory outside the store.
#[derive(Debug)]
pub struct Shredder {
    dir: PathBuf,
    cache: Mutex<HashMap<u64, Zeroizing<[u8; 32]>>>,
}

impl Shredder {
    pub fn new(dir: PathBuf) -> Shredder {
        Shredder {
            dir,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, period: u64) -> PathBuf {
        self.dir.join(format!("{period}.key"))
    }

    fn key(&self, period: u64, create: bool) -> Result<Option<Zeroizing<[u8; 32]>>> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = cache.get(&period) {
            return Ok(Some(k.clone()));
        }
        let path = self.path(period);
        match std::fs::read(&path) {
            Ok(b) if b.len() == 32 => {
                let mut k = Zeroizing::new([0u8; 32]);
                k.copy_from_slice(&b);
                cache.insert(period, k.clone());
                return Ok(Some(k));
            }
            Ok(_) | Err(_) if !create => return Ok(None),
            _ => {}
        }
        crate::home::create_dir_private(&self.dir)?;
        let k = Zeroizing::new(kith_protocol::random_bytes::<32>());
        let ctx = || format!("writing {}", path.display());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(ctx(), e))?;
        f.write_all(k.as_ref()).map_err(|e| Error::io(ctx(), e))?;
        f.sync_all().map_err(|e| Error::io(ctx(), e))?;
        cache.insert(period, k.clone());
        Ok(Some(k))
    }

    /// Encrypts `plain` under the key of the period `expires_at` falls in.
    pub fn seal(&self, expires_at: Timestamp, plain: &[u8]) -> Result<Vec<u8>> {
        let period = period_of(expires_at);
        let key = self
            .key(period, true)?
            .ok_or_else(|| Error::InvalidInput("no shredding key".into()))?;
        let nonce: [u8; 12] = kith_protocol::random_bytes();
        let ct = ChaCha20Poly1305::new(Key::from_slice(key.as_ref()))
            .encrypt(Nonce::from_slice(&nonce), plain)
            .map_err(|_| Error::InvalidInput("shredding encryption failed".into()))?;
        let mut out = vec![TAG];
        out.extend_from_slice(&period.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a sealed value; `None` once its period's key is gone (it has expired).
    pub fn open(&self, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < 21 || sealed[0] != TAG {
            return None;
        }
        let period = u64::from_be_bytes(sealed[1..9].try_into().ok()?);
        let key = self.key(period, false).ok()??;
        ChaCha20Poly1305::new(Key::from_slice(key.as_ref()))
            .decrypt(Nonce::from_slice(&sealed[9..21]), &sealed[21..])
            .ok()
            .map(Zeroizing::new)
    }

    /// Destroys the keys of every period that is over. Returns how many.
    pub fn sweep(&self, now: Timestamp) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut n = 0;
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(period) = name
                .to_str()
                .and_then(|s| s.strip_suffix(".key"))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            if period_over(period, now) {
                // Overwrite, then unlink: the key must not survive in the file's blocks either.
                if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(e.path()) {
                    let _ = f.write_all(&[0u8; 32]);
                    let _ = f.sync_all();
                }
                if std::fs::remove_file(e.path()).is_ok() {
                    n += 1;
                }
                self.cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&period);
            }
        }
        n
    }

    /// Whether the key of `period` still exists.
    pub fn has_key(&self, period: u64) -> bool {
        self.path(period).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swept_period_cannot_be_opened() {
        let dir = tempfile::tempdir().unwrap();
        let s = Shredder::new(dir.path().join("shred"));
        let t = Timestamp(1_000_000);
        let sealed = s.seal(t, b"vanishing words").unwrap();
        assert_eq!(s.open(&sealed).unwrap().as_slice(), b"vanishing words");
        assert!(!String::from_utf8_lossy(&sealed).contains("vanishing"));
        assert_eq!(s.sweep(Timestamp(t.0 - 1)), 0);
        assert!(s.open(&sealed).is_some());
        assert_eq!(
            s.sweep(t.plus_ms(kith_protocol::disappearing::PERIOD_MS)),
            1
        );
        assert!(s.open(&sealed).is_none());
        assert!(!s.has_key(period_of(t)));
    }
}
