//! `runboard serve` under `ulimit -n 1024` (a default shell or service): start-up lowers
//! `--max-connections` to fit and says so, a flood of connections past it gets 503 at once
//! (never silence), and the store stays writable meanwhile.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::net::TcpStream;

use crate::runs::{BIN, free_port, wait_until_up};

/// What a connection that sends nothing is told within `within`: its first bytes.
async fn first_words(port: u16, within: Duration) -> Option<(TcpStream, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let mut buffer = [0_u8; 64];
    let read = tokio::time::timeout(within, stream.read(&mut buffer)).await;
    let text = match read {
        Ok(Ok(0)) => "closed".to_owned(),
        Ok(Ok(n)) => String::from_utf8_lossy(&buffer[..n]).into_owned(),
        Ok(Err(error)) => format!("error {error}"),
        Err(_) => String::new(),
    };
    Some((stream, text))
}

/// The JSON `request` is answered with.
async fn json_of(request: reqwest::RequestBuilder) -> Value {
    let text = request.send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Starts `runboard serve` under `ulimit -n 1024` on `port`, and its log, read all along so
/// the server never waits on a full pipe.
fn start_limited(
    port: u16,
    db: &std::path::Path,
) -> (
    tokio::process::Child,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let command = format!(
        "ulimit -n 1024 && exec {BIN} serve --addr 127.0.0.1:{port} --db {} \
         --header-timeout-secs 60 --speed 20 --failure-rate 0",
        db.display()
    );
    let mut server = tokio::process::Command::new("sh")
        .args(["-c", &command])
        .env_remove("RUNBOARD_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (lines_tx, lines) = tokio::sync::mpsc::unbounded_channel();
    let mut log = BufReader::new(server.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = log.next_line().await {
            let _ = lines_tx.send(line);
        }
    });
    (server, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_under_the_usual_file_limit_gets_503_and_the_store_stays_writable() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut server, mut lines) = start_limited(port, &dir.path().join("flood.db"));
    wait_until_up(port).await;
    let said = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(line) = lines.recv().await {
            if line.contains("does not fit the open-file limit") {
                return line;
            }
        }
        String::new()
    })
    .await
    .expect("start-up says the cap was lowered");
    assert!(said.contains("at most 768 connections"), "{said}");

    // A client already connected (keep-alive), as a worker would be.
    let client = runboard_sse::http::client();
    let api = format!("http://127.0.0.1:{port}/api");
    assert!(
        client
            .get(format!("{api}/health"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );

    // 900 connections that send nothing: the cap is 768, the rest are told 503 at once.
    // In waves of 100, so the kernel's queue of connections not yet accepted (which a debug
    // build on two cores drains slowly) does not overflow: that would be silence the server
    // never saw.
    let mut flood = Vec::new();
    for _ in 0..9 {
        for _ in 0..100 {
            flood.push(tokio::spawn(first_words(port, Duration::from_secs(10))));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut held = Vec::new();
    let mut refused = 0;
    let mut silent = 0;
    for connection in flood {
        match connection.await.unwrap() {
            Some((stream, text)) if text.starts_with("HTTP/1.1 503") => {
                refused += 1;
                held.push(stream);
            }
            Some((stream, _)) => {
                silent += 1;
                held.push(stream);
            }
            None => {}
        }
    }
    assert!(
        refused >= 900 - 768,
        "{refused} refused with 503, {silent} held open"
    );
    assert!(silent <= 768, "{silent} held open past the cap");

    // Meanwhile runs are stored: one launched and finished on the worker's connection.
    let created = json_of(
        client
            .post(format!("{api}/runs"))
            .header("content-type", "application/json")
            .body(json!({"task": "during the flood", "params": {"iterations": 1}}).to_string()),
    )
    .await;
    let run_id = created["run_id"]
        .as_str()
        .expect("a run was created")
        .to_owned();
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let run = json_of(client.get(format!("{api}/runs/{run_id}"))).await;
            let status = run["status"].as_str().unwrap_or_default().to_owned();
            if matches!(status.as_str(), "completed" | "failed" | "cancelled") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the run finished during the flood");
    assert_eq!(status, "completed");
    let health = json_of(client.get(format!("{api}/health"))).await;
    assert_eq!(health["store"]["writable"], true, "{health}");
    drop(held);
    server.kill().await.unwrap();
}
