//! Tickets in the shared broker (Redis), for several nodes: a ticket issued by one node opens a
//! stream on any node, once.
//!
//! Each ticket is one entry of the broker's [`TicketVault`] that expires with the ticket. The
//! entry is named by the SHA-256 of the ticket, not the ticket itself, so a dump of Redis (a
//! backup, `KEYS`, a replica) holds no ticket that could be presented. Its value is the
//! principal the ticket stands for, as compact JSON.
//!
//! Looking at a ticket reads the entry; spending it removes the entry, and the broker says
//! which of several concurrent removals, on whatever nodes, was the one that did (see
//! [`TicketVault::take_ticket`]).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{hex, unknown};
use crate::auth::{Credential, Principal};
use crate::broker::{BrokerError, TicketVault};
use crate::config::ChannelPattern;
use crate::reply::ApiError;

/// The tickets of every node, in the shared broker.
pub struct SharedTickets {
    vault: Arc<dyn TicketVault>,
}

/// A principal as its ticket's entry holds it.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Held {
    name: String,
    subscribe: Vec<String>,
    publish: Vec<String>,
    admin: bool,
    /// Unix time in milliseconds (a JWT's `exp`); absent for API keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<u64>,
}

impl SharedTickets {
    pub(super) fn new(vault: Arc<dyn TicketVault>) -> SharedTickets {
        SharedTickets { vault }
    }

    /// Holds `ticket` for `principal` for `lifetime`.
    pub(super) async fn insert(
        &self,
        ticket: &str,
        principal: &Principal,
        lifetime: Duration,
    ) -> Result<(), ApiError> {
        // Strings, lists of strings, a bool and a number: serializing cannot fail.
        let value = serde_json::to_string(&Held::from(principal)).unwrap_or_default();
        self.vault
            .put_ticket(&entry_id(ticket), &value, lifetime)
            .await
            .map_err(unavailable)
    }

    /// The principal of `ticket` if it is live; it stays in the store.
    pub(super) async fn peek(&self, ticket: &str) -> Result<Principal, ApiError> {
        let value = self
            .vault
            .peek_ticket(&entry_id(ticket))
            .await
            .map_err(unavailable)?
            .ok_or_else(unknown)?;
        let held: Held = serde_json::from_str(&value).map_err(|e| {
            // Written by a node of another version, or not by a node at all.
            tracing::warn!(error = %e, "a ticket entry in the broker is not readable");
            unknown()
        })?;
        held.into_principal().ok_or_else(|| {
            tracing::warn!("a ticket entry in the broker holds an invalid pattern");
            unknown()
        })
    }

    /// Removes `ticket`: whether this call did (it was live, and no other request, on any
    /// node, spent it first).
    pub(super) async fn remove(&self, ticket: &str) -> Result<bool, ApiError> {
        self.vault
            .take_ticket(&entry_id(ticket))
            .await
            .map_err(unavailable)
    }
}

/// The name of `ticket`'s entry: its SHA-256, in hex.
fn entry_id(ticket: &str) -> String {
    hex(&Sha256::digest(ticket.as_bytes()))
}

fn unavailable(e: BrokerError) -> ApiError {
    ApiError::broker_unavailable(e.to_string())
}

impl From<&Principal> for Held {
    fn from(p: &Principal) -> Held {
        let patterns = |list: &[ChannelPattern]| list.iter().map(pattern_text).collect();
        Held {
            name: p.name.to_string(),
            subscribe: patterns(&p.subscribe),
            publish: patterns(&p.publish),
            admin: p.admin,
            expires: p.expires.map(|at| {
                at.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }),
        }
    }
}

impl Held {
    /// The principal back; `None` if a pattern does not parse.
    fn into_principal(self) -> Option<Principal> {
        let patterns = |list: Vec<String>| -> Option<Vec<ChannelPattern>> {
            list.iter().map(|p| ChannelPattern::parse(p)).collect()
        };
        Some(Principal {
            name: self.name.into(),
            subscribe: patterns(self.subscribe)?,
            publish: patterns(self.publish)?,
            admin: self.admin,
            expires: self
                .expires
                .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
            // Only a JWT expires.
            credential: if self.expires.is_some() {
                Credential::Jwt
            } else {
                Credential::ApiKey
            },
        })
    }
}

/// A pattern as written in config and claims: the name, or the prefix followed by `*`.
fn pattern_text(pattern: &ChannelPattern) -> String {
    match pattern {
        ChannelPattern::Exact(name) => name.clone(),
        ChannelPattern::Prefix(prefix) => format!("{prefix}*"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn millis(at: SystemTime) -> u128 {
        at.duration_since(UNIX_EPOCH).unwrap().as_millis()
    }

    fn principal(expires: Option<SystemTime>) -> Principal {
        Principal {
            name: "alice".into(),
            subscribe: vec![
                ChannelPattern::Prefix("user.alice.".into()),
                ChannelPattern::Exact("news".into()),
                ChannelPattern::Prefix(String::new()),
            ],
            publish: vec![ChannelPattern::Exact("user.alice.out".into())],
            admin: true,
            expires,
            credential: Credential::Jwt,
        }
    }

    #[test]
    fn a_principal_survives_the_round_trip_through_its_entry() {
        let exp = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        for p in [principal(Some(exp)), principal(None)] {
            let json = serde_json::to_string(&Held::from(&p)).unwrap();
            let back: Held = serde_json::from_str(&json).unwrap();
            let back = back.into_principal().expect("patterns parse");
            assert_eq!(back.name, p.name);
            assert_eq!(back.subscribe, p.subscribe);
            assert_eq!(back.publish, p.publish);
            assert_eq!(back.admin, p.admin);
            assert_eq!(back.expires.map(millis), p.expires.map(millis));
        }
        let json = serde_json::to_string(&Held::from(&principal(Some(exp)))).unwrap();
        assert_eq!(
            json,
            r#"{"name":"alice","subscribe":["user.alice.*","news","*"],"publish":["user.alice.out"],"admin":true,"expires":1900000000000}"#
        );
    }

    #[test]
    fn entries_that_are_not_a_principal_are_refused() {
        assert!(serde_json::from_str::<Held>(r#"{"name":"a"}"#).is_err());
        let bad_pattern: Held =
            serde_json::from_str(r#"{"name":"a","subscribe":["a b"],"publish":[],"admin":false}"#)
                .unwrap();
        assert!(bad_pattern.into_principal().is_none());
    }

    #[test]
    fn entries_are_named_by_the_tickets_hash_not_the_ticket() {
        let ticket = "ab".repeat(32);
        let id = entry_id(&ticket);
        assert_eq!(id.len(), 64);
        assert_ne!(id, ticket);
        assert_eq!(id, entry_id(&ticket), "the same ticket, the same entry");
        assert_ne!(id, entry_id(&"ac".repeat(32)));
        // SHA-256("abc"), the FIPS 180-2 example.
        assert_eq!(
            entry_id("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
