//! Admission limits: how many streams this node, one client IP and one user may hold at once,
//! how fast one IP may open streams, one credential (or IP) may publish, and one credential may
//! fetch connect tickets.
//!
//! A stream is admitted by taking a [`StreamPermit`], which reserves its place in every count
//! under one lock (so a burst cannot overshoot) and gives it back when dropped, however the
//! stream ends. Rates are token buckets (GCRA, `governor`) keyed by IP or credential; their
//! state is pruned by the janitor so keys that went quiet do not hold memory.
//!
//! A config reload swaps the numbers ([`Limits::reconfigure`]): open streams keep their places,
//! and a rate whose setting did not change keeps its buckets.
//!
//! With a shared broker (Redis) the per-IP, per-user and rate limits hold across the cluster:
//! after the node's own check (the fast path, which refuses without a round trip), the same
//! limit is checked and taken in Redis, so adding nodes does not multiply a client's allowance.
//! If Redis cannot answer, the node's own limits stand alone: refusing every stream during a
//! Redis outage would turn it into an outage of the gateway.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;

use crate::broker::SharedBroker;
use crate::config::{LimitsConfig, RateLimit};
use crate::metrics;
use crate::reply::ApiError;

/// How long a client refused for a connection limit is told to wait: streams last long, so a
/// slot rarely frees up sooner.
const CONNECTION_RETRY_AFTER: u64 = 5;

/// The limits of one node, built from `limits:`.
pub struct Limits {
    settings: ArcSwap<Settings>,
    counts: Mutex<Counts>,
    /// The shared broker, when limits hold across nodes.
    cluster: Option<SharedBroker>,
}

/// What `limits:` says, with the rate buckets it implies.
struct Settings {
    max_connections: usize,
    per_ip: Option<usize>,
    per_user: Option<usize>,
    connect_rate: Option<Arc<KeyedRate<IpAddr>>>,
    publish_rate: Option<Arc<KeyedRate<Box<str>>>>,
    ticket_rate: Arc<KeyedRate<Box<str>>>,
}

impl Settings {
    /// The settings of `cfg`, keeping the buckets of `old` whose rate is unchanged.
    fn new(cfg: &LimitsConfig, old: Option<&Settings>) -> Settings {
        fn bucket<K: Hash + Eq + Clone>(
            rate: RateLimit,
            old: Option<&Arc<KeyedRate<K>>>,
        ) -> Arc<KeyedRate<K>> {
            match old {
                Some(old) if old.rate == rate => old.clone(),
                _ => Arc::new(KeyedRate::new(rate)),
            }
        }
        Settings {
            max_connections: cfg.max_connections,
            per_ip: cfg.max_connections_per_ip,
            per_user: cfg.max_connections_per_user,
            connect_rate: cfg
                .connect_rate_per_ip
                .map(|r| bucket(r, old.and_then(|o| o.connect_rate.as_ref()))),
            publish_rate: cfg
                .publish_rate
                .map(|r| bucket(r, old.and_then(|o| o.publish_rate.as_ref()))),
            ticket_rate: bucket(cfg.ticket_rate, old.map(|o| &o.ticket_rate)),
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    per_user: HashMap<Box<str>, usize>,
}

/// A stream's place in the connection counts; given back on drop.
pub struct StreamPermit {
    limits: Arc<Limits>,
    ip: Option<IpAddr>,
    user: Option<Box<str>>,
    /// Places held in the cluster's counts (scope, key), given back through the broker.
    held: Vec<(&'static str, String)>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        if let (Some(cluster), false) = (&self.limits.cluster, self.held.is_empty()) {
            let (cluster, held) = (cluster.clone(), std::mem::take(&mut self.held));
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    for (scope, key) in held {
                        cluster.release_connection(scope, &key).await;
                    }
                });
            }
        }
        let mut counts = self.limits.counts.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(ip) = self.ip {
            release(&mut counts.per_ip, &ip);
        }
        if let Some(user) = &self.user {
            release(&mut counts.per_user, user);
        }
    }
}

/// One fewer for `key`; the entry goes at zero, so the map only holds keys with open streams.
/// Shows `max_connections` as a metric, so alerts and dashboards can compare the open streams
/// with it without knowing the config.
fn export_capacity(cfg: &LimitsConfig) {
    metrics::MAX_CONNECTIONS.set(i64::try_from(cfg.max_connections).unwrap_or(i64::MAX));
}

fn release<K: Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Limits {
    /// The limits of `cfg`; with `cluster`, they also hold across the nodes sharing it.
    pub fn new(cfg: &LimitsConfig, cluster: Option<SharedBroker>) -> Arc<Limits> {
        export_capacity(cfg);
        Arc::new(Limits {
            cluster,
            settings: ArcSwap::from_pointee(Settings::new(cfg, None)),
            counts: Mutex::default(),
        })
    }

    /// Takes the numbers of a reloaded `limits:`. Streams already open keep their places even
    /// where the new maximum is lower (they are not cut; new ones wait for room).
    pub fn reconfigure(&self, cfg: &LimitsConfig) {
        export_capacity(cfg);
        let old = self.settings.load();
        self.settings
            .store(Arc::new(Settings::new(cfg, Some(&old))));
    }

    /// Admits a new stream from `ip`, for `user` (an authenticated subject or key name), or says
    /// why not: 429 `rate_limited` (connect rate), 503 `at_capacity` (this node is full), 429
    /// `too_many_connections` (this IP or user holds its maximum). Rejections leave every count
    /// as it was.
    pub async fn admit_stream(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        user: Option<&str>,
    ) -> Result<StreamPermit, ApiError> {
        let mut permit = self.admit_here(ip, user)?;
        let Some(cluster) = &self.cluster else {
            return Ok(permit);
        };
        let settings = self.settings.load_full();
        let ip_key = ip.map(|ip| ip.to_string());
        if let (Some(rate), Some(ip)) = (&settings.connect_rate, &ip_key) {
            if let Ok(Some(wait)) = cluster.take_token("connect", ip, rate.rate).await {
                return Err(rate_limited("connect_rate", CONNECT_RATE_MESSAGE, wait));
            }
        }
        for (scope, max, key) in [
            ("ip", settings.per_ip, ip_key.as_deref()),
            ("user", settings.per_user, user),
        ] {
            let (Some(max), Some(key)) = (max, key) else {
                continue;
            };
            match cluster.hold_connection(scope, key, max).await {
                Ok(true) => permit.held.push((scope, key.to_owned())),
                Ok(false) => return Err(too_many(scope, max)),
                Err(e) => tracing::debug!(error = %e, "cluster connection count unavailable"),
            }
        }
        Ok(permit)
    }

    /// The node's own admission (the fast path of [`Limits::admit_stream`]).
    fn admit_here(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        user: Option<&str>,
    ) -> Result<StreamPermit, ApiError> {
        let settings = self.settings.load();
        if let (Some(rate), Some(ip)) = (&settings.connect_rate, ip) {
            rate.check(&ip, "connect_rate", CONNECT_RATE_MESSAGE)?;
        }
        let mut counts = self.counts.lock();
        if counts.total >= settings.max_connections {
            return Err(refuse(
                "max_connections",
                ApiError::new(
                    503,
                    "at_capacity",
                    "this node holds its maximum number of streams",
                ),
            ));
        }
        if let (Some(max), Some(ip)) = (settings.per_ip, ip) {
            if counts.per_ip.get(&ip).copied().unwrap_or(0) >= max {
                return Err(too_many("ip", max));
            }
        }
        if let (Some(max), Some(user)) = (settings.per_user, user) {
            if counts.per_user.get(user).copied().unwrap_or(0) >= max {
                return Err(too_many("user", max));
            }
        }
        counts.total += 1;
        if let Some(ip) = ip {
            *counts.per_ip.entry(ip).or_default() += 1;
        }
        let user: Option<Box<str>> = user.map(Into::into);
        if let Some(user) = &user {
            *counts.per_user.entry(user.clone()).or_default() += 1;
        }
        Ok(StreamPermit {
            limits: self.clone(),
            ip,
            user,
            held: Vec::new(),
        })
    }

    /// Admits one publish by `who` (a credential's name, or the client IP without one).
    pub async fn admit_publish(&self, who: &str) -> Result<(), ApiError> {
        let Some(rate) = self.settings.load().publish_rate.clone() else {
            return Ok(());
        };
        self.take(&rate, Bucket::PUBLISH, who).await
    }

    /// Admits one `POST /tickets` by the credential named `who`, so one credential cannot fill
    /// the ticket store.
    pub async fn admit_ticket(&self, who: &str) -> Result<(), ApiError> {
        let rate = self.settings.load().ticket_rate.clone();
        self.take(&rate, Bucket::TICKET, who).await
    }

    /// Takes a token of `key` from `rate`: from this node's bucket, then (with a shared broker)
    /// from the cluster's, which a Redis outage leaves out.
    async fn take(
        &self,
        rate: &KeyedRate<Box<str>>,
        bucket: Bucket,
        key: &str,
    ) -> Result<(), ApiError> {
        rate.check(&key.into(), bucket.limit, bucket.message)?;
        if let Some(cluster) = &self.cluster {
            if let Ok(Some(wait)) = cluster.take_token(bucket.name, key, rate.rate).await {
                return Err(rate_limited(bucket.limit, bucket.message, wait));
            }
        }
        Ok(())
    }

    /// Streams admitted and not yet ended.
    pub fn open_streams(&self) -> usize {
        self.counts.lock().total
    }

    /// Forgets rate state of keys that have been quiet long enough to have a full bucket again.
    pub fn prune(&self) {
        let settings = self.settings.load();
        if let Some(rate) = &settings.connect_rate {
            rate.prune();
        }
        if let Some(rate) = &settings.publish_rate {
            rate.prune();
        }
        settings.ticket_rate.prune();
    }
}

/// A rate limit keyed by credential: its bucket's name in the cluster, its metric label, and
/// what a refusal says.
struct Bucket {
    name: &'static str,
    limit: &'static str,
    message: &'static str,
}

impl Bucket {
    const PUBLISH: Bucket = Bucket {
        name: "publish",
        limit: "publish_rate",
        message: "too many publishes",
    };
    const TICKET: Bucket = Bucket {
        name: "ticket",
        limit: "ticket_rate",
        message: "too many tickets requested by this credential",
    };
}

const CONNECT_RATE_MESSAGE: &str = "too many new streams from this address";

/// 429 for a connection limit of `scope` (`ip` or `user`).
fn too_many(scope: &'static str, max: usize) -> ApiError {
    let (limit, who) = match scope {
        "ip" => ("per_ip", "this address"),
        _ => ("per_user", "this user"),
    };
    refuse(
        limit,
        ApiError::new(
            429,
            "too_many_connections",
            format!("{who} holds its maximum of {max} streams"),
        ),
    )
}

/// 429 for a rate limit, with the wait as `Retry-After`.
fn rate_limited(limit: &'static str, message: &str, wait: Duration) -> ApiError {
    refuse(
        limit,
        ApiError::new(429, "rate_limited", message).retry_after(seconds_up(wait)),
    )
}

/// A token bucket per key.
pub struct KeyedRate<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    /// The configured rate, for the cluster-wide bucket.
    rate: RateLimit,
}

impl<K: Hash + Eq + Clone> KeyedRate<K> {
    pub fn new(rate: RateLimit) -> KeyedRate<K> {
        // The config checked both are at least 1.
        let per_second = NonZeroU32::new(rate.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(rate.burst).unwrap_or(per_second);
        KeyedRate {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            rate,
        }
    }

    /// Takes a token of `key`: 429 `rate_limited` with `Retry-After` when there is none (counted
    /// as a rejection by `limit`).
    pub fn check(&self, key: &K, limit: &'static str, message: &str) -> Result<(), ApiError> {
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            rate_limited(limit, message, wait)
        })
    }
}

impl<K: Hash + Eq + Clone> KeyedRate<K> {
    /// Forgets keys whose bucket is full again.
    pub fn prune(&self) {
        self.limiter.retain_recent();
    }
}

/// Whole seconds to wait, rounded up, at least 1 (`Retry-After` has no fractions).
fn seconds_up(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Counts a refusal by the limit that made it; connection limits get their `Retry-After`.
fn refuse(limit: &'static str, error: ApiError) -> ApiError {
    metrics::LIMIT_REJECTIONS.with_label_values(&[limit]).inc();
    if error.retry_after.is_none() {
        error.retry_after(CONNECTION_RETRY_AFTER)
    } else {
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(yaml: &str) -> Arc<Limits> {
        let config = crate::config::load_str(yaml, None).expect("valid config");
        Limits::new(&config.limits, None)
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn connection_counts_are_reserved_and_given_back() {
        let l = limits(
            "limits: {max_connections: 3, max_connections_per_ip: 2, max_connections_per_user: 1}",
        );
        let a = l.admit_here(ip(1), None).unwrap();
        let _b = l.admit_here(ip(1), Some("ann")).unwrap();
        let e = l.admit_here(ip(1), None).err().unwrap();
        assert_eq!(
            (e.status, e.code, e.retry_after),
            (429, "too_many_connections", Some(5))
        );
        let e = l.admit_here(ip(2), Some("ann")).err().unwrap();
        assert_eq!((e.status, e.code), (429, "too_many_connections"));
        let _c = l.admit_here(ip(2), Some("bob")).unwrap();
        let e = l.admit_here(ip(3), None).err().unwrap();
        assert_eq!((e.status, e.code), (503, "at_capacity"));
        assert_eq!(l.open_streams(), 3, "refusals reserve nothing");
        drop(a);
        assert_eq!(l.open_streams(), 2);
        l.admit_here(ip(1), None).unwrap();
        assert!(l.counts.lock().per_ip.len() <= 2);
    }

    #[test]
    fn a_reload_changes_the_numbers_and_keeps_places_and_unchanged_buckets() {
        let l =
            limits("limits: {max_connections: 2, connect_rate_per_ip: {per_second: 1, burst: 2}}");
        let _a = l.admit_here(ip(1), None).unwrap();
        let _b = l.admit_here(ip(1), None).unwrap();
        assert_eq!(l.admit_here(ip(2), None).err().unwrap().code, "at_capacity");
        let reload = |yaml: &str| {
            l.reconfigure(&crate::config::load_str(yaml, None).unwrap().limits);
        };
        reload("limits: {max_connections: 3, connect_rate_per_ip: {per_second: 1, burst: 2}}");
        assert_eq!(l.open_streams(), 2, "open streams keep their places");
        let _c = l
            .admit_here(ip(2), None)
            .expect("room under the new maximum");
        // The same rate keeps its bucket: ip 1 spent its burst before the reload.
        assert_eq!(
            l.admit_here(ip(1), None).err().unwrap().code,
            "rate_limited"
        );
        reload("limits: {max_connections: 1}");
        assert_eq!(l.open_streams(), 3, "a lower maximum cuts nothing");
        assert_eq!(l.admit_here(ip(1), None).err().unwrap().code, "at_capacity");
    }

    #[test]
    fn counts_leave_no_entries_behind() {
        let l = limits("limits: {max_connections_per_ip: 5, max_connections_per_user: 5}");
        let permits: Vec<_> = (0..50)
            .map(|n| l.admit_here(ip(n), Some(&format!("u{n}"))).unwrap())
            .collect();
        drop(permits);
        let counts = l.counts.lock();
        assert_eq!(
            (counts.total, counts.per_ip.len(), counts.per_user.len()),
            (0, 0, 0)
        );
    }

    #[test]
    fn rates_refuse_with_retry_after_per_key() {
        use futures_util::FutureExt;
        use test_kit::until_refused;

        let l = limits(
            "limits: {connect_rate_per_ip: {per_second: 1, burst: 2}, \
             publish_rate: {per_second: 1, burst: 1}}",
        );
        // Nothing here awaits anything: each run is done when first polled.
        let connects = until_refused(100, |_| std::future::ready(l.admit_here(ip(1), None)))
            .now_or_never()
            .unwrap();
        connects.assert_bucket(2, 1);
        let e = &connects.refused;
        assert_eq!(
            (e.status, e.code, e.retry_after),
            (429, "rate_limited", Some(1))
        );
        let _c = l
            .admit_here(ip(2), None)
            .expect("other addresses have their own bucket");
        assert_eq!(l.open_streams(), connects.admitted.len() + 1);

        let publishes = until_refused(100, |_| l.admit_publish("key-a"))
            .now_or_never()
            .unwrap();
        publishes.assert_bucket(1, 1);
        let e = &publishes.refused;
        assert_eq!((e.status, e.code), (429, "rate_limited"));
        l.admit_publish("key-b")
            .now_or_never()
            .unwrap()
            .expect("other credentials have their own bucket");
    }

    #[test]
    fn tickets_are_rate_limited_per_credential_by_default() {
        let take = |l: &Limits, who: &str| {
            futures_util::FutureExt::now_or_never(l.admit_ticket(who)).expect("no broker")
        };
        let l = limits("");
        for n in 0..20 {
            take(&l, "alice").unwrap_or_else(|e| panic!("ticket {n} of the burst: {e:?}"));
        }
        let e = take(&l, "alice").unwrap_err();
        assert_eq!(
            (e.status, e.code, e.retry_after),
            (429, "rate_limited", Some(1))
        );
        take(&l, "bob").expect("another credential has its own bucket");

        let l = limits("limits: {ticket_rate: {per_second: 1, burst: 2}}");
        take(&l, "alice").unwrap();
        take(&l, "alice").unwrap();
        assert_eq!(take(&l, "alice").unwrap_err().status, 429);
    }

    #[test]
    fn no_limits_configured_admits_up_to_the_node_maximum() {
        let l = limits("limits: {max_connections: 2}");
        let _a = l.admit_here(None, None).unwrap();
        let _b = l.admit_here(ip(1), Some("x")).unwrap();
        assert_eq!(l.admit_here(ip(2), None).err().unwrap().status, 503);
        for _ in 0..100 {
            futures_util::FutureExt::now_or_never(l.admit_publish("k"))
                .unwrap()
                .unwrap();
        }
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(seconds_up(Duration::ZERO), 1);
        assert_eq!(seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(seconds_up(Duration::from_millis(1001)), 2);
        assert_eq!(seconds_up(Duration::from_secs(3)), 3);
    }
}
