//! TLS for the listeners that cross untrusted networks (reports, operator API): the server
//! config from PEM files, checked at start so a bad certificate or key is named up front.

use std::{path::Path, sync::Arc};

use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use serde::Deserialize;

/// `[tls]`: when both are set, the report and operator listeners speak HTTPS only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain (PEM), leaf first.
    #[serde(default)]
    pub cert: std::path::PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key: std::path::PathBuf,
}

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls: set both cert and key, or neither")]
    Half,
    #[error("tls.cert {path}: {message}")]
    Cert { path: String, message: String },
    #[error("tls.key {path}: {message}")]
    Key { path: String, message: String },
    #[error("tls: the key does not fit the certificate, or neither is usable: {0}")]
    Mismatch(rustls::Error),
}

impl TlsConfig {
    /// The acceptor, or `None` when TLS is off.
    pub fn acceptor(&self) -> Result<Option<tokio_rustls::TlsAcceptor>, TlsError> {
        let (cert, key) = (self.cert.as_os_str(), self.key.as_os_str());
        if cert.is_empty() && key.is_empty() {
            return Ok(None);
        }
        if cert.is_empty() || key.is_empty() {
            return Err(TlsError::Half);
        }
        let certs = load_certs(&self.cert)?;
        let key = load_key(&self.key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Mismatch)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(TlsError::Mismatch)?;
        Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Cert {
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block in the file".into()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.display().to_string(),
        message: format!("{e} (expected a PEM private key)"),
    })
}

/// A client config trusting the certificates in the PEM file `ca` (for `quid node report`
/// against a router with a private certificate).
pub fn client_trusting(ca: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert).map_err(|e| TlsError::Cert {
            path: ca.display().to_string(),
            message: e.to_string(),
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Mismatch)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
