//! A console on a replay: its clock is the recording's. On a stepped clock (a replay that must
//! look the same every time, for screenshots) the console moves the clock itself, a step at a
//! time, and only once everything the server has served up to now is applied and every poll
//! and detail it asked for has come back, so what it shows at second S never depends on how
//! fast this machine is.

use runboard_api::ReplayClock;

use super::Connector;
use crate::board::{Board, Link};

/// Recording seconds a stepped replay moves at a time: below the tok/s rule's 100 ms gate, so
/// rates are measured as finely as live.
pub const REPLAY_STEP_SECS: f64 = 0.05;

/// Frames a stepped replay stays at its stop with everything in before it counts as still
/// (egui lays out some things in the frame after they first appear).
const STILL_FRAMES: u32 = 3;

/// What one look at a stepped replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// Not everything up to now is in yet.
    Waiting,
    /// Everything was in: the clock moved a step.
    Stepped,
    /// Everything is in and the clock is at its stop.
    AtStop,
}

/// How a console follows a replay.
#[derive(Debug, Clone)]
pub struct ReplayView {
    /// The replay's clock, shared with the replaying server.
    pub clock: ReplayClock,
    /// On a stepped clock: the recording second to step to and stay at.
    pub stop_at: f64,
    /// The server's name on the board, e.g. `replay of fleet.jsonl`.
    pub label: String,
}

/// The console's side of a replay.
#[derive(Debug)]
pub(super) struct ReplayPace {
    clock: ReplayClock,
    stop_at: f64,
    poll_every: f64,
    next_poll: f64,
    still_frames: u32,
}

impl ReplayPace {
    pub(super) fn new(view: ReplayView, poll_every: f64) -> Self {
        Self {
            next_poll: view.clock.now(),
            clock: view.clock,
            stop_at: view.stop_at,
            poll_every,
            still_frames: 0,
        }
    }

    /// The recording's time now.
    pub(super) fn now(&self) -> f64 {
        self.clock.now()
    }

    /// Whether the console moves the clock (a stepped replay).
    pub(super) fn is_stepped(&self) -> bool {
        self.clock.speed().is_none()
    }

    /// One look at a stepped replay, after the inbox was drained: polls the feed when its
    /// time has come, then moves the clock a step when everything up to now is in.
    /// `seen_id` is the connector's last event id read before the drain; `drained` says the
    /// inbox was emptied.
    pub(super) fn frame(
        &mut self,
        board: &Board,
        connector: &Connector,
        seen_id: u64,
        drained: bool,
    ) -> Progress {
        let now = self.clock.now();
        if now >= self.next_poll {
            for server in 0..board.servers.len() {
                connector.poll_runs(server);
            }
            self.next_poll = now + self.poll_every;
        }
        let served = self.clock.served();
        let streams_open = board
            .servers
            .iter()
            .all(|server| matches!(server.link, Some(Link::Live | Link::Resumed { .. })));
        let caught_up = drained
            && streams_open
            && connector.pending() == 0
            && served.through >= now
            && seen_id >= served.last_seq;
        if !caught_up {
            self.still_frames = 0;
            Progress::Waiting
        } else if now < self.stop_at {
            self.clock
                .step_to((now + REPLAY_STEP_SECS).min(self.stop_at));
            self.still_frames = 0;
            Progress::Stepped
        } else {
            self.still_frames = self.still_frames.saturating_add(1);
            Progress::AtStop
        }
    }

    /// A stepped replay reached its stop with everything in, for a few frames.
    pub(super) fn is_still(&self) -> bool {
        self.still_frames >= STILL_FRAMES
    }
}
