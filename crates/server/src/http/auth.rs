//! Bearer-token auth for every API route (`/api/…`, `/metrics/…`), compared in constant time.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use runboard_api::ErrorCode;
use subtle::ConstantTimeEq as _;

use crate::failure::Failure;

/// The token every request must present, if any.
#[derive(Debug, Clone)]
pub struct RequiredToken(pub Option<String>);

/// Rejects a request without `Authorization: Bearer <token>` when a token is configured.
pub async fn require_token(
    State(required): State<RequiredToken>,
    request: Request,
    next: Next,
) -> Response {
    // The page and its files load without a token: the page is what asks for one.
    let api = crate::http::web_bundle::is_api_path(request.uri().path());
    let Some(expected) = required.0.as_ref().filter(|_| api) else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(presented) = presented else {
        return unauthorized("this server needs a token: send Authorization: Bearer <token>");
    };
    // Constant time in the token's content, so a timing probe learns nothing from a prefix.
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        next.run(request).await
    } else {
        unauthorized("the token is not valid for this server")
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response =
        Failure::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}
