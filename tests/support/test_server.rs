//! The reference server on a free loopback port, with a real SQLite file in a temp directory,
//! or, when `RUNBOARD_TEST_POSTGRES` names a PostgreSQL server (`scripts/postgres.sh start`),
//! a database of its own there: every server test runs on either backend.

use std::path::PathBuf;
use std::time::Duration;

use runboard_api::{ApiClient, RunDetail};
use runboard_server::{
    self as server, DbLocation, GeneratorConfig, RunningServer, ServerConfig, StoreSettings,
};

/// A fast, deterministic configuration: port 0, a fresh store (one per `dir`: the same `dir`
/// gives the same database again), seed 7, no random failures.
pub fn config(dir: &tempfile::TempDir) -> ServerConfig {
    ServerConfig {
        store: StoreSettings {
            db: test_db(dir),
            ..sqlite_config(dir).store
        },
        ..sqlite_config(dir)
    }
}

/// [`config`] on a SQLite file whatever the backend under test (tests of SQLite itself).
pub fn sqlite_config(dir: &tempfile::TempDir) -> ServerConfig {
    let mut config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        generator: GeneratorConfig {
            seed: Some(7),
            speed: 50.0,
            failure_rate: 0.0,
        },
        store: StoreSettings {
            db: DbLocation::File(db_path(dir)),
            ..StoreSettings::default()
        },
        ..ServerConfig::default()
    };
    config.events.streams.retry = Duration::from_millis(20);
    config
}

pub fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("runs.db")
}

/// The PostgreSQL server the tests run against, when one is given.
pub fn postgres_base() -> Option<String> {
    std::env::var("RUNBOARD_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .map(|url| url.trim_end_matches('/').to_owned())
}

/// The store of a test: a file in `dir`, or a PostgreSQL database named after `dir`.
pub fn test_db(dir: &tempfile::TempDir) -> DbLocation {
    match postgres_base() {
        Some(base) => {
            use std::hash::{Hash as _, Hasher as _};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            dir.path().hash(&mut hasher);
            let name = format!("rb_{:016x}", hasher.finish());
            DbLocation::Url(create_database(&base, &name))
        }
        None => DbLocation::File(db_path(dir)),
    }
}

/// Runs one SQL statement with `psql` on the database at `url`.
pub fn psql(url: &str, sql: &str) -> std::process::Output {
    let psql = ["/usr/lib/postgresql/15/bin/psql", "psql"]
        .into_iter()
        .find(|path| !path.starts_with('/') || std::path::Path::new(path).exists())
        .unwrap();
    std::process::Command::new(psql)
        .args(["-qAt", "-d", url, "-c", sql])
        .output()
        .expect("psql could not be run")
}

/// Creates database `name` on the server at `base` (if new) and returns its URL.
pub fn create_database(base: &str, name: &str) -> String {
    let output = psql(
        &format!("{base}/postgres"),
        &format!("CREATE DATABASE {name}"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() || stderr.contains("already exists"),
        "could not create database {name}: {stderr}"
    );
    format!("{base}/{name}")
}

pub async fn start(config: ServerConfig) -> RunningServer {
    server::start(config)
        .await
        .expect("the server did not start")
}

pub fn client(server: &RunningServer) -> ApiClient {
    ApiClient::new(&server.url(), None).unwrap()
}

/// Polls until the run is finished; fails the test after `limit`.
pub async fn wait_finished(api: &ApiClient, run_id: &str, limit: Duration) -> RunDetail {
    tokio::time::timeout(limit, async {
        loop {
            let detail = api.run(run_id).await.unwrap();
            if detail.summary.status.is_finished() {
                return detail;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("run {run_id} did not finish within {limit:?}"))
}

/// Runs `sql` on the SQLite file with Python's `sqlite3`, as a person with another tool would;
/// the first row's first column, as text.
pub async fn sqlite(path: &std::path::Path, sql: &str) -> String {
    let script = "import sqlite3, sys\n\
                  db = sqlite3.connect(sys.argv[1])\n\
                  row = db.execute(sys.argv[2]).fetchone()\n\
                  db.commit()\n\
                  print('' if row is None else row[0])";
    let output = tokio::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .arg(sql)
        .output()
        .await
        .expect("python3 must be installed (.ci/run installs it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}
