//! Several servers on one PostgreSQL database act as one board: every instance's stream
//! carries every instance's events in one order without gap or duplicate, a resume works
//! on any instance with an id another gave, runs are read and cancelled through any instance,
//! and `/api/health` lists them all. Needs `RUNBOARD_TEST_POSTGRES` (`scripts/postgres.sh
//! start`, as `scripts/test.sh` does); without it these say so and pass, unless
//! `RUNBOARD_REQUIRE_POSTGRES` is set.

use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use runboard_api::{ApiClient, CreateRun, RunMode, RunStatus};
use runboard_server::{DbLocation, RunningServer, ServerConfig};
use runboard_sse::{ConnectionState, Event, EventSource, ReconnectPolicy, Update};
use serde_json::{Value, json};
use support::test_server::{client, create_database, postgres_base, psql, sqlite_config, start};

/// A new database on the test PostgreSQL server, or `None` (with a note) when there is none.
pub fn fresh_database(label: &str) -> Option<String> {
    let Some(base) = postgres_base() else {
        assert!(
            std::env::var("RUNBOARD_REQUIRE_POSTGRES")
                .unwrap_or_default()
                .is_empty(),
            "RUNBOARD_REQUIRE_POSTGRES is set but RUNBOARD_TEST_POSTGRES is not"
        );
        eprintln!(
            "note: RUNBOARD_TEST_POSTGRES is not set; the shared-store test {label} is skipped"
        );
        return None;
    };
    let mut rng = runboard_server::rng::SplitMix64::from_entropy();
    let name = format!("rb_{label}_{:08x}", rng.next_u64() >> 32);
    Some(create_database(&base, &name))
}

/// An instance on the shared database `url`.
fn instance_config(url: &str, dir: &tempfile::TempDir, name: &str) -> ServerConfig {
    let mut config = sqlite_config(dir);
    config.store.db = DbLocation::Url(url.to_owned());
    config.store.instance_name = Some(name.to_owned());
    config.store.lease = Duration::from_secs(2);
    config.generator.speed = 8.0;
    config
}

fn stream(url: &str, last_id: Option<&str>) -> EventSource {
    let mut builder = EventSource::builder(url)
        .unwrap()
        .reconnect(ReconnectPolicy {
            initial_retry: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            healthy_after: Duration::from_secs(5),
            jitter: 0.3,
            max_reconnects: None,
        });
    if let Some(id) = last_id {
        builder = builder.last_event_id(id);
    }
    builder.build().unwrap()
}

fn run_request(params: Value) -> CreateRun {
    CreateRun {
        task: "shared store".into(),
        mode: RunMode::Queued,
        params,
    }
}

/// Reads `source` until every run in `runs` has ended, returning the events read.
async fn read_until_ended(source: &mut EventSource, runs: &HashSet<String>) -> Vec<Event> {
    let mut ended = HashSet::new();
    let mut events = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(90), async {
        while !runs.is_subset(&ended) {
            if let Some(Update::Event(event)) = source.next().await {
                if event.event == "stream_end" {
                    let data: Value = serde_json::from_str(&event.data).unwrap();
                    ended.insert(data["run_id"].as_str().unwrap().to_owned());
                }
                events.push(event);
            }
        }
    })
    .await;
    assert!(
        done.is_ok(),
        "only {} of {} runs ended",
        ended.len(),
        runs.len()
    );
    events
}

fn ids(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .map(|event| event.id.parse().unwrap())
        .collect()
}

/// Every event the store holds, counted through one instance's run details.
async fn stored_count(api: &ApiClient, runs: &HashSet<String>) -> usize {
    let mut total = 0;
    for run in runs {
        total += api.run(run).await.unwrap().events.len();
    }
    total
}

/// Every instance lists every run newest first (one global order), and answers for a run of
/// another instance with its detail and its own stream.
async fn any_instance_answers_for_any_run(
    servers: &[RunningServer],
    apis: &[ApiClient],
    runs: &HashSet<String>,
    made_by: &[(String, usize)],
) {
    // Any instance answers for any run: list, detail and the run's own stream.
    for api in apis {
        let list = api
            .list_runs(&runboard_api::RunQuery::default())
            .await
            .unwrap();
        let listed: HashSet<String> = list.runs.into_iter().map(|run| run.run_id).collect();
        assert_eq!(&listed, runs);
    }
    for (run_id, index) in made_by.iter().take(3) {
        let other = (index + 1) % 3;
        let detail = apis[other].run(run_id).await.unwrap();
        assert_eq!(detail.summary.status, RunStatus::Completed);
        let mut own = stream(
            &format!("{}/api/runs/{run_id}/stream", servers[other].url()),
            None,
        );
        let one: HashSet<String> = [run_id.clone()].into();
        let events = read_until_ended(&mut own, &one).await;
        assert_eq!(events.len(), detail.events.len());
        assert_eq!(ids(&events), (1..=events.len() as u64).collect::<Vec<_>>());
    }
    // Run orders are global: newest first across instances, no two alike.
    let list = apis[0]
        .list_runs(&runboard_api::RunQuery::default())
        .await
        .unwrap();
    let newest_first: Vec<String> = list.runs.iter().map(|run| run.run_id.clone()).collect();
    let made: Vec<String> = made_by.iter().rev().map(|(id, _)| id.clone()).collect();
    assert_eq!(newest_first, made);
}

/// `/api/health` on the second instance lists all three alive, and marks itself.
async fn all_instances_are_listed(api: &ApiClient) {
    let health = api.health().await.unwrap();
    assert_eq!(health.backend.as_deref(), Some("postgresql"));
    let alive: Vec<&str> = health
        .instances
        .iter()
        .filter(|instance| instance.state == "alive")
        .map(|instance| instance.name.as_str())
        .collect();
    for name in ["box-a", "box-b", "box-c"] {
        assert!(alive.contains(&name), "{alive:?}");
    }
    assert_eq!(
        health
            .instances
            .iter()
            .filter(|instance| instance.this)
            .map(|instance| instance.name.as_str())
            .collect::<Vec<_>>(),
        ["box-b"]
    );
    assert!(
        health
            .instances
            .iter()
            .all(|instance| !instance.heartbeat_at.is_empty())
    );
}

#[tokio::test]
async fn three_instances_are_one_board_in_one_order_and_resume_anywhere() {
    let Some(url) = fresh_database("three") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut servers: Vec<RunningServer> = Vec::new();
    for name in ["box-a", "box-b", "box-c"] {
        servers.push(start(instance_config(&url, &dir, name)).await);
    }
    let apis: Vec<ApiClient> = servers.iter().map(client).collect();
    let mut followers: Vec<EventSource> = servers
        .iter()
        .map(|server| stream(&format!("{}/api/events", server.url()), None))
        .collect();
    // One more on C that leaves early and resumes on A with the id C gave it.
    let mut leaver = stream(&format!("{}/api/events", servers[2].url()), None);
    // Following live before the first run (an EventSource connects when first read).
    for source in followers.iter_mut().chain(std::iter::once(&mut leaver)) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !matches!(
                source.next().await,
                Some(Update::State(ConnectionState::Open))
            ) {}
        })
        .await
        .expect("a stream did not open");
    }

    let mut runs = HashSet::new();
    let mut made_by = Vec::new();
    for round in 0..4 {
        for (index, api) in apis.iter().enumerate() {
            let run = api
                .create_run(&run_request(
                    json!({"iterations": 1 + round % 2, "tokens_per_sec": 80}),
                ))
                .await
                .unwrap();
            made_by.push((run.summary.run_id.clone(), index));
            runs.insert(run.summary.run_id);
        }
    }

    let mut first_part = Vec::new();
    while first_part.len() < 40 {
        if let Some(Update::Event(event)) = leaver.next().await {
            first_part.push(event);
        }
    }
    let resume_from = first_part.last().unwrap().id.clone();
    drop(leaver);
    let mut resumed = stream(
        &format!("{}/api/events", servers[0].url()),
        Some(&resume_from),
    );

    let mut seen = Vec::new();
    for follower in &mut followers {
        seen.push(read_until_ended(follower, &runs).await);
    }
    let rest = read_until_ended(&mut resumed, &runs).await;

    let total = stored_count(&apis[1], &runs).await;
    for (index, events) in seen.iter().enumerate() {
        let ids = ids(events);
        assert_eq!(
            ids,
            (1..=total as u64).collect::<Vec<_>>(),
            "instance {index}'s stream has a gap, a duplicate or a different order"
        );
    }
    // Same events, same order, same bytes on every instance.
    let frames = |events: &[Event]| -> Vec<(String, String, String)> {
        events
            .iter()
            .map(|event| (event.id.clone(), event.event.clone(), event.data.clone()))
            .collect()
    };
    assert_eq!(frames(&seen[0]), frames(&seen[1]));
    assert_eq!(frames(&seen[0]), frames(&seen[2]));
    // The resume on A, from C's id, is exactly the rest.
    let mut joined = frames(&first_part);
    joined.extend(frames(&rest));
    assert_eq!(joined, frames(&seen[0]));

    any_instance_answers_for_any_run(&servers, &apis, &runs, &made_by).await;
    all_instances_are_listed(&apis[1]).await;
    for server in servers {
        server.stop().await;
    }
}

#[tokio::test]
async fn a_cancel_sent_to_another_instance_reaches_the_run() {
    // A named token on both: the cancel's end names who asked, whichever instance was asked.
    const OPS: &str = "ops-token-0123456789";
    let Some(url) = fresh_database("cancel") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let with_ops = |mut config: ServerConfig| {
        config.access.tokens =
            runboard_server::parse_token_list(&format!("ops admin {OPS}\n")).unwrap();
        config
    };
    let runner = start(with_ops(instance_config(&url, &dir, "runner"))).await;
    let other = start(with_ops(instance_config(&url, &dir, "other"))).await;
    let client = |server: &RunningServer| ApiClient::new(&server.url(), Some(OPS)).unwrap();
    let run = client(&runner)
        .create_run(&run_request(json!({"iterations": 6, "tokens_per_sec": 4})))
        .await
        .unwrap()
        .summary
        .run_id;
    // Running on `runner` before the cancel goes to `other`.
    tokio::time::timeout(Duration::from_secs(20), async {
        while client(&other).run(&run).await.unwrap().summary.status != RunStatus::Running {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the run never started");
    let cancel = runboard_sse::http::client()
        .post(format!("{}/api/runs/{run}/cancel", other.url()))
        .bearer_auth(OPS)
        .send()
        .await
        .unwrap();
    assert_eq!(
        cancel.status().as_u16(),
        202,
        "{}",
        cancel.text().await.unwrap()
    );
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let detail = client(&other).run(&run).await.unwrap();
            if detail.summary.status.is_finished() {
                return detail;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the cancel did not reach the instance running the run");
    assert_eq!(ended.summary.status, RunStatus::Cancelled);
    let status = ended
        .events
        .iter()
        .rev()
        .find(|event| event.event == "status")
        .unwrap();
    assert_eq!(status.data["message"], "cancelled by ops", "{status:?}");
    assert_eq!(
        ended
            .events
            .iter()
            .filter(|event| event.event == "stream_end")
            .count(),
        1
    );
    // A finished run is not cancelled again, through either.
    let again = runboard_sse::http::client()
        .post(format!("{}/api/runs/{run}/cancel", other.url()))
        .bearer_auth(OPS)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 409);
    runner.stop().await;
    other.stop().await;
}

#[tokio::test]
async fn a_newer_postgresql_schema_is_refused_and_left_alone() {
    let Some(url) = fresh_database("newer") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start(instance_config(&url, &dir, "first")).await;
    server.stop().await;
    let newer = runboard_server::store::SCHEMA_VERSION + 3;
    let updated = psql(
        &url,
        &format!("UPDATE meta SET value = {newer} WHERE key = 'schema_version'"),
    );
    assert!(updated.status.success());
    let Err(refused) = runboard_server::start(instance_config(&url, &dir, "second")).await else {
        panic!("a newer schema must be refused");
    };
    let refused = refused.to_string();
    assert!(
        refused.contains(&format!("schema is version {newer}")),
        "{refused}"
    );
    let kept = psql(&url, "SELECT value FROM meta WHERE key = 'schema_version'");
    assert_eq!(
        String::from_utf8_lossy(&kept.stdout).trim(),
        newer.to_string()
    );
}
