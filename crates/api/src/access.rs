//! Who may do what: the roles a token can have, and `GET /api/access`, where a client asks what
//! its own token may do (the console hides what it may not).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything: reads, launches, cancels, benchmarks and proxy calls.
    Admin,
    /// Reads only: runs, streams, metrics, models, upstreams, workers.
    Viewer,
    /// Proxy calls only, under `/v1`; the token's name is the worker of calls that name none.
    Worker,
}

impl Role {
    /// Every role, strongest first.
    pub const ALL: [Self; 3] = [Self::Admin, Self::Viewer, Self::Worker];

    /// The wire name (`admin`, `viewer`, `worker`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Viewer => "viewer",
            Self::Worker => "worker",
        }
    }

    /// The role a wire name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == name)
    }

    /// Whether this role may do `action`.
    pub fn may(self, action: Action) -> bool {
        match self {
            Self::Admin => true,
            Self::Viewer => matches!(action, Action::Read | Action::ListModels),
            Self::Worker => matches!(action, Action::ProxyCall | Action::ListModels),
        }
    }

    /// The weakest role that may do `action`, for the message of a refusal.
    pub fn needed_for(action: Action) -> Self {
        match action {
            Action::Read | Action::ListModels => Self::Viewer,
            Action::ProxyCall => Self::Worker,
            Action::Launch | Action::Cancel | Action::Benchmark => Self::Admin,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request does, as far as roles are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Reading runs, streams, metrics, upstreams, workers, health.
    Read,
    /// `GET /v1/models`: what the proxy serves (workers and viewers alike).
    ListModels,
    /// Starting runs (`POST /api/runs`).
    Launch,
    /// Cancelling runs (`POST /api/runs/{id}/cancel`).
    Cancel,
    /// Starting a benchmark (`POST /api/benchmarks`).
    Benchmark,
    /// Calls through the proxy (`POST /v1/…`).
    ProxyCall,
}

impl Action {
    /// Every action.
    pub const ALL: [Self; 6] = [
        Self::Read,
        Self::ListModels,
        Self::Launch,
        Self::Cancel,
        Self::Benchmark,
        Self::ProxyCall,
    ];

    /// What it is, for a person ("launch runs").
    pub fn describe(self) -> &'static str {
        match self {
            Self::Read => "read runs, streams and metrics",
            Self::ListModels => "list the proxy's models",
            Self::Launch => "launch runs",
            Self::Cancel => "cancel runs",
            Self::Benchmark => "start benchmarks",
            Self::ProxyCall => "call models through the proxy",
        }
    }
}

/// `GET /api/access`: what the token of the request may do. Every valid token may ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessInfo {
    /// Whether the server asks for a token at all; without one, every caller is an admin.
    pub tokens_required: bool,
    /// The token's name (`None` for the single `--token` and when no token is asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its role.
    pub role: Role,
    /// What it may do.
    pub may: Vec<Action>,
    /// What this token is not sent (`serve --redact-viewers` for a viewer): `text` or `prompts`.
    /// Absent when it is sent everything the server keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<crate::Redaction>,
}

impl AccessInfo {
    /// The answer for a caller with `role`, named `name`.
    pub fn new(tokens_required: bool, name: Option<String>, role: Role) -> Self {
        Self {
            tokens_required,
            name,
            role,
            may: Action::ALL
                .into_iter()
                .filter(|action| role.may(*action))
                .collect(),
            redaction: None,
        }
    }

    /// Whether the caller may do `action`.
    pub fn may(&self, action: Action) -> bool {
        self.may.contains(&action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_read_back_and_each_action_needs_a_role_that_may_do_it() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
        for action in Action::ALL {
            assert!(Role::Admin.may(action), "{action:?}");
            assert!(Role::needed_for(action).may(action), "{action:?}");
        }
        assert!(!Role::Viewer.may(Action::Launch));
        assert!(!Role::Viewer.may(Action::ProxyCall));
        assert!(!Role::Worker.may(Action::Read));
        assert!(Role::Worker.may(Action::ListModels));
    }

    #[test]
    fn access_info_lists_what_the_role_may_do() {
        let viewer = AccessInfo::new(true, Some("ops".into()), Role::Viewer);
        assert_eq!(viewer.may, [Action::Read, Action::ListModels]);
        let json = serde_json::to_value(&viewer).unwrap();
        assert_eq!(json["role"], "viewer");
        assert_eq!(json["may"][0], "read");
        let back: AccessInfo = serde_json::from_value(json).unwrap();
        assert_eq!(back, viewer);
        let open = AccessInfo::new(false, None, Role::Admin);
        assert!(open.may(Action::Cancel));
        assert!(serde_json::to_value(&open).unwrap().get("name").is_none());
    }
}
