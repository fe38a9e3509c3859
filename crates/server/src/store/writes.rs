//! Writing: a batch of events and run rows in one transaction, numbered under the `last_seq`
//! mark's row lock (ARCHITECTURE.md, "Order without loss"), and whether a batch was stored.

use sqlx::{AnyConnection, Connection as _, Row as _};

use super::{
    EVENT_COLUMNS, EVENTS_CHANNEL, EventRow, RUN_COLUMNS, RunRow, Sql, Store, StoreError, Written,
    failed, insert_chunks, storable, storable_opt,
};

impl Store {
    /// Writes a batch in one transaction: new events numbered by the store (their `seq`, and the
    /// `ord` of new runs, are set here), then the changed runs. `owner` is this instance: on a
    /// shared store, events and rows of runs another instance took over are left out and
    /// returned in [`Written::lost`]; other instances are woken by a notification.
    pub async fn write_batch(
        &self,
        events: &mut Vec<EventRow>,
        runs: &mut Vec<RunRow>,
        owner: &str,
    ) -> Result<Written, StoreError> {
        let _turn = self.write_turn().await;
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(failed("starting a write"))?;
        let shared = self.is_shared().then_some(owner);
        let written = write_rows(&mut connection, events, runs, shared).await;
        if written.is_err() && !self.in_memory {
            // A COMMIT that fails (a full disk) can leave SQLite's transaction open on this
            // connection; back in the pool it would hold the write lock and take later writes
            // into a transaction that never commits. Closing it rolls everything back.
            let _ = connection.detach().close().await;
        }
        written
    }

    /// After a write failed: whether the batch was committed all the same (the connection
    /// was lost after the COMMIT was sent). If so, its events get the sequence numbers they
    /// were stored with, and the new runs their order, and it must not be written again.
    pub async fn was_stored(
        &self,
        events: &mut [EventRow],
        runs: &mut [RunRow],
    ) -> Result<bool, StoreError> {
        let Some(first) = events.first() else {
            return Ok(false);
        };
        let found: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM events WHERE run_id = $1 AND run_seq = $2")
                .bind(storable(&first.run_id))
                .bind(first.run_seq)
                .fetch_optional(&self.pool)
                .await
                .map_err(failed("checking a write"))?;
        let Some(first_seq) = found else {
            return Ok(false);
        };
        // A batch is numbered in order from its first event.
        number_rows(events, runs, first_seq);
        Ok(true)
    }
}

/// Writes a batch in one transaction: the `last_seq` mark locked first (every writer queues
/// there, so transactions commit in sequence order), runs taken over by another instance
/// left out (`shared`: this instance's id), sequence numbers given, new events, the changed
/// runs, the marks, and on a shared store a notification sent at commit.
async fn write_rows(
    connection: &mut AnyConnection,
    events: &mut Vec<EventRow>,
    runs: &mut Vec<RunRow>,
    shared: Option<&str>,
) -> Result<Written, StoreError> {
    let mut tx = connection
        .begin()
        .await
        .map_err(failed("starting a write"))?;
    // An UPDATE, not a SELECT: it takes the row lock on PostgreSQL and SQLite's write lock,
    // held until this transaction ends, before anything is read.
    let last_seq: i64 =
        sqlx::query_scalar("UPDATE meta SET value = value WHERE key = 'last_seq' RETURNING value")
            .fetch_one(&mut *tx)
            .await
            .map_err(failed("taking the sequence"))?;
    let mut written = Written::default();
    if let Some(me) = shared {
        written.lost = foreign_runs(&mut tx, events, me).await?;
        if !written.lost.is_empty() {
            events.retain(|event| !written.lost.contains(&event.run_id));
            runs.retain(|run| !written.lost.contains(&run.summary.run_id));
        }
    }
    number_rows(events, runs, last_seq + 1);
    insert_events(&mut tx, events, shared.is_some()).await?;
    upsert_runs(&mut tx, runs, shared.is_some()).await?;
    if let Some(last) = events.last() {
        sqlx::query("UPDATE meta SET value = $1 WHERE key = 'last_seq'")
            .bind(last.seq)
            .execute(&mut *tx)
            .await
            .map_err(failed("writing the sequence marks"))?;
        if shared.is_some() {
            // Delivered to every listening instance when (and only if) this commits.
            sqlx::query("SELECT pg_notify($1, $2)") // PostgreSQL only
                .bind(EVENTS_CHANNEL)
                .bind(last.seq.to_string())
                .execute(&mut *tx)
                .await
                .map_err(failed("notifying the other instances"))?;
        }
    }
    if let Some(ord) = runs.iter().map(|run| run.ord).max() {
        raise_mark(&mut tx, "last_ord", ord)
            .await
            .map_err(failed("writing the sequence marks"))?;
    }
    tx.commit().await.map_err(failed("committing a write"))?;
    Ok(written)
}

/// A statement of this store's dialect: one server writes a SQLite file (a shared store is
/// PostgreSQL's), where `?` binds fastest.
fn statement(shared: bool, text: String) -> Sql {
    if shared {
        Sql::new(text)
    } else {
        Sql::anonymous(text)
    }
}

/// Inserts a batch's events, in chunks of a few statement sizes.
async fn insert_events(
    connection: &mut AnyConnection,
    events: &[EventRow],
    shared: bool,
) -> Result<(), StoreError> {
    for chunk in insert_chunks(events) {
        let mut insert = statement(shared, format!("INSERT INTO events ({EVENT_COLUMNS}) "));
        insert.push_values(chunk, |mut row, event| {
            row.push_bind(event.seq)
                .push_bind(storable(&event.run_id))
                .push_bind(event.run_seq)
                .push_bind(storable(&event.event))
                .push_bind(storable(&event.data))
                .push_bind(storable(&event.ts));
        });
        insert
            .build()
            .execute(&mut *connection)
            .await
            .map_err(failed("writing events"))?;
    }
    Ok(())
}

/// Inserts or updates a batch's runs, in chunks of a few statement sizes.
async fn upsert_runs(
    connection: &mut AnyConnection,
    runs: &[RunRow],
    shared: bool,
) -> Result<(), StoreError> {
    for chunk in insert_chunks(runs) {
        let mut upsert = statement(shared, format!("INSERT INTO runs ({RUN_COLUMNS}) "));
        upsert.push_values(chunk, |mut row, run| {
            let s = &run.summary;
            row.push_bind(storable(&s.run_id))
                .push_bind(run.ord)
                .push_bind(storable(&s.task))
                .push_bind(storable(&run.params))
                .push_bind(s.status.as_str().to_owned())
                .push_bind(storable(s.created_at.as_deref().unwrap_or_default()))
                .push_bind(storable_opt(s.started_at.as_deref()))
                .push_bind(storable_opt(s.finished_at.as_deref()))
                .push_bind(i64::try_from(s.tokens_out).unwrap_or(i64::MAX))
                .push_bind(storable_opt(s.agent.as_deref()))
                .push_bind(s.iteration.map(i64::from))
                .push_bind(storable_opt(s.snippet.as_deref()))
                .push_bind(storable_opt(run.owner.as_deref()))
                .push_bind(storable_opt(s.worker.as_deref()))
                .push_bind(storable_opt(s.launched_by.as_deref()));
        });
        // The owner changes only by a take-over, never by a write of the run's events.
        upsert.push(
            " ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, \
             started_at = excluded.started_at, finished_at = excluded.finished_at, \
             tokens_out = excluded.tokens_out, agent = excluded.agent, \
             iteration = excluded.iteration, snippet = excluded.snippet",
        );
        upsert
            .build()
            .execute(&mut *connection)
            .await
            .map_err(failed("writing runs"))?;
    }
    Ok(())
}

/// Numbers a batch's events from `first_seq` in order, and gives each new run (`ord` 0) the
/// sequence of its `run_created` event as its order.
fn number_rows(events: &mut [EventRow], runs: &mut [RunRow], first_seq: i64) {
    for (seq, event) in (first_seq..).zip(events.iter_mut()) {
        event.seq = seq;
    }
    if runs.iter().all(|run| run.ord != 0) {
        return;
    }
    // One pass over the batch: a batch at fleet rates holds hundreds of new runs among
    // thousands of events, and a search per run was quadratic.
    let created: std::collections::HashMap<&str, i64> = events
        .iter()
        .filter(|event| event.event == runboard_api::EventKind::RunCreated.as_str())
        .map(|event| (event.run_id.as_str(), event.seq))
        .collect();
    for run in runs.iter_mut().filter(|run| run.ord == 0) {
        if let Some(seq) = created.get(run.summary.run_id.as_str()) {
            run.ord = *seq;
        }
    }
}

/// The runs of this batch that another instance owns now.
async fn foreign_runs(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    events: &[EventRow],
    me: &str,
) -> Result<Vec<String>, StoreError> {
    let mut ids: Vec<&str> = events.iter().map(|event| event.run_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = Sql::new("SELECT run_id FROM runs WHERE (owner IS NULL OR owner <> ");
    query.push_bind(me.to_owned()).push(") AND run_id IN (");
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(storable(id));
    }
    query.push(")");
    query
        .build()
        .fetch_all(&mut **tx)
        .await
        .and_then(|rows| rows.iter().map(|row| row.try_get(0)).collect())
        .map_err(failed("checking which runs are this instance's"))
}

/// Raises a high-water mark in `meta` to `value` (never lowers it).
pub(super) async fn raise_mark(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    key: &str,
    value: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET \
         value = CASE WHEN excluded.value > meta.value THEN excluded.value ELSE meta.value END",
    )
    .bind(key.to_owned())
    .bind(value)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}
