//! Fuzzes the event-stream parser: it must never panic, must give the same frames however the
//! input is chunked, and what it dispatches must respect the spec's invariants and the size cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runboard_sse::{DEFAULT_MAX_EVENT_BYTES, Frame, Parser};

fn parse<'a>(cap: usize, chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<Frame>, String) {
    let mut parser = Parser::with_max_event_bytes(cap);
    let mut frames = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, &mut |frame| frames.push(frame));
    }
    parser.end_of_stream();
    (frames, parser.last_event_id().to_owned())
}

fuzz_target!(|input: &[u8]| {
    // The first byte picks the size cap and a chunk size; the rest is the stream.
    let Some((&control, stream)) = input.split_first() else {
        return;
    };
    let cap = match control & 3 {
        0 => 8,
        1 => 64,
        2 => 1024,
        _ => DEFAULT_MAX_EVENT_BYTES,
    };
    let chunk_bytes = usize::from(control >> 2) + 1;
    let whole = parse(cap, std::iter::once(stream));
    let chunked = parse(cap, stream.chunks(chunk_bytes));
    assert_eq!(whole, chunked, "chunking by {chunk_bytes} changed the frames");
    for frame in &whole.0 {
        if let Frame::Event(event) = frame {
            // Each invalid byte may grow into a 3-byte U+FFFD; the cap is on raw bytes.
            assert!(event.data.len() <= cap * 3);
            assert!(!event.id.contains(['\0', '\r', '\n']));
            assert!(!event.event.contains(['\r', '\n']) && !event.event.is_empty());
        }
    }
});
