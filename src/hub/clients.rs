//! The registry of connected streams, for `/clients`, `/stats` and targeted disconnects.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;

use super::queue::StreamQueue;
use crate::auth::Principal;

/// Why the gateway ended a stream (as opposed to the client leaving).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseReason {
    /// Its queue overflowed: the client reads slower than events arrive.
    SlowConsumer = 1,
    /// An operator called `DELETE /clients/{id}`.
    Kicked = 2,
    /// A config reload took away the stream's right to one of its channels.
    Revoked = 3,
}

/// One connected stream as the rest of the gateway sees it. Small on purpose: there is one per
/// open stream.
#[derive(Debug)]
pub struct ClientHandle {
    pub id: u64,
    pub channels: Box<[Box<str>]>,
    pub types: Option<Box<[Box<str>]>>,
    pub peer: Option<IpAddr>,
    pub principal: Option<Arc<Principal>>,
    pub connected_at: SystemTime,
    close_reason: AtomicU8,
    close: Notify,
    /// Its events on their way to the client (written directly by the fan-out when it can).
    pub queue: StreamQueue,
}

impl ClientHandle {
    /// Whether this stream asked for events of this type.
    pub fn wants(&self, event_type: &str) -> bool {
        self.types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| &**t == event_type))
    }

    /// Asks the stream to end; the first reason given wins.
    pub fn close(&self, reason: CloseReason) {
        if self
            .close_reason
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // notify_one keeps a permit if the stream is not waiting right now.
            self.close.notify_one();
        }
    }

    /// Resolves once [`ClientHandle::close`] was called, with its reason.
    pub async fn closed(&self) -> CloseReason {
        loop {
            match self.close_reason() {
                Some(reason) => return reason,
                None => self.close.notified().await,
            }
        }
    }

    /// Why the stream was asked to end, if it was.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.close_reason.load(Ordering::Acquire) {
            1 => Some(CloseReason::SlowConsumer),
            2 => Some(CloseReason::Kicked),
            3 => Some(CloseReason::Revoked),
            _ => None,
        }
    }

    pub fn info(&self) -> ClientInfo {
        ClientInfo {
            id: self.id.to_string(),
            channels: self.channels.iter().map(|c| c.to_string()).collect(),
            types: self
                .types
                .as_ref()
                .map(|t| t.iter().map(|t| t.to_string()).collect()),
            ip: self.peer.map(|ip| ip.to_string()),
            principal: self.principal.as_ref().map(|p| p.name.to_string()),
            connected_at: self
                .connected_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            events_sent: self.queue.sent(),
        }
    }
}

/// A client as `/clients` shows it.
#[derive(Debug, Serialize)]
pub struct ClientInfo {
    pub id: String,
    pub channels: Vec<String>,
    pub types: Option<Vec<String>>,
    pub ip: Option<String>,
    pub principal: Option<String>,
    /// Unix seconds.
    pub connected_at: u64,
    pub events_sent: u64,
}

/// Connected streams by id. Ordered, so `/clients` pages with "ids after the cursor".
#[derive(Default)]
pub struct ClientRegistry {
    next_id: AtomicU64,
    clients: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
    /// Signalled whenever the last stream leaves, for the drain to wait on.
    emptied: Notify,
}

impl ClientRegistry {
    pub(super) fn register(
        &self,
        channels: Box<[Box<str>]>,
        types: Option<Box<[Box<str>]>>,
        peer: Option<IpAddr>,
        principal: Option<Arc<Principal>>,
        queue: usize,
    ) -> Arc<ClientHandle> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let handle = Arc::new(ClientHandle {
            id,
            channels,
            types,
            peer,
            principal,
            connected_at: SystemTime::now(),
            close_reason: AtomicU8::new(0),
            close: Notify::new(),
            queue: StreamQueue::new(queue),
        });
        self.clients.lock().insert(id, handle.clone());
        handle
    }

    pub(super) fn unregister(&self, id: u64) {
        let mut clients = self.clients.lock();
        clients.remove(&id);
        if clients.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// Resolves once no stream is open (at once if none is).
    pub async fn until_empty(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            // Registered before the check, so a last stream leaving in between is not missed.
            emptied.as_mut().enable();
            if self.is_empty() {
                return;
            }
            emptied.await;
        }
    }

    pub fn len(&self) -> usize {
        self.clients.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientHandle>> {
        self.clients.lock().get(&id).cloned()
    }

    /// Up to `limit` clients with ids after `after`, and the cursor for the next page if any.
    pub fn page(&self, after: u64, limit: usize) -> (Vec<ClientInfo>, Option<u64>) {
        let clients = self.clients.lock();
        let mut page = Vec::with_capacity(limit.min(clients.len()));
        let mut last = None;
        for (id, client) in clients.range(after.saturating_add(1)..) {
            if page.len() == limit {
                // Another client follows this page: the page's last id is the next cursor.
                return (page, last);
            }
            page.push(client.info());
            last = Some(*id);
        }
        (page, None)
    }

    /// Every open stream, e.g. to close them all on shutdown.
    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        self.clients.lock().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn until_empty_waits_for_the_last_stream() {
        let registry = Arc::new(ClientRegistry::default());
        registry.until_empty().await; // none open: at once
        let a = registry.register(Box::new([]), None, None, None, 1);
        let b = registry.register(Box::new([]), None, None, None, 1);
        let waiter = {
            let registry = registry.clone();
            tokio::spawn(async move { registry.until_empty().await })
        };
        registry.unregister(a.id);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished(), "one stream is still open");
        registry.unregister(b.id);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("resolves when the last stream leaves")
            .unwrap();
    }

    #[test]
    fn pages_follow_the_cursor() {
        let registry = ClientRegistry::default();
        let ids: Vec<u64> = (0..5)
            .map(|_| registry.register(Box::new([]), None, None, None, 1).id)
            .collect();
        let (first, next) = registry.page(0, 2);
        assert_eq!(first.len(), 2);
        let (second, next) = registry.page(next.unwrap(), 2);
        let (third, last) = registry.page(next.unwrap(), 2);
        assert_eq!((second.len(), third.len(), last), (2, 1, None));
        assert_eq!(third[0].id, ids[4].to_string());
    }
}
