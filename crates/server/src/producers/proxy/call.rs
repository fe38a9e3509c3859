//! What a client's `OpenAI` request says about itself: the model it wants, whether it streams,
//! the task a person would recognise it by, and who is calling (the run and agent headers).

use std::net::IpAddr;

use axum::http::HeaderMap;

use super::skim::Skim;

/// How much of the last user message names the run.
pub const TASK_CHARS: usize = 200;

/// Groups a client's calls into one run.
pub const RUN_HEADER: &str = "x-runboard-run";
/// Ends that run once this call is answered.
pub const RUN_END_HEADER: &str = "x-runboard-run-end";
/// Names the agent a call is made for.
pub const AGENT_HEADER: &str = "x-runboard-agent";
/// Names the worker making the call (its card in the console).
pub const WORKER_HEADER: &str = "x-runboard-worker";

/// The longest worker name kept, in characters.
const WORKER_CHARS: usize = 64;

/// The `OpenAI` endpoints runboard passes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions`.
    Completions,
}

impl Endpoint {
    /// The path below the upstream's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Self::Chat => "/chat/completions",
            Self::Completions => "/completions",
        }
    }
}

/// Who is calling, as the connection and the token say (the body and headers may say more).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOrigin {
    /// The address the connection came from.
    pub addr: Option<IpAddr>,
    /// The name of a `worker` token, which names the worker of calls that name none.
    pub worker_token: Option<String>,
}

/// One client call, read from its body and headers.
#[derive(Debug, Clone)]
pub struct ClientCall {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// `stream: true`.
    pub stream: bool,
    /// The last user message (or the prompt), cut to [`TASK_CHARS`].
    pub task: String,
    /// `X-Runboard-Agent`, else the body's `user`, else `client`.
    pub agent: String,
    /// `X-Runboard-Worker`, else the body's `user`, else the name of the worker token it came
    /// with, else the client's address and `User-Agent` (one worker per client process when
    /// nothing is set).
    pub worker: String,
    /// `X-Runboard-Run`, when the call is a step of a longer run.
    pub run_key: Option<String>,
    /// `X-Runboard-Run-End: true`.
    pub ends_run: bool,
    /// The prompt's size in characters (a rough token figure until the server says).
    pub prompt_chars: usize,
}

impl ClientCall {
    /// Reads a call from its body and headers, made from `origin`.
    pub fn read(
        endpoint: Endpoint,
        body: &Skim<'_>,
        headers: &HeaderMap,
        origin: &CallOrigin,
    ) -> Self {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let user = body
            .user()
            .map(|user| user.trim().to_owned())
            .filter(|user| !user.is_empty());
        let agent = header(AGENT_HEADER)
            .or_else(|| user.clone())
            .unwrap_or_else(|| "client".to_owned());
        let worker = header(WORKER_HEADER)
            .or(user)
            .or_else(|| origin.worker_token.clone())
            .unwrap_or_else(|| client_worker(origin.addr, header("user-agent").as_deref()));
        let task = match endpoint {
            Endpoint::Chat => body.last_user_text(),
            Endpoint::Completions => body.prompt_text(),
        }
        .map(|text| first_chars(text.trim(), TASK_CHARS))
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "(no user message)".to_owned());
        Self {
            endpoint,
            stream: body.stream(),
            task,
            agent: first_chars(&agent, 64),
            worker: first_chars(&worker, WORKER_CHARS),
            run_key: header(RUN_HEADER).map(|key| first_chars(&key, 200)),
            ends_run: header(RUN_END_HEADER).is_some_and(|v| v.eq_ignore_ascii_case("true")),
            prompt_chars: body.prompt_bytes(),
        }
    }
}

/// The worker of a client that names none: its address and `User-Agent` (a client process
/// keeps both across its calls, whichever connection of its pool each takes).
fn client_worker(client: Option<IpAddr>, user_agent: Option<&str>) -> String {
    match (client, user_agent) {
        (Some(ip), Some(agent)) => format!("{ip} {agent}"),
        (Some(ip), None) => ip.to_string(),
        (None, Some(agent)) => agent.to_owned(),
        (None, None) => "client".to_owned(),
    }
}

/// The first `max` characters, on a character boundary, with control characters as spaces.
fn first_chars(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The call `body` makes with `headers`.
    fn read(
        endpoint: Endpoint,
        body: &Value,
        headers: &HeaderMap,
        client: Option<IpAddr>,
    ) -> ClientCall {
        let origin = CallOrigin {
            addr: client,
            worker_token: None,
        };
        read_by(endpoint, body, headers, &origin)
    }

    fn read_by(
        endpoint: Endpoint,
        body: &Value,
        headers: &HeaderMap,
        origin: &CallOrigin,
    ) -> ClientCall {
        let bytes = body.to_string();
        ClientCall::read(
            endpoint,
            &Skim::read(bytes.as_bytes()).unwrap(),
            headers,
            origin,
        )
    }

    #[test]
    fn a_worker_tokens_name_is_the_worker_of_calls_that_name_none() {
        let origin = CallOrigin {
            addr: Some("10.0.0.7".parse().unwrap()),
            worker_token: Some("gpu-box-3".into()),
        };
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let mut headers = HeaderMap::new();
        assert_eq!(
            read_by(Endpoint::Chat, &body, &headers, &origin).worker,
            "gpu-box-3"
        );
        let named = json!({"model": "m", "user": "labeler", "messages": []});
        assert_eq!(
            read_by(Endpoint::Chat, &named, &headers, &origin).worker,
            "labeler"
        );
        headers.insert(WORKER_HEADER, "shard-2".parse().unwrap());
        assert_eq!(
            read_by(Endpoint::Chat, &body, &headers, &origin).worker,
            "shard-2"
        );
    }

    #[test]
    fn task_agent_and_run_come_from_the_body_and_headers() {
        let body = json!({
            "model": "m", "stream": true, "user": "labeler-7",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "an answer"},
                {"role": "user", "content": [{"type": "text", "text": "second"},
                                             {"type": "image_url", "image_url": {"url": "x"}},
                                             {"type": "text", "text": "question\nnow"}]},
            ],
        });
        let mut headers = HeaderMap::new();
        let call = read(Endpoint::Chat, &body, &headers, None);
        assert_eq!(call.task, "second question now");
        assert_eq!(call.agent, "labeler-7");
        assert_eq!(call.worker, "labeler-7");
        assert!(call.stream && call.run_key.is_none() && !call.ends_run);
        headers.insert(AGENT_HEADER, "critic".parse().unwrap());
        headers.insert(RUN_HEADER, "pipeline-1".parse().unwrap());
        headers.insert(RUN_END_HEADER, "TRUE".parse().unwrap());
        let call = read(Endpoint::Chat, &body, &headers, None);
        assert_eq!(call.agent, "critic");
        assert_eq!(call.worker, "labeler-7");
        headers.insert(WORKER_HEADER, "gen-07".parse().unwrap());
        assert_eq!(read(Endpoint::Chat, &body, &headers, None).worker, "gen-07");
        assert_eq!(call.run_key.as_deref(), Some("pipeline-1"));
        assert!(call.ends_run);
    }

    #[test]
    fn completions_take_the_prompt_and_long_tasks_are_cut() {
        let long = "é".repeat(500);
        let body = json!({"model": "m", "prompt": [long.clone()]});
        let call = read(Endpoint::Completions, &body, &HeaderMap::new(), None);
        assert_eq!(call.task.chars().count(), TASK_CHARS);
        assert_eq!(call.agent, "client");
        assert!(!call.stream);
        let empty = read(
            Endpoint::Chat,
            &json!({"messages": []}),
            &HeaderMap::new(),
            None,
        );
        assert_eq!(empty.task, "(no user message)");
    }

    #[test]
    fn a_client_that_names_no_worker_is_one_by_its_address_and_user_agent() {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(
            read(Endpoint::Chat, &body, &headers, Some(ip)).worker,
            "10.0.0.7"
        );
        headers.insert("user-agent", "OpenAI/Python 1.54.0".parse().unwrap());
        let call = read(Endpoint::Chat, &body, &headers, Some(ip));
        assert_eq!(call.worker, "10.0.0.7 OpenAI/Python 1.54.0");
        assert_eq!(call.agent, "client");
        assert_eq!(
            read(Endpoint::Chat, &body, &HeaderMap::new(), None).worker,
            "client"
        );
        headers.insert(WORKER_HEADER, "w".repeat(100).parse().unwrap());
        let call = read(Endpoint::Chat, &body, &headers, Some(ip));
        assert_eq!(call.worker.chars().count(), WORKER_CHARS);
    }
}
