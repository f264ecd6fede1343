//! The servers of a pool as the proxy sees them: requests in flight, passive ejection and the
//! active check's verdict. Kept apart from the pool so the balancer (least connections) and the
//! health checks read the same state without depending on the pool that owns them.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use pingora::protocols::l4::socket::SocketAddr;

use crate::config::PassiveConfig;

/// One server of a pool, as the proxy sees it.
#[derive(Debug)]
pub struct ServerState {
    addr: SocketAddr,
    /// As the config wrote it (`host:port`): metrics labels and `/stats`.
    label: String,
    in_flight: AtomicUsize,
    failures: AtomicU32,
    /// Unix ms until which passive health keeps it out (0: in).
    ejected_until: AtomicU64,
    /// The active check's verdict (true until a check says otherwise, as in pingora).
    healthy: AtomicBool,
}

impl ServerState {
    pub fn new(addr: SocketAddr, label: String) -> ServerState {
        ServerState {
            addr,
            label,
            in_flight: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn addr(&self) -> &SocketAddr {
        &self.addr
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A request (or an upstream stream) starts on this server; it ends when the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now_ms()
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(super) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// A connect failure or a 502/503/504: with `passive`, that many in a row eject it for a
    /// while. Returns whether this one ejected it.
    pub fn failed(&self, passive: Option<&PassiveConfig>) -> bool {
        let Some(passive) = passive else { return false };
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < passive.failures {
            return false;
        }
        self.failures.store(0, Ordering::Relaxed);
        let until = now_ms().saturating_add(passive.eject_for.as_millis() as u64);
        self.ejected_until.store(until, Ordering::Relaxed);
        true
    }

    /// Any other answer: the run of failures is over.
    pub fn answered(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A request in flight on a server; counted until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<ServerState>);

impl InFlight {
    pub fn server(&self) -> &Arc<ServerState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The servers of a pool by address.
#[derive(Debug, Default)]
pub struct ServerTable {
    servers: Vec<Arc<ServerState>>,
}

impl ServerTable {
    pub fn from_states(states: impl IntoIterator<Item = Arc<ServerState>>) -> ServerTable {
        ServerTable {
            servers: states.into_iter().collect(),
        }
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<Arc<ServerState>> {
        self.servers.iter().find(|s| &s.addr == addr).cloned()
    }

    pub fn by_label(&self, label: &str) -> Option<Arc<ServerState>> {
        self.servers.iter().find(|s| s.label == label).cloned()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<ServerState>> {
        self.servers.iter()
    }
}
