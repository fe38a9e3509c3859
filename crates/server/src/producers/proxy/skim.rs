//! Reading the few fields of a client's `OpenAI` request the proxy needs (`model`, `stream`,
//! `user`, and the messages or prompt its task comes from) without building the document.
//!
//! A body is checked to be one JSON object in a single pass that keeps nothing but borrowed
//! slices of it: every other field, however large or deeply nested, is skipped in place. The
//! messages are then walked one at a time, keeping only the last user message. So what a
//! request costs beyond its own bytes is one copy at most (an alias replaced in the body, or
//! the last user message's text), never a tree of values: a 30 MB body of `[0,0,…]` costs
//! 30 MB, not a gigabyte.

use std::fmt;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// The fields of the body runboard reads, as slices of it.
#[derive(Debug, Deserialize)]
pub struct Skim<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
}

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum SkimError {
    /// It is not JSON (the parser's words).
    NotJson(String),
    /// It is JSON, but not an object.
    NotAnObject,
}

impl<'a> Skim<'a> {
    /// Reads `body`: one JSON object.
    pub fn read(body: &'a [u8]) -> Result<Self, SkimError> {
        let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
        if first != Some(&b'{') {
            // Still say what is wrong with text that is not JSON at all.
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                    Ok(_) => SkimError::NotAnObject,
                    Err(error) => SkimError::NotJson(error.to_string()),
                },
            );
        }
        serde_json::from_slice(body).map_err(|error| SkimError::NotJson(error.to_string()))
    }

    /// `model`, when it is a string.
    pub fn model(&self) -> Option<String> {
        self.model.and_then(string)
    }

    /// `stream: true`.
    pub fn stream(&self) -> bool {
        self.stream.is_some_and(|raw| raw.get() == "true")
    }

    /// `user`, when it is a string.
    pub fn user(&self) -> Option<String> {
        self.user.and_then(string)
    }

    /// The text of the last `user` message: a string, or the text parts of a list of parts.
    pub fn last_user_text(&self) -> Option<String> {
        let mut last = None;
        each_element(self.messages?, |message| {
            if let Ok(message) = serde_json::from_str::<Message<'_>>(message.get())
                && message.role.and_then(string).as_deref() == Some("user")
            {
                last = message.content;
            }
        });
        let content = last?;
        string(content).or_else(|| {
            let mut texts = Vec::new();
            each_element(content, |part| {
                if let Ok(part) = serde_json::from_str::<Part<'_>>(part.get())
                    && let Some(text) = part.text.and_then(string)
                {
                    texts.push(text);
                }
            });
            Some(texts.join(" "))
        })
    }

    /// A completion's prompt: a string, or the first of a list.
    pub fn prompt_text(&self) -> Option<String> {
        let prompt = self.prompt?;
        string(prompt).or_else(|| {
            let mut first = None;
            each_element(prompt, |item| {
                if first.is_none() {
                    first = Some(string(item));
                }
            });
            first.flatten()
        })
    }

    /// The size of the messages or prompt in bytes (a rough token figure until the server
    /// says).
    pub fn prompt_bytes(&self) -> usize {
        self.messages
            .or(self.prompt)
            .map_or(0, |raw| raw.get().len())
    }

    /// `body` (the one this was read from) with its `model` set to `model`: the value
    /// replaced in place, or the field added first when there was none.
    pub fn with_model(&self, body: &Bytes, model: &str) -> Bytes {
        let value = serde_json::to_string(model).unwrap_or_else(|_| String::from("\"\""));
        let Some(raw) = self.model else {
            let open = body.iter().position(|byte| *byte == b'{').unwrap_or(0) + 1;
            let empty = body[open..]
                .iter()
                .find(|byte| !byte.is_ascii_whitespace())
                .is_some_and(|byte| *byte == b'}');
            let mut out = BytesMut::with_capacity(body.len() + value.len() + 10);
            out.extend_from_slice(&body[..open]);
            out.extend_from_slice(b"\"model\":");
            out.extend_from_slice(value.as_bytes());
            if !empty {
                out.extend_from_slice(b",");
            }
            out.extend_from_slice(&body[open..]);
            return out.freeze();
        };
        // The raw value is a slice of `body`: its place is its distance from the start.
        let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
        let end = start + raw.get().len();
        let mut out = BytesMut::with_capacity(body.len() - (end - start) + value.len());
        out.extend_from_slice(&body[..start]);
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(&body[end..]);
        out.freeze()
    }
}

/// One message, as far as the task needs it.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Option<&'a RawValue>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

/// One part of a message's content.
#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
}

/// The string `raw` holds, when it is one. A lone UTF-16 surrogate escape (`\ud83d` without
/// its pair: text a client cut in the middle of an emoji) reads as U+FFFD, as a decoder of the
/// text it stood in would show it, rather than losing the whole string (and the call its task).
fn string(raw: &RawValue) -> Option<String> {
    let text = raw.get();
    if !text.starts_with('"') {
        return None;
    }
    serde_json::from_str(text)
        .ok()
        .or_else(|| serde_json::from_str(&without_lone_surrogates(text)?).ok())
}

/// `text`, a JSON string, with every `\u` escape of a lone surrogate replaced by `\ufffd`;
/// `None` when it has none.
fn without_lone_surrogates(text: &str) -> Option<String> {
    const HIGH: std::ops::Range<u32> = 0xD800..0xDC00;
    const LOW: std::ops::Range<u32> = 0xDC00..0xE000;
    let bytes = text.as_bytes();
    let mut repaired = String::new();
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] != b'\\' {
            at += 1;
            continue;
        }
        let Some(unit) = escaped_unit(bytes, at) else {
            // Another escape (`\\`, `\"`, …): its character is not the start of one.
            at += 2;
            continue;
        };
        let paired = HIGH.contains(&unit)
            && escaped_unit(bytes, at + 6).is_some_and(|next| LOW.contains(&next));
        if paired {
            at += 12;
        } else if HIGH.contains(&unit) || LOW.contains(&unit) {
            repaired.push_str(&text[copied..at]);
            repaired.push_str("\\ufffd");
            at += 6;
            copied = at;
        } else {
            at += 6;
        }
    }
    if copied == 0 {
        return None;
    }
    repaired.push_str(&text[copied..]);
    Some(repaired)
}

/// The code unit of a `\uXXXX` escape that starts at `at`.
fn escaped_unit(bytes: &[u8], at: usize) -> Option<u32> {
    let escape = bytes.get(at..at + 6)?;
    if !escape.starts_with(b"\\u") {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(&escape[2..]).ok()?, 16).ok()
}

/// Calls `each` with every element of `raw` in turn, when it is a list; holds one at a time.
fn each_element<'a>(raw: &'a RawValue, each: impl FnMut(&'a RawValue)) {
    if raw.get().starts_with('[') {
        let mut reader = serde_json::Deserializer::from_str(raw.get());
        // The list was checked as part of the body: this cannot fail.
        let _ = reader.deserialize_seq(Elements(each));
    }
}

/// Walks a JSON list element by element.
struct Elements<F>(F);

impl<'de, F: FnMut(&'de RawValue)> Visitor<'de> for Elements<F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(element) = seq.next_element::<&'de RawValue>()? {
            (self.0)(element);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn a_lone_surrogate_reads_as_the_replacement_character_and_the_rest_is_kept() {
        let body = br#"{"model": "m", "user": "ann\udc00", "messages": [
            {"role": "user", "content": "half an emoji \ud83d, a whole one \ud83d\ude00, \\ud83d as text"}
        ]}"#;
        let skim = Skim::read(body).unwrap();
        assert_eq!(
            skim.last_user_text().unwrap(),
            "half an emoji \u{FFFD}, a whole one \u{1F600}, \\ud83d as text"
        );
        assert_eq!(skim.user().unwrap(), "ann\u{FFFD}");
        assert_eq!(without_lone_surrogates(r#""\ud83d\ude00 fine""#), None);
        assert_eq!(
            without_lone_surrogates(r#""\ude00\ud83d""#).unwrap(),
            r#""\ufffd\ufffd""#
        );
    }

    fn skim(value: &Value) -> (Bytes, Option<String>, bool, Option<String>) {
        let body = Bytes::from(value.to_string());
        let skim = Skim::read(&body).unwrap();
        let (model, stream, task) = (skim.model(), skim.stream(), skim.last_user_text());
        (body, model, stream, task)
    }

    #[test]
    fn the_fields_runboard_needs_are_read_and_the_rest_is_skipped() {
        let (_, model, stream, task) = skim(&json!({
            "model": "m", "stream": true, "tools": [{"deep": [[[[1]]]]}],
            "messages": [
                {"role": "user", "content": "first"},
                7,
                {"role": "assistant", "content": "answer"},
                {"role": "user", "content": [{"type": "text", "text": "second"},
                                             {"type": "image_url", "image_url": {"url": "x"}},
                                             {"type": "text", "text": "part"}]},
                {"role": "tool"},
            ],
        }));
        assert_eq!(model.as_deref(), Some("m"));
        assert!(stream);
        assert_eq!(task.as_deref(), Some("second part"));
        let (_, model, stream, task) = skim(&json!({"model": 5, "stream": "yes",
                                                     "messages": "not a list"}));
        assert_eq!((model, stream, task), (None, false, None));
    }

    #[test]
    fn bodies_that_are_not_one_object_are_refused_saying_why() {
        assert_eq!(Skim::read(b"[1, 2]").unwrap_err(), SkimError::NotAnObject);
        assert_eq!(
            Skim::read(b" \"text\"").unwrap_err(),
            SkimError::NotAnObject
        );
        assert!(matches!(
            Skim::read(b"{\"model\": "),
            Err(SkimError::NotJson(_))
        ));
        assert!(matches!(
            Skim::read(b"nonsense"),
            Err(SkimError::NotJson(_))
        ));
        assert!(matches!(
            Skim::read(b"{} trailing"),
            Err(SkimError::NotJson(_))
        ));
    }

    #[test]
    fn an_alias_is_replaced_in_place_and_a_missing_model_is_added() {
        let body = Bytes::from(r#"{ "messages": [], "model" : "fast", "x": "model"}"#);
        let out = Skim::read(&body).unwrap().with_model(&body, "org/\"chat\"");
        assert_eq!(
            out,
            r#"{ "messages": [], "model" : "org/\"chat\"", "x": "model"}"#
        );
        let body = Bytes::from(r#"{"messages": []}"#);
        let out = Skim::read(&body).unwrap().with_model(&body, "m");
        assert_eq!(out, r#"{"model":"m","messages": []}"#);
        let body = Bytes::from(" { } ");
        let out = Skim::read(&body).unwrap().with_model(&body, "m");
        assert_eq!(out, r#" {"model":"m" } "#);
        serde_json::from_slice::<Value>(&out).unwrap();
    }

    #[test]
    fn a_completion_prompt_is_a_string_or_the_first_of_a_list() {
        let body = Bytes::from(json!({"prompt": ["one", "two"]}).to_string());
        let skim = Skim::read(&body).unwrap();
        assert_eq!(skim.prompt_text().as_deref(), Some("one"));
        assert_eq!(skim.prompt_bytes(), r#"["one","two"]"#.len());
        let body = Bytes::from(json!({"prompt": "just this"}).to_string());
        assert_eq!(
            Skim::read(&body).unwrap().prompt_text().as_deref(),
            Some("just this")
        );
    }
}
