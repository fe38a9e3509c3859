//! The clock a replay runs on: the recording's seconds, shared by the replaying server and a
//! console in the same process, so both see the recording's time and not the wall's.

use std::sync::{Arc, Mutex, PoisonError};

use web_time::Instant;

/// Seconds of a recording: how far a replay has got. Clones share one clock.
#[derive(Debug, Clone)]
pub struct ReplayClock {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    pace: Pace,
    served: Served,
}

#[derive(Debug, Clone, Copy)]
enum Pace {
    /// The wall clock's time since `origin`, times `speed`.
    Real { origin: Instant, speed: f64 },
    /// Moved only by [`ReplayClock::step_to`]: a replay that waits for its viewer, so what it
    /// shows at a given second is the same every time.
    Stepped { at: f64 },
}

/// How far the replaying server has got: everything up to `through` seconds is stored and
/// published, the last of it with the stream id `last_seq`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Served {
    /// Recording seconds served.
    pub through: f64,
    /// The global event id of the last event served (`/api/events`'s SSE id).
    pub last_seq: u64,
}

impl ReplayClock {
    /// A clock that runs from now, `speed` recording seconds per wall second.
    pub fn real_time(speed: f64) -> Self {
        Self::with(Pace::Real {
            origin: Instant::now(),
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            },
        })
    }

    /// A clock that moves only when told. It starts a millisecond before the recording, so
    /// nothing is served before the viewer has connected and said so by stepping.
    pub fn stepped() -> Self {
        Self::with(Pace::Stepped { at: -0.001 })
    }

    fn with(pace: Pace) -> Self {
        Self {
            inner: Arc::new(Mutex::new(State {
                pace,
                served: Served::default(),
            })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The recording's time now, in seconds.
    pub fn now(&self) -> f64 {
        match self.state().pace {
            Pace::Real { origin, speed } => origin.elapsed().as_secs_f64() * speed,
            Pace::Stepped { at } => at,
        }
    }

    /// Recording seconds per wall second; `None` when the clock moves only when told.
    pub fn speed(&self) -> Option<f64> {
        match self.state().pace {
            Pace::Real { speed, .. } => Some(speed),
            Pace::Stepped { .. } => None,
        }
    }

    /// Moves a stepped clock forward to `at` (never back); a running clock ignores it.
    pub fn step_to(&self, at: f64) {
        if let Pace::Stepped { at: current } = &mut self.state().pace {
            *current = current.max(at);
        }
    }

    /// The server says how far it has served.
    pub fn mark_served(&self, served: Served) {
        self.state().served = served;
    }

    /// How far the server has served.
    pub fn served(&self) -> Served {
        self.state().served
    }
}

#[cfg(test)]
mod tests {
    use super::{ReplayClock, Served};

    #[test]
    fn a_stepped_clock_moves_only_forward_and_only_when_told() {
        let clock = ReplayClock::stepped();
        assert!(clock.now() < 0.0);
        assert_eq!(clock.speed(), None);
        clock.step_to(1.5);
        clock.step_to(1.0);
        assert!((clock.now() - 1.5).abs() < f64::EPSILON);
        let shared = clock.clone();
        shared.mark_served(Served {
            through: 1.5,
            last_seq: 9,
        });
        assert_eq!(clock.served().last_seq, 9);
    }

    #[test]
    fn a_running_clock_ignores_steps() {
        let clock = ReplayClock::real_time(1000.0);
        clock.step_to(1e9);
        assert!(clock.now() < 1e6);
        assert_eq!(clock.speed(), Some(1000.0));
    }
}
