//! `runboard serve --tls-cert --tls-key` as a process, with a certificate authority the test
//! makes with `openssl`: curl with `--cacert` gets HTTP/2 (and HTTP/1.1 when it asks), curl
//! without it is refused by its own check, a plain-HTTP client to the port is told to use
//! https://, and runboard's own CLI (`runs`, `tail`) works over it with `--ca-cert`.

use crate::support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::certificates::make_certificates;
use tokio::io::BufReader;

const TOKEN: &str = "tls-board-token-0123456789";

fn runboard() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_runboard"));
    command
        .env_remove("RUNBOARD_TOKEN")
        .env_remove("RUNBOARD_TOKENS")
        .env_remove("RUNBOARD_CA_CERT")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn curl(args: &[&str]) -> (i32, String) {
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .await
        .expect("curl could not be run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// `runboard serve` over TLS behind [`TOKEN`], and its `https://` URL from the start-up line.
async fn serve_tls(cert: &Path, key: &Path) -> (tokio::process::Child, String) {
    let mut server = runboard()
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--db",
            ":memory:",
            // The run followed below must complete: no synthetic failures.
            "--failure-rate",
            "0",
            "--token",
            TOKEN,
        ])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    let line = crate::runs::read_until_listening(&mut stderr).await;
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("https://"))
        .unwrap_or_else(|| panic!("the start-up line names an https:// URL: {line}"))
        .to_owned();
    (server, url)
}

/// runboard's CLI over HTTPS: a run launched and followed to its end; refused without the CA.
async fn cli_over_https(url: &str, ca_text: &str) {
    let launched = runboard()
        .args([
            "launch",
            "--api",
            url,
            "--token",
            TOKEN,
            "--ca-cert",
            ca_text,
            "-n",
            "1",
        ])
        .args(["--params", r#"{"iterations": 1}"#, "a run over TLS"])
        .output()
        .await
        .unwrap();
    let launched_text = String::from_utf8_lossy(&launched.stdout).to_string();
    assert!(
        launched.status.success(),
        "{launched_text}{}",
        String::from_utf8_lossy(&launched.stderr)
    );
    let run_id = launched_text.split_whitespace().next().unwrap().to_owned();
    let tail = tokio::time::timeout(
        Duration::from_secs(60),
        runboard()
            .args([
                "tail",
                "--api",
                url,
                "--token",
                TOKEN,
                "--ca-cert",
                ca_text,
                &run_id,
            ])
            .output(),
    )
    .await
    .expect("tail ends with the run")
    .unwrap();
    assert!(
        tail.status.success(),
        "{}{}",
        String::from_utf8_lossy(&tail.stdout),
        String::from_utf8_lossy(&tail.stderr)
    );
    // Without --ca-cert the CLI says the certificate is not trusted.
    let untrusted = runboard()
        .args(["runs", "--api", url, "--token", TOKEN])
        .output()
        .await
        .unwrap();
    let why = String::from_utf8_lossy(&untrusted.stderr);
    assert!(!untrusted.status.success());
    assert!(why.to_lowercase().contains("certificate"), "{why}");
}

#[tokio::test]
async fn https_with_a_private_ca_serves_curl_http2_and_runboards_own_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificates(dir.path());
    let (mut server, url) = serve_tls(&cert, &key).await;
    let health = format!("{url}/api/health");
    let auth = format!("Authorization: Bearer {TOKEN}");
    let ca_text = ca.to_str().unwrap();

    // HTTP/2 when curl offers it (ALPN), HTTP/1.1 when it asks for that.
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let (code, text) = curl(&[
            flag,
            "--cacert",
            ca_text,
            "-H",
            &auth,
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            &health,
        ])
        .await;
        assert_eq!((code, text.trim()), (0, format!("{version} 200").as_str()));
    }
    // Without the CA, curl's own check refuses the certificate (exit 60).
    let (code, text) = curl(&["-H", &auth, &health]).await;
    assert_eq!(code, 60, "{text}");
    // Plain HTTP to the TLS port: a 400 that says what to do.
    let plain = health.replacen("https://", "http://", 1);
    let (code, text) = curl(&["-H", &auth, "-w", " %{http_code}", &plain]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("speaks HTTPS only") && text.ends_with("400"),
        "{text}"
    );

    cli_over_https(&url, ca_text).await;
    server.kill().await.unwrap();
}

#[tokio::test]
async fn a_bad_certificate_or_key_stops_the_server_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, _key) = make_certificates(dir.path());
    // The CA's key is not the server certificate's.
    let wrong_key = dir.path().join("ca.key");
    let cases = [
        (
            dir.path().join("absent.pem"),
            wrong_key.clone(),
            "absent.pem",
        ),
        (cert.clone(), wrong_key, "--tls-key"),
        (ca.clone(), dir.path().join("ext.cnf"), "ext.cnf"),
    ];
    for (cert, key, expected) in cases {
        let output = tokio::time::timeout(
            Duration::from_secs(20),
            runboard()
                .args(["serve", "--addr", "127.0.0.1:0", "--db", ":memory:"])
                .arg("--tls-cert")
                .arg(&cert)
                .arg("--tls-key")
                .arg(&key)
                .output(),
        )
        .await
        .expect("serve stops at once")
        .unwrap();
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{expected}: {text}");
        assert!(text.contains(expected), "{expected}: {text}");
    }
    // --tls-cert without --tls-key is a usage error.
    let output = runboard()
        .args(["serve", "--tls-cert"])
        .arg(&cert)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
