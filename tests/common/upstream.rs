//! Upstreams for source tests: the real `reference-upstream` process, and a scripted HTTP
//! server on a real socket for the faults the reference upstream does not make.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{http, listening_address};

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

/// A `reference-upstream` process. Killed on drop.
pub struct Upstream {
    child: Option<Child>,
    pub addr: SocketAddr,
    args: Vec<String>,
}

impl Upstream {
    /// Starts it on a free port with `args` (e.g. `--notify-interval 0s`).
    pub fn start(args: &[&str]) -> Upstream {
        Upstream::start_on("127.0.0.1:0", args.iter().map(|a| a.to_string()).collect())
    }

    fn start_on(listen: &str, args: Vec<String>) -> Upstream {
        let mut child = Command::new(upstream_binary())
            .args(["--listen", listen, "--name", "up-test"])
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn reference-upstream");
        let Some(addr) = listening_address(&mut child, "reference-upstream") else {
            let _ = child.kill();
            panic!("reference-upstream did not start on {listen}");
        };
        Upstream {
            child: Some(child),
            addr,
            args,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Kills the process (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        *self = Upstream::start_on(&self.addr.to_string(), self.args.clone());
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

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
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
