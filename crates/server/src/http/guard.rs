//! Refuses requests a browser was tricked into sending, before any handler runs:
//! - writes from a page of another origin (a cross-site `POST`, which needs no preflight when
//!   its body is `text/plain`): a state-changing request must carry `application/json`, and an
//!   `Origin` that is neither this server's nor a `--cors-origin` is refused;
//! - DNS rebinding: without a token, a `Host` that is not a loopback name, a loopback address or
//!   the address the server is bound to is refused, so a page whose name was re-pointed at
//!   127.0.0.1 cannot read or launch runs;
//! - a declared body over the limit is refused at once (413), before a byte of it is read.

use runboard_api::ErrorCode;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use crate::failure::Failure;

/// What the guard checks against.
#[derive(Debug, Clone)]
pub struct Guard {
    inner: Arc<GuardSettings>,
}

#[derive(Debug)]
struct GuardSettings {
    /// With a token, the `Host` check is not needed: a rebound page cannot present it.
    token_required: bool,
    /// Origins allowed besides the server's own, as `scheme://host[:port]`.
    cors_origins: Vec<String>,
    /// Where the server listens.
    bound: SocketAddr,
    /// Request bodies larger than this are refused.
    max_body_bytes: usize,
    /// The same for the OpenAI-compatible proxy under `/v1` (prompts can be long).
    proxy_max_body_bytes: usize,
}

impl Guard {
    /// A guard for a server bound to `bound`.
    pub fn new(
        token_required: bool,
        cors_origins: Vec<String>,
        bound: SocketAddr,
        max_body_bytes: usize,
        proxy_max_body_bytes: usize,
    ) -> Self {
        Self {
            inner: Arc::new(GuardSettings {
                token_required,
                cors_origins,
                bound,
                max_body_bytes,
                proxy_max_body_bytes,
            }),
        }
    }

    fn check(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), Failure> {
        let settings = &self.inner;
        let host = headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !settings.token_required && !host_allowed(host, settings.bound) {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                ErrorCode::HostNotAllowed,
                format!(
                    "Host {host:?} is not this server's loopback name or address; without a \
                     token only those are answered (start the server with --token to reach it \
                     by another name)"
                ),
            ));
        }
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("null").trim_end_matches('/');
            let own = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|authority| authority.eq_ignore_ascii_case(host));
            let allowed = settings
                .cors_origins
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(origin));
            if !own && !allowed {
                return Err(Failure::new(
                    StatusCode::FORBIDDEN,
                    ErrorCode::CrossOrigin,
                    format!(
                        "requests that change state from {origin:?} are refused: it is neither \
                         this server's origin nor one allowed with --cors-origin"
                    ),
                ));
            }
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok());
        let limit = if is_proxy_path(path) {
            settings.proxy_max_body_bytes
        } else {
            settings.max_body_bytes
        };
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BodyTooLarge,
                format!("the request body is larger than {limit} bytes"),
            ));
        }
        let has_body = declared.is_some_and(|length| length > 0)
            || headers.contains_key(header::TRANSFER_ENCODING);
        if has_body && !is_json(headers) {
            return Err(Failure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "a request body must be JSON, sent with Content-Type: application/json",
            ));
        }
        Ok(())
    }
}

/// The middleware: runs [`Guard`]'s checks on every request.
pub async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    match guard.check(request.method(), request.uri().path(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(failure) => failure.into_response(),
    }
}

/// The OpenAI-compatible proxy's paths.
pub fn is_proxy_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// `application/json`, with parameters (`; charset=utf-8`) allowed.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// A loopback name (`localhost`, `*.localhost`), a loopback address, or the bound address; on
/// a server bound to every interface (`0.0.0.0`), any address: no DNS name is involved, so
/// nothing can be rebound.
fn host_allowed(host: &str, bound: SocketAddr) -> bool {
    let name = match host.rsplit_once(':') {
        // `[::1]:9010` or `127.0.0.1:9010`; a bare IPv6 literal has more than one colon.
        Some((name, port)) if !name.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_end_matches('.');
    let literal = name.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return ip.is_loopback() || ip == bound.ip() || bound.ip().is_unspecified();
    }
    let lower = name.to_ascii_lowercase();
    lower == "localhost" || lower.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::host_allowed;

    #[test]
    fn hosts_without_a_token() {
        let loopback: SocketAddr = "127.0.0.1:9010".parse().unwrap();
        for good in [
            "127.0.0.1:9010",
            "localhost:9010",
            "LOCALHOST",
            "app.localhost:1",
            "[::1]:9010",
            "127.0.0.2",
            "localhost.",
        ] {
            assert!(host_allowed(good, loopback), "{good}");
        }
        for bad in [
            "evil.example:9010",
            "localhost.evil.example",
            "10.0.0.5:9010",
            "",
            "127.0.0.1.nip.io",
        ] {
            assert!(!host_allowed(bad, loopback), "{bad}");
        }
        let lan: SocketAddr = "10.0.0.5:9010".parse().unwrap();
        assert!(host_allowed("10.0.0.5:9010", lan));
        assert!(!host_allowed("10.0.0.6:9010", lan));
        let everywhere: SocketAddr = "0.0.0.0:9010".parse().unwrap();
        assert!(host_allowed("192.168.1.20:9010", everywhere));
        assert!(!host_allowed("gpu-box.lan:9010", everywhere));
    }
}
