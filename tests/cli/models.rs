//! `runboard models`: narration for people, the data payload for scripts (two channels on one
//! connection) — against the reference server, and against a server that speaks the older
//! wire form (`message` events whose JSON carries `"type"`).

use crate::support;

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use support::scripted_server::{Reply, ScriptedServer};
use support::test_server::{client, config, start};

async fn runboard_models(api: &str, json: bool) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_runboard"));
    command.args(["models", "--api", api]);
    if json {
        command.arg("--json");
    }
    let child = command
        .env_remove("RUNBOARD_TOKEN")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), child)
        .await
        .expect("runboard models did not exit within 30 s")
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test]
async fn against_the_reference_server_a_table_for_people_and_the_payload_for_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let output = runboard_models(&server.url(), false).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Listing models on the synthetic generator");
    assert_eq!(lines[1], "Found 5 model(s)");
    assert!(
        lines[2].starts_with("id ") && lines[2].contains("│ tok/s"),
        "{text}"
    );
    assert!(lines[3].starts_with("───"), "{text}");
    assert!(
        lines.iter().any(|l| l.starts_with("synth-14b-coder-q5 ")),
        "{text}"
    );
    assert_eq!(*lines.last().unwrap(), "Model list complete");
    assert!(
        !text.contains('{') && !text.contains('['),
        "no JSON for people: {text}"
    );

    let output = runboard_models(&server.url(), true).await;
    assert!(output.status.success());
    let payload: Value = serde_json::from_str(&stdout(&output)).expect("--json prints only JSON");
    let models = payload["models"].as_array().unwrap();
    assert_eq!(models.len(), 5);
    for model in models {
        for field in ["id", "name", "size_bytes", "context_length", "tok_per_sec"] {
            assert!(!model[field].is_null(), "{field} missing in {model}");
        }
    }
    // Each call was a job like any run: two runs named "models", both completed.
    let runs = client(&server)
        .list_runs(&runboard_api::RunQuery::default())
        .await
        .unwrap();
    assert_eq!(runs.runs.len(), 2);
    assert!(
        runs.runs
            .iter()
            .all(|r| r.task == "models" && r.status.is_finished())
    );
    server.stop().await;
}

/// Seed 001's stream exactly: no `event:` lines, the type inside the JSON, a table in one
/// narration, the data event, and `done` at the end.
const SEED_001_STREAM: &str = concat!(
    "data: {\"type\":\"narration\",\"formatted\":\"\u{1F4CB} Listing models on hive 'localhost'\"}\n\n",
    "data: {\"type\":\"narration\",\"formatted\":\"Found 1 model(s)\"}\n\n",
    "data: {\"type\":\"narration\",\"formatted\":\"id \u{2502} name \u{2502} size\\n\u{2500}\u{2500}\u{2500}\u{253C}\u{2500}\u{2500}\u{2500}\u{2500}\u{2500}\u{2500}\u{253C}\u{2500}\u{2500}\u{2500}\u{2500}\u{2500}\\nmodel1 \u{2502} Model 1 \u{2502} 1024\"}\n\n",
    "data: {\"type\":\"data\",\"action\":\"model_list\",\"payload\":{\"models\":[{\"id\":\"model1\",\"name\":\"Model 1\",\"size\":1024}]}}\n\n",
    "data: {\"type\":\"narration\",\"formatted\":\"\u{2705} Model list operation complete\"}\n\n",
    "data: {\"type\":\"done\"}\n\n",
);

fn seed_001_server() -> impl Fn(usize, &support::scripted_server::Request) -> Reply {
    |_, request| {
        if request.path == "/api/runs" {
            let body = r#"{"run_id":"job-1","task":"models","status":"queued"}"#;
            Reply::status(201, "Created", "application/json", body)
        } else if request.path == "/api/runs/job-1/stream" {
            Reply::sse(SEED_001_STREAM)
        } else {
            Reply::status(404, "Not Found", "application/json", "{}")
        }
    }
}

#[tokio::test]
async fn seed_001s_wire_form_narration_for_people_and_data_for_scripts() {
    let server = ScriptedServer::start(seed_001_server()).await;
    let output = runboard_models(&server.url(""), false).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout(&output),
        "\u{1F4CB} Listing models on hive 'localhost'\nFound 1 model(s)\n\
         id \u{2502} name \u{2502} size\n\u{2500}\u{2500}\u{2500}\u{253C}\u{2500}\u{2500}\u{2500}\
         \u{2500}\u{2500}\u{2500}\u{253C}\u{2500}\u{2500}\u{2500}\u{2500}\u{2500}\n\
         model1 \u{2502} Model 1 \u{2502} 1024\n\u{2705} Model list operation complete\n"
    );
    // It stopped at `done`: one POST and one stream request, no reconnect.
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/api/runs", "/api/runs/job-1/stream"]);

    let server = ScriptedServer::start(seed_001_server()).await;
    let output = runboard_models(&server.url(""), true).await;
    assert!(output.status.success());
    let payload: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(payload["models"][0]["id"], "model1");
    assert_eq!(payload["models"][0]["size"], 1024);
}
