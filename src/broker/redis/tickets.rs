//! Connect tickets in Redis ([`TicketVault`]): any node issues, any node redeems, once.
//!
//! One plain key per ticket, named by the hash the caller gives (never the ticket itself) and
//! expiring with the ticket; the `{sse-gateway}` hash tag puts it in the slot of every other key.

use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{unavailable, RedisBroker};
use crate::broker::{BrokerError, TicketVault};

fn ticket_key(id: &str) -> String {
    format!("{{sse-gateway}}:ticket:{id}")
}

#[async_trait]
impl TicketVault for RedisBroker {
    async fn put_ticket(&self, id: &str, value: &str, ttl: Duration) -> Result<(), BrokerError> {
        let mut conn = self.conn()?;
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        conn.pset_ex(ticket_key(id), value, millis)
            .await
            .map_err(unavailable)
    }

    async fn peek_ticket(&self, id: &str) -> Result<Option<String>, BrokerError> {
        let mut conn = self.conn()?;
        conn.get(ticket_key(id)).await.map_err(unavailable)
    }

    /// `DEL` answers how many keys it removed, and Redis runs commands one at a time: of two
    /// nodes spending the same ticket at once, one removes it and the other finds it gone. (A
    /// key past its expiry counts as gone, so an expired ticket is never spent.) `GETDEL` would
    /// do as well, but needs Redis 6.2.
    async fn take_ticket(&self, id: &str) -> Result<bool, BrokerError> {
        let mut conn = self.conn()?;
        let removed: u64 = conn.del(ticket_key(id)).await.map_err(unavailable)?;
        Ok(removed == 1)
    }
}
