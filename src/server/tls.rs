//! `[tls]` read and checked at start: the server's certificate chain and key, and with
//! `client_ca_file` the CA whose client certificates are required (mutual TLS). One
//! `ServerTls` serves both ports: tonic's `ServerTlsConfig` for gRPC and a rustls acceptor
//! for the HTTP port (`http_tls`). rustls with the ring provider; errors name the key and
//! the file.
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// Both ports' TLS.
#[derive(Clone)]
pub struct ServerTls {
    pub grpc: tonic::transport::ServerTlsConfig,
    pub http: tokio_rustls::TlsAcceptor,
    pub mutual: bool,
}

/// The crypto provider every rustls config here uses (and the process default, which
/// tonic's server builder reads): ring.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let p = Arc::new(rustls::crypto::ring::default_provider());
    // Already installed (by an earlier server in this process, or another library): fine.
    let _ = rustls::crypto::CryptoProvider::install_default((*p).clone());
    p
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("tls.{key}: cannot read {}: {e}", path.display()))
}

fn certs(key: &str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.{key}: {} is not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls.{key}: {} holds no CERTIFICATE block",
            path.display()
        ));
    }
    Ok(certs)
}

/// `None` when `[tls]` is off; an error (one line, naming the key) when a file is missing
/// or not what it should be.
pub fn load(cfg: &TlsConfig) -> Result<Option<ServerTls>, String> {
    let (Some(cert_path), Some(key_path)) = (&cfg.cert_file, &cfg.key_file) else {
        return Ok(None);
    };
    let provider = provider();
    let cert_pem = read("cert_file", cert_path)?;
    let key_pem = read("key_file", key_path)?;
    let chain = certs("cert_file", cert_path, &cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "tls.key_file: {} is not a PEM private key: {e}",
            key_path.display()
        )
    })?;
    let mut grpc = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(&cert_pem, &key_pem));
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let builder = match &cfg.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_path) => {
            let ca_pem = read("client_ca_file", ca_path)?;
            let mut roots = rustls::RootCertStore::empty();
            for c in certs("client_ca_file", ca_path, &ca_pem)? {
                roots.add(c).map_err(|e| {
                    format!(
                        "tls.client_ca_file: {}: not a usable CA certificate: {e}",
                        ca_path.display()
                    )
                })?;
            }
            grpc = grpc.client_ca_root(tonic::transport::Certificate::from_pem(&ca_pem));
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| format!("tls.client_ca_file: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut http = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "tls.cert_file / tls.key_file: {} and {} do not make a usable identity: {e}",
            cert_path.display(),
            key_path.display()
        )
    })?;
    http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(ServerTls {
        grpc,
        http: tokio_rustls::TlsAcceptor::from(Arc::new(http)),
        mutual: cfg.client_ca_file.is_some(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_bad_files_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        let cfg = |c: &Path, k: &Path| TlsConfig {
            cert_file: Some(c.into()),
            key_file: Some(k.into()),
            client_ca_file: None,
        };
        assert!(load(&TlsConfig::default()).unwrap().is_none());
        let e = load(&cfg(&dir.path().join("none.pem"), &junk))
            .err()
            .unwrap();
        assert!(e.starts_with("tls.cert_file: cannot read"), "{e}");
        let e = load(&cfg(&junk, &junk)).err().unwrap();
        assert!(
            e.starts_with("tls.cert_file:") && e.contains("no CERTIFICATE"),
            "{e}"
        );
    }
}
