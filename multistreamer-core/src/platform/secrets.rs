//! Secrets at rest (platform tokens): sealed with ChaCha20-Poly1305 under a key kept in a
//! file of its own (`secret.key`, mode 0600) in the data directory, never in the database.
//! A copy of the database alone reveals no token; each sealed value is bound to what it
//! belongs to (the associated data), so values cannot be swapped between rows.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// Why a secret could not be kept or read back.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the key file {path}: {detail}")]
    KeyFile { path: PathBuf, detail: String },
    #[error("no randomness: {0}")]
    Random(String),
    /// The value was altered, belongs to another row, or was sealed under another key.
    #[error("a sealed secret cannot be opened (altered, moved, or sealed under another key)")]
    Unreadable,
}

/// Seals and opens secrets under the data directory's key.
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox")
    }
}

const KEY_FILE: &str = "secret.key";

impl SecretBox {
    /// Reads `DIR/secret.key`, or creates it (32 random bytes, mode 0600) the first time.
    /// A key file others may read is narrowed to 0600.
    pub fn open_or_create(dir: &Path) -> Result<SecretBox, SecretError> {
        let path = dir.join(KEY_FILE);
        let fail = |detail: String| SecretError::KeyFile { path: path.clone(), detail };
        let key = match std::fs::read(&path) {
            Ok(bytes) => {
                let mode = std::fs::metadata(&path).map_err(|e| fail(e.to_string()))?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the key file was readable by others; narrowed to 0600");
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| fail(e.to_string()))?;
                }
                bytes
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; 32];
                getrandom::getrandom(&mut key).map_err(|e| SecretError::Random(e.to_string()))?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| fail(e.to_string()))?;
                f.write_all(&key).and_then(|()| f.sync_all()).map_err(|e| fail(e.to_string()))?;
                key
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        if key.len() != 32 {
            return Err(fail(format!("{} bytes, not 32", key.len())));
        }
        Ok(SecretBox { cipher: ChaCha20Poly1305::new(Key::from_slice(&key)) })
    }

    /// `plaintext` sealed and bound to `context` (e.g. `platform:7:refresh_token`), as
    /// base64 text: a random 96-bit nonce, then the ciphertext and its tag.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, SecretError> {
        let mut nonce = [0u8; 12];
        getrandom::getrandom(&mut nonce).map_err(|e| SecretError::Random(e.to_string()))?;
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: context.as_bytes() })
            .map_err(|_| SecretError::Unreadable)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// Opens what [`SecretBox::seal`] made for the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SecretError> {
        let raw = base64::engine::general_purpose::STANDARD.decode(sealed).map_err(|_| SecretError::Unreadable)?;
        if raw.len() < 12 + 16 {
            return Err(SecretError::Unreadable);
        }
        let (nonce, body) = raw.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: context.as_bytes() })
            .map_err(|_| SecretError::Unreadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ms-secrets-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    #[test]
    fn secrets_round_trip_under_a_0600_key_and_refuse_tampering_or_moving() {
        let d = dir("round-trip");
        let sb = SecretBox::open_or_create(&d).expect("key");
        let mode = std::fs::metadata(d.join(KEY_FILE)).expect("key file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = sb.seal("platform:1:refresh_token", b"1//refresh-token").expect("seal");
        assert!(!sealed.contains("refresh"), "the sealed text shows nothing of the secret");
        assert_ne!(
            sealed,
            sb.seal("platform:1:refresh_token", b"1//refresh-token").expect("seal"),
            "a fresh nonce each time"
        );
        assert_eq!(sb.open("platform:1:refresh_token", &sealed).expect("open"), b"1//refresh-token");
        // the same key read back from the file opens it
        let again = SecretBox::open_or_create(&d).expect("existing key");
        assert_eq!(again.open("platform:1:refresh_token", &sealed).expect("open"), b"1//refresh-token");
        // moved to another row, altered, truncated, or under another key: refused
        assert!(matches!(sb.open("platform:2:refresh_token", &sealed), Err(SecretError::Unreadable)));
        let mut altered = base64::engine::general_purpose::STANDARD.decode(&sealed).expect("b64");
        altered[20] ^= 1;
        let altered = base64::engine::general_purpose::STANDARD.encode(altered);
        assert!(matches!(sb.open("platform:1:refresh_token", &altered), Err(SecretError::Unreadable)));
        assert!(matches!(sb.open("platform:1:refresh_token", "AAAA"), Err(SecretError::Unreadable)));
        assert!(matches!(sb.open("platform:1:refresh_token", "not base64!"), Err(SecretError::Unreadable)));
        let other = SecretBox::open_or_create(&dir("other")).expect("another key");
        assert!(matches!(other.open("platform:1:refresh_token", &sealed), Err(SecretError::Unreadable)));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_key_file_others_can_read_is_narrowed_and_a_short_one_refused() {
        let d = dir("perms");
        drop(SecretBox::open_or_create(&d).expect("key"));
        let path = d.join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        SecretBox::open_or_create(&d).expect("still usable");
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        std::fs::write(&path, b"short").expect("write");
        assert!(matches!(SecretBox::open_or_create(&d), Err(SecretError::KeyFile { .. })));
        let _ = std::fs::remove_dir_all(&d);
    }
}
