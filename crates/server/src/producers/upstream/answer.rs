//! One upstream answer's body, read the same way for a generated step and a proxied call: its
//! pieces as they arrive ([`AnswerBody`]: pieces already there joined into one, a silence past
//! the idle timeout told apart from a cut connection), and what they say ([`Answer`]: a stream's
//! events, a whole completion or a refusal's message, measured in a [`Reading`]). Each consumer
//! keeps only its own loop around them: what stops it, and, for the proxy, the client that gets
//! every piece before it is read.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt as _;
use runboard_sse::{Frame, Parser};
use serde_json::Value;
use tokio::time::Instant;

use super::chunk::{self, ChunkError};
use super::reading::{Reading, Taken};
use super::request;
use super::spec::UpstreamSpec;

/// The most of a whole (non-streamed) answer kept to read its figures; a proxied client gets
/// all of it either way.
const MAX_WHOLE_COPY: usize = 16 * 1024 * 1024;

/// The most of an error answer kept for its message.
const MAX_ERROR_COPY: usize = 4096;

/// The most bytes joined into one piece from pieces already read.
const MAX_JOINED: usize = 64 * 1024;

/// What an answer's body is read as, from its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// A 2xx event stream: chunks, measured as they come.
    Stream,
    /// A 2xx answer that is not a stream: one completion, read once it is all there.
    Whole,
    /// A non-2xx answer: an error, read for its message.
    Refusal,
}

impl BodyKind {
    /// What `response`'s body is, from its status and `Content-Type`.
    pub fn of(response: &reqwest::Response) -> Self {
        let is_stream = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        match (response.status().is_success(), is_stream) {
            (false, _) => Self::Refusal,
            (true, true) => Self::Stream,
            (true, false) => Self::Whole,
        }
    }
}

/// Why a body stopped before its end.
#[derive(Debug)]
pub enum BodyBreak {
    /// The connection broke.
    Cut(reqwest::Error),
    /// Nothing came for this long.
    Silent(Duration),
}

impl BodyBreak {
    /// What happened, for people, after `tokens` output tokens; `spec`'s secrets redacted.
    pub fn message(&self, spec: &UpstreamSpec, tokens: u64) -> String {
        match self {
            Self::Cut(error) => spec.redact(&format!(
                "the answer from upstream {} was cut after {tokens} tokens: {}",
                spec.name,
                runboard_sse::error_with_causes(error)
            )),
            Self::Silent(after) => request::silent(spec, after.as_secs_f64(), tokens),
        }
    }

    /// What it is as an `error.type` (OTLP): low in cardinality.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Cut(_) => "upstream_cut",
            Self::Silent(_) => "upstream_timeout",
        }
    }

    /// What a client whose connection is cut because of it is told.
    pub fn client_reason(&self) -> &'static str {
        match self {
            Self::Cut(_) => "the upstream's answer was cut",
            Self::Silent(_) => "the upstream fell silent",
        }
    }
}

/// An answer's body, piece by piece as the upstream sends it.
pub struct AnswerBody {
    response: reqwest::Response,
    idle: Duration,
    /// The next read, met while joining pieces that were already there (the end, or an
    /// error); it is what [`AnswerBody::next`] gives next.
    held: Option<Result<Option<Bytes>, reqwest::Error>>,
}

impl AnswerBody {
    /// The body of `response`, which may be silent at most `idle` between two pieces.
    pub fn new(response: reqwest::Response, idle: Duration) -> Self {
        Self {
            response,
            idle,
            held: None,
        }
    }

    /// The next piece, or `None` at the body's end. Cancel-safe: dropped unfinished, it loses
    /// nothing, so it can wait in a `select!` beside what stops the reading. Pass what it
    /// gives to [`AnswerBody::join_ready`].
    pub async fn next(&mut self) -> Result<Option<Bytes>, BodyBreak> {
        let next = match self.held.take() {
            Some(held) => held,
            None => tokio::time::timeout(self.idle, self.response.chunk())
                .await
                .map_err(|_| BodyBreak::Silent(self.idle))?,
        };
        next.map_err(BodyBreak::Cut)
    }

    /// Joins to `first` the pieces the upstream has already sent, so a burst written at once
    /// is read (and passed on) as one piece rather than one per chunk: the same bytes, no
    /// later. An end or error met on the way is held for the next [`AnswerBody::next`].
    pub async fn join_ready(&mut self, first: Bytes) -> Bytes {
        let mut joined: Option<BytesMut> = None;
        let mut yielded = false;
        while joined.as_ref().map_or(first.len(), BytesMut::len) < MAX_JOINED {
            match self.response.chunk().now_or_never() {
                None if !yielded => {
                    yielded = true;
                    tokio::task::yield_now().await;
                }
                None => break,
                Some(Ok(Some(more))) => {
                    yielded = false;
                    joined
                        .get_or_insert_with(|| BytesMut::from(&first[..]))
                        .extend_from_slice(&more);
                }
                Some(other) => {
                    self.held = Some(other);
                    break;
                }
            }
        }
        joined.map_or(first, BytesMut::freeze)
    }
}

/// What one piece of a body brought.
#[derive(Debug, Default)]
pub struct Took {
    /// New tokens (or a usage figure): the reading has news worth an update.
    pub tokens: bool,
    /// The stream said `[DONE]`: the answer is complete, whatever follows.
    pub done: bool,
    /// A refusal's message is all kept: more of its body would not change it.
    pub enough: bool,
    /// A chunk could not be read and was skipped: the warning to narrate, the first time only.
    pub warning: Option<String>,
}

/// Why an answer that ended is no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unanswered {
    /// A non-2xx status, with its message.
    Refused {
        /// The status.
        status: u16,
        /// What it said, for people, redacted.
        message: String,
    },
    /// The upstream reported an error inside its stream, or in place of a completion.
    Failed(String),
    /// A 2xx answer that is neither an event stream nor a completion.
    NotACompletion(String),
}

/// What an answer's bytes say, read as they pass.
pub struct Answer {
    kind: BodyKind,
    status: u16,
    /// The answer's text, tool calls and measurements so far.
    pub reading: Reading,
    parser: Parser,
    /// Of a whole answer or a refusal: its bytes, read once they are all there.
    copy: Vec<u8>,
    /// An error the upstream reported inside its stream (the first one).
    failure: Option<String>,
}

impl Answer {
    /// Nothing read yet of a `kind` answer with `status`.
    pub fn new(kind: BodyKind, status: u16, reading: Reading) -> Self {
        Self {
            kind,
            status,
            reading,
            parser: Parser::new(),
            copy: Vec::new(),
            failure: None,
        }
    }

    /// What the body is read as.
    pub fn kind(&self) -> BodyKind {
        self.kind
    }

    /// The whole answer's or refusal's bytes kept so far.
    pub fn copy(&self) -> &[u8] {
        &self.copy
    }

    /// The error the upstream reported inside its stream, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Reads one piece of `spec`'s answer to `agent`.
    pub fn take(&mut self, bytes: &[u8], spec: &UpstreamSpec, agent: &str) -> Took {
        let mut took = Took::default();
        match self.kind {
            BodyKind::Stream => {
                let reading = &mut self.reading;
                let failure = &mut self.failure;
                self.parser.feed(bytes, &mut |frame| {
                    let Frame::Event(event) = frame else { return };
                    match reading.take_data(&event.data, Instant::now(), spec, agent) {
                        Taken::Done => took.done = true,
                        Taken::Chunk(tokens) => took.tokens |= tokens,
                        Taken::UpstreamError(message) => {
                            failure.get_or_insert(message);
                        }
                        Taken::Skipped(warning) => took.warning = took.warning.take().or(warning),
                    }
                });
            }
            BodyKind::Whole | BodyKind::Refusal => {
                let limit = if self.kind == BodyKind::Whole {
                    MAX_WHOLE_COPY
                } else {
                    MAX_ERROR_COPY
                };
                let room = limit.saturating_sub(self.copy.len());
                self.copy.extend_from_slice(&bytes[..bytes.len().min(room)]);
                took.enough = self.kind == BodyKind::Refusal && self.copy.len() >= limit;
            }
        }
        took
    }

    /// The body ended (or was read enough): a whole answer is read now; what made it no
    /// answer, if anything did.
    pub fn finish(&mut self, spec: &UpstreamSpec) -> Result<(), Unanswered> {
        match self.kind {
            BodyKind::Refusal => {
                let message = format!(
                    "upstream {} answered HTTP {}{}",
                    spec.name,
                    self.status,
                    error_detail(&self.copy, spec)
                );
                return Err(Unanswered::Refused {
                    status: self.status,
                    message: spec.redact(&message),
                });
            }
            BodyKind::Whole => match chunk::decode(&String::from_utf8_lossy(&self.copy)) {
                Ok(chunk) => {
                    self.reading.take(&chunk, Instant::now());
                }
                Err(ChunkError::Upstream(message)) => {
                    let message = format!("upstream {} answered an error: {message}", spec.name);
                    self.failure.get_or_insert(spec.redact(&message));
                }
                Err(ChunkError::Malformed { .. }) => {
                    return Err(Unanswered::NotACompletion(format!(
                        "upstream {} answered neither an event stream nor a completion{}",
                        spec.name,
                        error_detail(&self.copy, spec)
                    )));
                }
            },
            BodyKind::Stream => self.parser.end_of_stream(),
        }
        match self.failure.take() {
            Some(message) => Err(Unanswered::Failed(message)),
            None => Ok(()),
        }
    }
}

/// `": message"` from an error answer's body (the `OpenAI` error shape, or its text), or
/// nothing when it says nothing. At most 300 characters, cut after `spec`'s secrets are
/// blotted out, so no part of a key survives the cut.
pub fn error_detail(body: &[u8], spec: &UpstreamSpec) -> String {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|value| {
            chunk::error_message(&value).or_else(|| {
                value
                    .get("detail")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let message = spec.redact_cut(&message, 300);
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> UpstreamSpec {
        UpstreamSpec::parse("gpu1=http://127.0.0.1:9/v1", |_| None).unwrap()
    }

    fn fresh(kind: BodyKind, status: u16) -> Answer {
        Answer::new(kind, status, Reading::new(Instant::now(), 0))
    }

    const STREAM: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
        data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n\
        data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n\
        data: [DONE]\n\n";

    #[test]
    fn a_stream_cut_anywhere_reads_the_same() {
        let spec = spec();
        for cut in 1..STREAM.len() {
            let mut answer = fresh(BodyKind::Stream, 200);
            let first = answer.take(&STREAM.as_bytes()[..cut], &spec, "writer");
            let second = answer.take(&STREAM.as_bytes()[cut..], &spec, "writer");
            assert!(first.done || second.done, "cut at {cut}: no [DONE] seen");
            assert_eq!(answer.finish(&spec), Ok(()), "cut at {cut}");
            let result = answer.reading.result(Instant::now(), 1);
            assert_eq!(result.text, "Hello", "cut at {cut}");
            assert_eq!(result.figures.output_tokens, 2, "cut at {cut}");
            assert_eq!(result.finish_reason.as_deref(), Some("stop"));
        }
    }

    #[test]
    fn an_error_inside_a_stream_makes_it_no_answer_after_what_came_before() {
        let spec = spec();
        let mut answer = fresh(BodyKind::Stream, 200);
        let took = answer.take(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n\
              data: {\"error\":{\"message\":\"out of memory\"}}\n\n",
            &spec,
            "writer",
        );
        assert!(took.tokens);
        let failure = answer.failure().unwrap();
        assert!(
            failure.contains("gpu1") && failure.contains("out of memory"),
            "{failure}"
        );
        match answer.finish(&spec) {
            Err(Unanswered::Failed(message)) => assert!(message.contains("out of memory")),
            other => panic!("{other:?}"),
        }
        assert_eq!(answer.reading.text, "Hi");
    }

    #[test]
    fn a_whole_completion_is_read_with_its_tool_calls_once_it_has_all_come() {
        let spec = spec();
        let body = br#"{"choices":[{"message":{"content":"Looking it up","tool_calls":[
            {"id":"call_1","type":"function","function":{"name":"search","arguments":"{\"q\":\"tok/s\"}"}}]},
            "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":9,"completion_tokens":7}}"#;
        let mut answer = fresh(BodyKind::Whole, 200);
        for piece in body.chunks(5) {
            let took = answer.take(piece, &spec, "agent");
            assert!(!took.tokens && !took.done && !took.enough);
        }
        assert_eq!(answer.finish(&spec), Ok(()));
        let result = answer.reading.result(Instant::now(), 1);
        assert_eq!(result.text, "Looking it up");
        assert_eq!(result.figures.output_tokens, 7);
        assert_eq!(result.tool_calls.len(), 1);
        assert_eq!(result.tool_calls[0].name, "search");
        assert_eq!(result.tool_calls[0].arguments, r#"{"q":"tok/s"}"#);
    }

    #[test]
    fn a_whole_answer_that_is_not_a_completion_says_so() {
        let spec = spec();
        let mut answer = fresh(BodyKind::Whole, 200);
        answer.take(b"<html>maintenance</html>", &spec, "agent");
        match answer.finish(&spec) {
            Err(Unanswered::NotACompletion(message)) => {
                assert!(message.contains("neither an event stream nor a completion"));
                assert!(message.contains("maintenance"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refusal_keeps_enough_for_its_message_and_says_its_status() {
        let spec = spec();
        let mut answer = fresh(BodyKind::Refusal, 429);
        let took = answer.take(br#"{"error":{"message":"slow down"}}"#, &spec, "agent");
        assert!(!took.enough);
        match answer.finish(&spec) {
            Err(Unanswered::Refused { status, message }) => {
                assert_eq!(status, 429);
                assert_eq!(message, "upstream gpu1 answered HTTP 429: slow down");
            }
            other => panic!("{other:?}"),
        }
        let mut long = fresh(BodyKind::Refusal, 500);
        let took = long.take(&[b'x'; 5000], &spec, "agent");
        assert!(took.enough);
        assert_eq!(long.copy().len(), MAX_ERROR_COPY);
    }
}
