//! Retention: removes finished runs past `--retain-runs` / `--retain-days` now and then, and
//! keeps a record of how it went for `/api/health` and `/metrics`. A pass that fails is logged
//! as a warning; one that keeps failing is an error on both, because a database that is not
//! pruned grows until the disk is full.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use runboard_api::RetentionStatus;
use runboard_api::clock::now_rfc3339;
use tokio_util::sync::CancellationToken;

use crate::store::{Pruned, Retention, Store};

/// Failed passes in a row from which the log says error instead of warning.
const FAILING_AFTER: u64 = 3;

/// Retention's figures on `/metrics`.
#[derive(Debug, Clone)]
pub struct RetentionMetrics {
    runs_removed: Counter,
    events_removed: Counter,
    failures: Counter,
    failures_in_a_row: Gauge,
    last_success: Gauge,
}

impl RetentionMetrics {
    /// Registers retention's metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            runs_removed: Counter::default(),
            events_removed: Counter::default(),
            failures: Counter::default(),
            failures_in_a_row: Gauge::default(),
            last_success: Gauge::default(),
        };
        registry.register(
            "runboard_retention_runs_removed",
            "Finished runs removed by retention",
            metrics.runs_removed.clone(),
        );
        registry.register(
            "runboard_retention_events_removed",
            "Events removed by retention with their runs",
            metrics.events_removed.clone(),
        );
        registry.register(
            "runboard_retention_failures",
            "Retention passes that failed",
            metrics.failures.clone(),
        );
        registry.register(
            "runboard_retention_failures_in_a_row",
            "Retention passes failed since the last success (above 0: the database is not \
             being pruned)",
            metrics.failures_in_a_row.clone(),
        );
        registry.register(
            "runboard_retention_last_success_timestamp_seconds",
            "When a retention pass last succeeded (Unix time; 0: not yet)",
            metrics.last_success.clone(),
        );
        metrics
    }
}

/// Retention's record, shared by the pruning task and the routes; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RetentionBoard {
    /// `None` when no limit is set, so health leaves it out.
    status: Option<Arc<Mutex<RetentionStatus>>>,
}

impl RetentionBoard {
    /// A board for `retention`: empty (and absent from health) when it keeps everything.
    pub fn new(retention: Retention) -> Self {
        let active = retention.days.is_some() || retention.runs.is_some();
        Self {
            status: active.then(|| Arc::new(Mutex::new(RetentionStatus::default()))),
        }
    }

    /// The record now, when retention is on.
    pub fn snapshot(&self) -> Option<RetentionStatus> {
        self.status.as_ref().map(|status| {
            status
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        })
    }

    fn succeeded(&self, pruned: Pruned, metrics: &RetentionMetrics) {
        let Some(status) = &self.status else { return };
        let mut status = status.lock().unwrap_or_else(PoisonError::into_inner);
        if status.failures_in_a_row >= FAILING_AFTER {
            tracing::info!(
                failed = status.failures_in_a_row,
                "retention prunes again after failing"
            );
        }
        status.last_success = Some(now_rfc3339());
        status.last_removed_runs = pruned.runs;
        status.last_removed_events = pruned.events;
        status.removed_runs_total += pruned.runs;
        status.failures_in_a_row = 0;
        status.last_error = None;
        metrics.runs_removed.inc_by(pruned.runs);
        metrics.events_removed.inc_by(pruned.events);
        metrics.failures_in_a_row.set(0);
        metrics.last_success.set(
            i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs(),
            )
            .unwrap_or(i64::MAX),
        );
    }

    fn failed(&self, error: &str, metrics: &RetentionMetrics) {
        let Some(status) = &self.status else { return };
        let mut status = status.lock().unwrap_or_else(PoisonError::into_inner);
        status.failures_in_a_row += 1;
        status.last_error = Some(error.to_owned());
        metrics.failures.inc();
        metrics
            .failures_in_a_row
            .set(i64::try_from(status.failures_in_a_row).unwrap_or(i64::MAX));
        if status.failures_in_a_row >= FAILING_AFTER {
            tracing::error!(
                %error,
                in_a_row = status.failures_in_a_row,
                "retention keeps failing: the database is not being pruned"
            );
        } else {
            tracing::warn!(%error, "retention could not prune");
        }
    }
}

/// Applies `retention` now and then every `every` until shutdown, and gives back the board
/// its record is kept on. A failure is recorded and tried again at the next turn: pruning is
/// housekeeping, never a reason to stop serving.
pub fn prune_periodically(
    store: Store,
    (retention, every): (Retention, Duration),
    metrics: RetentionMetrics,
    shutdown: CancellationToken,
) -> RetentionBoard {
    let board = RetentionBoard::new(retention);
    if board.status.is_none() {
        return board;
    }
    let record = board.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = shutdown.cancelled() => return,
            }
            match store
                .prune(retention, time::OffsetDateTime::now_utc())
                .await
            {
                Ok(pruned) => {
                    if pruned.runs > 0 {
                        tracing::info!(
                            runs = pruned.runs,
                            events = pruned.events,
                            "retention removed finished runs"
                        );
                    }
                    record.succeeded(pruned, &metrics);
                }
                Err(error) => record.failed(&error.to_string(), &metrics),
            }
        }
    });
    board
}
