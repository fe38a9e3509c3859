//! Pruning: finished runs past the retention limits removed with their events, a chunk per
//! transaction, and the mark of what was removed kept for streams that resume below it.

use sqlx::Row as _;

use super::writes::raise_mark;
use super::{FINISHED_SQL, Pruned, Retention, Sql, Store, StoreError, failed};

/// Runs removed per pruning transaction, so a large backlog never holds the writer for long.
const PRUNE_CHUNK: i64 = 200;

impl Store {
    /// Removes finished runs beyond the retention limits, with their events, in small
    /// transactions. `now` is the current time (RFC 3339), passed in for tests.
    pub async fn prune(
        &self,
        retention: Retention,
        now: time::OffsetDateTime,
    ) -> Result<Pruned, StoreError> {
        // A limit reaching before the calendar's start keeps everything: no run is that old.
        let cutoff = retention.days.and_then(|days| {
            now.checked_sub(time::Duration::days(i64::from(days)))
                .map(runboard_api::clock::format_rfc3339)
        });
        let keep = retention
            .runs
            .map(|runs| i64::try_from(runs).unwrap_or(i64::MAX));
        let mut total = Pruned::default();
        if cutoff.is_none() && keep.is_none() {
            return Ok(total);
        }
        loop {
            // On SQLite the write lock is taken first: a transaction that reads, then writes
            // is refused its upgrade (SQLITE_BUSY_SNAPSHOT, no waiting helps) whenever the
            // writer committed in between, which under load is always.
            let tx = if self.is_shared() {
                self.pool.begin().await
            } else {
                self.pool.begin_with("BEGIN IMMEDIATE").await
            };
            let mut tx = tx.map_err(failed("starting to prune"))?;
            let mut select = Sql::new(format!(
                "SELECT run_id FROM runs WHERE status IN {FINISHED_SQL} AND (1 = 0"
            ));
            if let Some(cutoff) = &cutoff {
                select.push(" OR finished_at < ").push_bind(cutoff.clone());
            }
            if let Some(keep) = keep {
                // Older than the keep-th newest finished run (no such run: nothing to cut).
                select.push(format!(
                    " OR ord <= (SELECT ord FROM runs WHERE status IN {FINISHED_SQL} \
                     ORDER BY ord DESC LIMIT 1 OFFSET "
                ));
                select.push_bind(keep).push(")");
            }
            select.push(") ORDER BY ord LIMIT ").push_bind(PRUNE_CHUNK);
            let victims: Vec<String> = select
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(failed("choosing runs to prune"))?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()
                .map_err(failed("choosing runs to prune"))?;
            if victims.is_empty() {
                return Ok(total);
            }
            let in_list = |query: &mut Sql| {
                query.push(" WHERE run_id IN (");
                let mut list = query.separated(", ");
                for run_id in &victims {
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
            runs.build()
                .execute(&mut *tx)
                .await
                .map_err(failed("pruning runs"))?;
            tx.commit().await.map_err(failed("committing a prune"))?;
            total.runs += victims.len() as u64;
            total.events += removed.rows_affected();
        }
    }
}
