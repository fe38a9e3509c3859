//! HTTP clients: every `reqwest` client in runboard is made here.
//!
//! Natively reqwest speaks TLS through rustls with the *ring* crypto provider, which this module
//! installs as the process default before the first client is built: reqwest is compiled without
//! a provider of its own (its default, aws-lc, is a large C build) and panics when it finds none.
//! In the browser `fetch()` does TLS and there is nothing to install.

/// A client builder, ready for TLS (`https://` model servers and runboard servers), trusting
/// the certificate authorities given to [`trust_ca_pem`] besides the system's.
pub fn client_builder() -> reqwest::ClientBuilder {
    #[cfg(not(target_arch = "wasm32"))]
    {
        install_tls_provider();
        let mut builder = reqwest::Client::builder();
        for certificate in EXTRA_ROOTS.get().into_iter().flatten() {
            builder = builder.add_root_certificate(certificate.clone());
        }
        builder
    }
    #[cfg(target_arch = "wasm32")]
    reqwest::Client::builder()
}

/// Certificate authorities every client trusts besides the system's (`--ca-cert`).
#[cfg(not(target_arch = "wasm32"))]
static EXTRA_ROOTS: std::sync::OnceLock<Vec<reqwest::Certificate>> = std::sync::OnceLock::new();

/// Makes every client built from now on trust the certificate authorities in `pem` (one or
/// more PEM certificates: a private CA, or a server's self-signed certificate). Call it once,
/// before the first client is built; a second call is refused.
///
/// # Errors
/// When `pem` holds no certificate, or a second set is given.
#[cfg(not(target_arch = "wasm32"))]
pub fn trust_ca_pem(pem: &[u8]) -> Result<(), String> {
    let certificates = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|error| format!("not a PEM certificate: {error}"))?;
    if certificates.is_empty() {
        return Err("no certificate in it (a PEM file with BEGIN CERTIFICATE)".into());
    }
    EXTRA_ROOTS
        .set(certificates)
        .map_err(|_| "certificate authorities were given twice".to_owned())
}

/// A client with reqwest's defaults and TLS.
///
/// # Panics
/// As `reqwest::Client::new` does: when the system's TLS roots cannot be loaded.
pub fn client() -> reqwest::Client {
    client_builder()
        .build()
        .expect("an HTTP client with reqwest's defaults")
}

/// Makes ring the process's rustls provider, once. Another provider installed first (by an
/// embedding program) is kept: reqwest uses whichever is the default.
#[cfg(not(target_arch = "wasm32"))]
fn install_tls_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    #[test]
    fn clients_are_built_with_tls_and_ring_is_the_provider() {
        let _client = crate::http::client();
        let provider = rustls::crypto::CryptoProvider::get_default().expect("a default provider");
        assert!(
            provider
                .cipher_suites
                .iter()
                .any(|suite| suite.version() == &rustls::version::TLS13)
        );
        // Twice is fine: the provider is installed once.
        let _again = crate::http::client_builder()
            .https_only(true)
            .build()
            .unwrap();
    }
}
