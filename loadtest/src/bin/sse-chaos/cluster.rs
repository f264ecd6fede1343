//! The processes of a run: one `redis-server` without persistence, the reference upstream, and
//! the gateway nodes on them, all on loopback ports the system picks; and the faults done to
//! them.
//!
//! Every process dies with this one however it ends: each is spawned with `kill_on_drop` (the
//! ordinary paths, errors and panics included) and with `PR_SET_PDEATHSIG` = SIGKILL, which the
//! kernel sends when the thread that spawned it exits (a SIGKILL of this process, the watchdog's
//! exit, Ctrl-C). Every process is spawned from the main thread: the runtime is
//! single-threaded, so the spawning thread lives exactly as long as the process.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use sse_loadgen::eventsource::Nodes;
use sse_loadgen::http::{read_head, BodyDecoder};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::Instant;

use crate::options::Options;

/// The environment variable that carries the publish key to the gateways.
const KEY_ENV: &str = "SSE_CHAOS_KEY";
/// Longest wait for a process to say where it listens, or for Redis to answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for a node's `/readyz` to say 200 (its broker is connected).
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a stopped upstream gets to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Most bytes read of an admin answer (`/stats`, `/metrics`).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// One child process.
struct Proc {
    child: Child,
    /// Kept open so that a late write to stdout never meets a closed pipe.
    _stdout: Option<ChildStdout>,
}

impl Proc {
    /// Spawns `command` with its output in `log` (or nowhere); with `announce`, waits for the
    /// stdout line `<announce> listening on http://ADDR` and returns ADDR.
    async fn start(
        mut command: Command,
        log: Option<&Path>,
        announce: Option<&str>,
    ) -> anyhow::Result<(Proc, Option<SocketAddr>)> {
        let name = command
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned();
        let sink = || -> anyhow::Result<Stdio> {
            Ok(match log {
                Some(path) => File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("open {}", path.display()))?
                    .into(),
                None => Stdio::null(),
            })
        };
        command.stderr(sink()?).kill_on_drop(true);
        command.stdout(if announce.is_some() {
            Stdio::piped()
        } else {
            sink()?
        });
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let Some(announce) = announce else {
            return Ok((
                Proc {
                    child,
                    _stdout: None,
                },
                None,
            ));
        };
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut lines = BufReader::new(stdout);
        let prefix = format!("{announce} listening on http://");
        let found = tokio::time::timeout(START_TIMEOUT, async {
            let mut line = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok::<_, std::io::Error>(None);
                }
                if let Some(addr) = line.trim().strip_prefix(&prefix) {
                    return Ok(addr.parse::<SocketAddr>().ok());
                }
            }
        })
        .await;
        match found {
            Ok(Ok(Some(addr))) => Ok((
                Proc {
                    child,
                    _stdout: Some(lines.into_inner()),
                },
                Some(addr),
            )),
            _ => {
                let _ = child.kill().await;
                bail!("{name} did not say where it listens within {START_TIMEOUT:?}")
            }
        }
    }

    /// SIGKILL, and reaps it.
    async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM; SIGKILL if it has not exited within `grace`.
    async fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            // SAFETY: a plain signal to our own child, which has not been reaped yet.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            self.kill().await;
        }
    }
}

/// The binaries a run starts.
struct Binaries {
    gateway: PathBuf,
    upstream: PathBuf,
    redis: PathBuf,
}

impl Binaries {
    /// The gateway and the upstream default to the ones built beside this binary.
    fn new(opts: &Options) -> anyhow::Result<Binaries> {
        let beside = |name: &str| -> anyhow::Result<PathBuf> {
            let exe = std::env::current_exe().context("cannot find this binary's path")?;
            Ok(exe.with_file_name(name))
        };
        let gateway = match &opts.gateway_bin {
            Some(path) => path.clone(),
            None => beside("sse-gateway")?,
        };
        let upstream = match &opts.upstream_bin {
            Some(path) => path.clone(),
            None => beside("reference-upstream")?,
        };
        for path in [&gateway, &upstream] {
            if !path.exists() {
                bail!(
                    "{} not found: build the workspace's binaries first \
                     (cargo build --release --workspace --bins)",
                    path.display()
                );
            }
        }
        Ok(Binaries {
            gateway,
            upstream,
            redis: opts.redis_server.clone(),
        })
    }
}

/// A folder of this run's own for the gateways' configuration, removed with it.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> anyhow::Result<WorkDir> {
        let path = std::env::temp_dir().join(format!(
            "sse-chaos-{}-{}",
            std::process::id(),
            sse_loadgen::payload::unix_nanos()
        ));
        std::fs::create_dir(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(WorkDir(path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One gateway node.
struct Node {
    proc: Option<Proc>,
    /// How many times it was started.
    starts: u32,
}

/// What a node's metrics said at the end of the run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeFigures {
    pub node: String,
    pub starts: u32,
    /// `sse_gateway_broker_events_lost_total` of its last process.
    pub broker_events_lost: Option<f64>,
    /// `sse_gateway_broker_events_recovered_total` of its last process.
    pub broker_events_recovered: Option<f64>,
}

/// Where posts to the upstream go, and how many times it was started (its generation there);
/// a post holds it (read) until answered.
pub type UpstreamGate = Arc<tokio::sync::RwLock<Option<(SocketAddr, u32)>>>;

/// Where the processes of a run listen.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Addresses {
    pub redis: String,
    pub upstream: String,
    /// By node; `None` while one is down.
    pub nodes: Vec<Option<String>>,
}

impl std::fmt::Display for Addresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redis on {}, upstream on {}", self.redis, self.upstream)?;
        for (index, addr) in self.nodes.iter().enumerate() {
            let addr = addr.as_deref().unwrap_or("down");
            write!(f, ", node {} on {addr}", node_name(index))?;
        }
        Ok(())
    }
}

/// Redis, the upstream and the nodes of one run. Dropping it kills them all.
pub struct Cluster {
    bins: Binaries,
    log_dir: Option<PathBuf>,
    pub key: String,
    redis: Option<Proc>,
    redis_port: u16,
    upstream: Option<Proc>,
    pub upstream_addr: SocketAddr,
    /// The upstream for posts: `None` while it restarts (see [`Cluster::restart_upstream`]).
    pub upstream_gate: UpstreamGate,
    upstream_starts: u32,
    nodes: Vec<Node>,
    /// Where clients and publishers find each node.
    pub table: Nodes,
    config: PathBuf,
    _work: WorkDir,
}

/// Node `index` by letter, as the reports name them.
pub fn node_name(index: usize) -> String {
    char::from(b'A' + (index % 26) as u8).to_string()
}

impl Cluster {
    /// Starts Redis, the upstream and `opts.nodes` gateways, and waits until every node is
    /// ready.
    pub async fn start(opts: &Options) -> anyhow::Result<Cluster> {
        let bins = Binaries::new(opts)?;
        let work = WorkDir::new()?;
        if let Some(dir) = &opts.log_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let redis_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("no free port for Redis")?
            .port();
        let key = format!(
            "chaos-{}-{}",
            std::process::id(),
            sse_loadgen::payload::unix_nanos()
        );
        let mut cluster = Cluster {
            bins,
            log_dir: opts.log_dir.clone(),
            key,
            redis: None,
            redis_port,
            upstream: None,
            upstream_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream_gate: Arc::default(),
            upstream_starts: 0,
            nodes: Vec::new(),
            table: Arc::new(RwLock::new(vec![None; opts.nodes])),
            config: work.0.join("gateway.yaml"),
            _work: work,
        };
        cluster.start_redis().await?;
        cluster.start_upstream("127.0.0.1:0").await?;
        std::fs::write(&cluster.config, cluster.gateway_config())
            .with_context(|| format!("write {}", cluster.config.display()))?;
        for index in 0..opts.nodes {
            cluster.nodes.push(Node {
                proc: None,
                starts: 0,
            });
            cluster.start_node(index).await?;
        }
        cluster.wait_source_connected().await?;
        Ok(cluster)
    }

    /// Waits until the upstream has its one stream client (the cluster's source): a
    /// notification posted before that is one no gateway could have read, since the upstream
    /// replays only to a client that names where it stopped.
    async fn wait_source_connected(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, body)) = get(self.upstream_addr, "/api/info", None).await {
                let info: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if info["stream_clients"].as_u64() == Some(1) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(anyhow!(
                    "the cluster's source never connected to the upstream"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self, name: &str) -> Option<PathBuf> {
        self.log_dir
            .as_ref()
            .map(|dir| dir.join(format!("{name}.log")))
    }

    /// The configuration every node runs: Redis broker, public channels, a publish key, a
    /// source on the upstream, history that holds the whole run, and short `retry` and
    /// heartbeats so that clients resume within a second or two.
    fn gateway_config(&self) -> String {
        format!(
            "# Written by sse-chaos for one run.\n\
             listen: 127.0.0.1:0\n\
             static_dir: \"\"\n\
             channels:\n  - name: \"*\"\n    subscribe: public\n    publish: claims\n\
             auth:\n  api_keys:\n    - name: chaos\n      key_env: {KEY_ENV}\n      \
             publish: [\"*\"]\n      admin: true\n\
             sse:\n  retry: 1s\n  heartbeat_interval: 1s\n  max_connection_lifetime: 1h\n\
             history:\n  max_events: 100000\n  max_age: 10m\n\
             limits:\n  max_connections: 10000\n\
             broker:\n  kind: redis\n  url: redis://127.0.0.1:{}/\n\
             sources:\n  - name: chaos-upstream\n    \
             url: http://{}/streams/notifications\n    channel: notifications\n\
             shutdown:\n  grace_period: 1s\n",
            self.redis_port, self.upstream_addr
        )
    }

    /// Starts Redis on its port, empty, and waits until it answers.
    async fn start_redis(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new(&self.bins.redis);
        command
            .args([
                "--port",
                &self.redis_port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--save", "", "--appendonly", "no"]);
        let (proc, _) = Proc::start(command, self.log("redis").as_deref(), None).await?;
        self.redis = Some(proc);
        let deadline = Instant::now() + START_TIMEOUT;
        while self.redis_command("PING").await.ok().as_deref() != Some("+PONG") {
            if Instant::now() >= deadline {
                bail!("redis-server on port {} did not answer", self.redis_port);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Sends one inline command to Redis; returns the first line of the answer.
    pub async fn redis_command(&self, command: &str) -> anyhow::Result<String> {
        let exchange = async {
            let mut conn = TcpStream::connect(("127.0.0.1", self.redis_port)).await?;
            conn.write_all(format!("{command}\r\n").as_bytes()).await?;
            let mut reader = BufReader::new(conn);
            let mut line = String::new();
            reader.read_line(&mut line).await?;
            Ok::<_, std::io::Error>(line.trim_end().to_owned())
        };
        tokio::time::timeout(Duration::from_secs(2), exchange)
            .await
            .map_err(|_| anyhow!("Redis did not answer {command:?}"))?
            .with_context(|| format!("Redis {command:?}"))
    }

    /// Starts the upstream on `listen`; a later start uses the same port.
    async fn start_upstream(&mut self, listen: &str) -> anyhow::Result<()> {
        let mut command = Command::new(&self.bins.upstream);
        command
            .args(["--listen", listen, "--name", "chaos"])
            .args(["--notify-interval", "0s"])
            .env("RUST_LOG", "warn");
        let (proc, addr) = Proc::start(
            command,
            self.log("upstream").as_deref(),
            Some("reference-upstream"),
        )
        .await?;
        self.upstream = Some(proc);
        self.upstream_addr = addr.context("no upstream address")?;
        self.upstream_starts += 1;
        *self.upstream_gate.write().await = Some((self.upstream_addr, self.upstream_starts));
        Ok(())
    }

    /// Starts node `index` (again) and waits until it is ready; then publishers and clients
    /// find it at its new address.
    async fn start_node(&mut self, index: usize) -> anyhow::Result<()> {
        let mut command = Command::new(&self.bins.gateway);
        command
            .arg("--config")
            .arg(&self.config)
            .env(KEY_ENV, &self.key)
            // Plain log lines in the log files.
            .env("NO_COLOR", "1");
        let name = format!("node-{}", node_name(index));
        let (proc, addr) =
            Proc::start(command, self.log(&name).as_deref(), Some("sse-gateway")).await?;
        let addr = addr.context("no gateway address")?;
        let node = &mut self.nodes[index];
        node.proc = Some(proc);
        node.starts += 1;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok((200, _)) = get(addr, "/readyz", None).await {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "node {} on {addr} not ready within {READY_TIMEOUT:?}",
                    node_name(index)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Ok(mut table) = self.table.write() {
            table[index] = Some(addr);
        }
        Ok(())
    }

    pub fn addresses(&self) -> Addresses {
        Addresses {
            redis: format!("127.0.0.1:{}", self.redis_port),
            upstream: self.upstream_addr.to_string(),
            nodes: (0..self.nodes.len())
                .map(|index| self.address(index).map(|a| a.to_string()))
                .collect(),
        }
    }

    fn address(&self, index: usize) -> Option<SocketAddr> {
        self.table.read().ok()?.get(index).copied().flatten()
    }

    /// Kills Redis and starts it again at once on the same port, empty. The port is free
    /// between the two for a moment: another process could take it then, and the restart
    /// fails (the run ends with that error).
    pub async fn restart_redis(&mut self) -> anyhow::Result<String> {
        if let Some(mut redis) = self.redis.take() {
            redis.kill().await;
        }
        self.start_redis().await?;
        Ok(format!(
            "Redis killed (SIGKILL) and started again empty on port {}",
            self.redis_port
        ))
    }

    /// `CLIENT KILL TYPE pubsub`.
    pub async fn kill_pubsub(&self) -> anyhow::Result<String> {
        let answer = self.redis_command("CLIENT KILL TYPE pubsub").await?;
        let killed = answer
            .strip_prefix(':')
            .ok_or_else(|| anyhow!("CLIENT KILL answered {answer:?}"))?;
        Ok(format!(
            "CLIENT KILL TYPE pubsub closed {killed} subscriptions"
        ))
    }

    /// The node that holds the source's lease now, if one says so.
    async fn source_leader(&self) -> Option<usize> {
        for index in 0..self.nodes.len() {
            let addr = self.address(index)?;
            let Ok((200, body)) = get(addr, "/stats", Some(&self.key)).await else {
                continue;
            };
            let stats: serde_json::Value = serde_json::from_slice(&body).ok()?;
            if stats["sources"][0]["state"] == "connected" {
                return Some(index);
            }
        }
        None
    }

    /// Kills a node (the source's leader, so that the source fails over too), leaves it down
    /// for `down`, and starts it again with the same configuration (on a new port). It is
    /// marked down first, so that new publishes and streams go to the other nodes.
    pub async fn kill_node(&mut self, down: Duration) -> anyhow::Result<String> {
        let leader = self.source_leader().await;
        let index = leader.unwrap_or(1 % self.nodes.len());
        let before = self.address(index);
        if let Ok(mut table) = self.table.write() {
            table[index] = None;
        }
        if let Some(mut proc) = self.nodes[index].proc.take() {
            proc.kill().await;
        }
        tokio::time::sleep(down).await;
        self.start_node(index).await?;
        Ok(format!(
            "node {}{} on {} killed (SIGKILL), started again after {down:?} on {}",
            node_name(index),
            if leader.is_some() {
                " (source leader)"
            } else {
                ""
            },
            before.map_or("?".to_owned(), |a| a.to_string()),
            self.address(index)
                .map_or("?".to_owned(), |a| a.to_string()),
        ))
    }

    /// Stops the upstream (SIGTERM) and starts it again on the same port, which is free
    /// between the two for a moment (the same risk as for Redis).
    ///
    /// It is taken out of the posts' rotation first, once the posts in flight are answered, and
    /// no post is sent until it is back: a notification that a stopping upstream accepts after
    /// its streams have closed dies with its in-memory history, which is the upstream's loss,
    /// not the gateway's. Every notification it accepted before has been written to the
    /// gateway's connection (it answers 201 only then).
    pub async fn restart_upstream(&mut self) -> anyhow::Result<String> {
        *self.upstream_gate.write().await = None;
        if let Some(mut upstream) = self.upstream.take() {
            upstream.stop(STOP_GRACE).await;
        }
        let listen = self.upstream_addr.to_string();
        self.start_upstream(&listen).await?;
        Ok(format!(
            "reference upstream stopped (SIGTERM) and started again on {listen}"
        ))
    }

    /// Each node's broker figures from its metrics, now.
    pub async fn node_figures(&self) -> Vec<NodeFigures> {
        let mut figures = Vec::new();
        for (index, node) in self.nodes.iter().enumerate() {
            let metrics = match self.address(index) {
                Some(addr) => get(addr, "/metrics", None).await.ok(),
                None => None,
            };
            let text = metrics
                .filter(|(status, _)| *status == 200)
                .map(|(_, body)| String::from_utf8_lossy(&body).into_owned())
                .unwrap_or_default();
            figures.push(NodeFigures {
                node: node_name(index),
                starts: node.starts,
                broker_events_lost: metric(&text, "sse_gateway_broker_events_lost_total"),
                broker_events_recovered: metric(&text, "sse_gateway_broker_events_recovered_total"),
            });
        }
        figures
    }
}

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// One `GET` on a connection of its own (admin key as `X-API-Key`); the status and the body.
async fn get(addr: SocketAddr, path: &str, key: Option<&str>) -> anyhow::Result<(u16, Vec<u8>)> {
    let exchange = async {
        let mut conn = TcpStream::connect(addr).await?;
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some(key) = key {
            request.push_str(&format!("X-API-Key: {key}\r\n"));
        }
        request.push_str("\r\n");
        conn.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        let head = read_head(&mut conn, &mut buf)
            .await
            .map_err(|e| anyhow!(e))?;
        let mut decoder = BodyDecoder::new(head.body);
        let mut body = Vec::new();
        let mut start = head.len;
        loop {
            let mut input = &buf[start..];
            while let Some(data) = decoder.next_data(&mut input)? {
                body.extend_from_slice(data);
            }
            if decoder.is_done() || body.len() > MAX_ANSWER_BYTES {
                break;
            }
            buf.clear();
            start = 0;
            if conn.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        Ok::<_, anyhow::Error>((head.status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| anyhow!("GET {path} on {addr}: no answer"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_unlabelled_metrics() {
        let text = "# HELP x\nsse_gateway_broker_events_lost_total 212\n\
                    sse_gateway_broker_events_lost_total_more 1\nother 3\n";
        assert_eq!(
            metric(text, "sse_gateway_broker_events_lost_total"),
            Some(212.0)
        );
        assert_eq!(metric(text, "missing"), None);
        assert_eq!(node_name(2), "C");
    }
}
