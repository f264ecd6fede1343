//! Tickets in this node's memory, for the memory broker (one node: the node that issued a
//! ticket is the node that redeems it).
//!
//! The map is bounded in entries and in bytes, and expired tickets are swept by the janitor and
//! whenever the map is full.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::{invalid, unknown};
use crate::auth::Principal;
use crate::config::ChannelPattern;
use crate::reply::ApiError;

/// Most tickets held at once. At 30 s each, 100,000 is over 3,000 new streams a second.
pub const MAX_TICKETS: usize = 100_000;
/// Most memory the tickets' principals may take (their names and patterns), so that a few
/// credentials with very long pattern lists cannot use the whole entry budget's worth of memory.
const MAX_TICKET_BYTES: usize = 64 << 20;
/// A full map is swept at most this often on the request path, so that requests arriving while
/// it is full do not each scan 100,000 entries.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The tickets issued by this node and not yet spent or expired.
pub struct LocalTickets {
    cap: usize,
    max_bytes: usize,
    /// A std mutex-like lock, held only for a map operation (never across an await).
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    tickets: HashMap<String, Entry>,
    bytes: usize,
    last_full_sweep: Option<Instant>,
}

struct Entry {
    principal: Principal,
    expires_at: Instant,
    bytes: usize,
}

impl Default for LocalTickets {
    fn default() -> LocalTickets {
        LocalTickets::new(MAX_TICKETS, MAX_TICKET_BYTES)
    }
}

impl LocalTickets {
    pub fn new(cap: usize, max_bytes: usize) -> LocalTickets {
        LocalTickets {
            cap,
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Holds `ticket` for `principal` for `lifetime`. 503 `too_many_tickets` when the store is
    /// full of live tickets.
    pub(super) fn insert(
        &self,
        ticket: &str,
        principal: &Principal,
        lifetime: Duration,
    ) -> Result<(), ApiError> {
        let bytes = principal_bytes(principal) + ticket.len();
        let now = Instant::now();
        let mut inner = self.inner.lock();
        if inner.tickets.len() >= self.cap || inner.bytes + bytes > self.max_bytes {
            let recently = inner
                .last_full_sweep
                .is_some_and(|at| now.duration_since(at) < FULL_SWEEP_EVERY);
            if !recently {
                inner.last_full_sweep = Some(now);
                inner.sweep(now);
            }
            if inner.tickets.len() >= self.cap || inner.bytes + bytes > self.max_bytes {
                let retry = inner
                    .tickets
                    .values()
                    .map(|e| e.expires_at)
                    .min()
                    .map_or(1, |first| first.duration_since(now).as_secs() + 1);
                return Err(ApiError::new(
                    503,
                    "too_many_tickets",
                    "this node holds its maximum number of unredeemed tickets",
                )
                .retry_after(retry));
            }
        }
        inner.bytes += bytes;
        inner.tickets.insert(
            ticket.to_owned(),
            Entry {
                principal: principal.clone(),
                expires_at: now + lifetime,
                bytes,
            },
        );
        Ok(())
    }

    /// The principal of `ticket` if it is live; it stays in the store.
    pub(super) fn peek(&self, ticket: &str) -> Result<Principal, ApiError> {
        let inner = self.inner.lock();
        match inner.tickets.get(ticket) {
            Some(e) if e.expires_at > Instant::now() => Ok(e.principal.clone()),
            Some(_) => Err(invalid("the ticket has expired; fetch a new one")),
            None => Err(unknown()),
        }
    }

    /// Takes `ticket` out of the store: whether it was there and live. Either way it can never
    /// be used again.
    pub(super) fn remove(&self, ticket: &str) -> bool {
        let mut inner = self.inner.lock();
        let Some(entry) = inner.tickets.remove(ticket) else {
            return false;
        };
        inner.bytes -= entry.bytes;
        entry.expires_at > Instant::now()
    }

    /// Drops expired tickets.
    pub fn sweep(&self) {
        self.inner.lock().sweep(Instant::now());
    }

    /// Tickets held now.
    pub fn len(&self) -> usize {
        self.inner.lock().tickets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn sweep(&mut self, now: Instant) {
        let mut freed = 0;
        self.tickets.retain(|_, e| {
            let live = e.expires_at > now;
            if !live {
                freed += e.bytes;
            }
            live
        });
        self.bytes -= freed;
    }
}

/// About what a principal costs in memory: its name and patterns.
fn principal_bytes(p: &Principal) -> usize {
    let patterns = p.subscribe.iter().chain(&p.publish);
    std::mem::size_of::<Entry>()
        + p.name.len()
        + patterns
            .map(|pat| match pat {
                ChannelPattern::Exact(s) | ChannelPattern::Prefix(s) => {
                    s.len() + std::mem::size_of_val(pat)
                }
            })
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::super::TicketStore;
    use super::*;
    use crate::auth::Credential;
    use std::time::SystemTime;

    fn who(expires: Option<SystemTime>) -> Principal {
        Principal {
            name: "alice".into(),
            subscribe: vec![ChannelPattern::Prefix("user.alice.".into())],
            publish: vec![],
            admin: false,
            expires,
            credential: Credential::Jwt,
        }
    }

    fn local(store: &TicketStore) -> &LocalTickets {
        match store {
            TicketStore::Local(local) => local,
            TicketStore::Shared(_) => unreachable!("a local store"),
        }
    }

    const TTL: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn a_ticket_is_peeked_freely_and_spent_once() {
        let store = TicketStore::default();
        let issued = store.issue(&who(None), TTL).await.unwrap();
        assert_eq!(issued.expires_in, 30);
        assert_eq!(issued.ticket.len(), 64);
        assert!(issued.ticket.bytes().all(|b| b.is_ascii_hexdigit()));
        let (p, first) = store.peek(&issued.ticket).await.unwrap();
        assert_eq!(&*p.name, "alice");
        assert_eq!(p.subscribe, who(None).subscribe);
        // A refused request peeked and did not spend: the ticket still works.
        let (_, second) = store.peek(&issued.ticket).await.unwrap();
        store.spend(first).await.unwrap();
        let lost = store.spend(second).await.unwrap_err();
        assert_eq!((lost.status, lost.code), (401, "invalid_ticket"));
        let again = store.peek(&issued.ticket).await.unwrap_err();
        assert_eq!((again.status, again.code), (401, "invalid_ticket"));
        assert!(local(&store).is_empty());
        assert_eq!(local(&store).inner.lock().bytes, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn tickets_expire_and_are_swept() {
        let store = TicketStore::default();
        let a = store.issue(&who(None), TTL).await.unwrap();
        let b = store.issue(&who(None), TTL).await.unwrap();
        assert_ne!(a.ticket, b.ticket);
        tokio::time::advance(Duration::from_secs(29)).await;
        let (_, a) = store.peek(&a.ticket).await.expect("still live at 29 s");
        let (_, b_peeked) = store.peek(&b.ticket).await.unwrap();
        store.spend(a).await.unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        let expired = store.peek(&b.ticket).await.unwrap_err();
        assert!(expired.message.contains("expired"), "{expired:?}");
        // Peeked before it expired, spent after: too late.
        assert_eq!(
            store.spend(b_peeked).await.unwrap_err().code,
            "invalid_ticket"
        );
        store.issue(&who(None), TTL).await.unwrap();
        tokio::time::advance(Duration::from_secs(31)).await;
        store.sweep();
        assert!(local(&store).is_empty());
        assert_eq!(local(&store).inner.lock().bytes, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ticket_does_not_outlive_its_credential() {
        let store = TicketStore::default();
        let soon = SystemTime::now() + Duration::from_secs(5);
        let issued = store.issue(&who(Some(soon)), TTL).await.unwrap();
        assert!(issued.expires_in <= 5, "{issued:?}");
        let (p, _) = store.peek(&issued.ticket).await.unwrap();
        assert_eq!(
            p.expires,
            Some(soon),
            "the stream still ends at the credential's exp"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_store_refuses_with_503_until_tickets_expire() {
        let store = TicketStore::Local(LocalTickets::new(2, MAX_TICKET_BYTES));
        store
            .issue(&who(None), Duration::from_secs(10))
            .await
            .unwrap();
        store.issue(&who(None), TTL).await.unwrap();
        let full = store.issue(&who(None), TTL).await.unwrap_err();
        assert_eq!((full.status, full.code), (503, "too_many_tickets"));
        assert_eq!(full.retry_after, Some(11), "until the first one expires");
        tokio::time::advance(Duration::from_secs(11)).await;
        store.issue(&who(None), TTL).await.unwrap();
        assert_eq!(local(&store).len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_byte_budget_bounds_the_store_too() {
        let one = principal_bytes(&who(None)) + 64;
        let store = TicketStore::Local(LocalTickets::new(100, one * 2));
        store.issue(&who(None), TTL).await.unwrap();
        store.issue(&who(None), TTL).await.unwrap();
        let full = store.issue(&who(None), TTL).await.unwrap_err();
        assert_eq!(full.code, "too_many_tickets");
    }

    #[tokio::test]
    async fn unknown_tickets_are_invalid() {
        let store = TicketStore::default();
        let issued = store.issue(&who(None), TTL).await.unwrap();
        let upper = issued.ticket.to_uppercase();
        for t in ["", "nope", &"0".repeat(64), &"x".repeat(10_000), &upper] {
            assert_eq!(store.peek(t).await.unwrap_err().code, "invalid_ticket");
        }
    }
}
