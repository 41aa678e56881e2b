//! `MSPAuth`: the ticket in the Messenger profile (`text/x-msmsgsprofile`) that opens the web inbox
//! without a password.
//!
//! MSN Messenger opened Hotmail by posting a form to the `Post-URL` with `auth=<MSPAuth>`, `username`
//! and `creds` (the MD5 of the ticket, `sl` and the password). msgr cannot check `creds` (it keeps only
//! argon2 hashes of passwords, never the password), so the ticket alone is the proof, and it is made to
//! carry that weight: it is an HMAC-SHA256 over the account, its expiry, a nonce and a digest of the
//! account's current password hash, with a key generated once into the data directory (mode 0600).
//! Nothing is stored per ticket; changing the password revokes every ticket issued before, and so does
//! deleting the key file.
//!
//! Format: `<expiry>.<nonce>.<mac>` (decimal seconds since the Unix epoch, 16 hex digits, 64 hex digits):
//! letters, digits and dots, safe in an MSNP header and a form field.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "web-ticket.key";

type HmacSha256 = Hmac<Sha256>;

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not a 32-byte hex key")]
    Malformed(PathBuf),
}

/// Why a ticket was refused. Never shown to the client (who hears one generic message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("malformed ticket")]
    Malformed,
    #[error("ticket expired")]
    Expired,
    #[error("ticket not issued for this account (or its password changed)")]
    BadSignature,
}

/// Issues and checks tickets. Cheap to clone.
#[derive(Clone)]
pub struct TicketKey {
    key: Arc<[u8; 32]>,
    ttl: Duration,
}

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKey").field("ttl", &self.ttl).finish()
    }
}

impl TicketKey {
    /// Reads `dir/web-ticket.key`, or makes it (32 random bytes in hex, mode 0600) on first start.
    pub fn load_or_create(dir: &Path, ttl: Duration) -> Result<TicketKey, KeyError> {
        let path = dir.join(KEY_FILE);
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                write_private(&path, hex::encode(key).as_bytes()).map_err(io)?;
                tracing::info!(path = %path.display(), "generated the web ticket key");
                return Ok(TicketKey {
                    key: Arc::new(key),
                    ttl,
                });
            }
            Err(e) => return Err(io(e)),
        };
        let bytes = hex::decode(text.trim()).map_err(|_| KeyError::Malformed(path.clone()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::Malformed(path.clone()))?;
        Ok(TicketKey {
            key: Arc::new(key),
            ttl,
        })
    }

    /// A key that lives only in memory (unit tests).
    pub fn ephemeral(ttl: Duration) -> TicketKey {
        TicketKey {
            key: Arc::new(rand::random()),
            ttl,
        }
    }

    /// How long a ticket issued now stays good.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A ticket for `account` whose password hash is `password_hash`, good for the key's lifetime.
    pub fn issue(&self, account: &str, password_hash: &str) -> String {
        self.issue_at(account, password_hash, unix_now())
    }

    /// A ticket as issued at `now` (seconds since the Unix epoch).
    pub fn issue_at(&self, account: &str, password_hash: &str, now: u64) -> String {
        let expiry = now.saturating_add(self.ttl.as_secs());
        let nonce = hex::encode(rand::random::<[u8; 8]>());
        let mac = self.mac(account, password_hash, expiry, &nonce);
        format!("{expiry}.{nonce}.{mac}")
    }

    /// Checks `ticket` for `account` (any letter case) with its current `password_hash` at `now`.
    pub fn verify_at(
        &self,
        ticket: &str,
        account: &str,
        password_hash: &str,
        now: u64,
    ) -> Result<(), TicketError> {
        let mut parts = ticket.trim().split('.');
        let (Some(expiry), Some(nonce), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TicketError::Malformed);
        };
        let expiry: u64 = expiry.parse().map_err(|_| TicketError::Malformed)?;
        if nonce.len() != 16 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TicketError::Malformed);
        }
        let mac = hex::decode(mac).map_err(|_| TicketError::Malformed)?;
        // Checked in constant time by `verify_slice`, before the expiry so that a forged ticket never
        // learns anything from the answer.
        self.hmac(account, password_hash, expiry, nonce)
            .verify_slice(&mac)
            .map_err(|_| TicketError::BadSignature)?;
        if now >= expiry {
            return Err(TicketError::Expired);
        }
        Ok(())
    }

    /// [`TicketKey::verify_at`] now.
    pub fn verify(
        &self,
        ticket: &str,
        account: &str,
        password_hash: &str,
    ) -> Result<(), TicketError> {
        self.verify_at(ticket, account, password_hash, unix_now())
    }

    fn hmac(&self, account: &str, password_hash: &str, expiry: u64, nonce: &str) -> HmacSha256 {
        // `new_from_slice` takes keys of any length; 32 bytes never fails.
        let mut mac = match HmacSha256::new_from_slice(&self.key[..]) {
            Ok(m) => m,
            Err(_) => unreachable_key(),
        };
        mac.update(b"msgr MSPAuth v1\0");
        mac.update(account.to_ascii_lowercase().as_bytes());
        mac.update(b"\0");
        // Bound to the password as it is now: a new password revokes older tickets.
        mac.update(&Sha256::digest(password_hash.as_bytes()));
        mac.update(expiry.to_string().as_bytes());
        mac.update(b"\0");
        mac.update(nonce.as_bytes());
        mac
    }

    fn mac(&self, account: &str, password_hash: &str, expiry: u64, nonce: &str) -> String {
        hex::encode(
            self.hmac(account, password_hash, expiry, nonce)
                .finalize()
                .into_bytes(),
        )
    }
}

#[cold]
fn unreachable_key() -> ! {
    // HMAC accepts keys of every length (longer ones are hashed); this cannot happen.
    panic!("HMAC refused a 32-byte key")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes a new file readable by its owner only.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn good_expired_forged_and_other_account() {
        let key = TicketKey::ephemeral(Duration::from_secs(100));
        let t = key.issue_at("Alice@Example.com", "hash-a", 1_000);
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
        assert_eq!(
            key.verify_at(&t, "alice@example.com", "hash-a", 1_050),
            Ok(())
        );
        assert_eq!(
            key.verify_at(&t, "alice@example.com", "hash-a", 1_100),
            Err(TicketError::Expired)
        );
        assert_eq!(
            key.verify_at(&t, "bob@example.com", "hash-a", 1_050),
            Err(TicketError::BadSignature)
        );
        // A new password revokes it.
        assert_eq!(
            key.verify_at(&t, "alice@example.com", "hash-b", 1_050),
            Err(TicketError::BadSignature)
        );
        // A later expiry written into the ticket breaks the signature.
        let forged = t.replacen("1100", "9999", 1);
        assert_eq!(
            key.verify_at(&forged, "alice@example.com", "hash-a", 1_050),
            Err(TicketError::BadSignature)
        );
        let other = TicketKey::ephemeral(Duration::from_secs(100));
        assert_eq!(
            other.verify_at(&t, "alice@example.com", "hash-a", 1_050),
            Err(TicketError::BadSignature)
        );
        for bad in [
            "",
            "x",
            "1.2.3",
            "1.zzzzzzzzzzzzzzzz.00",
            "1.0123456789abcdef.0.4",
            "a.b.c",
        ] {
            assert!(
                key.verify_at(bad, "alice@example.com", "hash-a", 0)
                    .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn key_is_made_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = TicketKey::load_or_create(dir.path(), Duration::from_secs(60)).unwrap();
        let b = TicketKey::load_or_create(dir.path(), Duration::from_secs(60)).unwrap();
        let t = a.issue("alice@example.com", "h");
        assert_eq!(b.verify(&t, "alice@example.com", "h"), Ok(()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(KEY_FILE), "nope").unwrap();
        assert!(matches!(
            TicketKey::load_or_create(dir.path(), Duration::from_secs(60)),
            Err(KeyError::Malformed(_))
        ));
    }
}
