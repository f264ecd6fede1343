//! A program under test as a real child process: started on port 0, its address read back from
//! the line it prints first once it is bound, `PROGRAM listening on http://ADDR`, its stderr kept
//! for failure messages, and killed when the test ends, however it ends.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a program may take to print its `listening on` line: generous, since a busy machine
/// slows a first start down a lot.
pub const STARTUP: Duration = Duration::from_secs(20);

/// How often the blocking waits here look again.
const POLL: Duration = Duration::from_millis(20);

/// A running program. Killed (SIGKILL) on drop.
pub struct Process {
    program: String,
    child: Option<Child>,
    /// Its first stdout line, until it is read (in a mutex only so that a `Process` is `Sync`).
    first_line: Mutex<Option<mpsc::Receiver<String>>>,
    addr: Option<SocketAddr>,
    stderr: Arc<Mutex<String>>,
}

impl Process {
    /// Starts `command` and waits for its address: [`spawn`](Self::spawn), then
    /// [`wait_listening`](Self::wait_listening).
    pub fn start(program: &str, command: &mut Command) -> Process {
        let mut process = Process::spawn(program, command);
        process.wait_listening();
        process
    }

    /// Starts `command` (stdin closed, stdout and stderr piped), without waiting for anything.
    pub fn spawn(program: &str, command: &mut Command) -> Process {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Process {
            program: program.to_owned(),
            stderr: capture(child.stderr.take().expect("stderr piped")),
            first_line: Mutex::new(Some(first_line(child.stdout.take().expect("stdout piped")))),
            child: Some(child),
            addr: None,
        }
    }

    /// Waits, at most [`STARTUP`], for its first stdout line, which must be
    /// `{program} listening on http://ADDR`, and returns that address. Panics with the program's
    /// stderr when it exits, prints something else, or says nothing in time.
    pub fn wait_listening(&mut self) -> SocketAddr {
        let program = self.program.clone();
        let Some(first_line) = self.first_line.get_mut().expect("first line").take() else {
            return self.addr();
        };
        let line = match first_line.recv_timeout(STARTUP) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "{program} printed no line within {STARTUP:?}; stderr:\n{}",
                self.logs()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.wait_exit(STARTUP);
                panic!(
                    "{program} exited ({status}) before printing its address; stderr:\n{}",
                    self.logs()
                )
            }
        };
        let prefix = format!("{program} listening on http://");
        let addr = match line.strip_prefix(&prefix).map(str::parse) {
            Some(Ok(addr)) => addr,
            _ => panic!(
                "{program}: first stdout line {line:?} is not `{prefix}ADDR`; stderr:\n{}",
                self.logs()
            ),
        };
        self.addr = Some(addr);
        addr
    }

    /// Waits until its address accepts connections, at most `within`: for a program that
    /// prints its address before it listens.
    pub fn wait_accepting(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while std::net::TcpStream::connect(self.addr()).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} never accepted on {}; stderr:\n{}",
                self.program,
                self.addr(),
                self.logs()
            );
            std::thread::sleep(POLL);
        }
    }

    /// The address from its `listening on` line.
    pub fn addr(&self) -> SocketAddr {
        self.addr
            .expect("the address, once wait_listening has read it")
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// What it has written on stderr so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().expect("stderr buffer").clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("not killed").id()
    }

    /// Sends signal `name` (`TERM`, `HUP`, `KILL`...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.program);
    }

    /// Waits for it to exit, at most `within`; panics with its stderr when it does not.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().expect("not killed");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} did not exit within {within:?}; stderr:\n{}",
                    self.program,
                    self.logs()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until its stderr so far satisfies `check`, at most `within`.
    pub fn wait_logs(&self, within: Duration, what: &str, check: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + within;
        while !check(&self.logs()) {
            assert!(
                Instant::now() < deadline,
                "{}: no {what} on stderr within {within:?}; stderr:\n{}",
                self.program,
                self.logs()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Kills it (SIGKILL: no goodbye to its clients) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Everything read from `pipe`, as it comes.
fn capture(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            let Ok(mut text) = sink.lock() else { return };
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// Sends the first line read from `stdout`, then reads on to the end, so that a program that
/// writes more never blocks on a full pipe.
fn first_line(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    rx
}
