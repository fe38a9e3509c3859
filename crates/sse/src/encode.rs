//! Writing the event-stream format: the one encoder of every frame a server sends.
//!
//! Whatever the data holds, the frame stays one event: each line of the data (split at `\r\n`,
//! `\r` or `\n`, the breaks the parser knows) gets its own `data:` line, and a line break in an
//! id or event name, which would start a new field, is dropped.

use bytes::{BufMut as _, BytesMut};

/// Appends one event: `id:` when given, `event:` unless it is empty, then the data.
pub fn write_event(out: &mut BytesMut, id: Option<&str>, event: &str, data: &str) {
    out.reserve(data.len() + event.len() + 32);
    if let Some(id) = id {
        write_field(out, b"id: ", id);
    }
    if !event.is_empty() {
        write_field(out, b"event: ", event);
    }
    for line in lines(data) {
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
}

/// Appends a comment, which clients ignore (a keep-alive).
pub fn write_comment(out: &mut BytesMut, text: &str) {
    for line in lines(text) {
        out.put_slice(b": ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
}

/// Appends `retry:`, how long a client waits before it reconnects.
pub fn write_retry(out: &mut BytesMut, after_ms: u128) {
    out.put_slice(b"retry: ");
    out.put_slice(after_ms.to_string().as_bytes());
    out.put_slice(b"\n\n");
}

fn write_field(out: &mut BytesMut, name: &[u8], value: &str) {
    out.put_slice(name);
    for part in value.split(['\r', '\n']) {
        out.put_slice(part.as_bytes());
    }
    out.put_u8(b'\n');
}

/// The lines of `text` as the parser will see them: `\r\n`, `\r` and `\n` each end one line.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        if let Some(at) = text.find(['\r', '\n']) {
            let skip = if text[at..].starts_with("\r\n") { 2 } else { 1 };
            rest = Some(&text[at + skip..]);
            Some(&text[..at])
        } else {
            rest = None;
            Some(text)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Frame, Parser};

    fn parse(bytes: &[u8]) -> Vec<crate::Event> {
        let mut parser = Parser::new();
        let mut events = Vec::new();
        parser.feed(bytes, &mut |frame| {
            if let Frame::Event(event) = frame {
                events.push(event);
            }
        });
        events
    }

    #[test]
    fn compact_json_is_one_data_line() {
        let mut out = BytesMut::new();
        write_event(&mut out, Some("7"), "status", r#"{"status":"running"}"#);
        assert_eq!(
            &out[..],
            b"id: 7\nevent: status\ndata: {\"status\":\"running\"}\n\n"
        );
    }

    #[test]
    fn any_data_reads_back_as_one_event_with_its_lines() {
        for data in [
            "",
            "a",
            "a\nb",
            "a\r\nb",
            "a\rb",
            "a\n\nb",
            "\n",
            "x\r\n",
            "😊\r\r\n",
        ] {
            let mut out = BytesMut::new();
            write_event(&mut out, Some("1\n2"), "odd\rname", data);
            write_comment(&mut out, "keep\nalive");
            let events = parse(&out);
            assert_eq!(events.len(), 1, "{data:?}: {out:?}");
            let expected = data.replace("\r\n", "\n").replace('\r', "\n");
            assert_eq!(events[0].data, expected, "{data:?}");
            assert_eq!(events[0].event, "oddname");
            assert_eq!(events[0].id, "12");
        }
    }

    #[test]
    fn retry_and_comments_have_their_own_lines() {
        let mut out = BytesMut::new();
        write_retry(&mut out, 20);
        write_comment(&mut out, "keep-alive");
        assert_eq!(&out[..], b"retry: 20\n\n: keep-alive\n\n");
    }
}
