//! A `redis-server` of a test's own (without persistence, or with an AOF), listening only on a
//! unix socket in the test's temp dir: stopped and started again at the same address to play an outage, with no
//! chance that another test takes that address in between (as a freed TCP port could be), and
//! spoken to in inline commands; and gateway nodes that share it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{eventually, http, Gateway};

/// How long a node may take to have its broker up.
const NODE_READY: Duration = Duration::from_secs(15);

/// A node on `redis`, ready (its replicator connected). `extra` adds top-level keys.
pub async fn node(redis: &RedisServer, extra: &str) -> Gateway {
    let gw = Gateway::start(&format!(
        "broker:\n  kind: redis\n  url: {}\n{extra}",
        redis.url()
    ));
    wait_ready(&gw).await;
    gw
}

pub async fn wait_ready(gw: &Gateway) {
    eventually(NODE_READY, "node ready (broker up)", || async {
        readyz(gw).await == 200
    })
    .await;
}

/// The status of `/readyz` (0 when the node does not answer).
pub async fn readyz(gw: &Gateway) -> u16 {
    match http().get(gw.url("/readyz")).send().await {
        Ok(resp) => resp.status().as_u16(),
        Err(_) => 0,
    }
}

pub struct RedisServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Its persistence options.
    persistence: &'static [&'static str],
}

impl RedisServer {
    /// One that keeps nothing: each restart comes back empty.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// One that appends every write to its AOF (in its temp dir) before answering, so a
    /// restart, even after SIGKILL, comes back with everything it answered.
    pub fn start_persistent() -> RedisServer {
        RedisServer::start_with(&[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
    }

    fn start_with(persistence: &'static [&'static str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = RedisServer {
            child: None,
            dir,
            persistence,
        };
        server.restart();
        server
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// (Re)starts it at its socket (empty unless persistent), and waits until it answers,
    /// which a persistent one does once it has loaded its AOF.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(self.dir.path())
            .args(self.persistence)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command("PING") != "+PONG" {
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (no goodbye to its clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Sends one inline command and returns the first line of the answer ("" if none).
    pub fn command(&self, command: &str) -> String {
        let Ok(mut sock) = UnixStream::connect(self.socket()) else {
            return String::new();
        };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
        if sock.write_all(format!("{command}\r\n").as_bytes()).is_err() {
            return String::new();
        }
        let mut buf = [0u8; 256];
        let n = sock.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
