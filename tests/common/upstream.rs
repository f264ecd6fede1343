//! Upstreams for source tests: the real `reference-upstream` process, and a scripted HTTP
//! server on a real socket for the faults the reference upstream does not make.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{http, Process, Relay};

/// The `reference-upstream` binary next to the gateway's, built once if a lone `cargo test
/// --test X` did not build the workspace.
fn upstream_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let gateway = PathBuf::from(env!("CARGO_BIN_EXE_sse-gateway"));
            let binary = gateway.with_file_name("reference-upstream");
            if !binary.exists() {
                let status = Command::new(env!("CARGO"))
                    .args([
                        "build",
                        "-p",
                        "reference-upstream",
                        "--bin",
                        "reference-upstream",
                    ])
                    .current_dir(env!("CARGO_MANIFEST_DIR"))
                    .status()
                    .expect("cargo build reference-upstream");
                assert!(status.success(), "building reference-upstream failed");
            }
            binary
        })
        .clone()
}

/// A `reference-upstream` process behind a [`Relay`]: its address stays the same when it is
/// killed and started again (on a port of its own), and no other test can take that address in
/// between. Killed on drop.
pub struct Upstream {
    process: Option<Process>,
    relay: Relay,
    pub addr: SocketAddr,
    args: Vec<String>,
}

impl Upstream {
    /// Starts it on a free port with `args` (e.g. `--notify-interval 0s`).
    pub fn start(args: &[&str]) -> Upstream {
        let relay = Relay::start();
        let mut up = Upstream {
            process: None,
            addr: relay.addr(),
            relay,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        up.restart();
        up
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Kills the process (SIGKILL: no goodbye to its clients); its address refuses until
    /// [`restart`](Self::restart).
    pub fn kill(&mut self) {
        self.relay.point_to(None);
        self.process = None;
    }

    /// Starts it again, with the same arguments, at the same address.
    pub fn restart(&mut self) {
        self.kill();
        let process = Process::start(
            "reference-upstream",
            Command::new(upstream_binary())
                .args(["--listen", "127.0.0.1:0", "--name", "up-test"])
                .args(&self.args)
                .env("RUST_LOG", "warn"),
        );
        self.relay.point_to(Some(process.addr()));
        self.process = Some(process);
    }

    /// `GET /api/info`.
    pub async fn info(&self) -> serde_json::Value {
        http()
            .get(self.url("/api/info"))
            .send()
            .await
            .expect("info")
            .json()
            .await
            .expect("info json")
    }

    /// POSTs a notification; returns its upstream id.
    pub async fn notify(&self, title: &str) -> String {
        let resp = http()
            .post(self.url("/notifications"))
            .json(&serde_json::json!({"title": title}))
            .send()
            .await
            .expect("post notification");
        assert_eq!(resp.status(), 201);
        let body: serde_json::Value = resp.json().await.expect("json");
        body["id"].as_str().expect("id").to_string()
    }
}

/// What the scripted upstream does with one connection.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Writes these bytes (a whole HTTP response) and closes.
    Raw(String),
    /// Answers `200 text/event-stream` (chunked) with each piece as a chunk, then `then`.
    Sse(Vec<String>, Then),
}

#[derive(Debug, Clone, Copy)]
pub enum Then {
    /// Ends the body properly.
    End,
    /// Drops the connection in the middle of a chunk.
    Break,
    /// Keeps the connection open and silent.
    Hold,
}

/// An HTTP server on a real socket that answers its n-th connection with the n-th [`Reply`]
/// (the last one for every later connection) and records each request head.
pub struct ScriptedUpstream {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedUpstream {
    pub async fn start(script: Vec<Reply>) -> ScriptedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            for n in 0usize.. {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let reply = script[n.min(script.len() - 1)].clone();
                let Some(head) = read_head(&mut socket).await else {
                    continue;
                };
                seen.lock().unwrap().push(head);
                if let Some(socket) = answer(socket, reply).await {
                    held.push(socket);
                }
            }
        });
        ScriptedUpstream {
            addr,
            requests,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The request heads received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The value of header `name` in a recorded request head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

async fn read_head(socket: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Plays one reply; returns the socket if it is to be held open.
async fn answer(mut socket: TcpStream, reply: Reply) -> Option<TcpStream> {
    match reply {
        Reply::Raw(text) => {
            let _ = socket.write_all(text.as_bytes()).await;
            None
        }
        Reply::Sse(pieces, then) => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                        transfer-encoding: chunked\r\n\r\n";
            socket.write_all(head.as_bytes()).await.ok()?;
            for piece in pieces {
                let chunk = format!("{:x}\r\n{piece}\r\n", piece.len());
                socket.write_all(chunk.as_bytes()).await.ok()?;
            }
            match then {
                Then::End => {
                    let _ = socket.write_all(b"0\r\n\r\n").await;
                    None
                }
                Then::Break => {
                    let _ = socket.write_all(b"40\r\ndata: cut off").await;
                    None
                }
                Then::Hold => Some(socket),
            }
        }
    }
}

/// A whole HTTP response with this status, content type and body, closing the connection.
pub fn response(status: &str, content_type: &str, body: &str) -> Reply {
    Reply::Raw(format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    ))
}
