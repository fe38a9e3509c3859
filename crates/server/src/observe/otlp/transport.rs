//! The HTTP client the OTLP exporters send with: runboard's reqwest client (TLS on ring,
//! `--ca-cert`), which also keeps why the last request could not be sent. The exporters reduce
//! every such failure to "network error"; the log line says what it was (a refused
//! connection, a name that does not resolve, a certificate not trusted).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

/// runboard's client, and the last transport error it met.
#[derive(Debug, Clone)]
pub(super) struct Transport {
    http: reqwest::Client,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Transport {
    /// Sends with `http`.
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            last_error: Arc::new(Mutex::new(None)),
        }
    }

    /// Why the last request that could not be sent was not, once (taken).
    pub fn take_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// An error and its causes, the way people read them: "a: b: c".
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let said = next.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = next.source();
    }
    text
}

impl HttpClient for Transport {
    // What `#[async_trait]` makes of the trait's `async fn`, written out.
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let sent = HttpClient::send_bytes(&self.http, request).await;
            if let Err(error) = &sent {
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(chain(error.as_ref()));
            }
            sent
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_named_with_its_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The listener is gone: nothing takes connections on the port now.
        let transport = Transport::new(runboard_sse::http::client());
        let request = Request::post(format!("http://127.0.0.1:{port}/v1/traces"))
            .body(Bytes::from_static(b""))
            .unwrap();
        assert!(transport.send_bytes(request).await.is_err());
        let said = transport.take_error().unwrap();
        assert!(said.to_lowercase().contains("connection refused"), "{said}");
        assert_eq!(transport.take_error(), None);
    }
}
