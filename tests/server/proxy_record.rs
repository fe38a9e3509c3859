//! What the proxy records can be trusted: a call is ended exactly once whatever the client
//! does, a client that closes once it has the whole answer completes its call, an answer the
//! model server ended without a finish reason is named interrupted, a restart never sends a
//! call no client made, proxied calls carry their model into `/metrics`, and a store that
//! stops taking writes refuses new calls without losing the ones let in. Scripted upstream
//! here (exact timing, many clients); the real servers are in `llama_proxy.rs` and
//! `llama_runs.rs`.

use crate::support;

use std::time::Duration;

use futures_util::StreamExt as _;
use runboard_api::{ApiClient, CreateRun, RunDetail, RunMode, RunQuery, RunStatus};
use runboard_server::{RunningServer, ServerConfig, UpstreamSpec};
use serde_json::{Value, json};
use support::openai_upstream::{
    FakeUpstream, Step, chunked, chunked_head, content, done, finish, role, stream_head,
    whole_reply,
};
use support::test_server::{config, db_path, sqlite, sqlite_config, start, wait_finished};
use tokio::io::AsyncWriteExt as _;

const TOKEN: &str = "record-token";

fn with_upstream(mut config: ServerConfig, upstream: &FakeUpstream) -> ServerConfig {
    let spec = UpstreamSpec::parse(&format!("gpu={}", upstream.base()), |_| None).unwrap();
    config.upstreams.upstreams.push(spec);
    config.upstreams.idle_timeout = Duration::from_secs(5);
    config.access.token = Some(TOKEN.into());
    config
}

fn api_of(server: &RunningServer) -> ApiClient {
    ApiClient::new(&server.url(), Some(TOKEN)).unwrap()
}

fn chat(stream: bool, question: &str) -> String {
    json!({"model": "org/chat", "stream": stream,
           "messages": [{"role": "user", "content": question}]})
    .to_string()
}

fn request(
    server: &RunningServer,
    body: String,
    headers: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    let mut request = runboard_sse::http::client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
}

/// The run a call was recorded in, as its answer names it.
fn run_id_of(response: &reqwest::Response) -> String {
    response.headers()["x-runboard-run-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// Reads a streamed answer until `[DONE]` and closes the connection there, as the `openai`
/// package does, before the upstream's body has ended. Returns the run's id.
async fn read_to_done_and_leave(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    let run_id = run_id_of(&response);
    let mut body = response.bytes_stream();
    let mut seen = Vec::new();
    while let Some(piece) = body.next().await {
        seen.extend_from_slice(&piece.unwrap());
        if String::from_utf8_lossy(&seen).contains("data: [DONE]") {
            return run_id;
        }
    }
    panic!("no [DONE] in {}", String::from_utf8_lossy(&seen));
}

fn payloads(detail: &RunDetail, action: &str) -> Vec<Value> {
    detail
        .events
        .iter()
        .filter(|e| e.event == "data" && e.data["action"] == action)
        .map(|e| e.data["payload"].clone())
        .collect()
}

fn narrations(detail: &RunDetail, action: &str) -> Vec<String> {
    detail
        .events
        .iter()
        .filter(|e| e.event == "narration" && e.data["action"] == action)
        .map(|e| e.data["formatted"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// How many times the run was ended: its final statuses and its `stream_end`s.
fn endings(detail: &RunDetail) -> (usize, usize) {
    let finals = detail
        .events
        .iter()
        .filter(|e| {
            e.event == "status"
                && e.data["status"]
                    .as_str()
                    .is_some_and(|s| matches!(s, "completed" | "failed" | "cancelled"))
        })
        .count();
    let ends = detail
        .events
        .iter()
        .filter(|e| e.event == "stream_end")
        .count();
    (finals, ends)
}

/// A stream that says `[DONE]` and then holds its body open for `hold` before ending it.
fn done_then_hold(words: &[&str], hold: Duration) -> Vec<Step> {
    let mut steps = vec![chunked_head(), chunked(&role())];
    for word in words {
        steps.push(chunked(&content(word)));
    }
    steps.push(chunked(&finish("stop")));
    steps.push(chunked(&done()));
    steps.push(Step::Pause(hold));
    steps.push(Step::Write("0\r\n\r\n".into()));
    steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_at_done_completes_its_call_and_keeps_its_pipeline_whole() {
    let upstream = FakeUpstream::start(&["org/chat"], |_, _| {
        done_then_hold(&["tide", " pools"], Duration::from_millis(800))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(with_upstream(config(&dir), &upstream)).await;
    let api = api_of(&server);

    // Three calls of one pipeline, each left at `[DONE]`, the last one ending the run.
    let mut runs = Vec::new();
    for (agent, last) in [("plan", false), ("write", false), ("check", true)] {
        let mut headers = vec![("x-runboard-run", "pipe-1"), ("x-runboard-agent", agent)];
        if last {
            headers.push(("x-runboard-run-end", "true"));
        }
        let response = request(&server, chat(true, agent), &headers)
            .send()
            .await
            .unwrap();
        runs.push(read_to_done_and_leave(response).await);
    }
    assert!(runs.iter().all(|run| *run == runs[0]), "{runs:?}");
    let detail = wait_finished(&api, &runs[0], Duration::from_secs(10)).await;
    assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");
    assert_eq!(payloads(&detail, "step").len(), 3);
    assert_eq!(detail.summary.tokens_out, 6);
    assert_eq!(endings(&detail), (1, 1));
    let listed = api.list_runs(&RunQuery::default()).await.unwrap().runs;
    assert_eq!(listed.len(), 1, "one run for the pipeline: {listed:#?}");

    // A call of its own, left at `[DONE]`: completed too.
    let response = request(&server, chat(true, "alone"), &[])
        .send()
        .await
        .unwrap();
    let alone = read_to_done_and_leave(response).await;
    let detail = wait_finished(&api, &alone, Duration::from_secs(10)).await;
    assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");
    assert_eq!(endings(&detail), (1, 1));

    server.stop().await;

    // A client that leaves before `[DONE]` still cancels its call.
    let upstream_slow = FakeUpstream::start(&["org/chat"], |_, _| {
        vec![
            stream_head(),
            Step::Write(role()),
            Step::Write(content("half")),
            Step::Hang,
        ]
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(with_upstream(config(&dir), &upstream_slow)).await;
    let api = api_of(&server);
    let response = request(&server, chat(true, "leave early"), &[])
        .send()
        .await
        .unwrap();
    let run_id = run_id_of(&response);
    let mut body = response.bytes_stream();
    let _ = body.next().await;
    drop(body);
    let detail = wait_finished(&api, &run_id, Duration::from_secs(10)).await;
    assert_eq!(detail.summary.status, RunStatus::Cancelled);
    assert_eq!(endings(&detail), (1, 1));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_ended_without_a_finish_reason_are_named_interrupted_never_silent_successes() {
    // The n-th call: nothing then `[DONE]` (interrupted at once); some text then `[DONE]`
    // (interrupted mid-way); text and a clean close without `[DONE]` (not interrupted).
    let upstream = FakeUpstream::start(&["org/chat"], |index, body| {
        let question = body["messages"][1]["content"]
            .as_str()
            .or_else(|| body["messages"][0]["content"].as_str())
            .unwrap_or_default()
            .to_owned();
        let mut steps = vec![stream_head(), Step::Write(role())];
        if question.contains("empty") || question.starts_with("Task:") {
            steps.push(Step::Write(done()));
        } else if question.contains("half") {
            steps.push(Step::Write(content("half an")));
            steps.push(Step::Write(done()));
        } else {
            let _ = index;
            steps.push(Step::Write(content("whole")));
            steps.push(Step::Write(finish("length")));
        }
        steps
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(with_upstream(config(&dir), &upstream)).await;
    let api = api_of(&server);
    let mut ids = Vec::new();
    for question in ["empty answer", "half answer", "cut answer"] {
        let response = request(&server, chat(true, question), &[])
            .send()
            .await
            .unwrap();
        let run_id = run_id_of(&response);
        response.bytes().await.unwrap();
        ids.push(run_id);
    }
    let empty = wait_finished(&api, &ids[0], Duration::from_secs(10)).await;
    assert_eq!(empty.summary.status, RunStatus::Failed, "{empty:#?}");
    let error = empty.events.iter().find(|e| e.event == "error").unwrap();
    assert!(
        error.data["message"]
            .as_str()
            .unwrap()
            .contains("interrupted 1 of 1 step"),
        "{error:?}"
    );
    assert_eq!(payloads(&empty, "step")[0]["interrupted"], true);
    assert_eq!(narrations(&empty, "step_interrupted").len(), 1);

    let half = wait_finished(&api, &ids[1], Duration::from_secs(10)).await;
    assert_eq!(half.summary.status, RunStatus::Completed, "{half:#?}");
    let step = &payloads(&half, "step")[0];
    assert_eq!(step["interrupted"], true);
    assert!(step["finish_reason"].is_null());
    let warning = &narrations(&half, "step_interrupted")[0];
    assert!(
        warning.contains("interrupted") && warning.contains("after 1 tokens"),
        "{warning}"
    );
    assert!(
        narrations(&half, "run_done")[0].contains("1 interrupted"),
        "{half:#?}"
    );

    let cut = wait_finished(&api, &ids[2], Duration::from_secs(10)).await;
    assert_eq!(cut.summary.status, RunStatus::Completed);
    assert!(payloads(&cut, "step")[0].get("interrupted").is_none());
    assert!(narrations(&cut, "step_interrupted").is_empty());

    // A generated run whose every step is interrupted with nothing fails, naming it.
    let created = api
        .create_run(&CreateRun {
            task: "write about tides".into(),
            mode: RunMode::Queued,
            params: json!({"model": "org/chat"}),
        })
        .await
        .unwrap();
    let generated = wait_finished(&api, &created.summary.run_id, Duration::from_secs(20)).await;
    assert_eq!(
        generated.summary.status,
        RunStatus::Failed,
        "{generated:#?}"
    );
    assert_eq!(generated.summary.tokens_out, 0);
    let interrupted = narrations(&generated, "step_interrupted");
    assert_eq!(interrupted.len(), 5, "every step named: {interrupted:?}");
    assert!(interrupted[0].starts_with("supervisor (iteration 1) was interrupted"));
    let error = generated
        .events
        .iter()
        .find(|e| e.event == "error")
        .unwrap();
    assert!(
        error.data["message"]
            .as_str()
            .unwrap()
            .contains("interrupted 5 of 5 step(s)"),
        "{error:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_calls_are_counted_under_their_model_and_whole_answers_keep_their_length() {
    let upstream = FakeUpstream::start(&["org/chat"], |index, _| {
        if index == 0 {
            whole_reply("A whole answer of a few words.", 9, 7)
        } else {
            done_then_hold(&["a", " b", " c"], Duration::ZERO)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(with_upstream(config(&dir), &upstream)).await;
    let api = api_of(&server);
    let response = request(&server, chat(false, "whole"), &[])
        .send()
        .await
        .unwrap();
    let length = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse::<usize>()
        .unwrap();
    assert!(response.headers().get("transfer-encoding").is_none());
    let whole_run = run_id_of(&response);
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), length);
    let response = request(&server, chat(true, "streamed"), &[])
        .send()
        .await
        .unwrap();
    let streamed_run = read_to_done_and_leave(response).await;
    wait_finished(&api, &whole_run, Duration::from_secs(10)).await;
    wait_finished(&api, &streamed_run, Duration::from_secs(10)).await;

    let page = runboard_sse::http::client()
        .get(format!("{}/metrics", server.url()))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.lines()
            .any(|l| l == "runboard_tokens_total{gen_ai_request_model=\"org/chat\"} 10"),
        "{page}"
    );
    assert!(!page.contains("gen_ai_request_model=\"unknown\""), "{page}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_in_a_prompt_or_an_answer_is_recorded_and_never_stops_the_store() {
    // PostgreSQL refuses NUL in text: the run's row with this prompt or this answer's snippet
    // failed the writer's batch at every try, and nothing more was recorded.
    let upstream = FakeUpstream::start(&["org/chat"], |index, _| {
        if index == 0 {
            whole_reply("an answer\u{0} with a NUL", 9, 7)
        } else {
            whole_reply("a plain answer", 4, 3)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(with_upstream(config(&dir), &upstream)).await;
    let api = api_of(&server);

    let response = request(&server, chat(false, "a prompt\u{0} with a NUL"), &[])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let nul_run = run_id_of(&response);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("\\u0000"),
        "the answer passes unchanged: {body}"
    );
    let detail = wait_finished(&api, &nul_run, Duration::from_secs(10)).await;
    assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");
    // A proxied call's task shows control characters as spaces.
    assert_eq!(detail.summary.task, "a prompt  with a NUL");
    let snippet = detail.summary.snippet.clone().unwrap_or_default();
    assert!(snippet.contains("answer\u{FFFD} with"), "{snippet:?}");

    // The store still takes writes: the next call and a launched run with a NUL are recorded.
    let response = request(&server, chat(false, "after"), &[])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let plain_run = run_id_of(&response);
    let detail = wait_finished(&api, &plain_run, Duration::from_secs(10)).await;
    assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");
    let launched = api
        .create_run(&CreateRun {
            task: "a task\u{0}".into(),
            mode: RunMode::Queued,
            params: json!({}),
        })
        .await
        .unwrap();
    let stored = api.run(&launched.summary.run_id).await.unwrap();
    assert_eq!(stored.summary.task, "a task\u{FFFD}");
    let health = api.health().await.unwrap();
    assert!(health.store.unwrap().writable, "the store takes writes");

    // A NUL in a looked-up value finds nothing; it is not a store failure.
    let error = api.run("run-a\u{0}b").await.unwrap_err();
    assert!(error.to_string().contains("404"), "{error}");
    let query = RunQuery {
        worker: Some("w\u{0}".into()),
        ..RunQuery::default()
    };
    assert!(api.list_runs(&query).await.unwrap().runs.is_empty());
    server.stop().await;
}

/// One client of the load: a whole-answer call on a raw connection, dropped after `leave_after`
/// (maybe before the answer, maybe after).
async fn impatient_client(addr: String, body: String, leave_after: Duration) {
    let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await else {
        return;
    };
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).await.is_err()
        || stream.write_all(body.as_bytes()).await.is_err()
    {
        return;
    }
    tokio::time::sleep(leave_after).await;
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_leaving_at_random_then_a_restart_end_every_run_once_and_send_no_call_twice() {
    // Short answers after a short think; some clients stay for theirs, most leave first.
    let upstream = FakeUpstream::start(&["org/chat"], |index, _| {
        let think = Duration::from_millis(5 + (index as u64 * 7) % 40);
        let mut steps = whole_reply("ok", 3, 1);
        steps.insert(0, Step::Pause(think));
        steps
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let first = start(with_upstream(sqlite_config(&dir), &upstream)).await;
    let addr = first.url().trim_start_matches("http://").to_owned();
    let clients = 512usize;
    let mut tasks = Vec::new();
    for n in 0..clients {
        // A spread of leaving times from 0 to 60 ms, in a scrambled order.
        let leave_after = Duration::from_micros(((n * 7919) % 600) as u64 * 100);
        let body = chat(false, &format!("question {n}"));
        tasks.push(tokio::spawn(impatient_client(
            addr.clone(),
            body,
            leave_after,
        )));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let api1 = api_of(&first);
    // Every run that was made ends, none stays queued or running.
    let settled = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let runs = all_runs(&api1).await;
            if runs.iter().all(|run| run.status.is_finished()) {
                return runs;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every proxied run ends once its client has gone");
    let made = settled.len();
    assert!(
        made > 0 && made <= clients,
        "{made} runs for {clients} clients"
    );
    let sent_before = upstream.chats().len();
    assert!(
        sent_before <= made,
        "{sent_before} calls upstream, {made} runs"
    );

    // A call still in flight when the server stops, and (as an older runboard could leave
    // one) a proxied run found `queued` in the file: neither is ever sent again.
    first.stop().await;
    let hanging = FakeUpstream::start(&["org/chat"], |_, _| {
        vec![stream_head(), Step::Write(role()), Step::Hang]
    })
    .await;
    let in_flight = a_call_in_flight_at_a_stop(&dir, &hanging).await;
    let requeued = settled[0].run_id.clone();
    mark_queued_as_an_older_runboard_could(&dir, &requeued).await;

    let third = start(with_upstream(sqlite_config(&dir), &upstream)).await;
    let api3 = api_of(&third);
    for run_id in [&in_flight, &requeued] {
        let detail = wait_finished(&api3, run_id, Duration::from_secs(10)).await;
        assert_eq!(detail.summary.status, RunStatus::Failed, "{detail:#?}");
        let error = detail.events.iter().find(|e| e.event == "error").unwrap();
        assert!(
            error.data["message"]
                .as_str()
                .unwrap()
                .starts_with("runboard stopped during the call"),
            "{error:?}"
        );
        assert_eq!(endings(&detail), (1, 1), "{detail:#?}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        upstream.chats().len(),
        sent_before,
        "the restart sent calls that no client made"
    );
    assert_eq!(hanging.chats().len(), 1);
    let runs = all_runs(&api3).await;
    assert_eq!(runs.len(), made + 1);
    assert!(runs.iter().all(|run| run.status.is_finished()));
    // Each run ended exactly once.
    for run in runs.iter().step_by(17) {
        let detail = api3.run(&run.run_id).await.unwrap();
        assert_eq!(endings(&detail), (1, 1), "{detail:#?}");
    }
    third.stop().await;
}

/// Starts a server on `dir`'s file, makes a call that `upstream` leaves hanging, and stops
/// the server with the call in flight; the call's run id.
async fn a_call_in_flight_at_a_stop(dir: &tempfile::TempDir, upstream: &FakeUpstream) -> String {
    let server = start(with_upstream(sqlite_config(dir), upstream)).await;
    let response = request(&server, chat(true, "in flight at the stop"), &[])
        .send()
        .await
        .unwrap();
    let run_id = run_id_of(&response);
    let mut body = response.bytes_stream();
    let _ = body.next().await;
    server.stop().await;
    drop(body);
    run_id
}

/// Leaves a finished run `queued` with only its `run_created`, as a proxied call interrupted
/// between its creation and its start was left by an older runboard.
async fn mark_queued_as_an_older_runboard_could(dir: &tempfile::TempDir, run_id: &str) {
    sqlite(
        &db_path(dir),
        &format!(
            "UPDATE runs SET status = 'queued', started_at = NULL, finished_at = NULL \
             WHERE run_id = '{run_id}'"
        ),
    )
    .await;
    sqlite(
        &db_path(dir),
        &format!("DELETE FROM events WHERE run_id = '{run_id}' AND event <> 'run_created'"),
    )
    .await;
}

/// Every run, page by page, newest first.
async fn all_runs(api: &ApiClient) -> Vec<runboard_api::RunSummary> {
    let mut runs: Vec<runboard_api::RunSummary> = Vec::new();
    loop {
        let page = api
            .list_runs(&RunQuery {
                limit: Some(500),
                before: runs.last().map(|run| run.run_id.clone()),
                ..RunQuery::default()
            })
            .await
            .unwrap()
            .runs;
        if page.is_empty() {
            return runs;
        }
        runs.extend(page);
    }
}

/// Holds SQLite's write lock on `path` from another process (Python's `sqlite3`, as a person
/// with a long transaction open in another tool would) until the child's input is closed.
async fn hold_write_lock(path: &std::path::Path) -> tokio::process::Child {
    use tokio::io::AsyncBufReadExt as _;
    let script = "import sqlite3, sys\n\
                  db = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
                  db.execute('BEGIN IMMEDIATE')\n\
                  print('locked', flush=True)\n\
                  sys.stdin.read()\n\
                  db.execute('ROLLBACK')";
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 must be installed (.ci/run installs it)");
    let mut said = String::new();
    tokio::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut said)
        .await
        .unwrap();
    assert_eq!(said.trim(), "locked");
    child
}

/// What one client saw: the runs of its answered calls, and the refusal that stopped it
/// (status, `Retry-After`, body).
async fn call_until_refused(
    server: &RunningServer,
    most: usize,
) -> (Vec<String>, Option<(u16, String, Value)>) {
    let mut runs = Vec::new();
    for _ in 0..most {
        let response = request(server, chat(false, "stalled store"), &[])
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => {
                runs.push(run_id_of(&response));
                response.bytes().await.unwrap();
            }
            status => {
                let retry = response
                    .headers()
                    .get("retry-after")
                    .map(|value| value.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                let bytes = response.bytes().await.unwrap_or_default();
                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                return (runs, Some((status, retry, body)));
            }
        }
    }
    (runs, None)
}

/// A store that stops taking writes (another program holds SQLite's lock): proxied calls go
/// on while their records queue; once the heartbeat finds the store unwritable, a new call is
/// refused at once with 503 `store_unwritable` and `Retry-After: 5` and never sent upstream.
/// Once the lock is let go, every call that was let in is recorded, completed, once, and calls
/// are taken again. (The 503 `recorder_behind` of a store that writes but too slowly needs a
/// backlog of 16,384 records before the heartbeat's 2 s: the recorder's unit tests cover it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_a_stalled_store_are_refused_at_once_and_every_call_let_in_is_recorded() {
    let upstream =
        FakeUpstream::start(&["org/chat"], |_, _| whole_reply("Recorded later.", 5, 3)).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(with_upstream(sqlite_config(&dir), &upstream)).await;
    let mut lock = hold_write_lock(&db_path(&dir)).await;

    let clients: Vec<_> = (0..64)
        .map(|_| {
            let server = &server;
            call_until_refused(server, 200)
        })
        .collect();
    let seen = futures_util::future::join_all(clients).await;
    let answered: Vec<String> = seen.iter().flat_map(|(runs, _)| runs.clone()).collect();
    let refusals: Vec<_> = seen
        .iter()
        .filter_map(|(_, refusal)| refusal.clone())
        .collect();
    assert!(
        !answered.is_empty(),
        "no call went on while the store was behind"
    );
    assert_eq!(
        refusals.len(),
        64,
        "{} calls made against a stalled store, {} clients refused",
        answered.len(),
        refusals.len()
    );
    for (status, retry, body) in &refusals {
        assert_eq!((*status, retry.as_str()), (503, "5"), "{body}");
        assert_eq!(body["error"]["code"], "store_unwritable", "{body}");
    }
    assert!(api_of(&server).health().await.unwrap().recorder_backlog > Some(0));
    assert_eq!(
        upstream.chats().len(),
        answered.len(),
        "a refused call was sent upstream"
    );

    drop(lock.stdin.take());
    lock.wait().await.unwrap();
    let expected = answered.len().to_string();
    let path = db_path(&dir);
    let recorded = tokio::time::timeout(Duration::from_secs(120), async {
        while sqlite(
            &path,
            "SELECT COUNT(*) FROM runs WHERE status = 'completed'",
        )
        .await
            != expected
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    if recorded.is_err() {
        let statuses = sqlite(
            &path,
            "SELECT group_concat(status || ': ' || n, ', ') FROM \
             (SELECT status, COUNT(*) AS n FROM runs GROUP BY status)",
        )
        .await;
        let health = api_of(&server).health().await.unwrap();
        panic!(
            "{expected} calls answered, not all recorded completed: {statuses}; backlog {:?}, \
             store {:?}",
            health.recorder_backlog, health.store
        );
    }
    assert_eq!(sqlite(&path, "SELECT COUNT(*) FROM runs").await, expected);
    let distinct: std::collections::HashSet<&String> = answered.iter().collect();
    assert_eq!(distinct.len(), answered.len());
    // Taken again once the heartbeat finds the store writable.
    tokio::time::timeout(Duration::from_secs(30), async {
        while call_until_refused(&server, 1).await.0.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("calls were not taken again once the store was back");
    server.stop().await;
}

/// A proxied call answered while the batch holding its new run failed (another program holds
/// SQLite's lock until SQLite's busy timeout is out) is recorded all the same: its client did
/// not wait for the record, so the run is held with the running runs' events rather than
/// refused as a launch is, and is stored, completed, once the lock is let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_new_run_met_a_failing_store_is_recorded_once_it_is_back() {
    let upstream = FakeUpstream::start(&["org/chat"], |_, _| whole_reply("Held.", 2, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(with_upstream(sqlite_config(&dir), &upstream)).await;
    let mut lock = hold_write_lock(&db_path(&dir)).await;
    let response = request(&server, chat(false, "held"), &[])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let run_id = run_id_of(&response);
    response.bytes().await.unwrap();
    // The writer's try at the batch with the new run fails ("database is locked").
    let api = api_of(&server);
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let health = api.health().await.unwrap();
            let error = health
                .store
                .and_then(|store| store.error)
                .unwrap_or_default();
            if error.contains("locked") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the writer's write did not fail while the lock was held");
    drop(lock.stdin.take());
    lock.wait().await.unwrap();
    let detail = wait_finished(&api, &run_id, Duration::from_secs(30)).await;
    assert_eq!(detail.summary.status, RunStatus::Completed);
    let path = db_path(&dir);
    assert_eq!(sqlite(&path, "SELECT COUNT(*) FROM runs").await, "1");
    assert_eq!(
        sqlite(
            &path,
            &format!(
                "SELECT COUNT(*) FROM events WHERE run_id = '{run_id}' AND event = 'run_created'"
            )
        )
        .await,
        "1"
    );
    server.stop().await;
}
