//! Bearer tokens and roles for every API route (`/api/…`, `/metrics/…`, `/v1/…`): who is
//! calling, and whether their role may do what the request does.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use runboard_api::{AccessInfo, Action, ErrorCode, Redaction, Role};

use crate::failure::Failure;
use crate::http::tokens::Keyring;

/// Who made a request, as its token says: put in the request's extensions for the handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name; `None` for the single `--token` and when no token is asked for.
    pub name: Option<String>,
    /// Its role (admin when no token is asked for).
    pub role: Role,
    /// Whether the server asks for tokens at all.
    pub tokens_required: bool,
    /// What this caller is not sent (`--redact-viewers`, for a viewer).
    pub redaction: Option<Redaction>,
}

impl Caller {
    /// What `GET /api/access` answers this caller.
    pub fn access_info(&self) -> AccessInfo {
        AccessInfo {
            redaction: self.redaction,
            ..AccessInfo::new(self.tokens_required, self.name.clone(), self.role)
        }
    }

    /// How the server's log names this caller: the token's name, or what stands for it.
    pub fn label(&self) -> &str {
        match (&self.name, self.tokens_required) {
            (Some(name), _) => name,
            (None, true) => "the --token holder",
            (None, false) => "a caller without a token",
        }
    }
}

/// Rejects a request without a valid `Authorization: Bearer <token>` when tokens are asked for
/// (401), and one whose token's role may not do what it asks (403, naming the role needed).
pub async fn require_token(
    State(keyring): State<Keyring>,
    mut request: Request,
    next: Next,
) -> Response {
    // The page and its files load without a token: the page is what asks for one.
    let path = request.uri().path();
    if !crate::http::web_bundle::is_api_path(path) {
        return next.run(request).await;
    }
    if !keyring.is_required() {
        request.extensions_mut().insert(Caller {
            name: None,
            role: Role::Admin,
            tokens_required: false,
            redaction: None,
        });
        return next.run(request).await;
    }
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
    let Some(token) = keyring.find(presented) else {
        return unauthorized("the token is not valid for this server");
    };
    let caller = Caller {
        name: token.name.clone(),
        role: token.role,
        tokens_required: true,
        redaction: keyring.redaction_for(token.role),
    };
    match needed(request.method(), request.uri().path()) {
        Need::AnyToken => {}
        Need::Action(action) if caller.role.may(action) => {}
        Need::Action(action) => {
            return forbidden(&format!(
                "{} may not {}: that needs the {} role",
                describe(&caller),
                action.describe(),
                Role::needed_for(action)
            ));
        }
        Need::Admin if caller.role == Role::Admin => {}
        Need::Admin => {
            return forbidden(&format!(
                "{} may not write here: that needs the admin role",
                describe(&caller)
            ));
        }
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// What a request needs of its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Any valid token (`GET /api/access`).
    AnyToken,
    /// A role that may do this.
    Action(Action),
    /// A write to a path no route takes: the router answers 404 or 405, but only to an admin,
    /// so that a route added without a rule here is never open to a weaker role.
    Admin,
}

/// What the request at `method` and `path` does.
fn needed(method: &Method, path: &str) -> Need {
    let reads = matches!(*method, Method::GET | Method::HEAD);
    if path == "/api/access" {
        return Need::AnyToken;
    }
    if path == "/v1" || path.starts_with("/v1/") {
        return Need::Action(if reads {
            Action::ListModels
        } else {
            Action::ProxyCall
        });
    }
    if reads {
        return Need::Action(Action::Read);
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api", "runs"] => Need::Action(Action::Launch),
        ["api", "runs", _, "cancel"] => Need::Action(Action::Cancel),
        ["api", "benchmarks"] => Need::Action(Action::Benchmark),
        _ => Need::Admin,
    }
}

/// The caller, for a refusal: `the token "ops" (viewer)`.
fn describe(caller: &Caller) -> String {
    match &caller.name {
        Some(name) => format!("the token {name:?} ({})", caller.role),
        None => format!("this token ({})", caller.role),
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

fn forbidden(message: &str) -> Response {
    Failure::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_needs_what_it_does() {
        let cases = [
            (Method::GET, "/api/runs", Need::Action(Action::Read)),
            (
                Method::GET,
                "/api/runs/r1/stream",
                Need::Action(Action::Read),
            ),
            (Method::GET, "/metrics", Need::Action(Action::Read)),
            (Method::GET, "/api/access", Need::AnyToken),
            (Method::POST, "/api/runs", Need::Action(Action::Launch)),
            (
                Method::POST,
                "/api/runs/r1/cancel",
                Need::Action(Action::Cancel),
            ),
            (
                Method::POST,
                "/api/benchmarks",
                Need::Action(Action::Benchmark),
            ),
            (
                Method::POST,
                "/v1/chat/completions",
                Need::Action(Action::ProxyCall),
            ),
            (Method::GET, "/v1/models", Need::Action(Action::ListModels)),
            (Method::POST, "/api/health", Need::Admin),
            (Method::DELETE, "/api/runs/r1", Need::Admin),
        ];
        for (method, path, need) in cases {
            assert_eq!(needed(&method, path), need, "{method} {path}");
        }
    }
}
