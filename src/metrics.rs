//! Prometheus metrics. Every name starts with `sse_gateway_`; labels are small fixed sets (never a
//! channel, client or user), so cardinality cannot grow with traffic.
//!
//! The metrics live in the default registry of the `prometheus` crate re-exported by
//! `pingora_prometheus`, so they share one registry with anything pingora registers.

use std::sync::LazyLock;

use pingora_prometheus::prometheus::{
    self, register_histogram, register_histogram_vec, register_int_counter,
    register_int_counter_vec, register_int_gauge, register_int_gauge_vec, Encoder, Histogram,
    HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, TextEncoder,
};

macro_rules! metric {
    ($name:ident: $ty:ty = $register:ident!($($arg:tt)*)) => {
        pub static $name: LazyLock<$ty> =
            LazyLock::new(|| $register!($($arg)*).expect(concat!("metric ", stringify!($name), " registers once")));
    };
}

metric!(STREAMS_OPEN: IntGauge = register_int_gauge!(
    "sse_gateway_streams_open", "SSE streams open now"));
metric!(STREAMS_OPENED: IntCounter = register_int_counter!(
    "sse_gateway_streams_opened_total", "SSE streams accepted"));
metric!(STREAMS_CLOSED: IntCounterVec = register_int_counter_vec!(
    "sse_gateway_streams_closed_total",
    "SSE streams ended, by reason: client_left, slow_consumer, kicked, lifetime, idle_timeout, shutdown, token_expired, revoked",
    &["reason"]));
metric!(SLOW_CONSUMERS: IntCounter = register_int_counter!(
    "sse_gateway_slow_consumer_disconnects_total",
    "Streams disconnected because their queue overflowed (they resume from history)"));
metric!(EVENTS_PUBLISHED: IntCounter = register_int_counter!(
    "sse_gateway_events_published_total", "Events accepted into the hub"));
metric!(EVENTS_DELIVERED: IntCounter = register_int_counter!(
    "sse_gateway_events_delivered_total", "Events written to client sockets (live and replayed)"));
metric!(REPLAYED_EVENTS: IntCounter = register_int_counter!(
    "sse_gateway_replayed_events_total", "Events replayed from history to resuming clients"));
metric!(RESETS: IntCounter = register_int_counter!(
    "sse_gateway_resets_total", "Resumes answered with `event: reset`"));
metric!(DELIVERY_LATENCY: Histogram = register_histogram!(
    "sse_gateway_publish_to_write_seconds",
    "Time from an event entering the hub to its frame being written to a client socket",
    vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]));
metric!(REQUESTS_REJECTED: IntCounterVec = register_int_counter_vec!(
    "sse_gateway_requests_rejected_total",
    "Requests answered with an error, by the error code of the reply",
    &["code"]));
metric!(CHANNELS: IntGauge = register_int_gauge!(
    "sse_gateway_channels", "Channels with history or subscribers"));
metric!(HISTORY_EVENTS: IntGauge = register_int_gauge!(
    "sse_gateway_history_events", "Events retained in history, summed over channels"));
metric!(DRAINING: IntGauge = register_int_gauge!(
    "sse_gateway_draining", "1 while the node drains for shutdown"));

metric!(BROKER_UP: IntGauge = register_int_gauge!(
    "sse_gateway_broker_up", "1 while the broker can take events (always 1 for memory)"));
metric!(BROKER_EVENTS_RECOVERED: IntCounter = register_int_counter!(
    "sse_gateway_broker_events_recovered_total",
    "Events this node read from the Redis log rather than pub/sub (catch-up after a gap)"));
metric!(BROKER_EVENTS_LOST: IntCounter = register_int_counter!(
    "sse_gateway_broker_events_lost_total",
    "Events gone from the Redis log before this node could read them (resumes across them reset)"));
metric!(BROKER_EVENTS_RESTORED: IntCounter = register_int_counter!(
    "sse_gateway_broker_events_restored_total",
    "Events this node gave back to a Redis log that lost its data, from its own history"));
metric!(MAX_CONNECTIONS: IntGauge = register_int_gauge!(
    "sse_gateway_max_connections",
    "The node's limits.max_connections: the most streams it admits (alert on streams_open near it)"));
metric!(PUBLISH_UNCONFIRMED: IntCounter = register_int_counter!(
    "sse_gateway_publish_unconfirmed_total",
    "Publishes answered 503 because their event did not come back to this node in time"));
metric!(LIMIT_REJECTIONS: IntCounterVec = register_int_counter_vec!(
    "sse_gateway_limit_rejections_total",
    "Requests refused by a limit: max_connections, per_ip, per_user, connect_rate, publish_rate, \
     ticket_rate, header_timeout, header_size, uri_size",
    &["limit"]));

// Per upstream server: the label values are the servers of `upstreams:`, a set the operator
// bounds.
metric!(UPSTREAM_REQUESTS: IntCounterVec = register_int_counter_vec!(
    "sse_gateway_upstream_requests_total",
    "Proxied requests by upstream pool, server and outcome: 1xx..5xx (the server's status class) \
     or error (no answer: connect failure, timeout, broken connection)",
    &["upstream", "server", "class"]));
metric!(UPSTREAM_HEALTHY: IntGaugeVec = register_int_gauge_vec!(
    "sse_gateway_upstream_healthy",
    "1 while the server passes its pool's active health check (always 1 without checks)",
    &["upstream", "server"]));
metric!(UPSTREAM_LATENCY: HistogramVec = register_histogram_vec!(
    "sse_gateway_upstream_response_seconds",
    "Time from choosing a server to the end of the proxied response, by upstream pool",
    &["upstream"],
    vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]));

/// The `class` values of `sse_gateway_upstream_requests_total`.
pub const UPSTREAM_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

metric!(CONFIG_RELOADS: IntCounterVec = register_int_counter_vec!(
    "sse_gateway_config_reloads_total",
    "Configuration reloads by result: ok (applied) or error (refused; the old config stays)",
    &["result"]));
metric!(CONFIG_GENERATION: IntGauge = register_int_gauge!(
    "sse_gateway_config_generation",
    "Generation of the configuration in force: 1 at start, one more per applied reload"));

// Per source: the `source` label takes the names in `sources:`, a set the operator bounds.
metric!(SOURCE_CONNECTED: IntGaugeVec = register_int_gauge_vec!(
    "sse_gateway_source_connected", "1 while the source's upstream stream is open", &["source"]));
metric!(SOURCE_EVENTS: IntCounterVec = register_int_counter_vec!(
    "sse_gateway_source_events_total", "Events ingested from the source's upstream", &["source"]));
metric!(SOURCE_RECONNECTS: IntCounterVec = register_int_counter_vec!(
    "sse_gateway_source_reconnects_total",
    "Connection attempts to the source's upstream after the first", &["source"]));
metric!(SOURCE_ERRORS: IntCounterVec = register_int_counter_vec!(
    "sse_gateway_source_errors_total",
    "Upstream faults by kind: connect, status, content_type, stalled, read, oversized, \
     malformed, bad_channel, publish",
    &["source", "kind"]));
metric!(SOURCE_LAST_EVENT: IntGaugeVec = register_int_gauge_vec!(
    "sse_gateway_source_last_event_timestamp_seconds",
    "Unix time of the last event ingested from the source", &["source"]));

/// Touches every metric so that it appears in the first scrape, before its first event, and adds
/// the standard `process_*` collector (resident memory, CPU, open files).
pub fn init() {
    static PROCESS: std::sync::Once = std::sync::Once::new();
    PROCESS.call_once(|| {
        let collector = prometheus::process_collector::ProcessCollector::for_self();
        // Registering fails only if it is already registered, which `Once` rules out.
        let _ = prometheus::register(Box::new(collector));
    });
    LazyLock::force(&STREAMS_OPEN);
    LazyLock::force(&STREAMS_OPENED);
    for reason in [
        "client_left",
        "slow_consumer",
        "kicked",
        "lifetime",
        "idle_timeout",
        "shutdown",
        "token_expired",
        "revoked",
    ] {
        STREAMS_CLOSED.with_label_values(&[reason]);
    }
    for result in ["ok", "error"] {
        CONFIG_RELOADS.with_label_values(&[result]);
    }
    LazyLock::force(&CONFIG_GENERATION);
    LazyLock::force(&UPSTREAM_REQUESTS);
    LazyLock::force(&UPSTREAM_HEALTHY);
    LazyLock::force(&UPSTREAM_LATENCY);
    LazyLock::force(&SLOW_CONSUMERS);
    LazyLock::force(&EVENTS_PUBLISHED);
    LazyLock::force(&EVENTS_DELIVERED);
    LazyLock::force(&REPLAYED_EVENTS);
    LazyLock::force(&RESETS);
    LazyLock::force(&DELIVERY_LATENCY);
    LazyLock::force(&REQUESTS_REJECTED);
    LazyLock::force(&CHANNELS);
    LazyLock::force(&HISTORY_EVENTS);
    LazyLock::force(&DRAINING);
    LazyLock::force(&BROKER_UP);
    LazyLock::force(&MAX_CONNECTIONS);
    LazyLock::force(&BROKER_EVENTS_RECOVERED);
    LazyLock::force(&BROKER_EVENTS_LOST);
    LazyLock::force(&BROKER_EVENTS_RESTORED);
    LazyLock::force(&PUBLISH_UNCONFIRMED);
    for limit in [
        "max_connections",
        "per_ip",
        "per_user",
        "connect_rate",
        "publish_rate",
        "ticket_rate",
        "header_timeout",
        "header_size",
        "uri_size",
        "route_rate",
    ] {
        LIMIT_REJECTIONS.with_label_values(&[limit]);
    }
}

/// The Prometheus text exposition of every registered metric.
pub fn render() -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * 1024);
    // Encoding into a Vec only fails on invalid metric names, which `init` would have caught.
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut out);
    out
}
