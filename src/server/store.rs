//! Runs and events in SQL. One code path through sqlx's `Any` driver: SQLite (a file, or memory
//! for tests) today, PostgreSQL by URL later. Queries use only portable SQL: `$n` placeholders,
//! `INSERT … ON CONFLICT … DO UPDATE`, and no engine-specific types.

use std::path::PathBuf;
use std::sync::Once;

use sqlx::any::{AnyPoolOptions, AnyRow};
// The only dynamic SQL is built from this file's column-list constants; values are bound.
use sqlx::{AnyPool, AssertSqlSafe, Executor as _, QueryBuilder, Row as _};

use crate::api::{RunStatus, RunSummary, StoredEvent};

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbLocation {
    /// A SQLite file (created if missing).
    File(PathBuf),
    /// A private in-memory SQLite database that lives as long as the server.
    Memory,
    /// Any database URL sqlx understands (`sqlite:…`, later `postgres://…`).
    Url(String),
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
            Self::Url(url) => write!(f, "{url}"),
        }
    }
}

/// A failed database operation, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("database: {doing}: {source}")]
pub struct StoreError {
    doing: &'static str,
    #[source]
    source: sqlx::Error,
}

fn failed(doing: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError { doing, source }
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
    /// Creation order, for newest-first paging.
    pub ord: i64,
    /// Generator parameters as JSON.
    pub params: String,
}

/// What the store knew at startup: where the sequences stand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sequences {
    /// The highest global sequence stored (0: none).
    pub last_seq: i64,
    /// The highest run order stored (0: none).
    pub last_ord: i64,
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

/// The database behind the reference server.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

const SCHEMA: [&str; 4] = [
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
];

/// Rows per multi-row INSERT: 6 parameters each stays far below every engine's limit.
const INSERT_CHUNK: usize = 500;

const EVENT_COLUMNS: &str = "seq, run_id, run_seq, event, data, ts";
const RUN_COLUMNS: &str = "run_id, ord, task, params, status, created_at, started_at, \
                           finished_at, tokens_out, agent, iteration, snippet";

impl Store {
    /// Opens (creating if needed) the database and its schema. SQLite runs in WAL mode.
    pub async fn open(location: &DbLocation) -> Result<Self, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

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
                    std::fs::create_dir_all(dir).map_err(|e| StoreError {
                        doing: "creating the database directory",
                        source: sqlx::Error::Io(e),
                    })?;
                }
                (
                    format!("sqlite://{}?mode=rwc", path.display()),
                    AnyPoolOptions::new().max_connections(4),
                )
            }
            DbLocation::Url(url) => (url.clone(), AnyPoolOptions::new().max_connections(4)),
        };
        let is_sqlite = url.starts_with("sqlite:");
        let pool = options
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if is_sqlite {
                        // WAL lets readers run beside the one writer; NORMAL sync is durable
                        // across a crash of the process, which is what a restart test needs.
                        connection.execute("PRAGMA journal_mode = WAL").await?;
                        connection.execute("PRAGMA synchronous = NORMAL").await?;
                        connection.execute("PRAGMA busy_timeout = 5000").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(failed("opening the database"))?;
        for statement in SCHEMA {
            pool.execute(statement)
                .await
                .map_err(failed("creating the schema"))?;
        }
        Ok(Self { pool })
    }

    /// Where the sequences stand, to continue them after a restart.
    pub async fn sequences(&self) -> Result<Sequences, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM events), \
                    (SELECT COALESCE(MAX(ord), 0) FROM runs)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(failed("reading the sequences"))?;
        Ok(Sequences {
            last_seq: row.try_get(0).map_err(failed("reading the sequences"))?,
            last_ord: row.try_get(1).map_err(failed("reading the sequences"))?,
        })
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

    /// Writes a batch in one transaction: new events, then the changed runs.
    pub async fn write_batch(
        &self,
        events: &[EventRow],
        runs: &[RunRow],
    ) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(failed("starting a write"))?;
        for chunk in events.chunks(INSERT_CHUNK) {
            let mut insert = QueryBuilder::new(format!("INSERT INTO events ({EVENT_COLUMNS}) "));
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
        for chunk in runs.chunks(INSERT_CHUNK / 2) {
            let mut upsert = QueryBuilder::new(format!("INSERT INTO runs ({RUN_COLUMNS}) "));
            upsert.push_values(chunk, |mut row, run| {
                let s = &run.summary;
                row.push_bind(s.run_id.clone())
                    .push_bind(run.ord)
                    .push_bind(s.task.clone())
                    .push_bind(run.params.clone())
                    .push_bind(s.status.as_str())
                    .push_bind(s.created_at.clone().unwrap_or_default())
                    .push_bind(s.started_at.clone())
                    .push_bind(s.finished_at.clone())
                    .push_bind(i64::try_from(s.tokens_out).unwrap_or(i64::MAX))
                    .push_bind(s.agent.clone())
                    .push_bind(s.iteration.map(i64::from))
                    .push_bind(s.snippet.clone());
            });
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
        tx.commit().await.map_err(failed("committing a write"))
    }

    /// Runs newest first, at most `limit`, older than `before_ord` when given.
    pub async fn list_runs(
        &self,
        limit: u32,
        before_ord: Option<i64>,
        status: Option<RunStatus>,
    ) -> Result<Vec<RunRow>, StoreError> {
        let mut query = QueryBuilder::new(format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1"));
        if let Some(before) = before_ord {
            query.push(" AND ord < ").push_bind(before);
        }
        if let Some(status) = status {
            query.push(" AND status = ").push_bind(status.as_str());
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
        let mut query = QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE "));
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

    /// Closes the pool, waiting for writes in progress.
    pub async fn close(&self) {
        self.pool.close().await;
    }
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
            },
            ord: row.try_get("ord")?,
            params: row.try_get("params")?,
        })
    };
    read().map_err(failed("reading a run"))
}
