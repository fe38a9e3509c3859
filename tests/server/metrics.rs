//! runboard's own `GET /metrics`, scraped over loopback behind the token and checked against
//! what `/api/runs` and the event stream say.

use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use runboard_api::{ApiClient, CreateRun, RunMode, RunQuery, RunStatus};
use runboard_sse::{EventSource, Update};
use serde_json::json;
use support::test_server::{config, start, wait_finished};

const TOKEN: &str = "scrape-me";

/// The samples of a page, by their whole `name{labels}` key.
fn samples(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of every sample whose name is `name` (any labels).
fn total(samples: &HashMap<String, f64>, name: &str) -> f64 {
    samples
        .iter()
        .filter(|(key, _)| key.split('{').next() == Some(name))
        .map(|(_, value)| value)
        .sum()
}

/// Launches four runs (the last made to fail) and reads `events` until each has ended: the
/// run ids, and how many events the stream delivered.
async fn launch_and_follow(api: &ApiClient, events: &mut EventSource) -> (Vec<String>, u64) {
    let mut run_ids = Vec::new();
    for n in 0..4 {
        let params = if n == 3 {
            json!({"fail": true})
        } else {
            json!({"iterations": 1})
        };
        let created = api
            .create_run(&CreateRun {
                task: format!("metrics run {n}"),
                mode: RunMode::Queued,
                params,
            })
            .await
            .unwrap();
        run_ids.push(created.summary.run_id);
    }
    let mut received = 0u64;
    let mut ended = 0;
    tokio::time::timeout(Duration::from_secs(30), async {
        while ended < run_ids.len() {
            if let Some(Update::Event(event)) = events.next().await {
                received += 1;
                if event.event == "stream_end" {
                    ended += 1;
                }
            }
        }
    })
    .await
    .expect("every run ends on the stream");
    (run_ids, received)
}

#[tokio::test]
// Counts of a few runs and events: whole numbers, exact in f64.
#[allow(clippy::cast_precision_loss, clippy::float_cmp)]
async fn the_figures_match_the_runs_and_the_stream_and_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut server_config = config(&dir);
    server_config.access.token = Some(TOKEN.into());
    let server = start(server_config).await;
    let api = ApiClient::new(&server.url(), Some(TOKEN)).unwrap();
    let http = runboard_sse::http::client();
    let url = format!("{}/metrics", server.url());

    let refused = http.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);

    // One subscriber follows everything while four runs go, one made to fail.
    let mut events = EventSource::builder(&format!("{}/api/events", server.url()))
        .unwrap()
        .bearer_token(TOKEN)
        .unwrap()
        .build()
        .unwrap();
    let (run_ids, received) = launch_and_follow(&api, &mut events).await;
    let mut details = Vec::new();
    for run_id in &run_ids {
        details.push(wait_finished(&api, run_id, Duration::from_secs(10)).await);
    }

    let response = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let page = response.text().await.unwrap();
    assert!(page.ends_with("# EOF\n"), "{page}");
    let samples = samples(&page);

    let listed = api.list_runs(&RunQuery::default()).await.unwrap().runs;
    let count = |status: RunStatus| listed.iter().filter(|r| r.status == status).count() as f64;
    assert_eq!(
        samples["runboard_runs{status=\"completed\"}"],
        count(RunStatus::Completed)
    );
    assert_eq!(
        samples["runboard_runs{status=\"failed\"}"],
        count(RunStatus::Failed)
    );
    assert_eq!(count(RunStatus::Failed), 1.0);
    assert_eq!(samples["runboard_runs_generating"], 0.0);

    let tokens = details.iter().map(|d| d.summary.tokens_out).sum::<u64>() as f64;
    assert_eq!(total(&samples, "runboard_tokens_total"), tokens);
    assert_eq!(total(&samples, "gen_ai_client_token_usage_sum"), tokens);
    let with_tokens = details.iter().filter(|d| d.summary.tokens_out > 0).count() as f64;
    assert_eq!(
        total(&samples, "gen_ai_client_token_usage_count"),
        with_tokens
    );
    assert_eq!(
        total(&samples, "gen_ai_server_time_to_first_token_seconds_count"),
        with_tokens
    );
    assert!(
        total(
            &samples,
            "gen_ai_server_time_per_output_token_seconds_count"
        ) > 0.0
    );
    assert!(
        page.contains("gen_ai_request_model=\""),
        "per model: {page}"
    );

    // Every event was stored once and delivered once, to the one subscriber.
    let stored: usize = details.iter().map(|d| d.events.len()).sum();
    assert_eq!(samples["runboard_events_stored_total"], stored as f64);
    assert_eq!(samples["runboard_events_delivered_total"], received as f64);
    assert_eq!(samples["runboard_subscribers"], 1.0);
    drop(events);
    server.stop().await;
}
