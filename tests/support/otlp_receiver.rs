//! A receiver of OTLP over HTTP for the tests: `tests/fixtures/otlp_receiver.py`, which decodes
//! each request with the OpenTelemetry project's `opentelemetry-proto` package, on a loopback
//! port, and what it decoded, read as JSON (protobuf's JSON mapping).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

/// The program a test needs from `scripts/phoenix.sh`, or `None` (the test says so and passes).
pub fn installed(var: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|path| path.is_file());
    if path.is_none() {
        assert!(
            std::env::var_os("RUNBOARD_REQUIRE_PHOENIX").is_none(),
            "RUNBOARD_REQUIRE_PHOENIX is set but {var} names no program"
        );
        eprintln!("skipped: set {var} to run the OTLP tests (eval \"$(scripts/phoenix.sh)\")");
    }
    path
}

/// Waits up to `limit` for `check` to give something.
pub async fn eventually<T>(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `tests/fixtures/otlp_receiver.py` on a port: what it decoded, a JSON line per request.
pub struct ProtoReceiver {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl ProtoReceiver {
    /// Starts the receiver on `port` with `python` (which has `opentelemetry-proto`).
    pub async fn start(python: &Path, port: u16) -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/otlp_receiver.py"
        );
        let mut child = tokio::process::Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python runs");
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .expect("the receiver listens within 30 s")
            .unwrap()
            .expect("the receiver says where it listens");
        let said: Value = serde_json::from_str(&first).unwrap();
        assert_eq!(said["listening"], port);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&lines);
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                kept.lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).unwrap());
            }
        });
        Self { child, lines }
    }

    /// Stops it (the port is free again).
    pub async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }

    /// The requests of `signal` (`traces` or `metrics`), each a decoded line.
    pub fn requests(&self, signal: &str) -> Vec<Value> {
        let lines = self.lines.lock().unwrap();
        for line in lines.iter() {
            assert!(
                line.get("error").is_none(),
                "a request did not decode: {line}"
            );
        }
        lines
            .iter()
            .filter(|line| line["signal"] == signal)
            .cloned()
            .collect()
    }

    /// Every span received, flattened out of its resource and scope.
    pub fn spans(&self) -> Vec<Value> {
        let mut spans = Vec::new();
        for request in self.requests("traces") {
            assert_eq!(request["content_type"], "application/x-protobuf");
            for resource in request["body"]["resourceSpans"].as_array().unwrap() {
                for scope in resource["scopeSpans"].as_array().unwrap() {
                    spans.extend(scope["spans"].as_array().unwrap().iter().cloned());
                }
            }
        }
        spans
    }

    /// The `service.name` of every request's resources, traces and metrics.
    pub fn service_names(&self) -> Vec<Value> {
        let mut names = Vec::new();
        for (signal, key) in [("traces", "resourceSpans"), ("metrics", "resourceMetrics")] {
            for request in self.requests(signal) {
                for resource in request["body"][key].as_array().into_iter().flatten() {
                    names.extend(proto_attribute(&resource["resource"], "service.name"));
                }
            }
        }
        names
    }

    /// The `Authorization` header of every request.
    pub fn authorizations(&self) -> Vec<Value> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|line| line.get("signal").is_some())
            .map(|line| line["authorization"].clone())
            .collect()
    }

    /// The last data points received of the metric `name`, with its unit.
    pub fn metric(&self, name: &str) -> Option<(String, Vec<Value>)> {
        let requests = self.requests("metrics");
        let request = requests.last()?;
        for resource in request["body"]["resourceMetrics"].as_array()? {
            for scope in resource["scopeMetrics"].as_array()? {
                for metric in scope["metrics"].as_array()? {
                    if metric["name"] == name {
                        let points = metric["histogram"]["dataPoints"].as_array()?.clone();
                        return Some((metric["unit"].as_str()?.to_owned(), points));
                    }
                }
            }
        }
        None
    }
}

/// An attribute of a span, resource or data point in protobuf's JSON mapping, as plain JSON
/// (64-bit integers come as strings there; they are numbers here).
pub fn proto_attribute(holder: &Value, key: &str) -> Option<Value> {
    let attribute = holder["attributes"]
        .as_array()?
        .iter()
        .find(|attribute| attribute["key"] == key)?;
    let value = &attribute["value"];
    if let Some(text) = value.get("stringValue") {
        return Some(text.clone());
    }
    if let Some(number) = value.get("intValue") {
        return Some(json!(number.as_str()?.parse::<i64>().ok()?));
    }
    if let Some(values) = value.get("arrayValue") {
        let items: Vec<Value> = values["values"]
            .as_array()?
            .iter()
            .filter_map(|item| item.get("stringValue").cloned())
            .collect();
        return Some(Value::Array(items));
    }
    value
        .get("doubleValue")
        .or_else(|| value.get("boolValue"))
        .cloned()
}

/// The spans of run `run_id`: its root and its children.
pub fn trace_of(spans: &[Value], run_id: &str) -> Option<(Value, Vec<Value>)> {
    let root = spans.iter().find(|span| {
        span.get("parentSpanId").is_none()
            && proto_attribute(span, "runboard.run.id") == Some(json!(run_id))
    })?;
    let children = spans
        .iter()
        .filter(|span| span["parentSpanId"] == root["spanId"])
        .cloned()
        .collect();
    Some((root.clone(), children))
}
