//! DKIM signing of what msgr sends out (RFC 6376), with two keys generated on first start into the data
//! directory (PKCS#8 DER, mode 0600): `DATA/dkim/ed25519.pk8` (Ed25519-SHA256, RFC 8463) and
//! `DATA/dkim/rsa.pk8` (RSA-2048, RSA-SHA256). Every message gets one signature of each kind: most
//! receivers do not know Ed25519 yet and verify the RSA one, RFC 8463 §1's receivers prefer the Ed25519
//! one, and a receiver that knows neither algorithm ignores that signature (RFC 6376 §6.1.2). The DNS
//! records a domain publishes for them come from [`dns_records`], printed by `msgr mail dns DOMAIN`.
//!
//! ring signs with both keys; it cannot make RSA keys, so the `rsa` crate generates that one (once: the
//! file is kept) and only for that.

use base64::Engine as _;
use mail_auth::common::crypto::{Algorithm, Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::DkimSigner;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io;
use std::path::{Path, PathBuf};

/// The selector under which the Ed25519 key is published: `msgr-ed25519._domainkey.DOMAIN`.
pub const ED25519_SELECTOR: &str = "msgr-ed25519";
/// The selector under which the RSA key is published: `msgr-rsa._domainkey.DOMAIN`.
pub const RSA_SELECTOR: &str = "msgr-rsa";

/// The Ed25519 key's file in the key directory.
pub const ED25519_FILE: &str = "ed25519.pk8";
/// The RSA key's file in the key directory.
pub const RSA_FILE: &str = "rsa.pk8";

/// RFC 8301 §3.2: signers use at least 1024 bits and should use 2048; longer keys no longer fit a
/// 255-byte TXT string and some DNS providers' forms.
const RSA_BITS: usize = 2048;

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

/// Why a key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("DKIM key {0}: {1}")]
    Key(PathBuf, String),
}

/// The signing keys, loaded (parsed and checked) once.
pub struct Signer {
    ed25519: Ed25519Key,
    rsa: RsaKey<Sha256>,
    /// The `p=` of the RSA record: the SubjectPublicKeyInfo, base64 (ring only gives the PKCS#1 form).
    rsa_public: String,
}

impl Signer {
    /// Loads `dir/ed25519.pk8` and `dir/rsa.pk8`, generating whichever is missing (and `dir`). Blocking:
    /// making the RSA key takes a fraction of a second to a few seconds, once.
    pub fn load_or_create(dir: &Path) -> Result<Signer, DkimError> {
        let ed25519_path = dir.join(ED25519_FILE);
        let ed25519_der = load_or_generate(dir, &ed25519_path, || {
            Ed25519Key::generate_pkcs8().map_err(|e| e.to_string())
        })?;
        // Parsed here so a damaged file is reported at start, not at the first message.
        let ed25519 = Ed25519Key::from_pkcs8_der(&ed25519_der)
            .map_err(|e| DkimError::Key(ed25519_path, e.to_string()))?;

        let rsa_path = dir.join(RSA_FILE);
        let rsa_der = load_or_generate(dir, &rsa_path, generate_rsa)?;
        let bad = |e: String| DkimError::Key(rsa_path.clone(), e);
        let rsa = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            rsa_der.as_slice(),
        )))
        .map_err(|e| bad(e.to_string()))?;
        let rsa_public = {
            use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
            let key =
                rsa::RsaPrivateKey::from_pkcs8_der(&rsa_der).map_err(|e| bad(e.to_string()))?;
            let spki = key
                .to_public_key()
                .to_public_key_der()
                .map_err(|e| bad(e.to_string()))?;
            base64::engine::general_purpose::STANDARD.encode(spki.as_bytes())
        };
        Ok(Signer {
            ed25519,
            rsa,
            rsa_public,
        })
    }

    /// The Ed25519 public key, base64, as the `p=` of its DKIM record (RFC 8463 §4.2: the raw 32 bytes).
    pub fn ed25519_public_key(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.ed25519.public_key())
    }

    /// The RSA public key, base64 of its DER SubjectPublicKeyInfo, as the `p=` of its DKIM record (RFC 6376
    /// §3.6.1).
    pub fn rsa_public_key(&self) -> &str {
        &self.rsa_public
    }

    /// The `DKIM-Signature: …` headers (each CRLF-terminated; RSA-SHA256 first, then Ed25519-SHA256) for
    /// `message` signed as `domain`, `None` if the message cannot be signed (no header fields to sign).
    pub fn sign(&self, domain: &str, message: &[u8]) -> Option<String> {
        let rsa = sign_with(Borrowed(&self.rsa), domain, RSA_SELECTOR, message);
        let ed25519 = sign_with(Borrowed(&self.ed25519), domain, ED25519_SELECTOR, message);
        match (rsa, ed25519) {
            (Some(a), Some(b)) => Some(a + &b),
            // One key failing is a fault of ours (ring refused to sign); the other signature still helps.
            (Some(one), None) | (None, Some(one)) => {
                tracing::warn!(domain, "one of the two DKIM signatures could not be made");
                Some(one)
            }
            (None, None) => None,
        }
    }
}

fn sign_with(key: impl SigningKey, domain: &str, selector: &str, message: &[u8]) -> Option<String> {
    let signature = DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(SIGNED)
        .sign(message)
        .ok()?;
    Some(signature.to_header())
}

/// A key lent to mail-auth's signer, which wants to own one: the keys are parsed and checked once, at
/// start, so signing a message never meets a bad key (parsing would cost little: 19 µs for RSA-2048
/// against 700 µs for the RSA signature of a 4 KiB message, release build).
struct Borrowed<'a, K>(&'a K);

impl<K: SigningKey> SigningKey for Borrowed<'_, K> {
    type Hasher = K::Hasher;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

/// A new RSA key, PKCS#8 DER.
fn generate_rsa() -> Result<Vec<u8>, String> {
    use rsa::pkcs8::EncodePrivateKey as _;
    let key =
        rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS).map_err(|e| e.to_string())?;
    let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
    Ok(der.as_bytes().to_vec())
}

/// The bytes of `path`; made by `generate` and written (mode 0600) the first time. When two processes make
/// the key at once (the server at its first start and `msgr mail dns`), the first one written wins and
/// the other process uses it.
fn load_or_generate(
    dir: &Path,
    path: &Path,
    generate: impl FnOnce() -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, DkimError> {
    let io_err = |source| DkimError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => return Ok(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    std::fs::create_dir_all(dir).map_err(io_err)?;
    let bytes = generate().map_err(|e| DkimError::Key(path.to_owned(), e))?;
    if write_private(dir, path, &bytes).map_err(io_err)? {
        tracing::info!(path = %path.display(), "generated a DKIM key");
        Ok(bytes)
    } else {
        std::fs::read(path).map_err(io_err)
    }
}

/// Writes a private key readable by the owner only, whole or not at all: into a file of its own first,
/// then linked to `path`, so a reader never sees half a key. `false` when `path` existed already (the
/// file there is kept).
fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<bool> {
    use std::io::Write as _;
    let tmp = dir.join(format!(
        ".{}.{}.{:016x}.tmp",
        path.file_name()
            .map_or_else(|| "key".into(), |n| n.to_string_lossy().into_owned()),
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    // The temporary name goes whatever happened; the key (if linked) stays under `path`.
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            // The new name is durable once the directory is.
            #[cfg(unix)]
            std::fs::File::open(dir)?.sync_all()?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// `text` as the character-strings of one TXT record in zone-file form: `"…" "…"`, each at most 255
/// bytes (RFC 1035 §3.3.14; RFC 6376 §3.6.2.2 has the verifier join them). An RSA-2048 DKIM record is
/// about 410 bytes: two strings.
pub fn txt_strings(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() || out.is_empty() {
        let mut end = rest.len().min(255);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (chunk, tail) = rest.split_at(end);
        if !out.is_empty() {
            out.push(' ');
        }
        out.push('"');
        for c in chunk.chars() {
            if matches!(c, '"' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        rest = tail;
    }
    out
}

/// The records `domain` publishes for mail through msgr at `host`: MX, SPF, both DKIM keys and DMARC,
/// in zone-file form.
pub fn dns_records(domain: &str, host: &str, ed25519_key: &str, rsa_key: &str) -> String {
    let rsa = txt_strings(&format!("v=DKIM1; k=rsa; p={rsa_key}"));
    let ed25519 = txt_strings(&format!("v=DKIM1; k=ed25519; p={ed25519_key}"));
    format!(
        "{domain}.\tMX\t10 {host}.\n\
         {domain}.\tTXT\t\"v=spf1 mx -all\"\n\
         {RSA_SELECTOR}._domainkey.{domain}.\tTXT\t{rsa}\n\
         {ED25519_SELECTOR}._domainkey.{domain}.\tTXT\t{ed25519}\n\
         _dmarc.{domain}.\tTXT\t\"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}\"\n"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::OnceLock;

    /// One RSA key for the tests of this module that need any key (generating one is the slow part), made
    /// by the first of them; tests that check generation itself make their own.
    fn shared_dir() -> &'static Path {
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        DIR.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            Signer::load_or_create(dir.path()).unwrap();
            dir
        })
        .path()
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn keys_are_made_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("dkim");
        let a = Signer::load_or_create(&keys).unwrap();
        let b = Signer::load_or_create(&keys).unwrap();
        assert_eq!(a.ed25519_public_key(), b.ed25519_public_key());
        assert_eq!(a.rsa_public_key(), b.rsa_public_key());
        assert_eq!(a.ed25519_public_key().len(), 44, "32 bytes of Ed25519 key");
        // A 2048-bit SubjectPublicKeyInfo is 294 bytes of DER: 392 characters of base64.
        assert_eq!(a.rsa_public_key().len(), 392, "{}", a.rsa_public_key());
        assert!(a
            .rsa_public_key()
            .starts_with("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"));
        #[cfg(unix)]
        for file in [ED25519_FILE, RSA_FILE] {
            assert_eq!(mode(&keys.join(file)), 0o600, "{file}");
        }
        // Nothing but the two keys is left behind.
        let mut names: Vec<_> = std::fs::read_dir(&keys)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [ED25519_FILE, RSA_FILE]);
    }

    #[test]
    fn a_damaged_key_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for file in [ED25519_FILE, RSA_FILE] {
            for other in [ED25519_FILE, RSA_FILE] {
                std::fs::copy(shared_dir().join(other), dir.path().join(other)).unwrap();
            }
            std::fs::write(dir.path().join(file), b"garbage").unwrap();
            match Signer::load_or_create(dir.path()) {
                Err(DkimError::Key(path, _)) => assert!(path.ends_with(file), "{path:?}"),
                Err(e) => panic!("{file}: {e}"),
                Ok(_) => panic!("{file}: a damaged key was accepted"),
            }
        }
        // The RSA key cut short (a disk that filled up before `rsa.pk8` was whole, or a bad copy).
        let whole = std::fs::read(shared_dir().join(RSA_FILE)).unwrap();
        std::fs::write(dir.path().join(RSA_FILE), &whole[..whole.len() / 2]).unwrap();
        assert!(matches!(
            Signer::load_or_create(dir.path()),
            Err(DkimError::Key(..))
        ));
    }

    #[test]
    fn a_key_made_elsewhere_meanwhile_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pk8");
        assert!(write_private(dir.path(), &path, b"first").unwrap());
        assert!(!write_private(dir.path(), &path, b"second").unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let got = load_or_generate(dir.path(), &path, || panic!("not generated again")).unwrap();
        assert_eq!(got, b"first");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn both_signatures_name_domain_selector_and_algorithm() {
        let s = Signer::load_or_create(shared_dir()).unwrap();
        let h = s
            .sign(
                "example.com",
                b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n",
            )
            .unwrap();
        let headers: Vec<&str> = h
            .split("DKIM-Signature: ")
            .filter(|p| !p.is_empty())
            .collect();
        assert!(h.starts_with("DKIM-Signature: "), "{h}");
        assert_eq!(headers.len(), 2, "{h}");
        // Absent fields are signed too ("oversigning"): nobody can add them later.
        for (header, algorithm, selector) in [
            (headers[0], "a=rsa-sha256", "s=msgr-rsa"),
            (headers[1], "a=ed25519-sha256", "s=msgr-ed25519"),
        ] {
            for want in [algorithm, selector, "d=example.com", "From:", "Subject:"] {
                assert!(header.contains(want), "{want} in {header}");
            }
            assert!(header.ends_with("\r\n"));
        }
    }

    #[test]
    fn txt_strings_are_at_most_255_bytes() {
        assert_eq!(txt_strings("v=spf1 -all"), "\"v=spf1 -all\"");
        assert_eq!(txt_strings(""), "\"\"");
        assert_eq!(txt_strings("a\"b\\"), "\"a\\\"b\\\\\"");
        let long = "x".repeat(600);
        let split = txt_strings(&long);
        let parts: Vec<&str> = split.split(' ').map(|p| p.trim_matches('"')).collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [255, 255, 90]
        );
        assert_eq!(parts.concat(), long);
        // Never inside a character.
        let wide = "é".repeat(200);
        let split = txt_strings(&wide);
        assert_eq!(split.replace("\" \"", ""), format!("\"{wide}\""));
    }

    #[test]
    fn records() {
        let rsa = "R".repeat(392);
        let r = dns_records("example.com", "mail.example.com", "PUB", &rsa);
        let rsa_txt = format!("v=DKIM1; k=rsa; p={rsa}");
        assert_eq!(
            r,
            format!(
                "example.com.\tMX\t10 mail.example.com.\n\
                 example.com.\tTXT\t\"v=spf1 mx -all\"\n\
                 msgr-rsa._domainkey.example.com.\tTXT\t\"{}\" \"{}\"\n\
                 msgr-ed25519._domainkey.example.com.\tTXT\t\"v=DKIM1; k=ed25519; p=PUB\"\n\
                 _dmarc.example.com.\tTXT\t\"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com\"\n",
                &rsa_txt[..255],
                &rsa_txt[255..]
            )
        );
    }
}
