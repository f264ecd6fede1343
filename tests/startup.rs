//! How the gateway starts: which configuration file it reads (`--config`, `SSE_GATEWAY_CONFIG`,
//! `gateway.yaml` in the working directory, or the embedded default), and `/readyz` answering 503
//! until a Redis-backed node has connected its replicator, and again once it drains.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::redis::RedisServer;
use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

/// `sse-gateway` with no `SSE_GATEWAY_CONFIG` from the caller's shell, run in `dir`.
fn gateway_in(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-gateway"));
    cmd.env_remove("SSE_GATEWAY_CONFIG")
        .env_remove("SSE_GATEWAY_DEV_KEY")
        .env("RUST_LOG", "info")
        .current_dir(dir)
        .stdin(Stdio::null());
    cmd
}

/// A config that serves streams at `sse_path` on a free port: which file was read shows in
/// which path answers.
fn config_serving(sse_path: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nstatic_dir: \"\"\nsse:\n  path: {sse_path}\n\
         channels:\n  - {{name: \"*\", subscribe: public}}\n"
    )
}

/// A started gateway, once it accepts connections (it prints its address just before it
/// binds). Killed on drop.
fn start(cmd: &mut Command) -> Process {
    let gw = Process::start("sse-gateway", cmd);
    gw.wait_accepting(WAIT);
    gw
}

async fn status(gw: &Process, path: &str) -> u16 {
    let resp = http().get(gw.url(path)).send().await.expect("request");
    resp.status().as_u16()
}

fn output(cmd: &mut Command) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run sse-gateway");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[tokio::test]
async fn sse_gateway_config_names_the_file_and_config_wins_over_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let from_env = dir.path().join("from-env.yaml");
    std::fs::write(&from_env, config_serving("/from-env")).expect("write");
    // A gateway.yaml in the working directory that must not be read.
    std::fs::write(dir.path().join("gateway.yaml"), config_serving("/from-cwd")).expect("write");

    let gw = start(gateway_in(dir.path()).env("SSE_GATEWAY_CONFIG", &from_env));
    assert_eq!(status(&gw, "/from-env?channel=a").await, 200);
    assert_eq!(status(&gw, "/from-cwd?channel=a").await, 404);
    drop(gw);

    // `--config` wins over the variable, which here names a file that does not exist.
    let mut cmd = gateway_in(dir.path());
    cmd.env("SSE_GATEWAY_CONFIG", dir.path().join("absent.yaml"))
        .arg("--config")
        .arg(&from_env)
        .arg("--check");
    let (code, stdout, stderr) = output(&mut cmd);
    assert_eq!((code, stdout.as_str()), (Some(0), "ok\n"), "{stderr}");

    // And the variable's file is the one checked when there is no `--config`.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "sse:\n  retry: soon\n").expect("write");
    let mut cmd = gateway_in(dir.path());
    cmd.env("SSE_GATEWAY_CONFIG", &broken).arg("--check");
    let (code, _, stderr) = output(&mut cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!("{}:2:10: sse.retry:", broken.display())),
        "{stderr}"
    );
}

#[tokio::test]
async fn without_config_gateway_yaml_in_the_working_directory_is_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("gateway.yaml"), config_serving("/from-cwd")).expect("write");
    let gw = start(&mut gateway_in(dir.path()));
    assert_eq!(status(&gw, "/from-cwd?channel=a").await, 200);
    assert_eq!(status(&gw, "/events?channel=a").await, 404);
}

#[test]
fn without_any_file_the_embedded_shipped_config_is_the_one_used() {
    // Checked rather than run: the shipped file listens on 127.0.0.1:8080, which a test on a
    // shared machine cannot count on having.
    let empty = tempfile::tempdir().expect("temp dir");
    let (code, stdout, stderr) = output(
        gateway_in(empty.path())
            .arg("--check")
            .env("SSE_GATEWAY_DEV_KEY", "startup-test-dev-key"),
    );
    assert_eq!((code, stdout.as_str()), (Some(0), "ok\n"), "{stderr}");
    assert!(
        stderr.contains("running the embedded default configuration"),
        "{stderr}"
    );

    // Its `dev` key variable is the shipped file's, reported at the embedded file's position.
    let (code, stdout, stderr) = output(gateway_in(empty.path()).arg("--check"));
    assert_eq!((code, stdout.as_str()), (Some(2), ""), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("<embedded gateway.yaml>:"))
        .unwrap_or_else(|| panic!("no error in the embedded file: {stderr}"));
    assert!(
        error.ends_with(
            "auth.api_keys[0].key_env: environment variable SSE_GATEWAY_DEV_KEY is not set"
        ),
        "{stderr}"
    );
}

async fn healthz(gw: &Gateway) -> u16 {
    let resp = http()
        .get(gw.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    resp.status().as_u16()
}

/// `/readyz`: the status and the error code, if any, and `Retry-After`.
async fn readyz(gw: &Gateway) -> (u16, Option<String>, Option<String>) {
    let resp = http().get(gw.url("/readyz")).send().await.expect("readyz");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ASCII").to_owned());
    let body: Value = resp.json().await.expect("JSON");
    let code = body["error"]["code"].as_str().map(str::to_owned);
    (status, code, retry)
}

#[tokio::test]
async fn readyz_is_503_until_the_redis_replicator_has_connected() {
    // The node reads the cluster's epoch before it listens; the replicator connects after. A
    // Redis user that may not SUBSCRIBE holds the node in between: listening, alive, not ready.
    let redis = RedisServer::start();
    assert_eq!(
        redis.command("ACL SETUSER gw on >gw-pass ~* &* +@all -subscribe"),
        "+OK"
    );
    let gw = Gateway::start(&format!(
        "broker:\n  kind: redis\n  url: \"{}?user=gw&pass=gw-pass\"\n",
        redis.url()
    ));
    assert_eq!(healthz(&gw).await, 200, "alive");
    let (status, code, retry) = readyz(&gw).await;
    assert_eq!(
        (status, code.as_deref(), retry.as_deref()),
        (503, Some("broker_unavailable"), Some("1"))
    );
    let (status, body) = gw
        .publish(serde_json::json!({"channel": "a", "data": 1}))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &Value::from("broker_unavailable"))
    );

    assert_eq!(redis.command("ACL SETUSER gw +subscribe"), "+OK");
    eventually(WAIT, "ready once the replicator connects", || async {
        readyz(&gw).await.0 == 200
    })
    .await;
    let (status, body) = gw
        .publish(serde_json::json!({"channel": "a", "data": 1}))
        .await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn a_node_started_before_its_redis_waits_for_it_then_becomes_ready() {
    let mut redis = RedisServer::start();
    redis.stop();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("gateway.yaml");
    let yaml = format!(
        "{}broker:\n  kind: redis\n  url: \"{}\"\n",
        config_serving("/events"),
        redis.url()
    );
    std::fs::write(&config, yaml).expect("write");
    let mut gw = Process::spawn(
        "sse-gateway",
        gateway_in(dir.path()).arg("--config").arg(&config),
    );
    // The node says it waits (and does not listen) while Redis is away...
    gw.wait_logs(WAIT, "word that it waits for Redis", |logs| {
        logs.contains("waiting for Redis")
    });
    // ...and starts once Redis is up within its startup patience (10 s).
    redis.restart();
    gw.wait_listening();
    gw.wait_accepting(WAIT);
    eventually(WAIT, "ready", || async {
        status(&gw, "/readyz").await == 200
    })
    .await;
}

#[tokio::test]
async fn readyz_is_503_draining_with_retry_after_once_sigterm_arrives() {
    let (gw, _streams) = gateway_with_streams_to_drain().await;
    assert_eq!(readyz(&gw).await.0, 200);
    gw.signal("TERM");
    eventually(WAIT, "readyz 503 draining", || async {
        readyz(&gw).await == (503, Some("draining".into()), Some("1".into()))
    })
    .await;
    assert_eq!(healthz(&gw).await, 200, "alive while draining");
}
