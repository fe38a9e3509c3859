//! The tokens a server accepts, each with a name and a role: read from a token list (`--tokens
//! FILE` or `RUNBOARD_TOKENS`: one `NAME ROLE TOKEN` a line), and found again, in constant time,
//! from what a request presents.

use runboard_api::{Redaction, Role};
use subtle::ConstantTimeEq as _;

/// The shortest token a list may hold: anything shorter could be guessed.
pub const MIN_TOKEN_CHARS: usize = 16;

/// The longest name kept (it becomes a worker's name and goes into logs).
const MAX_NAME_CHARS: usize = 64;

/// One token of the list.
#[derive(Clone, PartialEq, Eq)]
pub struct NamedToken {
    /// Who holds it; `None` for the single `--token`.
    pub name: Option<String>,
    /// What it may do.
    pub role: Role,
    /// The bearer token itself.
    pub secret: String,
}

impl std::fmt::Debug for NamedToken {
    /// Never the secret: configurations are logged in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Why a token list could not be read: the line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct TokenListError {
    /// The line, from 1.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

/// Reads a token list: one `NAME ROLE TOKEN` a line, separated by spaces or tabs; `#` starts a
/// comment (a whole line, or after the three fields); blank lines are skipped. Names and tokens
/// must each be unique.
pub fn parse_token_list(text: &str) -> Result<Vec<NamedToken>, TokenListError> {
    let mut tokens: Vec<NamedToken> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fail = |problem: String| TokenListError {
            line: index + 1,
            problem,
        };
        let mut fields = line.split_whitespace().take_while(|f| !f.starts_with('#'));
        let Some(name) = fields.next() else {
            continue;
        };
        let (Some(role), Some(secret), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(fail(
                "expected NAME ROLE TOKEN, separated by spaces (a `#` starts a comment)".into(),
            ));
        };
        if name.chars().count() > MAX_NAME_CHARS || !name.chars().all(|c| c.is_ascii_graphic()) {
            return Err(fail(format!(
                "the name {name:?} must be at most {MAX_NAME_CHARS} visible ASCII characters"
            )));
        }
        let role = Role::parse(role)
            .ok_or_else(|| fail(format!("{role:?} is not a role: admin, viewer or worker")))?;
        if secret.len() < MIN_TOKEN_CHARS || !secret.chars().all(|c| c.is_ascii_graphic()) {
            return Err(fail(format!(
                "the token of {name:?} must be at least {MIN_TOKEN_CHARS} visible ASCII \
                 characters (for example `openssl rand -hex 24`)"
            )));
        }
        if tokens.iter().any(|t| t.name.as_deref() == Some(name)) {
            return Err(fail(format!("the name {name:?} is given twice")));
        }
        if tokens.iter().any(|t| t.secret == secret) {
            return Err(fail(format!(
                "the token of {name:?} is also another name's: each needs its own"
            )));
        }
        tokens.push(NamedToken {
            name: Some(name.to_owned()),
            role,
            secret: secret.to_owned(),
        });
    }
    Ok(tokens)
}

/// The tokens a server accepts.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    /// Shared: the token check's state is copied for every request.
    tokens: std::sync::Arc<[NamedToken]>,
    /// What viewers are not sent (`--redact-viewers`).
    viewer_redaction: Option<Redaction>,
}

impl Keyring {
    /// The single `--token` (an admin), if any, and the token list.
    pub fn new(single: Option<&str>, list: &[NamedToken]) -> Self {
        let single = single.map(|secret| NamedToken {
            name: None,
            role: Role::Admin,
            secret: secret.to_owned(),
        });
        Self {
            tokens: single.into_iter().chain(list.iter().cloned()).collect(),
            viewer_redaction: None,
        }
    }

    /// The same, sending viewers their reads without what `redaction` withholds.
    #[must_use]
    pub fn redacting_for_viewers(self, redaction: Option<Redaction>) -> Self {
        Self {
            viewer_redaction: redaction,
            ..self
        }
    }

    /// What a caller with `role` is not sent.
    pub fn redaction_for(&self, role: Role) -> Option<Redaction> {
        self.viewer_redaction.filter(|_| role == Role::Viewer)
    }

    /// Whether any token is asked for.
    pub fn is_required(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The token `presented` is, if any. Every token is compared, each in constant time in its
    /// content, so a timing probe learns neither a prefix nor which entry matched.
    pub fn find(&self, presented: &str) -> Option<&NamedToken> {
        let mut found = None;
        for token in self.tokens.iter() {
            if bool::from(presented.as_bytes().ct_eq(token.secret.as_bytes())) {
                found = Some(token);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "\
# the team's board
alice   admin   0123456789abcdef0123
ops     viewer  fedcba9876543210fedc   # read only
\tgpu-7\tworker\tabcdefabcdefabcdef00

";

    #[test]
    fn a_list_with_comments_blank_lines_and_tabs_is_read() {
        let tokens = parse_token_list(LIST).unwrap();
        let names: Vec<_> = tokens.iter().map(|t| t.name.clone().unwrap()).collect();
        assert_eq!(names, ["alice", "ops", "gpu-7"]);
        assert_eq!(
            tokens.iter().map(|t| t.role).collect::<Vec<_>>(),
            [Role::Admin, Role::Viewer, Role::Worker]
        );
        assert_eq!(tokens[1].secret, "fedcba9876543210fedc");
        assert!(!format!("{tokens:?}").contains("fedcba"));
    }

    #[test]
    fn each_mistake_is_named_with_its_line() {
        let cases = [
            ("a admin", 1, "expected NAME ROLE TOKEN"),
            (
                "\na admin 0123456789abcdef extra",
                2,
                "expected NAME ROLE TOKEN",
            ),
            ("a root 0123456789abcdef", 1, "\"root\" is not a role"),
            ("a admin short", 1, "at least 16"),
            (
                "a admin 0123456789abcdef\na viewer fedcba9876543210",
                2,
                "given twice",
            ),
            (
                "a admin 0123456789abcdef\nb viewer 0123456789abcdef",
                2,
                "another name's",
            ),
            (
                &format!("{} admin 0123456789abcdef", "n".repeat(65)),
                1,
                "at most 64",
            ),
        ];
        for (text, line, problem) in cases {
            let error = parse_token_list(text).unwrap_err();
            assert_eq!(error.line, line, "{text}");
            assert!(error.to_string().contains(problem), "{text}: {error}");
        }
    }

    #[test]
    fn the_keyring_finds_each_token_and_nothing_else() {
        let keyring = Keyring::new(Some("single-admin-token"), &parse_token_list(LIST).unwrap());
        assert!(keyring.is_required());
        assert_eq!(keyring.find("single-admin-token").unwrap().name, None);
        assert_eq!(
            keyring
                .find("fedcba9876543210fedc")
                .unwrap()
                .name
                .as_deref(),
            Some("ops")
        );
        assert!(keyring.find("fedcba9876543210fed").is_none());
        assert!(keyring.find("").is_none());
        assert!(!Keyring::new(None, &[]).is_required());
    }
}
