//! Addresses that stay put for a whole test, so that no other test, running in parallel, can
//! take them.
//!
//! A port given back to the system, even for a moment (a process stopped to be started again
//! on the same port, or a port bound and closed to have "an address nothing listens on"), can be
//! handed to anyone in between: then a test talks to another test's server. A [`Relay`] keeps
//! one address in front of a process that stops and starts on ports of its own; a
//! [`ClosedPort`] keeps an address that refuses connections.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

/// A loopback address held for the relay's whole life, relaying each connection to the current
/// target: a process's address until it is stopped, the next one's once it is started again.
/// What connects to the relay sees one server at one address that goes away and comes back, as
/// a restart on the same port would look, without the port ever being free.
///
/// While there is no target (or it does not answer), a connection is accepted and closed at
/// once. It runs on a runtime of its own, so it relays while the test blocks.
pub struct Relay {
    addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Relay {
    /// A relay on a free loopback port, with no target yet.
    pub fn start() -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().expect("relay address");
        listener.set_nonblocking(true).expect("non-blocking");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("relay runtime");
        let target = Arc::new(Mutex::new(None));
        runtime.spawn(relay(listener, target.clone()));
        Relay {
            addr,
            target,
            runtime: Some(runtime),
        }
    }

    /// The address it holds.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where new connections go from now on (`None`: nowhere). Connections already relayed
    /// stay with the target they have.
    pub fn point_to(&self, target: Option<SocketAddr>) {
        *self.target.lock().expect("relay target") = target;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Drops every relayed connection; does not block, so it may run inside a test's runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn relay(listener: std::net::TcpListener, target: Arc<Mutex<Option<SocketAddr>>>) {
    let listener = TcpListener::from_std(listener).expect("relay listener");
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let to = *target.lock().expect("relay target");
        tokio::spawn(async move {
            let Some(to) = to else { return };
            let Ok(mut outbound) = TcpStream::connect(to).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}

/// A loopback address that refuses connections for as long as this lives: its port is bound,
/// so neither another test nor the system's choice of a free port can take it, and nothing
/// listens on it.
pub struct ClosedPort {
    _socket: Socket,
    addr: SocketAddr,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        // Without SO_REUSEADDR, so that no other socket may share the port.
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind a loopback port");
        let addr = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("bound address");
        ClosedPort {
            _socket: socket,
            addr,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        ClosedPort::new()
    }
}
