//! Which HTTPS servers Passport login trusts: the system's web roots, a certificate file the user
//! names, or — only when asked for by name — anything at all.

use crate::error::ClientError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_rustls::TlsConnector;

/// Where trust in the Passport server's certificate comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TlsTrust {
    /// The Mozilla root set shipped with `webpki-roots`.
    #[default]
    SystemRoots,
    /// Only the certificates in this PEM file (e.g. a self-hosted server's `tls-cert.pem`).
    CertificateFile(PathBuf),
    /// No verification at all: anyone on the path can read the password. For throwaway test
    /// servers only; the long name is deliberate.
    InsecureAcceptAnyCertificate,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Chosen per connector rather than installed process-wide, so a program embedding the
    // library keeps its own default provider.
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsTrust {
    /// A connector that applies this trust.
    pub fn connector(&self) -> Result<TlsConnector, ClientError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let config = match self {
            TlsTrust::SystemRoots => {
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            TlsTrust::CertificateFile(path) => {
                let mut roots = rustls::RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| ClientError::Tls(format!("reading {}: {e}", path.display())))?;
                for cert in certs {
                    let cert = cert.map_err(|e| {
                        ClientError::Tls(format!("reading {}: {e}", path.display()))
                    })?;
                    roots
                        .add(cert)
                        .map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
                }
                if roots.is_empty() {
                    return Err(ClientError::Tls(format!(
                        "no certificate in {}",
                        path.display()
                    )));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            TlsTrust::InsecureAcceptAnyCertificate => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider())))
                .with_no_client_auth(),
        };
        Ok(TlsConnector::from(Arc::new(config)))
    }
}

/// Accepts every certificate but still checks handshake signatures (so the session is at least
/// encrypted to whoever holds the key).
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
