//! One card of the grid: a worker across its calls. A named worker (a run's `worker`: a proxied
//! client, or a launch that named one) keeps one card while it makes call after call; a run
//! without a worker is its own card. The card's tok/s and sparkline run on across calls
//! (dipping between them, not starting over) and it counts what the worker has done; the
//! calls themselves are [`super::Worker`]s, of which a card keeps those going on and its
//! latest finished one.

use runboard_api::RunStatus;

use super::keys::{CardKey, RunKey};
use super::rate::{RateSettings, TokenRate};

/// A card's state. Times are the board's clock (seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    /// Who it stands for.
    pub key: CardKey,
    /// Its calls going on, oldest first.
    pub live: Vec<RunKey>,
    /// Its latest finished call, shown while none is going on.
    pub last: Option<RunKey>,
    /// Calls that completed while watched.
    pub done: u64,
    /// Calls that failed.
    pub failed: u64,
    /// Calls cancelled (or whose client left).
    pub cancelled: u64,
    /// Tokens of its finished calls.
    pub tokens_done: u64,
    /// Tokens per second across its calls, and the sparkline.
    pub rate: TokenRate,
    /// When it appeared.
    pub seen_at: f64,
    /// When its last call ended, while none is going on.
    pub idle_since: Option<f64>,
}

impl Card {
    /// A new card, with no call yet.
    pub fn new(key: CardKey, now: f64) -> Self {
        Self {
            key,
            live: Vec::new(),
            last: None,
            done: 0,
            failed: 0,
            cancelled: 0,
            tokens_done: 0,
            rate: TokenRate::default(),
            seen_at: now,
            idle_since: None,
        }
    }

    /// Whether it is a named worker (rather than one run).
    pub fn is_named(&self) -> bool {
        matches!(self.key, CardKey::Worker { .. })
    }

    /// The call to show: the newest going on, else the latest finished.
    pub fn current(&self) -> Option<&RunKey> {
        self.live.last().or(self.last.as_ref())
    }

    /// Calls seen to end, however they ended.
    pub fn calls_ended(&self) -> u64 {
        self.done + self.failed + self.cancelled
    }

    /// A call of this card started (or was first seen going on).
    pub fn started(&mut self, run: &RunKey) {
        if !self.live.contains(run) {
            self.live.push(run.clone());
        }
        self.idle_since = None;
    }

    /// A call ended with `status` after `tokens` tokens: counted, and kept as the one shown
    /// when it is the last. Returns the call it replaces as the latest finished one (which the
    /// board forgets, for a named worker).
    pub fn ended(
        &mut self,
        run: &RunKey,
        status: RunStatus,
        tokens: u64,
        now: f64,
    ) -> Option<RunKey> {
        self.live.retain(|live| live != run);
        match status {
            RunStatus::Completed => self.done += 1,
            RunStatus::Failed => self.failed += 1,
            _ => self.cancelled += 1,
        }
        self.tokens_done += tokens;
        if self.live.is_empty() {
            // Not generating: the rate reads zero until the next call's tokens, and the
            // sparkline goes on from there rather than starting over.
            self.rate.stop();
            self.idle_since = Some(now);
        }
        let replaced = self.last.replace(run.clone());
        replaced.filter(|old| old != run)
    }

    /// Takes the card's cumulative token count (finished calls and those going on).
    pub fn observe(&mut self, tokens: u64, now: f64, settings: &RateSettings, replayed: bool) {
        if replayed {
            self.rate.rebase(tokens, now);
        } else {
            self.rate.observe(tokens, now, settings);
        }
    }

    /// Seconds since its last call ended, while none is going on.
    pub fn idle_for(&self, now: f64) -> Option<f64> {
        self.idle_since
            .filter(|_| self.live.is_empty())
            .map(|since| now - since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_counts_its_calls_and_keeps_its_rate_across_them() {
        let settings = RateSettings::default();
        let key = CardKey::of(&RunKey::new(0, "r1"), Some("gen-01"));
        assert_eq!(key.title(), "gen-01");
        let mut card = Card::new(key, 0.0);
        let (r1, r2) = (RunKey::new(0, "r1"), RunKey::new(0, "r2"));
        card.started(&r1);
        card.observe(0, 0.0, &settings, false);
        card.observe(50, 1.0, &settings, false);
        assert!((card.rate.per_sec() - 50.0).abs() < 1e-9);
        assert_eq!(card.ended(&r1, RunStatus::Completed, 50, 1.5), None);
        assert!(card.rate.per_sec().abs() < f64::EPSILON, "idle reads zero");
        assert_eq!(card.idle_for(3.5), Some(2.0));
        assert_eq!(card.current(), Some(&r1));
        card.started(&r2);
        assert_eq!(card.idle_for(3.5), None);
        card.observe(90, 3.0, &settings, false);
        assert!(card.rate.per_sec() > 0.0, "the next call's tokens count on");
        assert_eq!(card.rate.history().len(), 2, "one sparkline across calls");
        assert_eq!(card.current(), Some(&r2));
        assert_eq!(card.ended(&r2, RunStatus::Failed, 40, 4.0), Some(r1));
        assert_eq!((card.done, card.failed, card.tokens_done), (1, 1, 90));
        assert_eq!(card.calls_ended(), 2);
    }

    #[test]
    fn a_run_without_a_worker_is_its_own_card() {
        let run = RunKey::new(1, "run-7");
        let key = CardKey::of(&run, None);
        assert_eq!(key, CardKey::Run(run.clone()));
        assert_eq!(
            (key.title(), key.server(), key.worker()),
            ("run-7", 1, None)
        );
        assert!(!Card::new(key, 0.0).is_named());
    }
}
