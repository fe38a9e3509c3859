//! Reading: the sequences, runs (listed, one, by status, totals per worker) and events (a run's,
//! or everything after an id, page by page).

use sqlx::any::AnyRow;
// The only dynamic SQL is built from the store's column-list constants; values are bound.
use sqlx::{AssertSqlSafe, Row as _};

use runboard_api::{RunStatus, RunSummary, StoredEvent};

use super::{
    EVENT_COLUMNS, EventRow, RUN_COLUMNS, Replay, RunFilter, RunRow, Sequences, Sql, Store,
    StoreError, WorkerTotals, failed, storable,
};

impl Store {
    /// Where the sequences stand, to continue them after a restart.
    pub async fn sequences(&self) -> Result<Sequences, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM events), \
                    (SELECT COALESCE(MAX(ord), 0) FROM runs), \
                    (SELECT COALESCE(MAX(value), 0) FROM meta WHERE key = 'last_seq'), \
                    (SELECT COALESCE(MAX(value), 0) FROM meta WHERE key = 'last_ord'), \
                    (SELECT run_id FROM runs ORDER BY ord DESC LIMIT 1)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(failed("reading the sequences"))?;
        let read = |index: usize| -> Result<i64, StoreError> {
            row.try_get(index).map_err(failed("reading the sequences"))
        };
        // The marks outlive pruned rows; the rows cover databases written before the marks.
        Ok(Sequences {
            last_seq: read(0)?.max(read(2)?),
            last_ord: read(1)?.max(read(3)?),
            newest_run: row.try_get(4).map_err(failed("reading the sequences"))?,
        })
    }

    /// The highest global sequence removed by retention (0: none): a stream resuming from
    /// below it may have missed pruned events.
    pub async fn pruned_seq(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(value), 0) FROM meta WHERE key = 'pruned_seq'")
            .fetch_one(&self.pool)
            .await
            .map_err(failed("reading the pruning mark"))?;
        row.try_get(0).map_err(failed("reading the pruning mark"))
    }

    /// The highest run sequence of a run (0 for a run without events).
    pub async fn last_run_seq(&self, run_id: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(run_seq), 0) FROM events WHERE run_id = $1")
            .bind(storable(run_id))
            .fetch_one(&self.pool)
            .await
            .map_err(failed("reading a run's sequence"))?;
        row.try_get(0).map_err(failed("reading a run's sequence"))
    }

    /// Runs newest first, at most `limit`, of those `filter` lets through.
    pub async fn list_runs(
        &self,
        limit: u32,
        filter: &RunFilter,
    ) -> Result<Vec<RunRow>, StoreError> {
        let mut query = Sql::new(format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1"));
        if let Some(before) = filter.before_ord {
            query.push(" AND ord < ").push_bind(before);
        }
        if let Some(status) = filter.status {
            query
                .push(" AND status = ")
                .push_bind(status.as_str().to_owned());
        }
        if let Some(worker) = &filter.worker {
            query.push(" AND worker = ").push_bind(storable(worker));
        }
        query
            .push(" ORDER BY ord DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = query
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(failed("listing runs"))?;
        rows.iter().map(run_from_row).collect()
    }

    /// One run, if it exists.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRow>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE run_id = $1"
        )))
        .bind(storable(run_id))
        .fetch_optional(&self.pool)
        .await
        .map_err(failed("reading a run"))?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// Every worker with a run in the store: its runs by status, tokens, and the newest time
    /// one of its runs was created or finished.
    pub async fn worker_totals(&self) -> Result<Vec<WorkerTotals>, StoreError> {
        let rows = sqlx::query(
            "SELECT worker, status, COUNT(*) AS n, \
             CAST(COALESCE(SUM(tokens_out), 0) AS BIGINT) AS tokens, \
             MAX(created_at) AS created, MAX(finished_at) AS finished \
             FROM runs WHERE worker IS NOT NULL GROUP BY worker, status",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(failed("counting workers' runs"))?;
        let mut totals: Vec<WorkerTotals> = Vec::new();
        let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for row in &rows {
            let read = || -> Result<_, sqlx::Error> {
                let worker: String = row.try_get("worker")?;
                let status: String = row.try_get("status")?;
                let count: i64 = row.try_get("n")?;
                let tokens: i64 = row.try_get("tokens")?;
                let times: [Option<String>; 2] =
                    [row.try_get("created")?, row.try_get("finished")?];
                Ok((worker, status, count, tokens, times))
            };
            let (worker, status, count, tokens, [created, finished]) =
                read().map_err(failed("counting workers' runs"))?;
            let at = *index.entry(worker.clone()).or_insert_with(|| {
                totals.push(WorkerTotals {
                    worker,
                    ..WorkerTotals::default()
                });
                totals.len() - 1
            });
            let entry = &mut totals[at];
            let count = u64::try_from(count).unwrap_or(0);
            match RunStatus::parse(&status) {
                Some(RunStatus::Completed) => entry.done += count,
                Some(RunStatus::Failed) => entry.failed += count,
                Some(RunStatus::Cancelled) => entry.cancelled += count,
                _ => entry.in_flight += count,
            }
            entry.tokens_out += u64::try_from(tokens).unwrap_or(0);
            // RFC 3339 times in UTC with one format compare as text.
            entry.last_seen = [entry.last_seen.take(), created, finished]
                .into_iter()
                .flatten()
                .max();
        }
        Ok(totals)
    }

    /// How many runs the store holds in each status.
    pub async fn count_by_status(&self) -> Result<Vec<(RunStatus, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM runs GROUP BY status")
            .fetch_all(&self.pool)
            .await
            .map_err(failed("counting runs"))?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let status: String = row.try_get("status").ok()?;
                let count: i64 = row.try_get("n").ok()?;
                Some((RunStatus::parse(&status)?, count))
            })
            .collect())
    }

    /// Runs in these statuses, oldest first (for restart recovery).
    pub async fn runs_with_status(&self, status: RunStatus) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = $1 ORDER BY ord"
        )))
        .bind(status.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(failed("reading runs by status"))?;
        rows.iter().map(run_from_row).collect()
    }

    /// All events of one run, in order.
    pub async fn run_events(&self, run_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = self
            .replay(
                &Replay::Run {
                    run_id,
                    after_run_seq: 0,
                },
                u32::MAX,
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| StoredEvent {
                seq: u64::try_from(row.run_seq).unwrap_or(0),
                data: serde_json::from_str(&row.data).unwrap_or(serde_json::Value::Null),
                event: row.event,
                ts: Some(row.ts),
            })
            .collect())
    }

    /// Up to `limit` events after a point, in order: what a stream replays.
    pub async fn replay(
        &self,
        replay: &Replay<'_>,
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError> {
        let mut query = Sql::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE "));
        match replay {
            Replay::All { after_seq, runs } => {
                query.push("seq > ").push_bind(*after_seq);
                if let Some(runs) = runs {
                    query.push(" AND run_id IN (");
                    let mut list = query.separated(", ");
                    for run in *runs {
                        list.push_bind(storable(run));
                    }
                    query.push(") ORDER BY seq");
                } else {
                    query.push(" ORDER BY seq");
                }
            }
            Replay::Run {
                run_id,
                after_run_seq,
            } => {
                query
                    .push("run_id = ")
                    .push_bind(storable(run_id))
                    .push(" AND run_seq > ")
                    .push_bind(*after_run_seq)
                    .push(" ORDER BY run_seq");
            }
        }
        query.push(" LIMIT ").push_bind(i64::from(limit));
        let rows = query
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(failed("reading events"))?;
        rows.iter()
            .map(|row| {
                Ok(EventRow {
                    seq: row.try_get(0)?,
                    run_id: row.try_get(1)?,
                    run_seq: row.try_get(2)?,
                    event: row.try_get(3)?,
                    data: row.try_get(4)?,
                    ts: row.try_get(5)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(failed("reading events"))
    }
}

pub(super) fn run_from_row(row: &AnyRow) -> Result<RunRow, StoreError> {
    let read = || -> Result<RunRow, sqlx::Error> {
        let status: String = row.try_get("status")?;
        let tokens_out: i64 = row.try_get("tokens_out")?;
        let iteration: Option<i64> = row.try_get("iteration")?;
        Ok(RunRow {
            summary: RunSummary {
                run_id: row.try_get("run_id")?,
                task: row.try_get("task")?,
                status: RunStatus::parse(&status).unwrap_or(RunStatus::Unknown),
                created_at: Some(row.try_get("created_at")?),
                started_at: row.try_get("started_at")?,
                finished_at: row.try_get("finished_at")?,
                tokens_out: u64::try_from(tokens_out).unwrap_or(0),
                agent: row.try_get("agent")?,
                iteration: iteration.and_then(|i| u32::try_from(i).ok()),
                snippet: row.try_get("snippet")?,
                worker: row.try_get("worker")?,
                launched_by: row.try_get("launched_by")?,
            },
            ord: row.try_get("ord")?,
            params: row.try_get("params")?,
            owner: row.try_get("owner")?,
        })
    };
    read().map_err(failed("reading a run"))
}
