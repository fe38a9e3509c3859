//! Whether a proxied streamed call may go on one of the upstream's kept-alive connections.
//!
//! Most model servers keep a connection open after a streamed answer (vLLM, `SGLang` and
//! llama-cpp-python behind uvicorn, Ollama, hosted APIs), and reusing it saves a connection
//! (and over TLS a handshake, a round trip or two of the first token's wait) per call.
//! llama.cpp's server closes it right after the stream without saying so; a call sent on it
//! in that moment is lost, and runboard never sends a call twice. So streams go on a
//! connection of their own (`Connection: close`) to an upstream that names itself llama.cpp
//! (its `Server` header, seen on the model list runboard reads at start), and to one where a
//! streamed call's connection broke once after it was sent, from then on.

use std::sync::atomic::{AtomicBool, Ordering};

/// An upstream's rule for streamed calls' connections; starts sharing them.
#[derive(Debug, Default)]
pub struct StreamConnections {
    own: AtomicBool,
}

/// The `Server` headers of model servers known to close a connection after each stream.
const CLOSE_AFTER_STREAMS: &[&str] = &["llama.cpp"];

impl StreamConnections {
    /// Whether a streamed call must go on a connection of its own.
    pub fn own_connection(&self) -> bool {
        self.own.load(Ordering::Relaxed)
    }

    /// Notes the headers of an answer from the upstream named `upstream`.
    pub fn heard(&self, headers: &reqwest::header::HeaderMap, upstream: &str) {
        if self.own_connection() {
            return;
        }
        let server = headers
            .get(reqwest::header::SERVER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if CLOSE_AFTER_STREAMS
            .iter()
            .any(|name| server.to_ascii_lowercase().starts_with(name))
            && !self.own.swap(true, Ordering::Relaxed)
        {
            tracing::info!(
                upstream,
                server,
                "this model server closes a connection after each stream: streamed calls go \
                 on a connection of their own"
            );
        }
    }

    /// Notes that a streamed call's connection to `upstream` broke after the call was sent.
    pub fn broke(&self, upstream: &str) {
        if !self.own.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                upstream,
                "a streamed call's connection broke after it was sent: streamed calls go on a \
                 connection of their own from now on"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, SERVER};

    fn server(name: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(SERVER, HeaderValue::from_str(name).unwrap());
        headers
    }

    #[test]
    fn streams_share_connections_until_the_server_is_known_to_close_them() {
        let rule = StreamConnections::default();
        assert!(!rule.own_connection());
        rule.heard(&server("uvicorn"), "vllm");
        rule.heard(&HeaderMap::new(), "vllm");
        assert!(!rule.own_connection());
        rule.heard(&server("llama.cpp"), "llama");
        assert!(rule.own_connection());
        // Once known, for good.
        rule.heard(&server("uvicorn"), "llama");
        assert!(rule.own_connection());
    }

    #[test]
    fn a_connection_broken_after_a_call_turns_streams_to_their_own() {
        let rule = StreamConnections::default();
        rule.broke("somewhere");
        assert!(rule.own_connection());
    }
}
