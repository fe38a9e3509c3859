//! Pruning: finished runs past the retention limits removed with their events, a chunk per
//! transaction, and the mark of what was removed kept for streams that resume below it.

use sqlx::Row as _;

use super::writes::raise_mark;
use super::{FINISHED_SQL, Pruned, Retention, Sql, Store, StoreError, failed};

/// Runs removed per pruning transaction, so a large backlog never holds the writer for long.
const PRUNE_CHUNK: usize = 200;

/// Runs chosen for removal per read. Choosing sorts the finished runs (no index orders them
/// across the finished statuses), so one read serves many transactions: read per chunk, the
/// sorting grew with the runs kept and made each recorded call dearer the longer a board ran
/// at fleet rates.
const PRUNE_READ: i64 = 10_000;

/// What a pass removes: finished runs older than a cut, fixed when the pass starts. Runs that
/// finish during the pass are the next pass's.
struct Cuts {
    /// Finished before this time (RFC 3339).
    finished_before: Option<String>,
    /// At or below this `ord`: the newest finished run beyond the number kept.
    ord_at_most: Option<i64>,
}

impl Store {
    /// Removes finished runs beyond the retention limits, with their events, in small
    /// transactions. `now` is the current time (RFC 3339), passed in for tests.
    pub async fn prune(
        &self,
        retention: Retention,
        now: time::OffsetDateTime,
    ) -> Result<Pruned, StoreError> {
        let mut total = Pruned::default();
        let Some(cuts) = self.cuts(retention, now).await? else {
            return Ok(total);
        };
        loop {
            let victims = self.victims(&cuts).await?;
            if victims.is_empty() {
                return Ok(total);
            }
            for chunk in victims.chunks(PRUNE_CHUNK) {
                let removed = self.remove(chunk).await?;
                total.runs += removed.runs;
                total.events += removed.events;
            }
        }
    }

    /// The pass's cuts, or `None` when nothing can be past them.
    async fn cuts(
        &self,
        retention: Retention,
        now: time::OffsetDateTime,
    ) -> Result<Option<Cuts>, StoreError> {
        // A limit reaching before the calendar's start keeps everything: no run is that old.
        let finished_before = retention.days.and_then(|days| {
            now.checked_sub(time::Duration::days(i64::from(days)))
                .map(runboard_api::clock::format_rfc3339)
        });
        let ord_at_most = match retention.runs {
            // Fewer finished runs than are kept: no such run, nothing to cut.
            Some(keep) => {
                let mut select = Sql::new(format!(
                    "SELECT ord FROM runs WHERE status IN {FINISHED_SQL} \
                     ORDER BY ord DESC LIMIT 1 OFFSET "
                ));
                select.push_bind(i64::try_from(keep).unwrap_or(i64::MAX));
                select
                    .build()
                    .fetch_optional(&self.pool)
                    .await
                    .and_then(|row| row.map(|row| row.try_get::<i64, _>(0)).transpose())
                    .map_err(failed("choosing runs to prune"))?
            }
            None => None,
        };
        Ok(
            (finished_before.is_some() || ord_at_most.is_some()).then_some(Cuts {
                finished_before,
                ord_at_most,
            }),
        )
    }

    /// Up to [`PRUNE_READ`] finished runs past `cuts`, oldest first. Read outside the
    /// removing transactions: a finished run stays finished, and one removed meanwhile (by
    /// another instance sharing the database) is simply not removed twice.
    async fn victims(&self, cuts: &Cuts) -> Result<Vec<String>, StoreError> {
        let mut select = Sql::new(format!(
            "SELECT run_id FROM runs WHERE status IN {FINISHED_SQL} AND (1 = 0"
        ));
        if let Some(cutoff) = &cuts.finished_before {
            select.push(" OR finished_at < ").push_bind(cutoff.clone());
        }
        if let Some(ord) = cuts.ord_at_most {
            select.push(" OR ord <= ").push_bind(ord);
        }
        select.push(") ORDER BY ord LIMIT ").push_bind(PRUNE_READ);
        select
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(failed("choosing runs to prune"))?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(failed("choosing runs to prune"))
    }

    /// Removes `victims` with their events in one transaction, raising the pruned mark to
    /// their newest event.
    async fn remove(&self, victims: &[String]) -> Result<Pruned, StoreError> {
        // On SQLite the write lock is taken first: a transaction that reads, then writes is
        // refused its upgrade (SQLITE_BUSY_SNAPSHOT, no waiting helps) whenever the writer
        // committed in between, which under load is always.
        let _turn = self.write_turn().await;
        let tx = if self.is_shared() {
            self.pool.begin().await
        } else {
            self.pool.begin_with("BEGIN IMMEDIATE").await
        };
        let mut tx = tx.map_err(failed("starting to prune"))?;
        let in_list = |query: &mut Sql| {
            query.push(" WHERE run_id IN (");
            let mut list = query.separated(", ");
            for run_id in victims {
                list.push_bind(run_id.clone());
            }
            query.push(")");
        };
        let mut highest = Sql::new("SELECT COALESCE(MAX(seq), 0) FROM events");
        in_list(&mut highest);
        let highest: i64 = highest
            .build()
            .fetch_one(&mut *tx)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(failed("pruning"))?;
        raise_mark(&mut tx, "pruned_seq", highest)
            .await
            .map_err(failed("pruning"))?;
        let mut events = Sql::new("DELETE FROM events");
        in_list(&mut events);
        let removed = events
            .build()
            .execute(&mut *tx)
            .await
            .map_err(failed("pruning events"))?;
        let mut runs = Sql::new("DELETE FROM runs");
        in_list(&mut runs);
        let runs = runs
            .build()
            .execute(&mut *tx)
            .await
            .map_err(failed("pruning runs"))?;
        tx.commit().await.map_err(failed("committing a prune"))?;
        Ok(Pruned {
            runs: runs.rows_affected(),
            events: removed.rows_affected(),
        })
    }
}

#[cfg(test)]
mod tests {
    use runboard_api::{EventKind, RunStatus, RunSummary};

    use crate::store::{DbLocation, EventRow, Retention, RunRow, Store};

    /// `count` finished runs, each with its `run_created` event, numbered from `first`.
    fn finished_runs(first: usize, count: usize) -> (Vec<EventRow>, Vec<RunRow>) {
        (first..first + count)
            .map(|n| {
                let run_id = format!("run-{n:08}");
                let event = EventRow {
                    seq: 0,
                    run_id: run_id.clone(),
                    run_seq: 1,
                    event: EventKind::RunCreated.as_str().to_owned(),
                    data: "{}".to_owned(),
                    ts: "2026-12-07T00:00:00Z".to_owned(),
                };
                let run = RunRow {
                    summary: RunSummary::new(run_id, "pruned".to_owned(), RunStatus::Completed),
                    ord: 0,
                    params: "{}".to_owned(),
                    owner: Some("this".to_owned()),
                };
                (event, run)
            })
            .unzip()
    }

    async fn runs_left(store: &Store) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM runs")
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }

    /// A batch handed to the writer while a long pass prunes the file gets in after the
    /// transaction then running, not after the pass: in SQLite's busy handler it slept and
    /// kept waking to the pass's next transaction.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_during_a_long_prune_goes_in_between_its_transactions() {
        const RUNS: usize = 8_000;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&DbLocation::File(dir.path().join("prune.db")))
            .await
            .unwrap();
        for first in (0..RUNS).step_by(1_000) {
            let (mut events, mut runs) = finished_runs(first, 1_000);
            store
                .write_batch(&mut events, &mut runs, "this")
                .await
                .unwrap();
        }
        let pruning = store.clone();
        let pass = tokio::spawn(async move {
            let keep_none = Retention {
                days: None,
                runs: Some(0),
            };
            pruning
                .prune(keep_none, time::OffsetDateTime::now_utc())
                .await
                .unwrap()
        });
        let before = loop {
            let left = runs_left(&store).await;
            if left < i64::try_from(RUNS).unwrap() {
                break left;
            }
            tokio::task::yield_now().await;
        };
        // From the count just read to the write taking its turn, the pass commits the
        // transaction it was in at most, and the write waits for the one then running.
        let (mut events, mut runs) = finished_runs(RUNS, 1);
        store
            .write_batch(&mut events, &mut runs, "this")
            .await
            .unwrap();
        let left = runs_left(&store).await;
        assert!(
            left >= before - 400,
            "the write waited for the pass ({before} runs left when it came, {left} when it \
             went in)"
        );
        let pruned = pass.await.unwrap();
        assert_eq!(pruned.runs, RUNS as u64);
        assert_eq!(runs_left(&store).await, 1);
    }
}
