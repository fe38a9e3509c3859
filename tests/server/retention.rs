//! Retention: finished runs past the limits are removed, on a file database too while runs
//! are generating, and how it went is on `/api/health` and `/metrics`.

use crate::support;

use std::time::Duration;

use runboard_api::{CreateRun, RunMode};
use runboard_server::Retention;
use runboard_sse::{EventSource, Update};
use serde_json::{Value, json};

use support::test_server::{client, sqlite_config as config, start, wait_finished};

fn run_request(params: Value) -> CreateRun {
    CreateRun {
        task: "retention test".into(),
        mode: RunMode::Queued,
        params,
    }
}

/// The value of a sample line `name value` on a `/metrics` page.
fn sample(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} on the page:\n{page}"))
}

#[tokio::test]
async fn retention_removes_finished_runs_and_a_resume_from_a_pruned_id_is_told_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(&dir);
    settings.store.retention = Retention {
        days: None,
        runs: Some(2),
    };
    settings.store.retention_every = Duration::from_millis(100);
    let server = start(settings.clone()).await;
    let api = client(&server);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let run = api.create_run(&run_request(json!({}))).await.unwrap();
        wait_finished(&api, &run.summary.run_id, Duration::from_secs(30)).await;
        ids.push(run.summary.run_id);
    }
    let head_before = api.health().await.unwrap().events_head.unwrap();
    let all = runboard_api::RunQuery {
        limit: Some(50),
        ..runboard_api::RunQuery::default()
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while api.list_runs(&all).await.unwrap().runs.len() > 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("retention kept only the newest 2 finished runs");
    let kept: Vec<String> = api
        .list_runs(&all)
        .await
        .unwrap()
        .runs
        .into_iter()
        .map(|run| run.run_id)
        .collect();
    assert_eq!(kept, vec![ids[4].clone(), ids[3].clone()]);
    let gone = api.run(&ids[0]).await.expect_err("a pruned run is gone");
    assert_eq!(gone.status(), Some(404));
    assert_eq!(
        api.health().await.unwrap().events_head.unwrap(),
        head_before,
        "the head does not move back"
    );

    // A client that last saw event 1 is told, then gets the oldest kept events.
    let mut source = EventSource::builder(&format!("{}/api/events", server.url()))
        .unwrap()
        .last_event_id("1")
        .build()
        .unwrap();
    let mut first = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while first.len() < 2 {
            if let Some(Update::Event(event)) = source.next().await {
                first.push(event);
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(first[0].event, "pruned");
    let notice: Value = serde_json::from_str(&first[0].data).unwrap();
    assert_eq!(notice["after"], 1);
    assert!(notice["pruned_through"].as_u64().unwrap() > 1);
    assert_eq!(first[0].id, "1", "the notice does not move the last id");
    assert_eq!(first[1].event, "run_created");
    assert!(first[1].data.contains(&ids[3]), "{}", first[1].data);
    server.stop().await;

    // Ids and run order never go back, even when everything was pruned.
    settings.store.retention.runs = Some(1);
    let server = start(settings).await;
    let api = client(&server);
    let run = api.create_run(&run_request(json!({}))).await.unwrap();
    let detail = wait_finished(&api, &run.summary.run_id, Duration::from_secs(30)).await;
    assert!(!ids.contains(&detail.summary.run_id));
    assert!(api.health().await.unwrap().events_head.unwrap() > head_before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_a_file_database_while_runs_are_generating() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(&dir);
    settings.store.retention = Retention {
        days: None,
        runs: Some(5),
    };
    settings.store.retention_every = Duration::from_millis(200);
    settings.runs.concurrency = 16;
    let server = start(settings).await;
    let api = client(&server);
    // A steady load: a run launched every 20 ms for 8 s, the writer committing all along.
    let load = {
        let api = api.clone();
        tokio::spawn(async move {
            for _ in 0..400 {
                let _ = api.create_run(&run_request(json!({"iterations": 1}))).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(6)).await;
    let all = runboard_api::RunQuery {
        limit: Some(500),
        ..runboard_api::RunQuery::default()
    };
    let runs = api.list_runs(&all).await.unwrap().runs;
    let finished = runs.iter().filter(|run| run.status.is_finished()).count();
    let going = runs.len() - finished;
    assert!(!load.is_finished(), "the load still runs");
    assert!(
        finished <= 5 + 16,
        "{finished} finished runs kept under load ({going} going); retention keeps 5"
    );
    // What it did is on health and metrics, and nothing failed.
    let record = api
        .health()
        .await
        .unwrap()
        .retention
        .expect("retention on health");
    assert!(record.last_success.is_some(), "{record:?}");
    assert!(record.removed_runs_total > 0, "{record:?}");
    assert_eq!(record.failures_in_a_row, 0, "{record:?}");
    assert_eq!(record.last_error, None);
    let page = runboard_sse::http::client()
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sample(&page, "runboard_retention_runs_removed_total") > 0.0);
    assert!(sample(&page, "runboard_retention_events_removed_total") > 0.0);
    assert!(sample(&page, "runboard_retention_failures_total") < 0.5);
    assert!(sample(&page, "runboard_retention_failures_in_a_row") < 0.5);
    assert!(sample(&page, "runboard_retention_last_success_timestamp_seconds") > 1.7e9);
    load.abort();
    server.stop().await;
}

#[tokio::test]
async fn a_day_limit_beyond_the_calendar_keeps_everything_and_retention_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(&dir);
    settings.store.retention = Retention {
        days: Some(u32::MAX),
        runs: None,
    };
    settings.store.retention_every = Duration::from_millis(50);
    let server = start(settings).await;
    let api = client(&server);
    let run = api.create_run(&run_request(json!({}))).await.unwrap();
    wait_finished(&api, &run.summary.run_id, Duration::from_secs(30)).await;
    // Several passes after the run finished: each succeeded and removed nothing.
    let first = api.health().await.unwrap().retention.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = api.health().await.unwrap().retention.unwrap();
    assert!(later.last_success.is_some() && later.last_success != first.last_success);
    assert_eq!(later.removed_runs_total, 0);
    assert_eq!(later.failures_in_a_row, 0);
    assert!(api.run(&run.summary.run_id).await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn without_limits_health_says_nothing_of_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(&dir);
    settings.store.retention = Retention {
        days: None,
        runs: None,
    };
    let server = start(settings).await;
    assert_eq!(client(&server).health().await.unwrap().retention, None);
    server.stop().await;
}
