//! runboard's `/metrics` read by Prometheus's own tools: `promtool check metrics` finds nothing to
//! say about the page, the alerting rules in `deploy/prometheus/` pass `promtool check rules` and
//! their unit tests, and a real Prometheus (Debian's package) scraping a board with a viewer's
//! token answers over its HTTP API with a token rate above zero and a median time to first
//! token from `histogram_quantile` in the histogram bucket of the runs' own median.
//!
//! Needs `prometheus` and `promtool` on the `PATH` (`apt-get install prometheus`); skipped with a
//! message without them, unless `RUNBOARD_REQUIRE_PROMETHEUS` is set.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use runboard_api::{ApiClient, CreateRun, RunMode, RunStatus, StoredEvent};
use runboard_server::parse_token_list;
use serde_json::{Value, json};
use support::llama_server::free_port;
use support::test_server::{config, start, wait_finished};

const ADMIN: &str = "admin-token-0123456789";
const VIEWER: &str = "prometheus-viewer-0123456789";
const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");

/// Where `program` is on the `PATH`, or `None` (the test says so) when it is not.
fn tool(program: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("RUNBOARD_REQUIRE_PROMETHEUS").is_none(),
            "RUNBOARD_REQUIRE_PROMETHEUS is set but {program} is not on the PATH"
        );
        eprintln!("skipped: {program} is not installed (apt-get install prometheus)");
    }
    found
}

async fn run_tool(program: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        tokio::io::AsyncWriteExt::write_all(&mut input, text.as_bytes())
            .await
            .unwrap();
    }
    drop(input);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the tool did not finish within a minute")
        .unwrap()
}

#[tokio::test]
async fn promtool_finds_the_metrics_page_clean_and_the_alert_rules_valid_and_right() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let api = ApiClient::new(&server.url(), None).unwrap();
    let run = api
        .create_run(&CreateRun {
            task: "fill the metrics".into(),
            mode: RunMode::Queued,
            params: json!({"iterations": 1}),
        })
        .await
        .unwrap();
    wait_finished(&api, &run.summary.run_id, Duration::from_secs(30)).await;
    let page = runboard_sse::http::client()
        .get(format!("{}/metrics", server.url()))
        .header("accept", "text/plain; version=0.0.4")
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let page = page.text().await.unwrap();
    assert!(page.contains("runboard_tokens_total"), "{page}");
    let checked = run_tool(&promtool, &["check", "metrics"], Some(&page)).await;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        checked.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );
    server.stop().await;

    let rules = format!("{RULES}/rules.yml");
    let checked = run_tool(&promtool, &["check", "rules", &rules], None).await;
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
    let tested = run_tool(
        &promtool,
        &["test", "rules", &format!("{RULES}/rules.test.yml")],
        None,
    )
    .await;
    assert!(
        tested.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
    let config = run_tool(
        &promtool,
        &["check", "config", &format!("{RULES}/prometheus.yml")],
        None,
    )
    .await;
    assert!(config.status.success(), "{config:?}");
}

/// A Prometheus on loopback scraping `target` every second with `token`, with runboard's rules;
/// killed when dropped.
struct Prometheus {
    url: String,
    _child: tokio::process::Child,
}

impl Prometheus {
    async fn start(program: &Path, dir: &Path, target: &str, token: &str) -> Self {
        std::fs::copy(format!("{RULES}/rules.yml"), dir.join("rules.yml")).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n\
             scrape_configs:\n  - job_name: runboard\n    authorization:\n      credentials: {token}\n\
             \x20   static_configs:\n      - targets: [\"{target}\"]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = tokio::process::Command::new(program)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let ready = format!("{url}/-/ready");
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Ok(response) = runboard_sse::http::client().get(&ready).send().await
                    && response.status().is_success()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("Prometheus did not become ready");
        Self { url, _child: child }
    }

    /// The API's answer to `path` (`data` of a successful answer).
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.url), query).unwrap();
        let text = runboard_sse::http::client()
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["status"], "success", "{answer}");
        answer["data"].clone()
    }

    /// The one value of an instant query (`None` when it has no result).
    async fn value(&self, query: &str) -> Option<f64> {
        let data = self.api("/api/v1/query", &[("query", query)]).await;
        data["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

/// A run's time to first token as its events tell it: from `running` to its first token.
fn time_to_first_token(events: &[StoredEvent]) -> Option<f64> {
    let at = |event: &StoredEvent| runboard_api::clock::unix_seconds(event.ts.as_deref()?);
    let started = events
        .iter()
        .find(|event| event.event == "status" && event.data["status"] == "running")
        .and_then(at)?;
    let first = events
        .iter()
        .find(|event| {
            event.event == "node_update" && event.data["tokens_out"].as_u64().unwrap_or(0) > 0
        })
        .and_then(at)?;
    Some(first - started)
}

/// The bounds of the histogram bucket (exponential from 10 ms, doubling: runboard's time to
/// first token buckets) that holds `seconds`.
fn bucket_of(seconds: f64) -> (f64, f64) {
    let mut upper = 0.01;
    while seconds > upper {
        upper *= 2.0;
    }
    (if upper > 0.01 { upper / 2.0 } else { 0.0 }, upper)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_board_and_its_queries_agree_with_the_runs() {
    let (Some(prometheus), Some(_)) = (tool("prometheus"), tool("promtool")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.access.tokens = parse_token_list(&format!(
        "alice admin {ADMIN}\nprometheus viewer {VIEWER}\n"
    ))
    .unwrap();
    // Runs of a few seconds, so Prometheus scrapes each one several times.
    config.generator.speed = 2.0;
    let server = start(config).await;
    let target = server.url().trim_start_matches("http://").to_owned();
    let prom_dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(&prometheus, prom_dir.path(), &target, VIEWER).await;

    // Scraped once before the runs, so their counters' series start from before their tokens.
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let targets = prom.api("/api/v1/targets", &[]).await;
            if targets["activeTargets"][0]["health"] == "up" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("Prometheus never scraped the board with the viewer's token");
    let api = ApiClient::new(&server.url(), Some(ADMIN)).unwrap();
    let mut ids = Vec::new();
    for n in 0..12 {
        let run = api
            .create_run(&CreateRun {
                task: format!("scraped run {n}"),
                mode: RunMode::Queued,
                params: json!({"iterations": 1, "worker": format!("w{}", n % 4)}),
            })
            .await
            .unwrap();
        ids.push(run.summary.run_id);
    }
    let mut first_tokens = Vec::new();
    for id in &ids {
        let detail = wait_finished(&api, id, Duration::from_secs(60)).await;
        assert_eq!(detail.summary.status, RunStatus::Completed);
        first_tokens.push(time_to_first_token(&detail.events).expect("a first token"));
    }
    // Two more scrapes after the last run, so every run is in Prometheus.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Every rule of deploy/prometheus/rules.yml is loaded, and none is broken.
    let rules = prom.api("/api/v1/rules", &[]).await;
    let loaded = rules["groups"][0]["rules"].as_array().unwrap();
    let written = std::fs::read_to_string(format!("{RULES}/rules.yml"))
        .unwrap()
        .lines()
        .filter(|line| line.trim_start().starts_with("- alert:"))
        .count();
    assert_eq!(loaded.len(), written, "{rules}");
    assert!(loaded.iter().all(|rule| rule["health"] == "ok"), "{rules}");
    let rate = prom
        .value("sum(rate(runboard_tokens_total[1m]))")
        .await
        .expect("a token rate");
    assert!(rate > 0.0, "token rate {rate}");
    let ended = prom
        .value("sum(runboard_runs_ended_total{status=\"completed\"})")
        .await;
    assert_eq!(ended, Some(12.0));

    first_tokens.sort_by(f64::total_cmp);
    let median = f64::midpoint(first_tokens[5], first_tokens[6]);
    let quantile = prom
        .value(
            "histogram_quantile(0.5, sum by (le) \
             (gen_ai_server_time_to_first_token_seconds_bucket))",
        )
        .await
        .expect("a median time to first token");
    // The events' times and the histogram's are taken a moment apart (the event's stamp, then
    // the recorder's clock): a median within a tenth of a bucket's edge may fall either side.
    let (low, high) = (bucket_of(median * 0.9).0, bucket_of(median * 1.1).1);
    eprintln!(
        "token rate {rate:.1}/s; median TTFT: Prometheus {quantile:.3} s, runs {median:.3} s"
    );
    assert!(
        (low..=high).contains(&quantile),
        "Prometheus's median TTFT {quantile} s is outside the bucket {low}..{high} of the runs' \
         own median {median} s ({first_tokens:?})"
    );
    server.stop().await;
}
