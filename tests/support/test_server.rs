//! The reference server on a free loopback port, with a real SQLite file in a temp directory.

use std::path::PathBuf;
use std::time::Duration;

use runboard_api::{ApiClient, RunDetail};
use runboard_server::{self as server, DbLocation, GeneratorConfig, RunningServer, ServerConfig};

/// A fast, deterministic configuration: port 0, a fresh db file, seed 7, no random failures.
pub fn config(dir: &tempfile::TempDir) -> ServerConfig {
    let mut config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        db: DbLocation::File(db_path(dir)),
        generator: GeneratorConfig {
            seed: Some(7),
            speed: 50.0,
            failure_rate: 0.0,
        },
        ..ServerConfig::default()
    };
    config.streams.retry = Duration::from_millis(20);
    config
}

pub fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("runs.db")
}

pub async fn start(config: ServerConfig) -> RunningServer {
    server::start(config)
        .await
        .expect("the server did not start")
}

pub fn client(server: &RunningServer) -> ApiClient {
    ApiClient::new(&server.url(), None).unwrap()
}

/// Polls until the run is finished; fails the test after `limit`.
pub async fn wait_finished(api: &ApiClient, run_id: &str, limit: Duration) -> RunDetail {
    tokio::time::timeout(limit, async {
        loop {
            let detail = api.run(run_id).await.unwrap();
            if detail.summary.status.is_finished() {
                return detail;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("run {run_id} did not finish within {limit:?}"))
}
