//! The `sse-gateway` command line, run as a real process: `--check` on good, bad and missing
//! files, secrets kept out of messages, `--log-format json`, and `--help`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use test_kit::process::{Process, STARTUP};

/// `sse-gateway` with a clean environment for what it reads: no `SSE_GATEWAY_CONFIG` from the
/// caller's shell, and the default log level.
fn gateway() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-gateway"));
    cmd.env_remove("SSE_GATEWAY_CONFIG").env("RUST_LOG", "info");
    cmd
}

fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.yaml")
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run sse-gateway")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

/// Writes `yaml` to a file in a new temporary directory (kept alive by the returned guard).
fn config_file(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, yaml).expect("write config");
    (dir, path)
}

#[test]
fn check_accepts_the_shipped_config() {
    let out = run(gateway()
        .arg("--config")
        .arg(shipped_config())
        .arg("--check")
        .env("SSE_GATEWAY_DEV_KEY", "cli-test-dev-key"));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok\n");
}

#[test]
fn check_prints_every_error_as_file_line_col_and_exits_2() {
    let (_dir, path) = config_file("listen: nope\nsse:\n  retry: 3x\n");
    let out = run(gateway().arg("--config").arg(&path).arg("--check"));
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "", "no `ok` for an invalid file");
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let file = path.display();
    assert_eq!(lines.len(), 2, "one line per error:\n{stderr}");
    assert!(
        lines[0].starts_with(&format!("{file}:1:9: listen: invalid address \"nope\"")),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!("{file}:3:10: sse.retry: invalid duration \"3x\"")),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_exits_2_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.yaml");
    let expected = format!("{}:1:1: cannot read config file:", path.display());
    // Both when checking and when starting: nothing falls back to a default config.
    for check in [true, false] {
        let mut cmd = gateway();
        cmd.arg("--config").arg(&path);
        if check {
            cmd.arg("--check");
        }
        let out = run(&mut cmd);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "check={check} stderr: {stderr}");
        assert!(
            stderr.starts_with(&expected),
            "check={check} stderr: {stderr}"
        );
        assert_eq!(text(&out.stdout), "", "check={check}");
    }
}

#[test]
fn check_without_the_dev_key_names_the_variable() {
    let out = run(gateway()
        .arg("--config")
        .arg(shipped_config())
        .arg("--check")
        .env_remove("SSE_GATEWAY_DEV_KEY"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(text(&out.stdout), "");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let prefix = format!("{}:", shipped_config().display());
    assert!(lines[0].starts_with(&prefix), "{stderr}");
    assert!(
        lines[0].ends_with(
            "auth.api_keys[0].key_env: environment variable SSE_GATEWAY_DEV_KEY is not set"
        ),
        "{stderr}"
    );
}

#[test]
fn errors_never_print_a_secret() {
    const SECRET: &str = "cli-test-secret-0f9e8d7c";
    const PASSWORD: &str = "cli-test-password-1a2b3c";
    // Two keys sharing one secret, and a malformed Redis URL carrying a password: both are
    // errors, and neither message may echo what it is about.
    let yaml = format!(
        "broker:\n  kind: redis\n  url: \"redis:/:{PASSWORD}@127.0.0.1:6379\"\n\
         auth:\n  api_keys:\n    - name: a\n      key_env: CLI_TEST_SECRET\n    \
         - name: b\n      key_env: CLI_TEST_SECRET\n"
    );
    let (_dir, path) = config_file(&yaml);
    let out = run(gateway()
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .env("CLI_TEST_SECRET", SECRET));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    for secret in [SECRET, PASSWORD] {
        assert!(
            !stderr.contains(secret) && !stdout.contains(secret),
            "{stderr}"
        );
    }
}

#[test]
fn log_format_json_writes_one_json_object_per_stderr_line() {
    let (dir, path) = config_file("listen: 127.0.0.1:0\nstatic_dir: \"\"\n");
    let mut gw = Process::start(
        "sse-gateway",
        gateway()
            .arg("--config")
            .arg(&path)
            .args(["--log-format", "json"])
            .current_dir(dir.path()),
    );
    let addr = gw.addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    gw.wait_logs(STARTUP, "complete log line", |logs| logs.contains('\n'));
    gw.kill();

    let logs = gw.logs();
    // Only complete lines: the process was killed, and may have been cut mid-line.
    let complete = &logs[..=logs.rfind('\n').expect("a complete line")];
    for line in complete.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\nall logs:\n{logs}"));
        assert!(value["level"].is_string(), "no level: {line}");
        assert!(value["timestamp"].is_string(), "no timestamp: {line}");
    }
}

#[test]
fn help_names_config_and_check() {
    let out = run(gateway().arg("--help"));
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(help.contains("--config"), "{help}");
    assert!(help.contains("--check"), "{help}");
}
