//! `runboard serve --upstream` as a process: the key comes from the environment and never shows
//! in the logs (at debug level), the process arguments, the stored events or the errors, even
//! when the model server echoes it; `runboard models` shows the real models, their upstream and
//! an unreachable upstream with its error.

use crate::support;

use std::process::Stdio;
use std::time::Duration;

use runboard_api::{ApiClient, CreateRun, RunMode, RunStatus};
use serde_json::json;
use support::openai_upstream::{FakeUpstream, error_reply};
use tokio::io::{AsyncReadExt as _, BufReader};

const SECRET: &str = "sk-proj-verysecret-4242";

type Stderr = BufReader<tokio::process::ChildStderr>;

/// `runboard serve` on two upstreams, the first one's key in the environment, debug logs on;
/// checks the key is not among its arguments and the start-up line says a key was found.
async fn serve(live: &str, dead: &str) -> (tokio::process::Child, Stderr, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_runboard"))
        .args(["serve", "--addr", "127.0.0.1:0", "--db", ":memory:"])
        .arg("--upstream")
        .arg(format!("gpu={live}"))
        .arg("--upstream")
        .arg(format!("spare={dead}"))
        .env("RUNBOARD_UPSTREAM_GPU_KEY", SECRET)
        .env("RUST_LOG", "debug")
        .env_remove("RUNBOARD_TOKEN")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id().unwrap())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(SECRET));
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let started = crate::runs::read_until_listening(&mut stderr).await;
    assert!(started.contains("runs on gpu at http://"), "{started}");
    assert!(started.contains("key set"), "{started}");
    let url = started
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap()
        .to_owned();
    (child, stderr, url)
}

#[tokio::test]
async fn the_key_stays_secret_and_models_show_upstreams_with_their_reachability() {
    // The upstream refuses the key and quotes it back, as hosted APIs do.
    let upstream = FakeUpstream::start(&["org/chat-7b"], |_, _| {
        error_reply(
            401,
            &format!("Incorrect API key provided: {SECRET}. Find your key in the dashboard."),
            "",
        )
    })
    .await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let (mut child, mut stderr, url) = serve(&upstream.base(), &dead).await;
    // A run fails with the upstream's own message, the key blotted out.
    let api = ApiClient::new(&url, None).unwrap();
    let run_id = api
        .create_run(&CreateRun {
            task: "hello".into(),
            mode: RunMode::Queued,
            params: json!({}),
        })
        .await
        .unwrap()
        .summary
        .run_id;
    let detail = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let detail = api.run(&run_id).await.unwrap();
            if detail.summary.status.is_finished() {
                return detail;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(detail.summary.status, RunStatus::Failed);
    let stored = serde_json::to_string(&detail).unwrap();
    assert!(
        stored.contains("HTTP 401: Incorrect API key provided: <redacted>"),
        "{stored}"
    );
    assert!(!stored.contains(SECRET));
    assert_eq!(
        upstream.chats()[0].request.header("authorization"),
        Some(format!("Bearer {SECRET}").as_str()),
        "the key went where it belongs"
    );

    // `runboard models`: the real models with their upstream; the dead one with its error.
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_runboard"))
            .args(["models", "--api", &url])
            .env_remove("RUNBOARD_TOKEN")
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{text}");
    assert!(text.contains("upstream gpu (http://127.0.0.1:"), "{text}");
    assert!(text.contains("is reachable: 1 model(s)"), "{text}");
    assert!(
        text.contains(&format!(
            "upstream spare ({dead}) is unreachable: could not reach it"
        )),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("org/chat-7b "))
        .expect(&text);
    assert!(row.contains("gpu") && row.contains("scripted"), "{row}");
    let json = tokio::process::Command::new(env!("CARGO_BIN_EXE_runboard"))
        .args(["models", "--json", "--api", &url])
        .env_remove("RUNBOARD_TOKEN")
        .output()
        .await
        .unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(payload["models"][0]["upstream"], "gpu");
    assert_eq!(payload["upstreams"][1]["reachable"], false);

    child.start_kill().unwrap();
    let _ = child.wait().await;
    let mut logs = String::new();
    stderr.read_to_string(&mut logs).await.unwrap();
    assert!(
        logs.contains("DEBUG") || logs.contains("debug"),
        "debug logs were on"
    );
    assert!(!logs.contains(SECRET), "the key leaked into the logs");
}
