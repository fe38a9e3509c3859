//! HTTPS for `runboard serve --tls-cert PEM --tls-key PEM`: rustls on the *ring* provider,
//! HTTP/2 and HTTP/1.1 offered by ALPN. A client that speaks plain HTTP to the TLS port is told
//! so in plain HTTP (rather than left with a failed handshake it cannot explain).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// The certificate chain and private key a server is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM (`--tls-cert`): the server's first, then intermediates.
    pub cert: PathBuf,
    /// Its private key, PEM (`--tls-key`): PKCS#8, PKCS#1 or SEC1.
    pub key: PathBuf,
}

/// The ALPN name of HTTP/2.
pub const H2: &[u8] = b"h2";

/// Reads the certificate and key and makes the acceptor; the error names the file and why.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    let cert_path = files.cert.display();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|error| format!("--tls-cert {cert_path}: {error}"))?
        .collect::<Result<_, _>>()
        .map_err(|error| format!("--tls-cert {cert_path}: {error}"))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert {cert_path}: no certificate in it (a PEM file with BEGIN CERTIFICATE)"
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|error| format!("--tls-key {}: {error}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|error| {
            format!(
                "--tls-cert {cert_path} and --tls-key {}: {error}",
                files.key.display()
            )
        })?;
    config.alpn_protocols = vec![H2.to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The first byte of every TLS connection (a handshake record).
const HANDSHAKE: u8 = 0x16;

/// Whether the client's first byte opens a TLS handshake; `None` when it sent nothing within
/// `timeout` or left.
pub async fn starts_with_tls(stream: &TcpStream, timeout: Duration) -> Option<bool> {
    let mut first = [0_u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) => Some(first[0] == HANDSHAKE),
        _ => None,
    }
}

/// Answers a plain-HTTP request on the TLS port with a plain 400 that says to use `https://`,
/// then closes.
pub async fn refuse_plain_http(mut stream: TcpStream) {
    let body = format!(
        "{{\"error\":{{\"code\":\"{}\",\"message\":\"this server speaks HTTPS only: use an \
         https:// URL\"}}}}\n",
        runboard_api::ErrorCode::BadRequest.as_str()
    );
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let files = TlsFiles {
            cert: dir.path().join("absent.pem"),
            key: empty.clone(),
        };
        let error = acceptor(&files).err().unwrap();
        assert!(
            error.starts_with("--tls-cert ") && error.contains("absent.pem"),
            "{error}"
        );
        let files = TlsFiles {
            cert: empty.clone(),
            key: empty,
        };
        let error = acceptor(&files).err().unwrap();
        assert!(error.contains("no certificate"), "{error}");
    }
}
