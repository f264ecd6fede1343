//! The single-node broker: publishing is delivering to this process's hub.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Broker, BrokerError, Draft};
use crate::hub::{Event, EventId, Hub};
use crate::metrics;

pub struct MemoryBroker {
    hub: Arc<Hub>,
}

impl MemoryBroker {
    pub fn new(hub: Arc<Hub>) -> MemoryBroker {
        MemoryBroker { hub }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, draft: Draft) -> Result<EventId, BrokerError> {
        let event = self
            .hub
            .deliver(|id| Event::new(id, &draft.event_type, draft.channels, &draft.data));
        metrics::EVENTS_PUBLISHED.inc();
        Ok(event.id)
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
