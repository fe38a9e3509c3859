//! Parser throughput, side by side with `eventsource-stream` in the same run.
//!
//! Each workload is cut into network-sized chunks once; then, round after round, both parsers
//! parse the same chunks (alternating which goes first) and each round is timed. The report gives
//! medians, the spread between the 25th and 75th percentiles, and the ratio of the medians.
//!
//! `cargo bench --bench sse_parser` (set `RUNBOARD_BENCH_ROUNDS` to change the round count).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use runboard_sse::{Frame, Parser};

struct Workload {
    name: &'static str,
    chunks: Vec<Bytes>,
    total_bytes: usize,
    events: usize,
}

fn cut(stream: &[u8], chunk_bytes: usize) -> Vec<Bytes> {
    stream
        .chunks(chunk_bytes)
        .map(Bytes::copy_from_slice)
        .collect()
}

/// Worker progress events much like the reference server's: about 300 bytes each.
fn node_updates(count: usize) -> Vec<u8> {
    let agents = ["supervisor", "researcher", "writer", "critic"];
    let mut out = String::new();
    for i in 0..count {
        let agent = agents[i % agents.len()];
        let snippet: String = "the quick brown fox jumps over the lazy dog "
            .chars()
            .cycle()
            .skip(i % 40)
            .take(150)
            .collect();
        let data = format!(
            r#"{{"run_id":"run-{:06}","agent":"{agent}","iteration":{},"tokens_out":{},"snippet":"{snippet}","ts":"2026-11-21T05:30:{:02}.{:03}Z"}}"#,
            i % 512,
            i % 7,
            i * 13,
            i % 60,
            i % 1000
        );
        let _ = write!(out, "id: {i}\nevent: node_update\ndata: {data}\n\n");
    }
    out.into_bytes()
}

/// Long multi-line data: 64 lines of 120 characters per event.
fn multi_line(count: usize) -> Vec<u8> {
    let line: String = "lorem ipsum dolor sit amet "
        .chars()
        .cycle()
        .take(120)
        .collect();
    let mut out = String::new();
    for i in 0..count {
        let _ = writeln!(out, "id: {i}");
        for _ in 0..64 {
            out.push_str("data: ");
            out.push_str(&line);
            out.push('\n');
        }
        out.push('\n');
    }
    out.into_bytes()
}

/// One 1 MiB line arriving in 4 KiB chunks: linear parsers scan it once.
fn one_long_line() -> Vec<u8> {
    let mut out = b"data: ".to_vec();
    out.extend(std::iter::repeat_n(b'x', 1024 * 1024));
    out.extend_from_slice(b"\n\n");
    out
}

fn workload(name: &'static str, stream: &[u8], chunk_bytes: usize) -> Workload {
    let chunks = cut(stream, chunk_bytes);
    let events = parse_ours(&chunks);
    assert_eq!(
        events,
        parse_theirs(&chunks),
        "{name}: the parsers disagree on the event count"
    );
    Workload {
        name,
        chunks,
        total_bytes: stream.len(),
        events,
    }
}

fn parse_ours(chunks: &[Bytes]) -> usize {
    let mut parser = Parser::new();
    let mut events = 0;
    for chunk in chunks {
        parser.feed(chunk, &mut |frame| {
            if let Frame::Event(event) = frame {
                black_box(&event);
                events += 1;
            }
        });
    }
    events
}

fn parse_theirs(chunks: &[Bytes]) -> usize {
    let stream = futures_util::stream::iter(chunks.iter().cloned().map(Ok::<_, Infallible>));
    futures_executor::block_on(stream.eventsource().fold(0, |events, event| {
        black_box(&event);
        async move { events + usize::from(event.is_ok()) }
    }))
}

fn time(parse: fn(&[Bytes]) -> usize, chunks: &[Bytes]) -> Duration {
    let start = Instant::now();
    black_box(parse(black_box(chunks)));
    start.elapsed()
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index]
}

#[allow(clippy::cast_precision_loss)]
fn report(name: &str, workload: &Workload, mut rounds: Vec<Duration>) -> Duration {
    rounds.sort();
    let median = percentile(&rounds, 0.5);
    let secs = median.as_secs_f64();
    println!(
        "  {name:<20} median {:>9.3} ms  (p25 {:.3} – p75 {:.3})  {:>12.0} events/s  {:>8.1} MB/s",
        secs * 1e3,
        percentile(&rounds, 0.25).as_secs_f64() * 1e3,
        percentile(&rounds, 0.75).as_secs_f64() * 1e3,
        workload.events as f64 / secs,
        workload.total_bytes as f64 / secs / 1e6,
    );
    median
}

#[allow(clippy::cast_precision_loss)] // Sizes here are far below 2^52.
fn main() {
    let rounds: usize = std::env::var("RUNBOARD_BENCH_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(31);
    let workloads = [
        workload(
            "node_update JSON, ~300 B events, 8 KiB chunks",
            &node_updates(20_000),
            8192,
        ),
        workload(
            "multi-line data, 64×120 B lines, 8 KiB chunks",
            &multi_line(1_000),
            8192,
        ),
        workload("one 1 MiB line, 4 KiB chunks", &one_long_line(), 4096),
    ];
    println!("sse parser: runboard vs eventsource-stream 0.2, {rounds} rounds each, medians");
    for workload in &workloads {
        println!(
            "{} ({:.1} MB, {} events)",
            workload.name,
            workload.total_bytes as f64 / 1e6,
            workload.events
        );
        let mut ours = Vec::with_capacity(rounds);
        let mut theirs = Vec::with_capacity(rounds);
        for round in 0..rounds {
            if round % 2 == 0 {
                ours.push(time(parse_ours, &workload.chunks));
                theirs.push(time(parse_theirs, &workload.chunks));
            } else {
                theirs.push(time(parse_theirs, &workload.chunks));
                ours.push(time(parse_ours, &workload.chunks));
            }
        }
        let ours = report("runboard", workload, ours);
        let theirs = report("eventsource-stream", workload, theirs);
        println!(
            "  ratio: runboard is {:.2}× eventsource-stream",
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
    }
}
