//! DKIM signing of what msgr sends out (RFC 6376, Ed25519-SHA256 per RFC 8463), with a key generated on
//! first start into the data directory (`DATA/dkim/ed25519.pk8`, PKCS#8, mode 0600), and the DNS
//! records a domain publishes for it ([`dns_records`], printed by `msgr mail dns DOMAIN`).
//!
//! RSA keys are not generated: ring, the one crypto provider in the tree, cannot make them.

use base64::Engine as _;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use std::io;
use std::path::{Path, PathBuf};

/// The selector under which the key is published: `msgr-ed25519._domainkey.DOMAIN`.
pub const SELECTOR: &str = "msgr-ed25519";

/// The header fields signed (those present; RFC 6376 §5.4.1's recommendation).
const SIGNED: [&str; 9] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
];

/// Why the key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("DKIM key {0}: {1}")]
    Key(PathBuf, String),
}

/// The signing key, loaded once.
pub struct Signer {
    pkcs8: Vec<u8>,
}

impl Signer {
    /// Loads `dir/ed25519.pk8`, generating it (and `dir`) the first time.
    pub fn load_or_create(dir: &Path) -> Result<Signer, DkimError> {
        let path = dir.join("ed25519.pk8");
        let io_err = |source| DkimError::Io {
            path: path.clone(),
            source,
        };
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io_err)?;
                let bytes = Ed25519Key::generate_pkcs8()
                    .map_err(|e| DkimError::Key(path.clone(), e.to_string()))?;
                write_private(&path, &bytes).map_err(io_err)?;
                tracing::info!(path = %path.display(), "generated a DKIM key");
                bytes
            }
            Err(e) => return Err(io_err(e)),
        };
        // Parsed once here so a damaged file is reported at start, not at the first message.
        Ed25519Key::from_pkcs8_der(&pkcs8).map_err(|e| DkimError::Key(path, e.to_string()))?;
        Ok(Signer { pkcs8 })
    }

    /// The public key, base64, as the `p=` of the DKIM record.
    pub fn public_key(&self) -> String {
        let key = Ed25519Key::from_pkcs8_der(&self.pkcs8).map(|k| k.public_key());
        base64::engine::general_purpose::STANDARD.encode(key.unwrap_or_default())
    }

    /// The `DKIM-Signature: …` header (CRLF-terminated) for `message` signed as `domain`, `None` if
    /// the message cannot be signed (no header fields to sign).
    pub fn sign(&self, domain: &str, message: &[u8]) -> Option<String> {
        let key = Ed25519Key::from_pkcs8_der(&self.pkcs8).ok()?;
        let signature = DkimSigner::from_key(key)
            .domain(domain)
            .selector(SELECTOR)
            .headers(SIGNED)
            .sign(message)
            .ok()?;
        Some(signature.to_header())
    }
}

/// Writes a private key readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The records `domain` publishes for mail through msgr at `host`: MX, SPF, DKIM and DMARC, in zone-file
/// form.
pub fn dns_records(domain: &str, host: &str, public_key: &str) -> String {
    format!(
        "{domain}.\tMX\t10 {host}.\n\
         {domain}.\tTXT\t\"v=spf1 mx -all\"\n\
         {SELECTOR}._domainkey.{domain}.\tTXT\t\"v=DKIM1; k=ed25519; p={public_key}\"\n\
         _dmarc.{domain}.\tTXT\t\"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}\"\n"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn key_is_made_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("dkim");
        let a = Signer::load_or_create(&keys).unwrap();
        let b = Signer::load_or_create(&keys).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.public_key().len(), 44, "32 bytes of Ed25519 public key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(keys.join("ed25519.pk8"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(keys.join("ed25519.pk8"), b"garbage").unwrap();
        assert!(matches!(
            Signer::load_or_create(&keys),
            Err(DkimError::Key(..))
        ));
    }

    #[test]
    fn signature_names_domain_selector_and_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let s = Signer::load_or_create(dir.path()).unwrap();
        let h = s
            .sign(
                "example.com",
                b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n",
            )
            .unwrap();
        assert!(h.starts_with("DKIM-Signature: "), "{h}");
        // Absent fields are signed too ("oversigning"): nobody can add them later.
        for want in [
            "a=ed25519-sha256",
            "d=example.com",
            "s=msgr-ed25519",
            "From:",
            "Subject:",
        ] {
            assert!(h.contains(want), "{want} in {h}");
        }
        assert!(h.ends_with("\r\n"));
    }

    #[test]
    fn records() {
        let r = dns_records("example.com", "mail.example.com", "PUB");
        assert_eq!(
            r,
            "example.com.\tMX\t10 mail.example.com.\n\
             example.com.\tTXT\t\"v=spf1 mx -all\"\n\
             msgr-ed25519._domainkey.example.com.\tTXT\t\"v=DKIM1; k=ed25519; p=PUB\"\n\
             _dmarc.example.com.\tTXT\t\"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com\"\n"
        );
    }
}
