//! Connect tickets: short-lived, single-use stand-ins for a credential, for `EventSource`.
//!
//! A browser's `EventSource` cannot set headers, and a long-lived token in a URL ends up in
//! access logs, proxies and browser history. So an app fetches a ticket with its real credential
//! (`POST /tickets` with `Authorization`), then opens `GET /events?ticket=...`. The ticket is
//! random (256 bits, from the OS), lives `auth.ticket_ttl` (30 s by default) or less if the
//! credential expires sooner, and is gone once presented, whatever the outcome of that request:
//! a URL that leaks afterwards is worth nothing.
//!
//! Tickets live in this node's memory (a ticket must be redeemed on the node that issued it;
//! a later Redis release would have to share them). The map is bounded in entries and in bytes,
//! and expired tickets are swept by the janitor and whenever the map is full.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use rand::TryRngCore;
use tokio::time::Instant;

use super::Principal;
use crate::config::ChannelPattern;
use crate::reply::ApiError;

/// Most tickets held at once. At 30 s each, 100,000 is over 3,000 new streams a second.
pub const MAX_TICKETS: usize = 100_000;
/// Most memory the tickets' principals may take (their names and patterns), so that a few
/// credentials with very long pattern lists cannot use the whole entry budget's worth of memory.
const MAX_TICKET_BYTES: usize = 64 << 20;
/// Random bytes per ticket: 256 bits, hex-encoded (URL-safe as it is).
const TICKET_BYTES: usize = 32;
/// A full map is swept at most this often on the request path, so that requests arriving while
/// it is full do not each scan 100,000 entries.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A ticket just issued.
#[derive(Debug)]
pub struct Issued {
    pub ticket: String,
    /// Whole seconds it stays redeemable.
    pub expires_in: u64,
}

/// The tickets issued by this node and not yet redeemed or expired.
pub struct TicketStore {
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

impl Default for TicketStore {
    fn default() -> TicketStore {
        TicketStore::new(MAX_TICKETS, MAX_TICKET_BYTES)
    }
}

impl TicketStore {
    pub fn new(cap: usize, max_bytes: usize) -> TicketStore {
        TicketStore {
            cap,
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Issues a ticket for `principal`, valid for `ttl` or until the credential expires,
    /// whichever comes first. 503 `too_many_tickets` when the store is full of live tickets.
    pub fn issue(&self, principal: &Principal, ttl: Duration) -> Result<Issued, ApiError> {
        let lifetime = match principal.expires {
            Some(at) => ttl.min(at.duration_since(SystemTime::now()).unwrap_or_default()),
            None => ttl,
        };
        let ticket = random_ticket()?;
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
            ticket.clone(),
            Entry {
                principal: principal.clone(),
                expires_at: now + lifetime,
                bytes,
            },
        );
        Ok(Issued {
            ticket,
            expires_in: lifetime.as_secs(),
        })
    }

    /// Takes the ticket out of the store: its principal if it was live, else 401
    /// `invalid_ticket`. Either way it can never be used again.
    pub fn redeem(&self, ticket: &str) -> Result<Principal, ApiError> {
        let now = Instant::now();
        let entry = {
            let mut inner = self.inner.lock();
            let entry = inner.tickets.remove(ticket);
            if let Some(e) = &entry {
                inner.bytes -= e.bytes;
            }
            entry
        };
        match entry {
            Some(e) if e.expires_at > now => Ok(e.principal),
            Some(_) => Err(invalid("the ticket has expired; fetch a new one")),
            None => Err(invalid(
                "the ticket is unknown or was already used; fetch a new one",
            )),
        }
    }

    /// Drops expired tickets (run by the janitor).
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

fn invalid(message: &str) -> ApiError {
    ApiError::new(401, "invalid_ticket", message)
}

/// 256 random bits from the operating system, as 64 lowercase hex digits.
fn random_ticket() -> Result<String, ApiError> {
    let mut bytes = [0u8; TICKET_BYTES];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|_| {
        ApiError::new(503, "no_randomness", "cannot draw a random ticket; retry").retry_after(1)
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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
    use super::*;

    fn who(expires: Option<SystemTime>) -> Principal {
        Principal {
            name: "alice".into(),
            subscribe: vec![ChannelPattern::Prefix("user.alice.".into())],
            publish: vec![],
            admin: false,
            expires,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_ticket_is_single_use_and_carries_the_principal() {
        let store = TicketStore::default();
        let issued = store.issue(&who(None), Duration::from_secs(30)).unwrap();
        assert_eq!(issued.expires_in, 30);
        assert_eq!(issued.ticket.len(), 64);
        assert!(issued.ticket.bytes().all(|b| b.is_ascii_hexdigit()));
        let p = store.redeem(&issued.ticket).unwrap();
        assert_eq!(&*p.name, "alice");
        assert_eq!(p.subscribe, who(None).subscribe);
        let again = store.redeem(&issued.ticket).unwrap_err();
        assert_eq!((again.status, again.code), (401, "invalid_ticket"));
        assert!(store.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn tickets_expire_and_are_swept() {
        let store = TicketStore::default();
        let a = store.issue(&who(None), Duration::from_secs(30)).unwrap();
        let b = store.issue(&who(None), Duration::from_secs(30)).unwrap();
        assert_ne!(a.ticket, b.ticket);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(store.redeem(&a.ticket).is_ok(), "still live at 29 s");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(store
            .redeem(&b.ticket)
            .unwrap_err()
            .message
            .contains("expired"));
        store.issue(&who(None), Duration::from_secs(30)).unwrap();
        tokio::time::advance(Duration::from_secs(31)).await;
        store.sweep();
        assert!(store.is_empty());
        assert_eq!(store.inner.lock().bytes, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ticket_does_not_outlive_its_credential() {
        let store = TicketStore::default();
        let soon = SystemTime::now() + Duration::from_secs(5);
        let issued = store
            .issue(&who(Some(soon)), Duration::from_secs(30))
            .unwrap();
        assert!(issued.expires_in <= 5, "{issued:?}");
        let p = store.redeem(&issued.ticket).unwrap();
        assert_eq!(
            p.expires,
            Some(soon),
            "the stream still ends at the credential's exp"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_store_refuses_with_503_until_tickets_expire() {
        let store = TicketStore::new(2, MAX_TICKET_BYTES);
        store.issue(&who(None), Duration::from_secs(10)).unwrap();
        store.issue(&who(None), Duration::from_secs(30)).unwrap();
        let full = store
            .issue(&who(None), Duration::from_secs(30))
            .unwrap_err();
        assert_eq!((full.status, full.code), (503, "too_many_tickets"));
        assert_eq!(full.retry_after, Some(11), "until the first one expires");
        tokio::time::advance(Duration::from_secs(11)).await;
        store.issue(&who(None), Duration::from_secs(30)).unwrap();
        assert_eq!(store.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_byte_budget_bounds_the_store_too() {
        let one = principal_bytes(&who(None)) + 64;
        let store = TicketStore::new(100, one * 2);
        store.issue(&who(None), Duration::from_secs(30)).unwrap();
        store.issue(&who(None), Duration::from_secs(30)).unwrap();
        assert_eq!(
            store
                .issue(&who(None), Duration::from_secs(30))
                .unwrap_err()
                .code,
            "too_many_tickets"
        );
    }

    #[test]
    fn unknown_tickets_are_invalid() {
        let store = TicketStore::default();
        for t in ["", "nope", &"0".repeat(64), &"x".repeat(10_000)] {
            assert_eq!(store.redeem(t).unwrap_err().code, "invalid_ticket");
        }
    }
}
