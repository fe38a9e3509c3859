//! A subscriber of `/api/events` that counts what it receives and samples how late it came
//! (the server stamps each `node_update` with `ts`), for the server and shared-store benches.

use std::time::{Duration, Instant, SystemTime};

use runboard_sse::{ConnectionState, EventSource, ReconnectPolicy, Update};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What one subscriber of `/api/events` saw.
pub struct Subscriber {
    /// Events received.
    pub events: usize,
    /// When the first and the last arrived.
    pub first: Option<Instant>,
    /// See `first`.
    pub last: Option<Instant>,
    /// Emit-to-receive latencies of the sampled `node_update`s, in microseconds.
    pub latencies_us: Vec<u64>,
}

impl Subscriber {
    /// Events a second between the first and the last.
    pub fn rate(&self) -> f64 {
        match (self.first, self.last) {
            #[allow(clippy::cast_precision_loss)]
            (Some(first), Some(last)) if last > first => {
                self.events as f64 / (last - first).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// Reads only the `ts` field, so measuring costs the subscriber little.
pub fn latency_us(data: &str) -> Option<u64> {
    let start = data.find(r#""ts":""#)? + 6;
    let end = start + data[start..].find('"')?;
    let emitted = OffsetDateTime::parse(&data[start..end], &Rfc3339).ok()?;
    let now = OffsetDateTime::from(SystemTime::now());
    u64::try_from((now - emitted).whole_microseconds()).ok()
}

/// Follows `url` until `runs` runs have ended, telling `ready` once connected; samples the
/// latency of every `sample_every`-th `node_update`.
pub async fn subscribe(
    url: String,
    ready: tokio::sync::mpsc::Sender<()>,
    runs: usize,
    sample_every: u64,
) -> Subscriber {
    let mut source = EventSource::builder(&url)
        .unwrap()
        .reconnect(ReconnectPolicy {
            initial_retry: Duration::from_millis(50),
            ..ReconnectPolicy::default()
        })
        .build()
        .unwrap();
    let mut me = Subscriber {
        events: 0,
        first: None,
        last: None,
        latencies_us: Vec::new(),
    };
    let mut ended = 0;
    let mut node_updates = 0u64;
    while ended < runs {
        match source.next().await {
            Some(Update::State(ConnectionState::Open)) => {
                let _ = ready.send(()).await;
            }
            Some(Update::Event(event)) => {
                let now = Instant::now();
                me.first.get_or_insert(now);
                me.last = Some(now);
                me.events += 1;
                match event.event.as_str() {
                    "stream_end" => ended += 1,
                    "node_update" => {
                        node_updates += 1;
                        if node_updates.is_multiple_of(sample_every) {
                            me.latencies_us.extend(latency_us(&event.data));
                        }
                    }
                    _ => {}
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    me
}
