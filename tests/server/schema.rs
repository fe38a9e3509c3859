//! Schema versions: a new database is written at this build's version, one from before
//! versions were kept is taken as version 1 and keeps its runs, and one written by a newer
//! runboard is refused at start with a message that says so. The database file is read and
//! changed with Python's own `sqlite3`, as a person with another tool would.

use crate::support;

use std::time::Duration;

use runboard_api::{CreateRun, RunMode, RunStatus};
use runboard_server::store::SCHEMA_VERSION;
use serde_json::json;
use support::test_server::{client, db_path, sqlite, sqlite_config as config, wait_finished};

#[tokio::test]
async fn versions_are_kept_migrated_and_a_newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let server = runboard_server::start(config(&dir)).await.unwrap();
    let api = client(&server);
    let created = api
        .create_run(&CreateRun {
            task: "kept across versions".into(),
            mode: RunMode::Queued,
            params: json!({}),
        })
        .await
        .unwrap();
    let run_id = created.summary.run_id;
    wait_finished(&api, &run_id, Duration::from_secs(20)).await;
    server.stop().await;
    let version = sqlite(&path, "SELECT value FROM meta WHERE key = 'schema_version'").await;
    assert_eq!(version, SCHEMA_VERSION.to_string());

    // A database from before versions were kept: its tables are version 1's (no owners, no
    // instances, no `last_seq` mark row, no workers, no launchers).
    for statement in [
        "DELETE FROM meta WHERE key IN ('schema_version', 'last_seq')",
        "ALTER TABLE runs DROP COLUMN launched_by",
        "DROP INDEX runs_by_worker",
        "ALTER TABLE runs DROP COLUMN worker",
        "DROP INDEX runs_by_owner",
        "ALTER TABLE runs DROP COLUMN owner",
        "DROP TABLE instances",
    ] {
        sqlite(&path, statement).await;
    }
    let server = runboard_server::start(config(&dir)).await.unwrap();
    let kept = client(&server).run(&run_id).await.unwrap();
    assert_eq!(kept.summary.task, "kept across versions");
    assert_eq!(kept.summary.status, RunStatus::Completed);
    // Migrated to the newest version: new runs number on from the old events, have an owner,
    // and keep the worker a launch names.
    let later = client(&server)
        .create_run(&CreateRun {
            task: "after the migration".into(),
            mode: RunMode::Queued,
            params: json!({"worker": "migrated"}),
        })
        .await
        .unwrap();
    assert_eq!(later.summary.worker.as_deref(), Some("migrated"));
    wait_finished(
        &client(&server),
        &later.summary.run_id,
        Duration::from_secs(20),
    )
    .await;
    server.stop().await;
    let owner = sqlite(
        &path,
        &format!(
            "SELECT owner FROM runs WHERE run_id = '{}'",
            later.summary.run_id
        ),
    )
    .await;
    assert!(owner.starts_with("i-"), "{owner}");
    let newest = sqlite(&path, "SELECT MAX(seq) FROM events").await;
    let mark = sqlite(&path, "SELECT value FROM meta WHERE key = 'last_seq'").await;
    assert_eq!(newest, mark);
    let version = sqlite(&path, "SELECT value FROM meta WHERE key = 'schema_version'").await;
    assert_eq!(version, SCHEMA_VERSION.to_string());

    // A newer runboard's database is refused, and left as it was.
    let newer = SCHEMA_VERSION + 7;
    sqlite(
        &path,
        &format!("UPDATE meta SET value = {newer} WHERE key = 'schema_version'"),
    )
    .await;
    let Err(refused) = runboard_server::start(config(&dir)).await else {
        panic!("a newer schema must be refused");
    };
    let refused = refused.to_string();
    assert!(
        refused.contains(&format!("schema is version {newer}"))
            && refused.contains(&format!(
                "newer than this runboard knows (version {SCHEMA_VERSION})"
            ))
            && refused.contains(&path.display().to_string()),
        "{refused}"
    );
    let version = sqlite(&path, "SELECT value FROM meta WHERE key = 'schema_version'").await;
    assert_eq!(version, newer.to_string());
    let runs = sqlite(&path, "SELECT COUNT(*) FROM runs").await;
    assert_eq!(runs, "2");
}
