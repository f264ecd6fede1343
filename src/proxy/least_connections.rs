//! `least_connections`, which pingora-load-balancing lacks: a [`BackendSelection`] that offers
//! the servers fewest requests in flight first. The counts live in each server's
//! [`ServerState`], which outlives the selector (it is rebuilt whenever the backends change), so
//! open upstream event streams keep counting across rebuilds.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pingora::lb::selection::{BackendIter, BackendSelection};
use pingora::lb::Backend;

use super::servers::ServerTable;

/// The servers of a pool with their in-flight counts.
pub struct LeastConnections {
    backends: Vec<(Backend, Arc<super::servers::ServerState>)>,
    /// Which of the servers with the fewest requests goes first: turns, so that servers with
    /// equal counts share requests that arrive together.
    turn: AtomicUsize,
}

impl BackendSelection for LeastConnections {
    type Iter = LeastConnectionsIter;
    type Config = Arc<ServerTable>;

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Self::build_with_config(backends, &Arc::default())
    }

    fn build_with_config(backends: &BTreeSet<Backend>, table: &Self::Config) -> Self {
        LeastConnections {
            backends: backends
                .iter()
                .filter_map(|b| Some((b.clone(), table.get(&b.addr)?)))
                .collect(),
            turn: AtomicUsize::new(0),
        }
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> Self::Iter {
        // Ordered now, by the counts of now: the caller takes the first acceptable one. Ties go
        // in turn, starting at a different server each time.
        let n = self.backends.len();
        let start = self.turn.fetch_add(1, Ordering::Relaxed);
        let mut order: Vec<(usize, usize)> = (0..n)
            .map(|i| {
                let at = (start + i) % n.max(1);
                (self.backends[at].1.in_flight(), at)
            })
            .collect();
        // Stable: among equal counts the turn order stays.
        order.sort_by_key(|&(count, _)| count);
        LeastConnectionsIter {
            selection: self.clone(),
            order: order.into_iter().map(|(_, at)| at).collect(),
            next: 0,
        }
    }
}

/// The servers of one selection, fewest requests in flight first.
pub struct LeastConnectionsIter {
    selection: Arc<LeastConnections>,
    order: Vec<usize>,
    next: usize,
}

impl BackendIter for LeastConnectionsIter {
    fn next(&mut self) -> Option<&Backend> {
        let at = *self.order.get(self.next)?;
        self.next += 1;
        self.selection.backends.get(at).map(|(backend, _)| backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::servers::ServerState;

    fn table(addrs: &[&str]) -> (Arc<ServerTable>, BTreeSet<Backend>) {
        let backends: BTreeSet<Backend> = addrs.iter().map(|a| Backend::new(a).unwrap()).collect();
        let table = ServerTable::from_states(
            backends
                .iter()
                .map(|b| Arc::new(ServerState::new(b.addr.clone(), b.addr.to_string()))),
        );
        (Arc::new(table), backends)
    }

    fn first(selection: &Arc<LeastConnections>) -> String {
        selection
            .iter(b"")
            .next()
            .map(|b| b.addr.to_string())
            .unwrap()
    }

    #[test]
    fn the_server_with_fewest_in_flight_comes_first_and_ties_take_turns() {
        let (table, backends) = table(&["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
        let selection = Arc::new(LeastConnections::build_with_config(&backends, &table));
        // Three requests that stay open spread over the three servers.
        let mut held = Vec::new();
        for _ in 0..3 {
            let addr = first(&selection);
            held.push(table.by_label(&addr).unwrap().start());
        }
        let mut counts: Vec<usize> = table.all().map(|s| s.in_flight()).collect();
        counts.sort_unstable();
        assert_eq!(counts, [1, 1, 1]);
        // One finishes: the next request goes to that server.
        let freed = held.remove(1);
        let freed_addr = freed.server().label().to_owned();
        drop(freed);
        assert_eq!(first(&selection), freed_addr);
    }

    #[test]
    fn counts_survive_a_rebuild_of_the_selection() {
        let (table, backends) = table(&["127.0.0.1:1", "127.0.0.1:2"]);
        let before = Arc::new(LeastConnections::build_with_config(&backends, &table));
        let _busy = table.by_label(&first(&before)).unwrap().start();
        let busy_addr = _busy.server().label().to_owned();
        let after = Arc::new(LeastConnections::build_with_config(&backends, &table));
        assert_ne!(first(&after), busy_addr);
    }
}
