//! TLS for the HTTPS listener: the operator's certificate, or a self-signed one generated into
//! the data directory on first start and reused afterwards.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Pem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the generated certificate and key are kept.
pub fn generated_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    (data_dir.join("tls-cert.pem"), data_dir.join("tls-key.pem"))
}

/// Names the generated certificate is valid for. Old clients check the host *name* only, so
/// `localhost` and the public host are DNS names; loopback IPs are added for modern ones.
fn subject_alt_names(public_host: Option<&str>) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Some(h) = public_host {
        if !names.iter().any(|n| n == h) {
            names.push(h.to_owned());
        }
    }
    names
}

/// Makes sure a certificate exists, generating one if the operator gave none, and returns
/// the paths of the PEM certificate and key to use.
pub fn ensure_certificate(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
    public_host: Option<&str>,
) -> Result<(PathBuf, PathBuf), TlsError> {
    if let (Some(c), Some(k)) = (cert, key) {
        return Ok((c.to_owned(), k.to_owned()));
    }
    let (cert_path, key_path) = generated_paths(data_dir);
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let generated = rcgen::generate_simple_self_signed(subject_alt_names(public_host))?;
    write_private(&key_path, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, generated.cert.pem()).map_err(|source| TlsError::Write {
        path: cert_path.clone(),
        source,
    })?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed TLS certificate");
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|source| TlsError::Write {
            path: path.to_owned(),
            source,
        })
}

/// Builds the rustls server configuration for HTTPS from PEM files (ALPN `http/1.1`).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = base_config(cert, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The same certificate for the mail listeners (SMTP `STARTTLS`, POP3 `STLS`, the implicit-TLS ports):
/// without ALPN, because a mail client that offers ALPN (`smtp`, `pop3`) and hears `http/1.1` back
/// must abort the handshake (RFC 7301 §3.2).
pub fn mail_server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    Ok(Arc::new(base_config(cert, key)?))
}

fn base_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let pem_err = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Pem { path, source }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(pem_err(cert))?
        .collect::<Result<_, _>>()
        .map_err(pem_err(cert))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem_err(key))?;
    Ok(rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?)
}

/// Installs the one crypto provider msgr uses. Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
