//! The schema and how a database gets to it: the tables per version, the migrations applied at
//! start, SQLite's settings, and the checks that refuse a damaged, read-only, full or newer
//! database with a message that says which.

use sqlx::{AnyConnection, Connection as _, Executor as _, Row as _};

use super::{DbLocation, SCHEMA_VERSION, StoreError, failed};

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

/// Version 4: the named token that launched each run (`launched_by`).
const SCHEMA_V4: [&str; 1] = ["ALTER TABLE runs ADD COLUMN launched_by TEXT"];

/// The schema's migrations, in order: a database at version N gets N+1 and later applied at
/// start, each in its own transaction with the version it reaches. Append; never edit one that
/// shipped.
pub(super) const MIGRATIONS: [&[&str]; 4] = [&SCHEMA_V1, &SCHEMA_V2, &SCHEMA_V3, &SCHEMA_V4];

/// WAL lets readers run beside the one writer; NORMAL sync is durable across a crash of the
/// process, which is what the restart tests need. Checkpoints are [`Store::checkpoint`]'s,
/// beside the writer: the automatic one ran inside whichever commit crossed 1,000 pages and
/// held the writer for tens of milliseconds at fleet rates (a third of its time in the proxy
/// benchmark). The automatic one stays, at 16,384 pages (64 MiB), as a bound on the file
/// should the passive ones not keep up.
pub(super) async fn sqlite_setup(connection: &mut AnyConnection) -> Result<(), sqlx::Error> {
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
pub(super) async fn migrate(
    connection: &mut AnyConnection,
    location: &DbLocation,
) -> Result<(), StoreError> {
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
pub(super) async fn check_integrity(
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

/// When opening failed because the file cannot be written or its disk is full, says so in
/// plain words: SQLite itself reports only "unable to open database file" or "disk I/O error"
/// when it cannot create or grow its journal beside the database.
pub(super) fn filesystem_reason(location: &DbLocation) -> Option<String> {
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
pub(super) fn describe_open_failure(doing: &str, source: &sqlx::Error) -> String {
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
