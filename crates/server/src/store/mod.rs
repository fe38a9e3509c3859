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
mod prune;
mod reads;
pub(crate) mod retention;
mod schema;
mod sql;
mod writes;

pub use instances::{InstanceRow, InstanceState, TakenOver};

use std::path::PathBuf;
use std::sync::{Arc, Once};

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Connection as _};

use runboard_api::{RunStatus, RunSummary};
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
    /// Whether the database refused the records themselves (a value it cannot keep, a key
    /// that is taken): writing them again can never succeed, unlike after a full disk, a
    /// locked file or a lost connection.
    pub fn refuses_records(&self) -> bool {
        let Self::Query {
            source: sqlx::Error::Database(database),
            ..
        } = self
        else {
            return false;
        };
        // PostgreSQL's SQLSTATE class 22 is a data exception (a value the column cannot hold);
        // the kinds are integrity constraints on either database.
        !matches!(database.kind(), sqlx::error::ErrorKind::Other)
            || database.code().is_some_and(|code| code.starts_with("22"))
    }

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

/// `text` as the store keeps it, and as a value looked up in it: the NUL character becomes
/// U+FFFD, the replacement character. PostgreSQL refuses NUL in text, and a prompt, an answer
/// or a name may hold one (`\u0000` in its JSON): written as it was, it failed the writer's
/// batch every time it was tried, and the board recorded nothing more. SQLite keeps NUL, but
/// both stores keep the same text, so they read alike. JSON text never holds a NUL (it
/// escapes it), so events' data is unchanged.
fn storable(text: &str) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.to_owned()
    }
}

/// [`storable`] for a column that may be empty.
fn storable_opt(text: Option<&str>) -> Option<String> {
    text.map(storable)
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
    /// The id of the newest run stored (`None`: none), which new ids continue above.
    pub newest_run: Option<String>,
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
    /// Whose turn it is to write a SQLite file: see [`Store::write_turn`].
    write_turns: Arc<tokio::sync::Mutex<()>>,
}

/// The channel that wakes other instances when events are committed (payload: the last
/// sequence of the write).
pub const EVENTS_CHANNEL: &str = "runboard_events";

/// The channel that asks the instance running a run to cancel it (payload: `owner run_id`).
pub const CANCEL_CHANNEL: &str = "runboard_cancel";

/// The schema version this build writes: the number of migrations.
#[allow(clippy::cast_possible_wrap)] // A handful of migrations.
pub const SCHEMA_VERSION: i64 = schema::MIGRATIONS.len() as i64;

/// How long start-up may take to open and check the database before it is refused.
pub const OPEN_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Finished statuses, as SQL literals (constants, never user input).
const FINISHED_SQL: &str = "('completed', 'failed', 'cancelled')";

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
                           finished_at, tokens_out, agent, iteration, snippet, owner, worker, \
                           launched_by";

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
                schema::filesystem_reason(location)
                    .unwrap_or_else(|| schema::describe_open_failure(doing, &source)),
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
            schema::sqlite_setup(&mut probe)
                .await
                .map_err(failed("opening the database"))?;
            schema::check_integrity(&mut probe, location).await?;
        } else {
            // Servers starting together on a new database must not migrate it twice at once.
            sqlx::query("SELECT pg_advisory_lock(7201)") // PostgreSQL only
                .execute(&mut probe)
                .await
                .map_err(failed("locking the schema"))?;
        }
        schema::migrate(&mut probe, location).await?;
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
                        schema::sqlite_setup(connection).await?;
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
        schema::migrate(&mut first, location).await?;
        drop(first);
        Ok(Self {
            pool,
            in_memory: matches!(location, DbLocation::Memory),
            backend,
            url,
            write_turns: Arc::default(),
        })
    }

    /// On a SQLite file, this server's writing transactions (the writer's batches, pruning,
    /// the instance's heartbeat) take turns here, in the order they came, before they begin.
    /// SQLite lets one write at a time, and one that finds the lock taken sleeps in its busy
    /// handler (1, 2, 5, 10 ms and longer) and wakes to try again: against pruning's run of
    /// short transactions the writer kept waking to the next one and fell seconds behind, and
    /// a heartbeat behind a busy writer could miss its deadline. `None` on PostgreSQL, whose
    /// writers wait on row locks.
    pub(super) async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.write_turns.lock().await),
            Backend::Postgres => None,
        }
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
