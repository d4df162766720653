//! TLS for skiff's own endpoints (rustls with ring), shared by the API server and the node
//! agent's streaming server:
//!
//! - serving an axum app, HTTP/2 and HTTP/1.1 by ALPN, with HTTP/1.1 upgrades kept possible
//!   (exec, attach and port-forward switch protocols);
//! - requiring client certificates signed by the cluster CA (how a node agent knows the
//!   API server, as kubelet's `--client-ca-file` does);
//! - a node's self-signed serving certificate (kubelet's default when it is given none);
//! - the client side that presents a certificate to such a server.

use std::sync::Arc;

mod relay;
pub use relay::{RelayError, relay};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: {message}")]
    Pem { what: &'static str, message: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            message: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

fn private_key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what,
        message: e.to_string(),
    })
}

fn config_error(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

/// The certificates (DER) in a PEM text.
pub fn certificates_from_pem(pem: &str, what: &'static str) -> Result<Vec<Vec<u8>>, TlsError> {
    Ok(certificates(pem, what)?
        .into_iter()
        .map(|c| c.as_ref().to_vec())
        .collect())
}

/// A TLS acceptor for a serving certificate; `client_ca` (DER certificates) makes client
/// certificates signed by one of them required.
pub fn acceptor(
    cert_pem: &str,
    key_pem: &str,
    client_ca: Option<&[Vec<u8>]>,
) -> Result<TlsAcceptor, TlsError> {
    let certs = certificates(cert_pem, "serving certificate")?;
    let key = private_key(key_pem, "serving key")?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in ca {
                roots
                    .add(CertificateDer::from(cert.clone()))
                    .map_err(|e| TlsError::Pem {
                        what: "client CA",
                        message: e.to_string(),
                    })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(config_error)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(config_error)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until the task is aborted. A failed handshake or connection affects
/// only that connection.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, app: Router) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// A self-signed serving certificate and its key (PEM) for `names` (IP addresses or DNS
/// names), valid for a year.
pub fn self_signed(common_name: &str, names: &[String]) -> Result<(String, String), TlsError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(rcgen::SanType::IpAddress(ip)),
            Err(_) => Ok(rcgen::SanType::DnsName(n.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A client configuration that presents `cert_pem`/`key_pem` and speaks HTTP/1.1 (streams
/// upgrade from it). The server's certificate is not checked against a CA: node agents serve
/// self-signed certificates, and upstream's API server accepts them unless it is given
/// `--kubelet-certificate-authority`. The handshake's signatures are still verified, so the
/// peer holds the key of the certificate it shows.
pub fn client_config_any_server(
    cert_pem: &str,
    key_pem: &str,
) -> Result<rustls::ClientConfig, TlsError> {
    let certs = certificates(cert_pem, "client certificate")?;
    let key = private_key(key_pem, "client key")?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .dangerous()
        .with_custom_certificate_verifier(any_server_certificate())
        .with_client_auth_cert(certs, key)
        .map_err(config_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client configuration without a client certificate that accepts any server certificate
/// (the handshake's signatures still verified), speaking HTTP/1.1: for pods served over
/// `https`, which upstream's API server proxies to without checking their certificates.
pub fn client_config_anonymous_any_server() -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(any_server_certificate())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// A verifier that accepts any server certificate but checks that the handshake was signed
/// with its key (so the handshake itself is sound): for servers with self-signed
/// certificates, and for registries configured with `insecure_skip_verify`.
pub fn any_server_certificate() -> Arc<dyn ServerCertVerifier> {
    Arc::new(AnyServer(provider()))
}

#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificates_serve_and_bad_pem_is_a_clear_error() {
        let (cert, key) = self_signed("node-1", &["127.0.0.1".into(), "node-1".into()]).unwrap();
        let ca = certificates_from_pem(&cert, "CA").unwrap();
        assert!(acceptor(&cert, &key, None).is_ok());
        assert!(acceptor(&cert, &key, Some(&ca)).is_ok());
        let err = acceptor("not pem", &key, None).err().unwrap();
        assert!(err.to_string().starts_with("serving certificate"), "{err}");
        let err = acceptor(&cert, &key, Some(&[b"junk".to_vec()]))
            .err()
            .unwrap();
        assert!(err.to_string().contains("client CA"), "{err}");
        let err = certificates_from_pem("", "the cluster CA").err().unwrap();
        assert_eq!(err.to_string(), "the cluster CA: no certificate in it");
        assert!(client_config_any_server(&cert, &key).is_ok());
    }
}
