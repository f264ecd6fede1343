//! Connect tickets: short-lived, single-use stand-ins for a credential, for `EventSource`.
//!
//! A browser's `EventSource` cannot set headers, and a long-lived token in a URL ends up in
//! access logs, proxies and browser history. So an app fetches a ticket with its real credential
//! (`POST /tickets` with `Authorization`), then opens `GET /events?ticket=...`. The ticket is
//! random (256 bits, from the OS) and lives `auth.ticket_ttl` (30 s by default), or less if the
//! credential expires sooner.
//!
//! A stream request presenting a ticket first [`peeks`](TicketStore::peek) at it: the ticket
//! stands for its principal while the request is authorized and admitted. Only a stream that is
//! admitted [`spends`](TicketStore::spend) it; a refusal (403, a connection limit) leaves it
//! usable until it expires, and of two requests presenting it at once, one spends it and the
//! other gets 401 `invalid_ticket`. A URL that leaks after the stream opened is worth nothing.
//!
//! # Layout
//! - `local`: with the memory broker, tickets live in this process, bounded in entries and
//!   bytes (a ticket is redeemed on the node that issued it, which is the only node);
//! - `shared`: with a shared broker (Redis), tickets live there, keyed by their hash, so
//!   any node redeems a ticket any node issued, once.

mod local;
mod shared;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::TryRngCore;

pub use local::{LocalTickets, MAX_TICKETS};
pub use shared::SharedTickets;

use super::Principal;
use crate::broker::TicketVault;
use crate::reply::ApiError;

/// Random bytes per ticket: 256 bits, hex-encoded (URL-safe as it is).
const TICKET_BYTES: usize = 32;

/// A ticket just issued.
#[derive(Debug)]
pub struct Issued {
    pub ticket: String,
    /// Whole seconds it stays redeemable.
    pub expires_in: u64,
}

/// A ticket a request presented and that was live when looked at: to be spent once its stream
/// is admitted (see the module docs).
#[derive(Debug)]
pub struct Ticket(String);

/// Where this node's tickets are held.
pub enum TicketStore {
    /// In this process (the memory broker).
    Local(LocalTickets),
    /// In the shared broker.
    Shared(SharedTickets),
}

impl Default for TicketStore {
    fn default() -> TicketStore {
        TicketStore::Local(LocalTickets::default())
    }
}

impl TicketStore {
    /// Tickets held in the shared broker's `vault`, redeemable on every node.
    pub fn shared(vault: Arc<dyn TicketVault>) -> TicketStore {
        TicketStore::Shared(SharedTickets::new(vault))
    }

    /// Issues a ticket for `principal`, valid for `ttl` or until the credential expires,
    /// whichever comes first. 503 `too_many_tickets` when this node's store is full, 503
    /// `broker_unavailable` when the shared one cannot be reached.
    pub async fn issue(&self, principal: &Principal, ttl: Duration) -> Result<Issued, ApiError> {
        let lifetime = match principal.expires {
            Some(at) => ttl.min(at.duration_since(SystemTime::now()).unwrap_or_default()),
            None => ttl,
        };
        let ticket = random_ticket()?;
        match self {
            TicketStore::Local(store) => store.insert(&ticket, principal, lifetime)?,
            TicketStore::Shared(store) => store.insert(&ticket, principal, lifetime).await?,
        }
        Ok(Issued {
            ticket,
            expires_in: lifetime.as_secs(),
        })
    }

    /// The principal `ticket` stands for, if it is live, without using it up; else 401
    /// `invalid_ticket` (503 `broker_unavailable` when the shared store cannot be reached).
    pub async fn peek(&self, ticket: &str) -> Result<(Principal, Ticket), ApiError> {
        // Every ticket has this shape: anything else is not looked up at all.
        let hex_digit = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if ticket.len() != 2 * TICKET_BYTES || !ticket.bytes().all(hex_digit) {
            return Err(unknown());
        }
        let principal = match self {
            TicketStore::Local(store) => store.peek(ticket)?,
            TicketStore::Shared(store) => store.peek(ticket).await?,
        };
        Ok((principal, Ticket(ticket.to_owned())))
    }

    /// Uses `ticket` up, for the stream it was presented with. 401 `invalid_ticket` when it is
    /// gone by now: another request spent it first, or it expired in between.
    pub async fn spend(&self, ticket: Ticket) -> Result<(), ApiError> {
        let spent = match self {
            TicketStore::Local(store) => store.remove(&ticket.0),
            TicketStore::Shared(store) => store.remove(&ticket.0).await?,
        };
        if spent {
            Ok(())
        } else {
            Err(invalid(
                "the ticket was used by another request, or has just expired; fetch a new one",
            ))
        }
    }

    /// Drops expired tickets (run by the janitor). The shared broker expires its own.
    pub fn sweep(&self) {
        if let TicketStore::Local(store) = self {
            store.sweep();
        }
    }
}

fn invalid(message: &str) -> ApiError {
    ApiError::new(401, "invalid_ticket", message)
}

fn unknown() -> ApiError {
    invalid("the ticket is unknown, expired or already used; fetch a new one")
}

/// 256 random bits from the operating system, as 64 lowercase hex digits.
fn random_ticket() -> Result<String, ApiError> {
    let mut bytes = [0u8; TICKET_BYTES];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|_| {
        ApiError::new(503, "no_randomness", "cannot draw a random ticket; retry").retry_after(1)
    })?;
    Ok(hex(&bytes))
}

/// Lowercase hex digits of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
