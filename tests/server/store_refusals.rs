//! What the store refuses for the records themselves, on SQLite and on PostgreSQL: the writer
//! lets such records go rather than trying them for ever (a store that cannot be written at
//! all, a full disk or a lost connection, is `store_faults.rs`), and text with a NUL is kept.

use crate::support;

use runboard_server::store::{EventRow, Store};
use support::test_server::test_db;

fn narration(run_id: &str, ts: &str) -> EventRow {
    EventRow {
        seq: 0,
        run_id: run_id.to_owned(),
        run_seq: 1,
        event: "narration".to_owned(),
        data: r#"{"level":"info","formatted":"hello"}"#.to_owned(),
        ts: ts.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_key_is_a_refusal_of_the_records_and_a_nul_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&test_db(&dir)).await.unwrap();
    let ts = "2026-12-07T00:00:00Z";
    store
        .write_batch(&mut vec![narration("run-a", ts)], &mut Vec::new(), "i-test")
        .await
        .unwrap();

    // The same run's first event again: the store refuses the records, not the write.
    let error = store
        .write_batch(&mut vec![narration("run-a", ts)], &mut Vec::new(), "i-test")
        .await
        .unwrap_err();
    assert!(error.refuses_records(), "{error}");

    // PostgreSQL refuses NUL in text: the store keeps it as U+FFFD on either database.
    store
        .write_batch(
            &mut vec![narration("run-b", "2026-12-07T00:00:01Z\0")],
            &mut Vec::new(),
            "i-test",
        )
        .await
        .unwrap();
    let events = store.run_events("run-b").await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].ts.as_deref(),
        Some("2026-12-07T00:00:01Z\u{FFFD}")
    );
    assert_eq!(store.run_events("run-a").await.unwrap().len(), 1);
}
