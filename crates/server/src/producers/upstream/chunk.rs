//! One `chat.completion.chunk` of a streaming answer, read leniently: the fields real servers
//! send (vLLM, `SGLang`, llama.cpp, Ollama, TGI, hosted APIs), in either spelling where they
//! differ, and the error frames some of them put inside a 200 stream.

use serde::Deserialize;
use serde_json::{Value, json};

/// What one chunk says; empty strings where it says nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chunk {
    /// Answer text.
    pub content: String,
    /// Reasoning text (`delta.reasoning_content`, or `delta.reasoning`).
    pub reasoning: String,
    /// Pieces of tool calls, to be merged by index.
    pub tool_calls: Vec<ToolCallDelta>,
    /// Token counts, on the final chunk (or on every chunk with vLLM's continuous usage).
    pub usage: Option<Usage>,
    /// Why generation stopped, on the last chunk with a choice.
    pub finish_reason: Option<String>,
}

/// A piece of one tool call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCallDelta {
    /// Which call it belongs to.
    pub index: u64,
    /// The call's id, usually on its first piece.
    pub id: Option<String>,
    /// The function's name, usually on its first piece.
    pub name: Option<String>,
    /// More of the arguments' JSON text.
    pub arguments: String,
}

/// Token counts as the model server gives them.
#[allow(clippy::struct_field_names)] // The wire's own names, so they read the same on both sides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: Option<u64>,
    /// Output tokens (reasoning included).
    pub completion_tokens: u64,
    /// Of those, reasoning tokens, when the server says.
    pub reasoning_tokens: Option<u64>,
}

/// Reads one `data:` payload (not `[DONE]`). An error frame is `Err` with the server's message.
pub fn decode(data: &str) -> Result<Chunk, ChunkError> {
    // One pass into the typed shape (error frames included): this runs for every token.
    let wire: WireChunk = serde_json::from_str(data).map_err(|error| ChunkError::Malformed {
        reason: error.to_string(),
        start: data.chars().take(120).collect(),
    })?;
    let frame_error = match (wire.error, wire.object.as_deref()) {
        (Some(error), _) => error_message(&json!({ "error": error })),
        (None, Some("error")) => {
            error_message(&json!({"object": "error", "message": wire.message}))
        }
        (None, _) => None,
    };
    if let Some(message) = frame_error {
        return Err(ChunkError::Upstream(message));
    }
    let mut chunk = Chunk {
        usage: wire.usage.map(|usage| Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens.unwrap_or(0),
            reasoning_tokens: usage
                .completion_tokens_details
                .and_then(|details| details.reasoning_tokens),
        }),
        ..Chunk::default()
    };
    // runboard asks for one choice; any others are ignored.
    if let Some(choice) = wire.choices.into_iter().find(|c| c.index.unwrap_or(0) == 0) {
        chunk.finish_reason = choice.finish_reason;
        if let Some(text) = choice.text {
            chunk.content = text;
        }
        if let Some(delta) = choice.delta.or(choice.message) {
            if let Some(content) = delta.content {
                chunk.content = content;
            }
            chunk.reasoning = delta
                .reasoning_content
                .or(delta.reasoning)
                .unwrap_or_default();
            chunk.tool_calls = delta
                .tool_calls
                .into_iter()
                .enumerate()
                .map(|(position, call)| ToolCallDelta {
                    index: call.index.unwrap_or(position as u64),
                    id: call.id,
                    name: call.function.as_ref().and_then(|f| f.name.clone()),
                    arguments: call.function.and_then(|f| f.arguments).unwrap_or_default(),
                })
                .collect();
        }
    }
    Ok(chunk)
}

/// Why a chunk could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The model server reported an error inside the stream.
    #[error("{0}")]
    Upstream(String),
    /// Not a chunk at all.
    #[error("unreadable chunk ({reason}): {start}")]
    Malformed {
        /// The JSON error.
        reason: String,
        /// The chunk's first characters.
        start: String,
    },
}

/// The message of an error frame: `{"error": {"message": …}}`, `{"error": "…"}`, or `SGLang`'s
/// `{"object": "error", "message": …}`.
pub fn error_message(value: &Value) -> Option<String> {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    match value.get("error") {
        Some(Value::Object(error)) => Some(
            error
                .get("message")
                .and_then(text)
                .unwrap_or_else(|| Value::Object(error.clone()).to_string()),
        ),
        Some(Value::String(message)) => Some(message.clone()),
        _ if value.get("object").and_then(Value::as_str) == Some("error") => {
            Some(value.get("message").and_then(text).unwrap_or_default())
        }
        _ => None,
    }
}

#[derive(Deserialize)]
struct WireChunk {
    #[serde(default, deserialize_with = "null_as_empty")]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    /// An error frame's error (object or text).
    #[serde(default)]
    error: Option<Value>,
    /// `chat.completion.chunk`, or `SGLang`'s `error`.
    #[serde(default)]
    object: Option<String>,
    /// `SGLang`'s error message.
    #[serde(default)]
    message: Option<Value>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    delta: Option<WireDelta>,
    /// A whole (non-streamed) chat completion's message: read as one big delta.
    #[serde(default)]
    message: Option<WireDelta>,
    /// `/completions`' text, streamed or whole.
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens_details: Option<WireUsageDetails>,
}

#[derive(Deserialize)]
struct WireUsageDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_reasoning_in_either_name_and_usage_are_read() {
        let chunk = decode(r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":"Hé"},"finish_reason":null}]}"#).unwrap();
        assert_eq!(chunk.content, "Hé");
        let vllm = decode(r#"{"choices":[{"delta":{"reasoning_content":"think"}}]}"#).unwrap();
        assert_eq!(vllm.reasoning, "think");
        let ollama =
            decode(r#"{"choices":[{"delta":{"reasoning":"hmm","content":null}}]}"#).unwrap();
        assert_eq!(ollama.reasoning, "hmm");
        let usage = decode(r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":30,"completion_tokens_details":{"reasoning_tokens":9}}}"#).unwrap();
        assert_eq!(
            usage.usage,
            Some(Usage {
                prompt_tokens: Some(12),
                completion_tokens: 30,
                reasoning_tokens: Some(9)
            })
        );
        let last =
            decode(r#"{"choices":[{"delta":{},"finish_reason":"length"}],"usage":null}"#).unwrap();
        assert_eq!(last.finish_reason.as_deref(), Some("length"));
        assert_eq!(last.usage, None);
    }

    #[test]
    fn whole_completions_and_legacy_text_are_read_as_one_chunk() {
        let whole = decode(
            r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hi there",
                "reasoning_content":"think","tool_calls":[{"id":"c1","type":"function",
                "function":{"name":"f","arguments":"{}"}}]},"finish_reason":"stop"}],
                "usage":{"prompt_tokens":5,"completion_tokens":3}}"#,
        )
        .unwrap();
        assert_eq!(whole.content, "Hi there");
        assert_eq!(whole.reasoning, "think");
        assert_eq!(whole.tool_calls[0].name.as_deref(), Some("f"));
        assert_eq!(whole.finish_reason.as_deref(), Some("stop"));
        assert_eq!(whole.usage.unwrap().completion_tokens, 3);
        let legacy = decode(
            r#"{"object":"text_completion","choices":[{"index":0,"text":" world",
            "finish_reason":null}]}"#,
        )
        .unwrap();
        assert_eq!(legacy.content, " world");
    }

    #[test]
    fn tool_call_pieces_keep_their_index() {
        let chunk = decode(r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"call_9","type":"function","function":{"name":"search","arguments":"{\"q\":"}}]}}]}"#).unwrap();
        assert_eq!(
            chunk.tool_calls,
            [ToolCallDelta {
                index: 1,
                id: Some("call_9".into()),
                name: Some("search".into()),
                arguments: "{\"q\":".into()
            }]
        );
    }

    #[test]
    fn error_frames_give_the_servers_message() {
        for (frame, message) in [
            (
                r#"{"error":{"message":"context too long","type":"BadRequestError","code":400}}"#,
                "context too long",
            ),
            (r#"{"error":"engine dead"}"#, "engine dead"),
            (
                r#"{"object":"error","message":"out of memory","code":500}"#,
                "out of memory",
            ),
        ] {
            assert_eq!(decode(frame), Err(ChunkError::Upstream(message.into())));
        }
        assert!(matches!(
            decode("{not json"),
            Err(ChunkError::Malformed { .. })
        ));
    }
}
