//! RTMPS client TLS (rustls with the `ring` provider).

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use super::RtmpError;

/// Which certificates RTMPS destinations are checked against.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// Trust the Mozilla root set (webpki-roots). On by default.
    pub webpki_roots: bool,
    /// Extra CA certificates (PEM files), e.g. a local test CA or a corporate proxy CA.
    pub extra_ca_files: Vec<PathBuf>,
}

impl Default for TlsOptions {
    fn default() -> TlsOptions {
        TlsOptions { webpki_roots: true, extra_ca_files: Vec::new() }
    }
}

impl TlsOptions {
    /// Builds a connector. Fails if a CA file cannot be read or holds no certificate.
    pub fn connector(&self) -> Result<TlsConnector, RtmpError> {
        let mut roots = RootCertStore::empty();
        if self.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for path in &self.extra_ca_files {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| RtmpError::Tls(format!("cannot read CA file {}: {e}", path.display())))?
                .collect::<Result<_, _>>()
                .map_err(|e| RtmpError::Tls(format!("bad PEM in {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(RtmpError::Tls(format!("no certificate in {}", path.display())));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| RtmpError::Tls(format!("bad CA certificate in {}: {e}", path.display())))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| RtmpError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsConnector::from(Arc::new(config)))
    }
}
