//! The parser against `tests/fixtures/*.sse`: one file per WHATWG parsing rule, with the expected
//! frames in the `.json` beside it. Each fixture is fed whole, split in two at every byte
//! boundary, one byte at a time, and in random chunks; every way must give the same frames.

use std::path::{Path, PathBuf};
use std::time::Duration;

use runboard_sse::{DEFAULT_MAX_EVENT_BYTES, Event, Frame, Parser};
use serde_json::Value;

struct Fixture {
    name: String,
    bytes: Vec<u8>,
    frames: Vec<Frame>,
    last_event_id: String,
    max_event_bytes: usize,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expected_frame(value: &Value) -> Frame {
    let text = |key: &str| value[key].as_str().unwrap().to_owned();
    if let Some(comment) = value.get("comment") {
        Frame::Comment(comment.as_str().unwrap().to_owned())
    } else if let Some(retry) = value.get("retry") {
        Frame::Retry(Duration::from_millis(retry.as_u64().unwrap()))
    } else if let Some(limit) = value.get("too_large") {
        Frame::TooLarge {
            limit_bytes: usize::try_from(limit.as_u64().unwrap()).unwrap(),
        }
    } else {
        Frame::Event(Event {
            event: text("event"),
            data: text("data"),
            id: text("id"),
        })
    }
}

fn load_fixtures() -> Vec<Fixture> {
    let mut fixtures: Vec<Fixture> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sse"))
        .map(|path| {
            let spec: Value = serde_json::from_str(
                &std::fs::read_to_string(path.with_extension("json")).unwrap(),
            )
            .unwrap();
            assert!(
                spec["rule"].as_str().is_some_and(|rule| !rule.is_empty()),
                "{} must say which rule it checks",
                path.display()
            );
            Fixture {
                name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                bytes: std::fs::read(&path).unwrap(),
                frames: spec["frames"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(expected_frame)
                    .collect(),
                last_event_id: spec["last_event_id"].as_str().unwrap().to_owned(),
                max_event_bytes: spec["max_event_bytes"]
                    .as_u64()
                    .map_or(DEFAULT_MAX_EVENT_BYTES, |cap| usize::try_from(cap).unwrap()),
            }
        })
        .collect();
    fixtures.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(fixtures.len() >= 25, "the fixture corpus went missing");
    fixtures
}

/// Parses the chunks as one connection's body and returns the frames and the last event id.
fn parse(fixture: &Fixture, chunks: &[&[u8]]) -> (Vec<Frame>, String) {
    let mut parser = Parser::with_max_event_bytes(fixture.max_event_bytes);
    let mut frames = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, &mut |frame| frames.push(frame));
    }
    parser.end_of_stream();
    (frames, parser.last_event_id().to_owned())
}

fn check(fixture: &Fixture, chunks: &[&[u8]], how: &str) {
    let (frames, last_event_id) = parse(fixture, chunks);
    assert_eq!(frames, fixture.frames, "{} fed {how}", fixture.name);
    assert_eq!(
        last_event_id, fixture.last_event_id,
        "{} fed {how}: last event id",
        fixture.name
    );
}

#[test]
fn every_fixture_fed_whole() {
    for fixture in load_fixtures() {
        check(&fixture, &[&fixture.bytes], "whole");
    }
}

#[test]
fn every_fixture_split_at_every_byte_boundary() {
    for fixture in load_fixtures() {
        for at in 0..=fixture.bytes.len() {
            let (head, tail) = fixture.bytes.split_at(at);
            check(&fixture, &[head, tail], &format!("split at byte {at}"));
        }
    }
}

#[test]
fn every_fixture_fed_one_byte_at_a_time() {
    for fixture in load_fixtures() {
        let bytes: Vec<&[u8]> = fixture.bytes.chunks(1).collect();
        check(&fixture, &bytes, "one byte at a time");
    }
}

#[test]
fn every_fixture_fed_in_random_chunks() {
    // A fixed-seed xorshift, so a failure names a chunking that can be replayed.
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for fixture in load_fixtures() {
        for trial in 0..200 {
            let mut chunks = Vec::new();
            let mut rest = fixture.bytes.as_slice();
            while !rest.is_empty() {
                let take = usize::try_from(next() % 9).unwrap().min(rest.len());
                // Empty chunks are legal and must change nothing.
                chunks.push(&rest[..take]);
                rest = &rest[take..];
            }
            check(
                &fixture,
                &chunks,
                &format!("in random chunks, trial {trial}"),
            );
        }
    }
}

#[test]
fn the_last_event_id_survives_a_reconnect_but_nothing_else_does() {
    let mut parser = Parser::new();
    let mut frames = Vec::new();
    parser.feed(
        b"id: 7\nevent: custom\ndata: a\n\nevent: half\ndata: b",
        &mut |f| frames.push(f),
    );
    parser.end_of_stream();
    // The new connection starts with a BOM again, which must be stripped again.
    parser.feed(b"\xEF\xBB\xBFdata: c\n\n", &mut |f| frames.push(f));
    assert_eq!(
        frames,
        vec![
            Frame::Event(Event {
                event: "custom".into(),
                data: "a".into(),
                id: "7".into()
            }),
            Frame::Event(Event {
                event: "message".into(),
                data: "c".into(),
                id: "7".into()
            }),
        ]
    );
}

#[test]
fn a_long_line_in_small_chunks_is_buffered_once() {
    // 1 MiB of data arriving in 4 KiB chunks: the result must be exact. (Its cost, linear in
    // the input, is measured by the sse_parser bench, not asserted here.)
    let mut stream = b"data: ".to_vec();
    stream.extend(std::iter::repeat_n(b'y', 1 << 20));
    stream.extend_from_slice(b"\n\n");
    let mut parser = Parser::new();
    let mut events = Vec::new();
    for chunk in stream.chunks(4096) {
        parser.feed(chunk, &mut |frame| events.push(frame));
    }
    assert_eq!(events.len(), 1);
    let Frame::Event(event) = &events[0] else {
        panic!("expected an event, got {:?}", events[0]);
    };
    assert_eq!(event.data.len(), 1 << 20);
    assert!(event.data.bytes().all(|b| b == b'y'));
}
