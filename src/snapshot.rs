//! The configuration in force, as one immutable value: the checked [`Config`] and everything
//! derived from it that a request needs (the authenticator with its parsed keys, the settings of
//! new streams). A reload builds the next snapshot whole, off the request path, and swaps it in
//! with one store, so a request never sees a new config with an old authenticator; each request
//! loads the current snapshot once and uses that one throughout.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::auth::{Authenticator, TicketStore};
use crate::config::Config;
use crate::hub::HistoryRules;
use crate::proxy::RouteTable;
use crate::stream::StreamSettings;

/// One generation of the configuration and what is derived from it.
pub struct Snapshot {
    /// 1 for the config the process started with, one more per applied reload.
    pub generation: u64,
    pub loaded_at: SystemTime,
    pub config: Arc<Config>,
    pub auth: Authenticator,
    /// The settings new streams start with.
    pub stream: StreamSettings,
    /// Each channel's history limits, for the hub.
    pub history: HistoryRules,
    /// Where `routes:` send requests (over the pools, which live outside snapshots).
    pub routes: Arc<RouteTable>,
}

impl Snapshot {
    /// Derives everything from `config`. `tickets` outlives every snapshot: tickets issued
    /// under one generation are redeemed under the next. `routes` is built first (see
    /// [`crate::proxy::route_table`]): the pools it holds outlive snapshots. Fails only for a
    /// JWT key that cannot be used, which config validation reports first.
    pub fn build(
        config: Config,
        tickets: Arc<TicketStore>,
        routes: Arc<RouteTable>,
        generation: u64,
    ) -> Result<Snapshot, String> {
        let auth = Authenticator::new(&config.auth, tickets)?;
        let config = Arc::new(config);
        Ok(Snapshot {
            generation,
            loaded_at: SystemTime::now(),
            stream: StreamSettings::from_config(&config),
            history: history_rules(config.clone()),
            routes,
            config,
            auth,
        })
    }
}

/// Each channel's history limits under `config`, for the hub.
pub fn history_rules(config: Arc<Config>) -> HistoryRules {
    Arc::new(move |channel: &str| config.history_for(channel))
}

/// The snapshot in force (the one store readers load from).
pub struct Snapshots {
    current: ArcSwap<Snapshot>,
}

impl Snapshots {
    pub fn new(first: Snapshot) -> Arc<Snapshots> {
        Arc::new(Snapshots {
            current: ArcSwap::from_pointee(first),
        })
    }

    /// The snapshot in force now: load it once per request.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Puts `next` in force.
    pub fn store(&self, next: Snapshot) {
        self.current.store(Arc::new(next));
    }
}
