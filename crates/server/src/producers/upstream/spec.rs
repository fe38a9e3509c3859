//! `--upstream [NAME=]URL` and `--model-alias ALIAS=MODEL`, an upstream's key from the
//! environment, and keeping that key out of every text the server writes.

use std::fmt;

use super::scrub::Secrets;

/// The environment variable that holds the key of every upstream without a key of its own.
pub const SHARED_KEY_VAR: &str = "RUNBOARD_UPSTREAM_KEY";

/// An API key. It is never printed: `Debug` shows only that there is one.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// A key, unless the text is blank.
    pub fn new(text: &str) -> Option<Self> {
        let text = text.trim();
        (!text.is_empty()).then(|| Self(text.to_owned()))
    }

    /// The `Authorization` header value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// One model server runs are generated on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    /// Its name: given, or the URL's host and port.
    pub name: String,
    /// Its `OpenAI` base URL (`http://gpu1:8000/v1`), without a trailing slash.
    pub base_url: String,
    /// `base_url` parsed, once: each call's URL and the secrets are taken from it rather than
    /// from parsing the text again on every call.
    pub url: reqwest::Url,
    /// Its key, from the environment.
    pub key: Option<ApiKey>,
}

impl UpstreamSpec {
    /// Reads `[NAME=]URL`, taking the key from `env` (`RUNBOARD_UPSTREAM_<NAME>_KEY`, else
    /// `RUNBOARD_UPSTREAM_KEY`).
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let (name, base_url, url) = split_upstream(text)?;
        let key = env(&key_var(&name))
            .or_else(|| env(SHARED_KEY_VAR))
            .and_then(|key| ApiKey::new(&key));
        Ok(Self {
            name,
            base_url,
            url,
            key,
        })
    }

    /// The URL for people: the base without any user or password in it.
    pub fn display_url(&self) -> String {
        display_url(&self.base_url)
    }

    /// `text` with the key (and any credentials in the URL) blotted out, for anything the
    /// server logs, stores or answers: model servers echo keys in their error messages.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.replace(&self.base_url, &self.display_url());
        if let Some(ApiKey(key)) = &self.key {
            text = text.replace(key.as_str(), "<redacted>");
        }
        text
    }

    /// What must never reach a `/v1` client: the key and any password in the URL.
    pub fn secrets(&self) -> Secrets {
        let key = self.key.as_ref().map(|ApiKey(key)| key.as_str());
        Secrets::new(key.into_iter().chain(self.url.password()))
    }

    /// The URL of `path` (`/chat/completions`) under the base URL.
    pub fn url_of(&self, path: &str) -> reqwest::Url {
        let mut url = self.url.clone();
        let joined = format!("{}{path}", self.url.path().trim_end_matches('/'));
        url.set_path(&joined);
        url
    }

    /// [`Self::redact`], then cut to at most `max_chars` characters: a key the cut would
    /// split is blotted out whole first, and a start of one left at the end (this cut's or
    /// an earlier one's) is masked.
    pub fn redact_cut(&self, text: &str, max_chars: usize) -> String {
        let redacted = self.redact(text);
        let cut = redacted
            .char_indices()
            .nth(max_chars)
            .map_or(redacted.len(), |(at, _)| at);
        // The text may have been cut before it came here (a body read only so far).
        self.secrets().mask_cut_end(&redacted[..cut])
    }
}

/// Checks `[NAME=]URL` for the command line, without reading the environment.
pub fn check_upstream(text: &str) -> Result<String, String> {
    split_upstream(text).map(|_| text.to_owned())
}

/// The name, base URL (without a trailing slash) and parsed URL of `[NAME=]URL`.
type SplitUpstream = (String, String, reqwest::Url);

/// The name and URL of `[NAME=]URL`; the name defaults to the URL's host and port.
fn split_upstream(text: &str) -> Result<SplitUpstream, String> {
    let text = text.trim();
    let (name, url) = match text.split_once('=') {
        Some((name, url)) if !name.contains("://") => (Some(name.trim()), url.trim()),
        _ => (None, text),
    };
    let parsed = reqwest::Url::parse(url)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .ok_or_else(|| {
            format!(
                "expected [NAME=]URL with an OpenAI base URL such as http://gpu1:8000/v1, \
                 not {text:?}"
            )
        })?;
    let name = match name {
        Some(name) => name.to_owned(),
        None => match parsed.port() {
            Some(port) => format!("{}:{port}", parsed.host_str().unwrap_or_default()),
            None => parsed.host_str().unwrap_or_default().to_owned(),
        },
    };
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !name_ok {
        return Err(format!(
            "upstream name {name:?} must be 1 to 64 letters, digits, '-', '_', '.' or ':'"
        ));
    }
    Ok((name, url.trim_end_matches('/').to_owned(), parsed))
}

/// `RUNBOARD_UPSTREAM_<NAME>_KEY`, the name upper-cased with every other character an `_`.
pub fn key_var(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("RUNBOARD_UPSTREAM_{name}_KEY")
}

/// A URL without the user and password it may carry.
fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string().trim_end_matches('/').to_owned()
        }
        _ => url.to_owned(),
    }
}

/// Reads `ALIAS=MODEL` (`--model-alias`).
pub fn parse_alias(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((alias, model)) if !alias.trim().is_empty() && !model.trim().is_empty() => {
            Ok((alias.trim().to_owned(), model.trim().to_owned()))
        }
        _ => Err(format!(
            "expected ALIAS=MODEL such as fast=Qwen/Qwen2.5-7B-Instruct, not {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn a_name_defaults_to_host_and_port_and_keys_come_from_the_environment() {
        let vars = env(&[
            ("RUNBOARD_UPSTREAM_KEY", "shared-secret"),
            ("RUNBOARD_UPSTREAM_GPU_2_KEY", "own-secret"),
        ]);
        let plain = UpstreamSpec::parse("http://gpu1:8000/v1/", &vars).unwrap();
        assert_eq!(plain.name, "gpu1:8000");
        assert_eq!(plain.base_url, "http://gpu1:8000/v1");
        assert_eq!(plain.key, ApiKey::new("shared-secret"));
        let named = UpstreamSpec::parse("gpu-2=https://api.example.com/v1", &vars).unwrap();
        assert_eq!(named.name, "gpu-2");
        assert_eq!(named.key, ApiKey::new("own-secret"));
        assert_eq!(key_var("gpu1:8000"), "RUNBOARD_UPSTREAM_GPU1_8000_KEY");
        assert!(UpstreamSpec::parse("ftp://x/v1", &vars).is_err());
        assert!(UpstreamSpec::parse("bad name=http://x/v1", &vars).is_err());
        assert!(UpstreamSpec::parse("=http://x/v1", &vars).is_err());
        assert_eq!(
            UpstreamSpec::parse("http://h/v1?a=b", &vars).unwrap().name,
            "h"
        );
    }

    #[test]
    fn a_call_goes_to_its_path_under_the_base_url_and_a_url_password_is_a_secret() {
        let none = |_: &str| None;
        let url_of = |base: &str, path: &str| {
            UpstreamSpec::parse(base, none)
                .unwrap()
                .url_of(path)
                .to_string()
        };
        assert_eq!(
            url_of("http://gpu1:8000/v1/", "/chat/completions"),
            "http://gpu1:8000/v1/chat/completions"
        );
        assert_eq!(
            url_of("http://gpu1:8000", "/chat/completions"),
            "http://gpu1:8000/chat/completions"
        );
        assert_eq!(
            url_of("https://user:pw@api.example.com/openai/v1", "/completions"),
            "https://user:pw@api.example.com/openai/v1/completions"
        );
        let spec = UpstreamSpec::parse("https://user:hunter22@api.example.com/v1", none).unwrap();
        let masked = spec.secrets().mask(b"the key was hunter22").unwrap();
        assert_eq!(String::from_utf8(masked).unwrap(), "the key was ********");
    }
    #[test]
    fn a_key_at_the_cut_is_redacted_before_the_text_is_cut() {
        let spec =
            UpstreamSpec::parse("http://h:1/v1", |_| Some("sk-live-0123456789".into())).unwrap();
        let text = format!("{} sk-live-0123456789 after", "x".repeat(20));
        // Cut inside the key: the marker is cut, never the key.
        assert_eq!(
            spec.redact_cut(&text, 25),
            format!("{} <red", "x".repeat(20))
        );
        // A text that was already cut inside a key loses the start it kept.
        let cut_before = format!("{} sk-live-0123", "x".repeat(20));
        assert_eq!(
            spec.redact_cut(&cut_before, 100),
            format!("{} ************", "x".repeat(20))
        );
        assert_eq!(spec.redact_cut("short", 300), "short");
    }

    #[test]
    fn the_key_never_shows_in_debug_output_or_redacted_text() {
        let spec = UpstreamSpec::parse(
            "x=http://user:pw@h:1/v1",
            env(&[("RUNBOARD_UPSTREAM_X_KEY", "sk-live-123")]),
        )
        .unwrap();
        assert!(!format!("{spec:?}").contains("sk-live-123"));
        assert_eq!(spec.display_url(), "http://h:1/v1");
        let echoed =
            spec.redact("Incorrect API key provided: sk-live-123 at http://user:pw@h:1/v1");
        assert_eq!(
            echoed,
            "Incorrect API key provided: <redacted> at http://h:1/v1"
        );
    }

    #[test]
    fn aliases_need_both_sides() {
        assert_eq!(
            parse_alias("fast = tiny").unwrap(),
            ("fast".into(), "tiny".into())
        );
        assert!(parse_alias("fast=").is_err());
        assert!(parse_alias("tiny").is_err());
    }
}
