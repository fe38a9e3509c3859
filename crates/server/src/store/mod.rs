//! Runs and events in SQL. One code path through sqlx's `Any` driver: SQLite (a file, or memory
//! for tests), or PostgreSQL by URL, which several servers can share. Queries use only portable
//! SQL: `$n` placeholders, `INSERT … ON CONFLICT … DO UPDATE`, `RETURNING`, and no
//! engine-specific types; the few PostgreSQL-only statements (notifications) are marked.
//!
//! Global sequence numbers are handed out inside the write transaction, under the row lock of
//! the `last_seq` mark, so write transactions commit in sequence order on every engine and
//! with any number of writers (see ARCHITECTURE.md, "Order without loss").

pub(crate) mod health;
mod instances;
pub(crate) mod retention;
mod sql;

pub use instances::{InstanceRow, InstanceState, TakenOver};

use std::path::PathBuf;
use std::sync::Once;

use sqlx::any::{AnyPoolOptions, AnyRow};
// The only dynamic SQL is built from this file's column-list constants; values are bound.
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Connection as _, Executor as _, Row as _};

use runboard_api::{RunStatus, RunSummary, StoredEvent};
use sql::Sql;

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbLocation {
    /// A SQLite file (created if missing).
    File(PathBuf),
    /// A private in-memory SQLite database that lives as long as the server.
    Memory,
    /// Any database URL sqlx understands (`sqlite:…`, `postgres://…`).
    Url(String),
}

/// The engine behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite: one server per database.
    Sqlite,
    /// PostgreSQL: any number of servers share the database and act as one board.
    Postgres,
}

impl Backend {
    /// The engine a URL names.
    fn of(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }

    /// Its name for people and `/api/health`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgresql",
        }
    }
}

impl DbLocation {
    /// The default file: `runboard/runboard.db` in the user's data directory.
    pub fn default_file() -> Self {
        let base = dirs::data_dir().unwrap_or_else(|| PathBuf::from("."));
        Self::File(base.join("runboard").join("runboard.db"))
    }

    /// Reads `--db`: `:memory:`, a URL with a scheme, or a file path.
    pub fn parse(text: &str) -> Self {
        if text == ":memory:" {
            Self::Memory
        } else if text.contains("://") || text.starts_with("sqlite:") {
            Self::Url(text.to_owned())
        } else {
            Self::File(PathBuf::from(text))
        }
    }
}

impl std::fmt::Display for DbLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Memory => write!(f, ":memory:"),
            Self::Url(url) => write!(f, "{}", without_password(url)),
        }
    }
}

/// The URL with any password replaced by `***`: locations are printed and logged.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => url.to_owned(),
    }
}

/// A failed database operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A query failed, with what was being done.
    #[error("database: {doing}: {source}")]
    Query {
        /// What the store was doing.
        doing: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The database cannot be used at all (found at start): it names the file and the problem.
    #[error("database {location}: {problem}")]
    Unusable {
        /// The file or URL.
        location: String,
        /// What is wrong, and what to do about it.
        problem: String,
    },
}

impl StoreError {
    /// A short reason for people: the driver's message without our prefix.
    pub fn reason(&self) -> String {
        match self {
            Self::Query { source, .. } => source.to_string(),
            Self::Unusable { problem, .. } => problem.clone(),
        }
    }
}

fn failed(doing: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { doing, source }
}

/// An event as stored: its global and per-run sequence, type, JSON data and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// Global sequence: the `id:` of `/api/events`.
    pub seq: i64,
    /// The run.
    pub run_id: String,
    /// Sequence within the run, from 1: the `id:` of the per-run stream.
    pub run_seq: i64,
    /// The event type.
    pub event: String,
    /// The JSON object, serialized.
    pub data: String,
    /// When it was emitted (RFC 3339).
    pub ts: String,
}

/// A run row as written: the summary plus its creation order and parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    /// The summary fields.
    pub summary: RunSummary,
    /// Creation order, for newest-first paging: the global sequence of its `run_created`
    /// event, given by the store when the run is first written (0 until then).
    pub ord: i64,
    /// Generator parameters as JSON.
    pub params: String,
    /// The server instance that runs it (`None` for runs stored before instances were kept).
    pub owner: Option<String>,
}

/// Which runs a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs created before the run of this order (paging).
    pub before_ord: Option<i64>,
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// Only runs made by this worker.
    pub worker: Option<String>,
}

/// A worker's runs as the store counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerTotals {
    /// The worker.
    pub worker: String,
    /// Runs completed.
    pub done: u64,
    /// Runs failed.
    pub failed: u64,
    /// Runs cancelled.
    pub cancelled: u64,
    /// Runs queued or running.
    pub in_flight: u64,
    /// Tokens over all its runs.
    pub tokens_out: u64,
    /// The newest creation or end of one of its runs.
    pub last_seen: Option<String>,
}

/// What the store knew at startup: where the sequences stand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sequences {
    /// The highest global sequence ever stored (0: none), pruned events included, so an id is
    /// never handed out twice.
    pub last_seq: i64,
    /// The highest run order ever stored (0: none).
    pub last_ord: i64,
}

/// Which finished runs retention removes. Runs that are queued or running are never pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Finished runs older than this many days (by `finished_at`) go; `None` keeps them.
    pub days: Option<u32>,
    /// Only the newest this many finished runs stay; `None` keeps them all.
    pub runs: Option<u64>,
}

/// What one pruning pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Runs removed.
    pub runs: u64,
    /// Events removed.
    pub events: u64,
}

/// Which events a replay reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay<'a> {
    /// Every run's events after this global sequence, optionally only some runs.
    All {
        /// Global sequence to start after.
        after_seq: i64,
        /// Only these runs, when given.
        runs: Option<&'a [String]>,
    },
    /// One run's events after this run sequence.
    Run {
        /// The run.
        run_id: &'a str,
        /// Run sequence to start after.
        after_run_seq: i64,
    },
}

/// What a write did besides storing the batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Runs whose events and rows were left out because another instance owns them now (it
    /// took them over when this one's lease expired): this instance must stop them.
    pub lost: Vec<String>,
}

/// The database behind the reference server.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// A memory database lives in its one connection, which must never be closed.
    in_memory: bool,
    backend: Backend,
    /// The URL it was opened with (notifications need a connection of their own).
    url: String,
}

/// Version 1 of the schema: the tables as they were before versions were kept (a database
/// without a version that has them is at version 1).
const SCHEMA_V1: [&str; 6] = [
    "CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        ord BIGINT NOT NULL,
        task TEXT NOT NULL,
        params TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        tokens_out BIGINT NOT NULL,
        agent TEXT,
        iteration BIGINT,
        snippet TEXT
    )",
    "CREATE UNIQUE INDEX IF NOT EXISTS runs_by_ord ON runs (ord)",
    "CREATE TABLE IF NOT EXISTS events (
        seq BIGINT PRIMARY KEY,
        run_id TEXT NOT NULL,
        run_seq BIGINT NOT NULL,
        event TEXT NOT NULL,
        data TEXT NOT NULL,
        ts TEXT NOT NULL
    )",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_by_run ON events (run_id, run_seq)",
    // High-water marks (`last_seq`, `last_ord`, `pruned_seq`) that outlive pruned rows.
    "CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, ord)",
];

/// Version 2: servers sharing one database. Each run has an owner (the instance that runs
/// it), instances keep a heartbeat, and the `last_seq` mark always exists, as writers take
/// their sequence numbers from it.
const SCHEMA_V2: [&str; 4] = [
    "ALTER TABLE runs ADD COLUMN owner TEXT",
    "CREATE TABLE IF NOT EXISTS instances (
        instance_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        started_at TEXT NOT NULL,
        heartbeat_at TEXT NOT NULL,
        beats BIGINT NOT NULL,
        state TEXT NOT NULL,
        lease_ms BIGINT NOT NULL,
        note TEXT
    )",
    "INSERT INTO meta (key, value) SELECT 'last_seq', COALESCE(MAX(seq), 0) FROM events \
     WHERE 1 = 1 ON CONFLICT (key) DO NOTHING",
    "CREATE INDEX IF NOT EXISTS runs_by_owner ON runs (owner, status)",
];

/// Version 3: the worker that made each run (`GET /api/runs?worker=`, `GET /api/workers`).
const SCHEMA_V3: [&str; 2] = [
    "ALTER TABLE runs ADD COLUMN worker TEXT",
    "CREATE INDEX IF NOT EXISTS runs_by_worker ON runs (worker, ord)",
];

/// The schema's migrations, in order: a database at version N gets N+1 and later applied at
/// start, each in its own transaction with the version it reaches. Append; never edit one that
/// shipped.
const MIGRATIONS: [&[&str]; 3] = [&SCHEMA_V1, &SCHEMA_V2, &SCHEMA_V3];

/// The channel that wakes other instances when events are committed (payload: the last
/// sequence of the write).
pub const EVENTS_CHANNEL: &str = "runboard_events";

/// The channel that asks the instance running a run to cancel it (payload: `owner run_id`).
pub const CANCEL_CHANNEL: &str = "runboard_cancel";

/// The schema version this build writes: the number of migrations.
#[allow(clippy::cast_possible_wrap)] // A handful of migrations.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long start-up may take to open and check the database before it is refused.
pub const OPEN_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Finished statuses, as SQL literals (constants, never user input).
const FINISHED_SQL: &str = "('completed', 'failed', 'cancelled')";

/// Runs removed per pruning transaction, so a large backlog never holds the writer for long.
const PRUNE_CHUNK: i64 = 200;

/// Rows per multi-row INSERT, largest first: a batch is cut into these sizes only, so the
/// engine sees a handful of statement shapes that stay prepared, rather than a new statement
/// (parsed and planned again, thousands of placeholders long) for every batch's remainder.
/// 256 rows of 13 parameters stay far below every engine's limit.
const INSERT_SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// `rows` cut into runs of [`INSERT_SIZES`], in order.
fn insert_chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = INSERT_SIZES.into_iter().find(|size| *size <= rows.len())?;
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        Some(chunk)
    })
}

const EVENT_COLUMNS: &str = "seq, run_id, run_seq, event, data, ts";
const RUN_COLUMNS: &str = "run_id, ord, task, params, status, created_at, started_at, \
                           finished_at, tokens_out, agent, iteration, snippet, owner, worker";

impl Store {
    /// Opens (creating if needed) the database and its schema, checks it (`quick_check`) and
    /// proves it writable, all within [`OPEN_LIMIT`]. A file that is not a database, is damaged,
    /// locked or read-only is refused with a message naming it. SQLite runs in WAL mode.
    pub async fn open(location: &DbLocation) -> Result<Self, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let unusable = |problem: String| StoreError::Unusable {
            location: location.to_string(),
            problem,
        };
        match tokio::time::timeout(OPEN_LIMIT, Self::open_checked(location)).await {
            Ok(Ok(store)) => Ok(store),
            Ok(Err(StoreError::Query { doing, source })) => Err(unusable(
                filesystem_reason(location)
                    .unwrap_or_else(|| describe_open_failure(doing, &source)),
            )),
            Ok(Err(other)) => Err(other),
            Err(_) => Err(unusable(format!(
                "could not be opened and checked within {} s (is another process holding a \
                 lock on it, or is the disk unresponsive?)",
                OPEN_LIMIT.as_secs()
            ))),
        }
    }

    async fn open_checked(location: &DbLocation) -> Result<Self, StoreError> {
        let (url, options) = match location {
            DbLocation::Memory => (
                "sqlite::memory:".to_owned(),
                // One connection that never closes: each SQLite memory connection is its own db.
                AnyPoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None),
            ),
            DbLocation::File(path) => {
                if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| StoreError::Query {
                        doing: "creating the database directory",
                        source: sqlx::Error::Io(e),
                    })?;
                }
                (
                    format!("sqlite://{}?mode=rwc", path.display()),
                    AnyPoolOptions::new().max_connections(4),
                )
            }
            DbLocation::Url(url) => {
                // A PostgreSQL server answers many readers at once; SQLite has one file.
                let connections = match Backend::of(url) {
                    Backend::Postgres => 10,
                    Backend::Sqlite => 4,
                };
                (
                    url.clone(),
                    AnyPoolOptions::new().max_connections(connections),
                )
            }
        };
        let backend = Backend::of(&url);
        let is_sqlite = backend == Backend::Sqlite;
        // Checked on a connection of its own first: the pool would retry a failing connection
        // until its timeout and report only "pool timed out", hiding the real problem.
        let mut probe = AnyConnection::connect(&url)
            .await
            .map_err(failed("opening the database"))?;
        if is_sqlite {
            sqlite_setup(&mut probe)
                .await
                .map_err(failed("opening the database"))?;
            check_integrity(&mut probe, location).await?;
        } else {
            // Servers starting together on a new database must not migrate it twice at once.
            sqlx::query("SELECT pg_advisory_lock(7201)") // PostgreSQL only
                .execute(&mut probe)
                .await
                .map_err(failed("locking the schema"))?;
        }
        migrate(&mut probe, location).await?;
        // Prove it can be written now, not at the first run: a read-only file or filesystem,
        // or a full disk, is refused at start.
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('write_probe', 1) \
             ON CONFLICT (key) DO UPDATE SET value = meta.value + 1",
        )
        .execute(&mut probe)
        .await
        .map_err(failed("writing a test row"))?;
        let _ = probe.close().await;
        let pool = options
            // A request waits this long for a connection, not the driver's 30 s default.
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if is_sqlite {
                        sqlite_setup(connection).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(failed("opening the database"))?;
        // A memory database is new in the pool's own connection.
        let mut first = pool
            .acquire()
            .await
            .map_err(failed("opening the database"))?;
        migrate(&mut first, location).await?;
        drop(first);
        Ok(Self {
            pool,
            in_memory: matches!(location, DbLocation::Memory),
            backend,
            url,
        })
    }

    /// The engine.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether other servers may share this database (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// The URL it was opened with.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Where the sequences stand, to continue them after a restart.
    pub async fn sequences(&self) -> Result<Sequences, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM events), \
                    (SELECT COALESCE(MAX(ord), 0) FROM runs), \
                    (SELECT COALESCE(MAX(value), 0) FROM meta WHERE key = 'last_seq'), \
                    (SELECT COALESCE(MAX(value), 0) FROM meta WHERE key = 'last_ord')",
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
            .bind(run_id)
            .fetch_one(&self.pool)
            .await
            .map_err(failed("reading a run's sequence"))?;
        row.try_get(0).map_err(failed("reading a run's sequence"))
    }

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
                .bind(first.run_id.clone())
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
            query.push(" AND worker = ").push_bind(worker.clone());
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
        .bind(run_id)
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
                        list.push_bind(run.clone());
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
                    .push_bind((*run_id).to_owned())
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

    /// Copies what the write-ahead log holds into the database file without holding up the
    /// writer (SQLite files; nothing to do elsewhere). Run now and then beside it.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if self.backend != Backend::Sqlite || self.in_memory {
            return Ok(());
        }
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("checkpointing the write-ahead log"))?;
        Ok(())
    }

    /// Closes the pool, waiting for writes in progress.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// WAL lets readers run beside the one writer; NORMAL sync is durable across a crash of the
/// process, which is what the restart tests need. Checkpoints are [`Store::checkpoint`]'s,
/// beside the writer: the automatic one ran inside whichever commit crossed 1,000 pages and
/// held the writer for tens of milliseconds at fleet rates (a third of its time in the proxy
/// benchmark). The automatic one stays, at 16,384 pages (64 MiB), as a bound on the file
/// should the passive ones not keep up.
async fn sqlite_setup(connection: &mut AnyConnection) -> Result<(), sqlx::Error> {
    connection.execute("PRAGMA journal_mode = WAL").await?;
    connection.execute("PRAGMA synchronous = NORMAL").await?;
    connection
        .execute("PRAGMA wal_autocheckpoint = 16384")
        .await?;
    connection.execute("PRAGMA busy_timeout = 5000").await?;
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`]; a database written by a newer runboard (a higher
/// version) is refused before anything in it is touched.
async fn migrate(connection: &mut AnyConnection, location: &DbLocation) -> Result<(), StoreError> {
    let (version, recorded) = schema_version(connection).await?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Unusable {
            location: location.to_string(),
            problem: format!(
                "its schema is version {version}, newer than this runboard knows (version \
                 {SCHEMA_VERSION}): a newer runboard wrote it. Run that one, or give --db \
                 another database"
            ),
        });
    }
    if !recorded && version > 0 {
        record_version(&mut *connection, version).await?;
    }
    let from = usize::try_from(version).unwrap_or(0);
    for (index, statements) in MIGRATIONS.iter().enumerate().skip(from) {
        let mut transaction = connection
            .begin()
            .await
            .map_err(failed("migrating the schema"))?;
        for statement in *statements {
            transaction
                .execute(*statement)
                .await
                .map_err(failed("migrating the schema"))?;
        }
        record_version(
            &mut transaction,
            i64::try_from(index + 1).unwrap_or(i64::MAX),
        )
        .await?;
        transaction
            .commit()
            .await
            .map_err(failed("migrating the schema"))?;
    }
    Ok(())
}

async fn record_version(connection: &mut AnyConnection, version: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ('schema_version', $1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(version)
    .execute(connection)
    .await
    .map_err(failed("recording the schema version"))?;
    Ok(())
}

/// The schema version, and whether it is recorded: 0 for a new database, 1 (unrecorded) for
/// one from before versions were kept, whose tables are version 1's.
async fn schema_version(connection: &mut AnyConnection) -> Result<(i64, bool), StoreError> {
    let has_meta = sqlx::query("SELECT COUNT(*) FROM meta")
        .execute(&mut *connection)
        .await;
    if has_meta.is_ok() {
        let stored: Option<i64> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'schema_version'")
                .fetch_optional(&mut *connection)
                .await
                .map_err(failed("reading the schema version"))?;
        if let Some(version) = stored {
            return Ok((version, true));
        }
    }
    let has_runs = sqlx::query("SELECT COUNT(*) FROM runs")
        .execute(&mut *connection)
        .await
        .is_ok();
    Ok((i64::from(has_runs), false))
}

/// `PRAGMA quick_check`: damaged pages are refused at start, not found by a later query.
async fn check_integrity(
    connection: &mut AnyConnection,
    location: &DbLocation,
) -> Result<(), StoreError> {
    let rows = sqlx::query("PRAGMA quick_check")
        .fetch_all(&mut *connection)
        .await
        .map_err(failed("checking the database"))?;
    let findings: Vec<String> = rows
        .iter()
        .filter_map(|row| row.try_get::<String, _>(0).ok())
        .filter(|line| line != "ok")
        .take(5)
        .collect();
    if findings.is_empty() {
        return Ok(());
    }
    Err(StoreError::Unusable {
        location: location.to_string(),
        problem: format!(
            "the file is damaged (quick_check: {}); restore it from a backup or move it aside \
             to start with an empty store",
            findings.join("; ")
        ),
    })
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
    // One server writes a SQLite file (`shared` is PostgreSQL's), where `?` binds fastest.
    let statement = |text: String| {
        if shared.is_some() {
            Sql::new(text)
        } else {
            Sql::anonymous(text)
        }
    };
    for chunk in insert_chunks(events) {
        let mut insert = statement(format!("INSERT INTO events ({EVENT_COLUMNS}) "));
        insert.push_values(chunk, |mut row, event| {
            row.push_bind(event.seq)
                .push_bind(event.run_id.clone())
                .push_bind(event.run_seq)
                .push_bind(event.event.clone())
                .push_bind(event.data.clone())
                .push_bind(event.ts.clone());
        });
        insert
            .build()
            .execute(&mut *tx)
            .await
            .map_err(failed("writing events"))?;
    }
    for chunk in insert_chunks(runs) {
        let mut upsert = statement(format!("INSERT INTO runs ({RUN_COLUMNS}) "));
        upsert.push_values(chunk, |mut row, run| {
            let s = &run.summary;
            row.push_bind(s.run_id.clone())
                .push_bind(run.ord)
                .push_bind(s.task.clone())
                .push_bind(run.params.clone())
                .push_bind(s.status.as_str().to_owned())
                .push_bind(s.created_at.clone().unwrap_or_default())
                .push_bind(s.started_at.clone())
                .push_bind(s.finished_at.clone())
                .push_bind(i64::try_from(s.tokens_out).unwrap_or(i64::MAX))
                .push_bind(s.agent.clone())
                .push_bind(s.iteration.map(i64::from))
                .push_bind(s.snippet.clone())
                .push_bind(run.owner.clone())
                .push_bind(s.worker.clone());
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
            .execute(&mut *tx)
            .await
            .map_err(failed("writing runs"))?;
    }
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
        list.push_bind(id.to_owned());
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
async fn raise_mark(
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

/// When opening failed because the file cannot be written or its disk is full, says so in
/// plain words: SQLite itself reports only "unable to open database file" or "disk I/O error"
/// when it cannot create or grow its journal beside the database.
fn filesystem_reason(location: &DbLocation) -> Option<String> {
    use std::io::Write as _;
    let DbLocation::File(path) = location else {
        return None;
    };
    let problem = if path.exists() {
        std::fs::OpenOptions::new().append(true).open(path).err()
    } else {
        None
    };
    let problem = problem.or_else(|| {
        // Room for SQLite's journal and shared memory: a probe file beside the database.
        let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty())?;
        let probe = dir.join(".runboard-space-probe");
        let written = std::fs::File::create(&probe).and_then(|mut file| {
            file.write_all(&vec![0; 64 * 1024])
                .and_then(|()| file.sync_all())
        });
        let _ = std::fs::remove_file(&probe);
        written.err()
    })?;
    match problem.kind() {
        std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied => Some(
            format!("cannot be written ({problem}); runs could not be stored"),
        ),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Some(format!(
            "cannot be written: its disk is full ({problem}); free some space and start again"
        )),
        _ => None,
    }
}

/// Says what a failure while opening means for the person starting the server.
fn describe_open_failure(doing: &str, source: &sqlx::Error) -> String {
    let detail = source.to_string();
    let lower = detail.to_lowercase();
    let what = if lower.contains("not a database") || lower.contains("file is encrypted") {
        "is not a SQLite database, or its header is damaged; move it aside to start with an \
         empty store"
    } else if lower.contains("readonly") || lower.contains("read-only") {
        "cannot be written (a read-only file, directory or filesystem); runs could not be stored"
    } else if lower.contains("disk is full") || lower.contains("no space") {
        "cannot be written: the disk is full"
    } else if lower.contains("malformed") || lower.contains("corrupt") {
        "is damaged; restore it from a backup or move it aside"
    } else if lower.contains("unable to open") {
        "cannot be opened (check the path and its permissions)"
    } else if lower.contains("locked") || lower.contains("busy") {
        "is locked by another process"
    } else {
        "cannot be used"
    };
    format!("{what} ({doing}: {detail})")
}

fn run_from_row(row: &AnyRow) -> Result<RunRow, StoreError> {
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
            },
            ord: row.try_get("ord")?,
            params: row.try_get("params")?,
            owner: row.try_get("owner")?,
        })
    };
    read().map_err(failed("reading a run"))
}

#[cfg(test)]
mod tests {
    use super::{Backend, DbLocation, insert_chunks, without_password};

    #[test]
    fn batches_are_cut_into_a_few_statement_sizes_in_order() {
        let rows: Vec<usize> = (0..2000).collect();
        let sizes: Vec<usize> = insert_chunks(&rows).map(<[usize]>::len).collect();
        assert_eq!(sizes, [256, 256, 256, 256, 256, 256, 256, 64, 64, 64, 16]);
        let again: Vec<usize> = insert_chunks(&rows).flatten().copied().collect();
        assert_eq!(again, rows);
        let sizes: Vec<usize> = insert_chunks(&rows[..7]).map(<[usize]>::len).collect();
        assert_eq!(sizes, [4, 1, 1, 1]);
        assert_eq!(insert_chunks::<usize>(&[]).count(), 0);
    }

    #[test]
    fn urls_are_shown_without_their_password_and_name_their_engine() {
        assert_eq!(
            without_password("postgres://runboard:s3cr:et@db.internal:5432/runboard"),
            "postgres://runboard:***@db.internal:5432/runboard"
        );
        assert_eq!(
            without_password("postgres://runboard@db/x"),
            "postgres://runboard@db/x"
        );
        assert_eq!(
            DbLocation::parse("postgresql://u:p@h/db").to_string(),
            "postgresql://u:***@h/db"
        );
        assert_eq!(Backend::of("postgresql://h/db"), Backend::Postgres);
        assert_eq!(Backend::of("sqlite://runs.db?mode=rwc"), Backend::Sqlite);
    }
}
