//! Real model servers for the tests: llama.cpp's `llama-server` and llama-cpp-python's
//! server, built by `scripts/llama-server.sh`, on a free loopback port; killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The binary and the model named by `model_var`, when this machine has them.
pub fn llama_with(model_var: &str) -> Option<(PathBuf, PathBuf)> {
    server_with("RUNBOARD_LLAMA_SERVER", model_var)
}

/// The program named by `program_var` and the model named by `model_var`, when this machine
/// has both; without them the test says so and passes, unless `RUNBOARD_REQUIRE_LLAMA` is set.
pub fn server_with(program_var: &str, model_var: &str) -> Option<(PathBuf, PathBuf)> {
    let binary = std::env::var_os(program_var).map(PathBuf::from);
    let model = std::env::var_os(model_var).map(PathBuf::from);
    match (binary, model) {
        (Some(binary), Some(model)) if binary.is_file() && model.is_file() => Some((binary, model)),
        _ => {
            assert!(
                std::env::var_os("RUNBOARD_REQUIRE_LLAMA").is_none(),
                "RUNBOARD_REQUIRE_LLAMA is set but {program_var} / {model_var} do not name \
                 a model server and a model"
            );
            eprintln!(
                "skipped: set {program_var} and {model_var} to run against a real model server \
                 (eval \"$(scripts/llama-server.sh)\")"
            );
            None
        }
    }
}

/// A running `llama-server`, killed when dropped.
pub struct Llama(Child);

impl Llama {
    /// Serves `model` as `tiny`.
    pub async fn start(binary: &PathBuf, model: &PathBuf, port: u16) -> Self {
        Self::start_as(binary, model, port, "tiny").await
    }

    /// Serves `model` as `alias` with two slots on one thread, metrics and slots on.
    pub async fn start_as(binary: &PathBuf, model: &PathBuf, port: u16, alias: &str) -> Self {
        let child = Command::new(binary)
            .args(["-m"])
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--metrics",
                "--slots",
                "-t",
                "1",
                "-np",
                "2",
                "--alias",
                alias,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("llama-server starts");
        let llama = Self(child);
        llama
            .wait_until_it_answers(&format!("http://127.0.0.1:{port}/health"))
            .await;
        llama
    }

    /// llama-cpp-python's server (`python -m llama_cpp.server`) serving `model` as `alias` on one
    /// thread.
    pub async fn start_python(python: &PathBuf, model: &PathBuf, port: u16, alias: &str) -> Self {
        let child = Command::new(python)
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(model)
            .args([
                "--model_alias",
                alias,
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .args(["--n_threads", "1", "--n_ctx", "4096"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("llama-cpp-python's server starts");
        let llama = Self(child);
        llama
            .wait_until_it_answers(&format!("http://127.0.0.1:{port}/v1/models"))
            .await;
        llama
    }

    async fn wait_until_it_answers(&self, url: &str) {
        let http = runboard_sse::http::client();
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Ok(response) = http.get(url).send().await
                    && response.status().is_success()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{url} did not answer within a minute"));
    }
}

impl Drop for Llama {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
