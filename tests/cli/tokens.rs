//! `runboard serve --tokens FILE` (and `RUNBOARD_TOKENS`) as a process: a list with a mistake is
//! refused at the start naming its line, a good one is said on the start-up line by role, each
//! role gets what it may do, and a launch says in the log who made it.

use std::process::Stdio;
use std::time::Duration;

use runboard_api::{ApiClient, ApiError, CreateRun, RunMode, RunQuery};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader};

const ADMIN: &str = "alice-0123456789abcdef";
const VIEWER: &str = "ops-0123456789abcdef00";

fn serve_command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_runboard"));
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--db", ":memory:"])
        .env_remove("RUNBOARD_TOKEN")
        .env_remove("RUNBOARD_TOKENS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn a_token_list_with_a_mistake_or_no_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("tokens");
    std::fs::write(&bad, format!("alice admin {ADMIN}\nops reader {VIEWER}\n")).unwrap();
    let missing = dir.path().join("absent");
    let cases = [
        (Some(&bad), None, "line 2: \"reader\" is not a role"),
        (Some(&missing), None, "absent"),
        (None, Some("alice admin short"), "RUNBOARD_TOKENS: line 1"),
        (None, Some("# only a comment\n"), "names no token"),
    ];
    for (file, env, expected) in cases {
        let mut command = serve_command();
        if let Some(file) = file {
            command.arg("--tokens").arg(file);
        }
        if let Some(env) = env {
            command.env("RUNBOARD_TOKENS", env);
        }
        let output = tokio::time::timeout(Duration::from_secs(20), command.output())
            .await
            .expect("serve should stop at once")
            .unwrap();
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{expected}: {text}");
        assert!(text.contains(expected), "{expected}: {text}");
        assert!(!text.contains("panicked"), "{text}");
    }
}

#[tokio::test]
async fn roles_from_a_file_are_enforced_and_a_launch_is_logged_with_its_tokens_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(
        &file,
        format!("# the team\nalice admin {ADMIN}\nops viewer {VIEWER}  # read only\n"),
    )
    .unwrap();
    let mut child = serve_command().arg("--tokens").arg(&file).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = crate::runs::read_until_listening(&mut stderr).await;
    assert!(
        line.contains("tokens required: 1 admin, 1 viewer"),
        "{line}"
    );
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap()
        .to_owned();

    let request = CreateRun {
        task: "launched by alice".into(),
        mode: RunMode::Queued,
        params: json!({"iterations": 1}),
    };
    let viewer = ApiClient::new(&url, Some(VIEWER)).unwrap();
    assert!(viewer.list_runs(&RunQuery::default()).await.is_ok());
    match viewer.create_run(&request).await {
        Err(ApiError::Status { status: 403, .. }) => {}
        other => panic!("a viewer launched a run: {other:?}"),
    }
    let admin = ApiClient::new(&url, Some(ADMIN)).unwrap();
    let run = admin.create_run(&request).await.unwrap();
    let launched = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            line.clear();
            stderr.read_line(&mut line).await.unwrap();
            assert!(!line.is_empty(), "the server exited");
            if line.contains("run launched") {
                return line.clone();
            }
        }
    })
    .await
    .expect("the launch is logged");
    assert!(launched.contains(&run.summary.run_id), "{launched}");
    assert!(launched.contains("alice"), "{launched}");
    assert!(!launched.contains(ADMIN), "{launched}");
    child.kill().await.unwrap();
}
