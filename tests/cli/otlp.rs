//! `runboard serve` exporting over OTLP as configured by the standard OpenTelemetry
//! environment (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_SERVICE_NAME`), to the receiver that decodes with `opentelemetry-proto`; and a bad
//! `--otlp-endpoint` refused at start.
//!
//! Needs `RUNBOARD_OTLP_PYTHON` (`eval "$(scripts/phoenix.sh)"`); skipped with a message
//! without it, unless `RUNBOARD_REQUIRE_PHOENIX` is set.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::process::Command;

use crate::runs::{BIN, free_port, runboard, wait_until_up};
use crate::support::otlp_receiver::{ProtoReceiver, eventually, installed, trace_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exports_where_the_standard_environment_says_with_its_headers_and_service_name() {
    let Some(python) = installed("RUNBOARD_OTLP_PYTHON") else {
        return;
    };
    let receiver_port = free_port();
    let receiver = ProtoReceiver::start(&python, receiver_port).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = Command::new(BIN)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.path().join("runs.db"))
        .args([
            "--speed",
            "50",
            "--failure-rate",
            "0",
            "--otlp-metrics-secs",
            "0.5",
        ])
        .env_remove("RUNBOARD_TOKEN")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{receiver_port}"),
        )
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20otlp-key-42",
        )
        .env("OTEL_SERVICE_NAME", "fleet-east")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until_up(port).await;
    let api = format!("http://127.0.0.1:{port}");
    let launched = runboard(&[
        "launch",
        "--api",
        &api,
        "--mode",
        "inline",
        "Count the boats",
    ])
    .await;
    assert!(launched.status.success(), "{launched:?}");
    let run_id = String::from_utf8(launched.stdout).unwrap();
    let run_id = run_id.split_whitespace().next().unwrap().to_owned();
    eventually(Duration::from_secs(30), "the run's trace", async || {
        trace_of(&receiver.spans(), &run_id)
    })
    .await;
    eventually(Duration::from_secs(30), "the metrics", async || {
        receiver.metric("gen_ai.client.operation.duration")
    })
    .await;
    let services = receiver.service_names();
    assert!(
        services.iter().all(|name| *name == json!("fleet-east")),
        "{services:?}"
    );
    let authorizations = receiver.authorizations();
    assert!(
        authorizations
            .iter()
            .all(|value| *value == json!("Bearer otlp-key-42")),
        "{authorizations:?}"
    );
    receiver.stop().await;
}

#[tokio::test]
async fn a_bad_otlp_endpoint_is_refused_at_start_naming_the_flag() {
    for bad in [
        "127.0.0.1:4318",
        "grpc://collector:4317",
        "http://collector:4318/?key=1",
    ] {
        let output = Command::new(BIN)
            .args(["serve", "--db", ":memory:", "--otlp-endpoint", bad])
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .output()
            .await
            .unwrap();
        assert!(!output.status.success());
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(said.contains("--otlp-endpoint"), "{bad}: {said}");
    }
}
