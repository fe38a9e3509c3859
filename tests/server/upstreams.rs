//! `serve --scrape`: model servers' own metrics read over loopback, as `/api/upstreams` and its
//! stream show them. Scripted pages written from the engines' documented metric names (with a
//! counter reset and a renamed metric), a server without `/metrics`, one that cannot be
//! reached, and the real llama.cpp server when it is there (see `real_llama_server`).

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use runboard_api::{ApiClient, Engine, Feature, ScrapeState, Slot, Upstream, Upstreams};
use runboard_server::{RunningServer, ScrapeConfig};
use runboard_sse::{EventSource, Update};
use support::scripted_server::{Reply, ScriptedServer};
use support::test_server::{client, config, start};

/// A vLLM page for its `n`-th read: every read adds 500 generated tokens and one slow first
/// token, until read 6, when the server restarts (counters from zero) and comes back as an older
/// vLLM that names its cache figure `gpu_cache_usage_perc`.
fn vllm_page(n: usize) -> String {
    let restarted = n >= 6;
    let reads = f64::from(u32::try_from(if restarted { n - 6 } else { n }).unwrap());
    let cache = if restarted {
        "vllm:gpu_cache_usage_perc"
    } else {
        "vllm:kv_cache_usage_perc"
    };
    format!(
        "# HELP vllm:num_requests_running Requests running.\n\
         # TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{{engine=\"0\",model_name=\"org/llama-8b\"}} 3.0\n\
         vllm:num_requests_running{{engine=\"0\",model_name=\"org/qwen-7b\"}} 1.0\n\
         # TYPE vllm:num_requests_waiting gauge\n\
         vllm:num_requests_waiting{{engine=\"0\",model_name=\"org/llama-8b\"}} 2.0\n\
         vllm:num_requests_waiting{{engine=\"0\",model_name=\"org/qwen-7b\"}} 0.0\n\
         # TYPE {cache} gauge\n\
         {cache}{{engine=\"0\",model_name=\"org/llama-8b\"}} 0.625\n\
         # TYPE vllm:num_preemptions_total counter\n\
         vllm:num_preemptions_total{{engine=\"0\",model_name=\"org/llama-8b\"}} {preempt}\n\
         # TYPE vllm:generation_tokens_total counter\n\
         vllm:generation_tokens_total{{engine=\"0\",model_name=\"org/llama-8b\"}} {tokens}\n\
         # TYPE vllm:time_to_first_token_seconds histogram\n\
         vllm:time_to_first_token_seconds_bucket{{engine=\"0\",le=\"0.1\",model_name=\"org/llama-8b\"}} {fast}\n\
         vllm:time_to_first_token_seconds_bucket{{engine=\"0\",le=\"1.0\",model_name=\"org/llama-8b\"}} {all}\n\
         vllm:time_to_first_token_seconds_bucket{{engine=\"0\",le=\"+Inf\",model_name=\"org/llama-8b\"}} {all}\n\
         vllm:time_to_first_token_seconds_count{{engine=\"0\",model_name=\"org/llama-8b\"}} {all}\n",
        preempt = reads,
        tokens = 500.0 * reads,
        fast = 9.0 * reads,
        all = 10.0 * reads,
    )
}

fn scrape_config(dir: &tempfile::TempDir, urls: Vec<String>) -> runboard_server::ServerConfig {
    let mut config = config(dir);
    config.scrape = ScrapeConfig {
        urls,
        every: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
    };
    config
}

/// Polls `/api/upstreams` until `done` holds for upstream `index`; fails after `limit`.
async fn wait_for(
    api: &ApiClient,
    index: usize,
    limit: Duration,
    what: &str,
    done: impl Fn(&Upstream) -> bool,
) -> Upstream {
    let mut last = None;
    let found = tokio::time::timeout(limit, async {
        loop {
            let all = api.upstreams().await.unwrap();
            let upstream = all.upstreams[index].clone();
            if done(&upstream) {
                return upstream;
            }
            last = Some(upstream);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}; last read {last:#?}"))
}

#[tokio::test]
async fn a_vllm_server_read_through_a_restart_and_a_renamed_metric() {
    let reads = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&reads);
    let vllm = ScriptedServer::start(move |_, request| {
        if request.path == "/metrics" {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            Reply::status(200, "OK", "text/plain; version=0.0.4", &vllm_page(n))
        } else {
            Reply::status(
                404,
                "Not Found",
                "application/json",
                r#"{"detail":"Not Found"}"#,
            )
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // Given as an OpenAI base: the metrics are read at the server's root.
    let server = start(scrape_config(&dir, vec![vllm.url("/v1")])).await;
    let api = client(&server);
    assert!(api.health().await.unwrap().has(Feature::Upstreams));

    let before_restart = wait_for(&api, 0, Duration::from_secs(10), "two reads", |u| {
        u.figures.generation_tok_per_sec.is_some() && reads.load(Ordering::SeqCst) <= 6
    })
    .await;
    assert_eq!(before_restart.state, ScrapeState::Ok);
    assert_eq!(before_restart.engine, Some(Engine::Vllm));
    let figures = &before_restart.figures;
    assert_eq!((figures.running, figures.waiting), (Some(4.0), Some(2.0)));
    assert_eq!(figures.kv_cache, Some(0.625));
    assert!(figures.generation_tok_per_sec.unwrap() > 0.0);
    // 90 % of first tokens within 0.1 s: the median is within it, the 95th beyond.
    assert!(figures.ttft_p50.unwrap() <= 0.1);
    assert!(figures.ttft_p95.unwrap() > 0.1);
    let models: Vec<&str> = before_restart
        .models
        .iter()
        .map(|m| m.model.as_str())
        .collect();
    assert_eq!(models, ["org/llama-8b", "org/qwen-7b"]);
    assert_eq!(before_restart.models[1].figures.running, Some(1.0));
    assert!(before_restart.slots.is_none(), "vLLM has no /slots to read");

    // Through the restart every rate stays a rate (never negative), and the cache figure is
    // read under its older name.
    let after = wait_for(
        &api,
        0,
        Duration::from_secs(10),
        "reads after the restart",
        |u| {
            assert!(
                u.figures.generation_tok_per_sec.is_none_or(|r| r >= 0.0)
                    && u.figures.preemptions_per_sec.is_none_or(|r| r >= 0.0),
                "a negative rate: {u:#?}"
            );
            reads.load(Ordering::SeqCst) >= 9
        },
    )
    .await;
    assert_eq!(after.figures.kv_cache, Some(0.625));
    assert!(after.figures.generation_tok_per_sec.unwrap() > 0.0);
    server.stop().await;
}

#[tokio::test]
async fn no_metrics_is_not_an_error_and_an_unreachable_server_says_why() {
    let plain = ScriptedServer::start(|_, _| {
        Reply::status(404, "Not Found", "text/html", "<html>Not Found</html>")
    })
    .await;
    // A port that was free a moment ago: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start(scrape_config(&dir, vec![plain.url(""), closed.clone()])).await;
    let api = client(&server);
    let plain_read = wait_for(&api, 0, Duration::from_secs(10), "a read", |u| {
        u.state != ScrapeState::Pending
    })
    .await;
    assert_eq!(plain_read.state, ScrapeState::NoMetrics);
    assert_eq!(plain_read.error, None);
    let unreachable = wait_for(&api, 1, Duration::from_secs(10), "a read", |u| {
        u.state != ScrapeState::Pending
    })
    .await;
    assert_eq!(unreachable.state, ScrapeState::Error);
    let error = unreachable.error.unwrap();
    assert!(
        error.contains("could not reach") && error.contains(&closed),
        "{error}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_stream_sends_the_figures_at_once_then_every_read() {
    let llama = ScriptedServer::start(|n, request| match request.path.as_str() {
        "/metrics" => Reply::status(
            200,
            "OK",
            "text/plain",
            &format!("llamacpp:requests_processing 1\nllamacpp:tokens_predicted_total {}\n", n * 40),
        ),
        "/slots" => Reply::status(
            200,
            "OK",
            "application/json",
            r#"[{"id":0,"is_processing":true,"params":{"n_predict":256},"next_token":[{"n_decoded":17}]},{"id":1,"is_processing":false}]"#,
        ),
        _ => Reply::status(404, "Not Found", "text/plain", ""),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(scrape_config(&dir, vec![llama.url("")])).await;
    let mut source = EventSource::builder(&format!("{}/api/upstreams/stream", server.url()))
        .unwrap()
        .build()
        .unwrap();
    let mut updates = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while updates.len() < 4 {
            if let Some(Update::Event(event)) = source.next().await {
                assert_eq!(event.event, Upstreams::UPDATE_EVENT);
                updates.push(serde_json::from_str::<Upstreams>(&event.data).unwrap());
            }
        }
    })
    .await
    .expect("four updates");
    let last = &updates[3].upstreams[0];
    assert_eq!(last.engine, Some(Engine::Llamacpp));
    assert_eq!(
        last.slots.as_deref(),
        Some(
            &[
                Slot {
                    id: 0,
                    processing: true,
                    decoded: Some(17),
                    n_predict: Some(256)
                },
                Slot {
                    id: 1,
                    processing: false,
                    decoded: None,
                    n_predict: None
                }
            ][..]
        )
    );
    assert_eq!(last.figures.running, Some(1.0));
    // Only the first event of a stream (and GET) carries the five-minute history.
    assert!(
        updates[1..]
            .iter()
            .all(|u| u.upstreams[0].history.is_empty())
    );
    let api = client(&server);
    let now = api.upstreams().await.unwrap();
    let history = &now.upstreams[0].history;
    assert!(history.len() >= 3, "{} reads kept", history.len());
    assert!(history.windows(2).all(|pair| pair[0].at <= pair[1].at));
    assert_eq!(history.last().unwrap().figures.running, Some(1.0));
    let mut late = EventSource::builder(&format!("{}/api/upstreams/stream", server.url()))
        .unwrap()
        .build()
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Update::Event(event)) = late.next().await {
                return serde_json::from_str::<Upstreams>(&event.data).unwrap();
            }
        }
    })
    .await
    .unwrap();
    assert!(first.upstreams[0].history.len() >= 3);
    server.stop().await;
}

#[tokio::test]
async fn without_scrape_there_is_no_feature_and_an_empty_list() {
    let dir = tempfile::tempdir().unwrap();
    let server: RunningServer = start(config(&dir)).await;
    let api = client(&server);
    assert!(!api.health().await.unwrap().has(Feature::Upstreams));
    assert!(api.upstreams().await.unwrap().upstreams.is_empty());
    server.stop().await;
}
