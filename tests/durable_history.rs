//! Durable history: with `broker.kind: redis` on a Redis that persists (AOF), history survives a
//! restart of every gateway node and of Redis, so a client resuming with its last id afterwards
//! gets what it missed.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(15);

/// A `redis-server` that appends every write to its AOF before answering (`appendfsync
/// always`), on a unix socket in its own directory; killed (SIGKILL) and started again on the
/// same directory to play a crash.
struct PersistentRedis {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl PersistentRedis {
    fn start() -> PersistentRedis {
        let mut redis = PersistentRedis {
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        redis.restart();
        redis
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Kills it without a goodbye, then starts it again on its files.
    fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }
}

impl Drop for PersistentRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node on `redis`, ready once its replicator has connected (and loaded the log).
async fn node(redis: &PersistentRedis) -> Gateway {
    let gw = Gateway::start(&format!(
        "broker:\n  kind: redis\n  url: \"{}\"\n",
        redis.url()
    ));
    eventually(WAIT, "node ready", || async {
        http()
            .get(gw.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    gw
}

#[tokio::test]
async fn history_on_an_aof_redis_survives_a_restart_of_every_node_and_of_redis() {
    let mut redis = PersistentRedis::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut client = SseClient::connect(&a.url("/events?channel=kept&channel=also")).await;
    let mut published = Vec::new();
    for (gw, channel, n) in [
        (&a, "kept", 1),
        (&b, "also", 2),
        (&a, "kept", 3),
        (&b, "kept", 4),
    ] {
        published.push(gw.publish_ok(channel, "note", &format!("e{n}")).await);
    }
    let seen = client.events(1, WAIT).await;
    let last_id = seen[0].id.clone();
    assert_eq!(last_id, published[0]);
    drop(client);

    // Every node and Redis go down; Redis comes back from its AOF, then a new node.
    drop((a, b));
    redis.restart();
    let c = node(&redis).await;
    let mut resumed = c
        .resume("/events?channel=kept&channel=also", &last_id)
        .await;
    let replayed = resumed.events(3, WAIT).await;
    let ids: Vec<&str> = replayed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, &published[1..], "what it missed, in order, no reset");
    let data: Vec<&str> = replayed.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, ["e2", "e3", "e4"]);

    // Ids go on from there: a new event comes after every old one.
    let next = c.publish_ok("kept", "note", "e5").await;
    let live = resumed.next_event(WAIT).await.expect("live event");
    assert_eq!(
        (live.id.as_str(), live.data.as_str()),
        (next.as_str(), "e5")
    );
}
