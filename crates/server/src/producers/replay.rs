//! Replay mode (`--replay FILE`): the recorded runs' events are recorded again, each at its
//! recorded second on the replay clock, through the same writer, store and hub as live runs,
//! so every endpoint and stream serves them as it served them live.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::events::hub::Hub;
use crate::events::recorder::Recorder;
use crate::store::RunRow;
use runboard_api::clock::{format_rfc3339, parse_rfc3339};
use runboard_api::{
    EventKind, RecordedEvent, Recording, ReplayClock, RunEvent, RunStatus, RunSummary, Served,
};

/// What a replaying server plays.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// The recording.
    pub recording: Arc<Recording>,
    /// The clock it is played on (shared with a console in the same process).
    pub clock: ReplayClock,
    /// Start again after the end, the runs renamed `ID~2`, `ID~3`, …
    pub looping: bool,
}

/// Recording seconds between the end of one pass and the start of the next.
pub const LOOP_GAP_SECS: f64 = 3.0;

/// The longest the player sleeps before it looks at the clock again (a stepped clock moves
/// without telling).
const LOOK_EVERY: Duration = Duration::from_millis(5);

/// Plays the recording until its end (or for ever when looping), or until shutdown.
pub async fn play(
    config: ReplayConfig,
    recorder: Recorder,
    hub: Hub,
    owner: Arc<str>,
    shutdown: CancellationToken,
) {
    let mut player = Player {
        recorder,
        hub,
        owner,
        origin: parse_rfc3339(&config.recording.header.started_at)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        created: HashSet::new(),
    };
    let events = &config.recording.events;
    let mut pass = 1_u32;
    let mut offset = 0.0;
    loop {
        let mut next = 0;
        while next < events.len() {
            let now = config.clock.now();
            let mut wrote = false;
            while next < events.len() && offset + events[next].t <= now {
                if player.write(&events[next], pass, offset).await.is_err() {
                    return;
                }
                next += 1;
                wrote = true;
            }
            if wrote && player.recorder.flush().await.is_err() {
                return;
            }
            player.served(&config.clock, now);
            let wait = events.get(next).map_or(LOOK_EVERY, |event| {
                until(&config.clock, offset + event.t - now)
            });
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
        if !config.looping {
            // Keep telling a stepped viewer how far the (finished) recording is served.
            loop {
                player.served(&config.clock, config.clock.now());
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(LOOK_EVERY) => {}
                }
            }
        }
        offset += config.recording.duration() + LOOP_GAP_SECS;
        pass += 1;
        while config.clock.now() < offset {
            player.served(&config.clock, config.clock.now());
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(until(&config.clock, offset - config.clock.now())) => {}
            }
        }
    }
}

/// How long to sleep for `secs` recording seconds on this clock.
fn until(clock: &ReplayClock, secs: f64) -> Duration {
    match clock.speed() {
        Some(speed) => Duration::from_secs_f64((secs / speed).clamp(0.0, 0.25)),
        None => LOOK_EVERY,
    }
}

struct Player {
    recorder: Recorder,
    hub: Hub,
    owner: Arc<str>,
    /// The recording's start on the wall clock: events without their own time are stamped
    /// from it, so a replay's times are the recording's.
    origin: OffsetDateTime,
    /// Runs whose row exists.
    created: HashSet<String>,
}

#[derive(Debug)]
struct Stopped;

impl Player {
    fn served(&self, clock: &ReplayClock, through: f64) {
        clock.mark_served(Served {
            through,
            last_seq: u64::try_from(self.hub.head()).unwrap_or(0),
        });
    }

    /// Records one recorded event; a run first seen without its `run_created` gets a row.
    async fn write(
        &mut self,
        recorded: &RecordedEvent,
        pass: u32,
        offset: f64,
    ) -> Result<(), Stopped> {
        let Some(kind) = EventKind::parse(&recorded.event) else {
            return Ok(());
        };
        // About the recorded server or its stream, not a run: nothing to replay.
        if matches!(kind, EventKind::StoreStatus | EventKind::Pruned) {
            return Ok(());
        }
        let recorded_id = recorded.run_id();
        if recorded_id.is_empty() {
            return Ok(());
        }
        let run_id = if pass == 1 {
            recorded_id.to_owned()
        } else {
            format!("{recorded_id}~{pass}")
        };
        let mut data = recorded.data.clone();
        if let Some(object) = data.as_object_mut() {
            object.insert("run_id".into(), Value::String(run_id.clone()));
            if pass > 1 {
                // A later pass happens later: its times are its own.
                object.remove("ts");
            }
        }
        let Ok(event) = RunEvent::decode(&recorded.event, &data.to_string()) else {
            tracing::warn!(event = %recorded.event, "a recorded event could not be read; skipped");
            return Ok(());
        };
        // Events that carry their own time keep it (so a run's started and finished times are
        // the recorded ones); the others are stamped on the recording's clock.
        let ts = recorded
            .data
            .get("ts")
            .and_then(Value::as_str)
            .filter(|ts| pass == 1 && parse_rfc3339(ts).is_some())
            .map_or_else(|| self.stamp(offset + recorded.t), str::to_owned);
        if let RunEvent::RunCreated(summary) = event {
            if self.created.insert(run_id) {
                self.create(summary).await?;
            }
            return Ok(());
        }
        if self.created.insert(run_id.clone()) {
            let summary = RunSummary {
                created_at: Some(ts.clone()),
                ..RunSummary::new(run_id.clone(), "", RunStatus::Running)
            };
            self.create(summary).await?;
        }
        self.recorder
            .event(&run_id, event, ts)
            .await
            .map_err(|_| Stopped)
    }

    async fn create(&self, summary: RunSummary) -> Result<(), Stopped> {
        let row = RunRow {
            summary,
            ord: 0,
            params: "{}".into(),
            owner: Some(self.owner.to_string()),
        };
        let stored = self.recorder.create(row).await.map_err(|_| Stopped)?;
        // Its events queue behind it; the answer only says whether the store took it.
        tokio::spawn(async move {
            if !matches!(stored.await, Ok(Ok(()))) {
                tracing::warn!("a replayed run could not be stored");
            }
        });
        Ok(())
    }

    fn stamp(&self, secs: f64) -> String {
        format_rfc3339(self.origin + time::Duration::seconds_f64(secs))
    }
}
