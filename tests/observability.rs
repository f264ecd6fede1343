//! The shipped Grafana dashboard (`deploy/grafana/sse-gateway.json`) and Prometheus alert rules
//! (`deploy/prometheus/alerts.yml`) against a real gateway: every metric they name is in the
//! first scrape, before any traffic, so a panel never shows "no data" for a metric that merely
//! has not happened yet, and an `absent()` or `== 0` alert means what it says. The rules' own
//! logic is checked by `promtool test rules deploy/prometheus/alerts.test.yml` (scripts/test).

mod common;

use common::*;
use std::time::Duration;

use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

const DASHBOARD: &str = include_str!("../deploy/grafana/sse-gateway.json");
const ALERTS: &str = include_str!("../deploy/prometheus/alerts.yml");

/// The metric names in `text`: every word that starts with one of the prefixes the gateway
/// exports (`sse_gateway_`, and the standard `process_` collector).
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for prefix in ["sse_gateway_", "process_"] {
        for (at, _) in text.match_indices(prefix) {
            let preceded_by_word = text[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if preceded_by_word {
                continue;
            }
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.push(name);
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The sample names of a Prometheus text exposition (`name{labels} value` or `name value`).
fn exported_samples(scrape: &str) -> Vec<&str> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split([' ', '{']).next())
        .collect()
}

/// A gateway as the dashboard expects to find it: one upstream pool (served by the reference
/// upstream) and one source read through it, `on_demand` so nothing connects before a client
/// subscribes.
fn gateway_with_a_pool_and_a_source(upstream: &Upstream) -> Gateway {
    Gateway::start(&format!(
        "upstreams:
  pool:
    servers: [\"{}\"]
routes:
  - {{path_prefix: /api/, upstream: pool}}
sources:
  - {{name: notes, upstream: pool, path: /streams/notifications, channel: notifications, mode: on_demand}}
",
        upstream.addr
    ))
}

#[tokio::test]
async fn every_metric_the_dashboard_and_alerts_name_is_exported_before_any_traffic() {
    let upstream = Upstream::start(&[]);
    let gw = gateway_with_a_pool_and_a_source(&upstream);
    let scrape = gw.metrics_text().await;
    let exported = exported_samples(&scrape);

    for (file, text) in [
        ("deploy/grafana/sse-gateway.json", DASHBOARD),
        ("deploy/prometheus/alerts.yml", ALERTS),
    ] {
        let named = metric_names(text);
        assert!(named.len() >= 8, "{file} names only {named:?}");
        let missing: Vec<&String> = named
            .iter()
            .filter(|name| !exported.contains(&name.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "{file} names metrics the gateway does not export before traffic: {missing:?}\n\
             first scrape:\n{scrape}"
        );
    }

    // Counters start at 0 for each known label value, so `rate()` and `increase()` see the
    // first event as a step from 0 rather than as a new series.
    for (name, labels) in [
        (
            "sse_gateway_streams_closed_total",
            "reason=\"slow_consumer\"",
        ),
        ("sse_gateway_config_reloads_total", "result=\"error\""),
        (
            "sse_gateway_limit_rejections_total",
            "limit=\"max_connections\"",
        ),
        ("sse_gateway_upstream_requests_total", "class=\"5xx\""),
        ("sse_gateway_source_errors_total", "kind=\"connect\""),
        ("sse_gateway_source_reconnects_total", "source=\"notes\""),
        (
            "sse_gateway_upstream_response_seconds_count",
            "upstream=\"pool\"",
        ),
    ] {
        assert!(
            scrape
                .lines()
                .any(|l| l.starts_with(name) && l.contains(labels) && l.ends_with(" 0")),
            "no {name}{{{labels}}} at 0 in the first scrape:\n{scrape}"
        );
    }
    // The gauges the alerts compare against.
    assert_eq!(metric_value(&scrape, "sse_gateway_broker_up", ""), 1.0);
    assert_eq!(
        metric_value(&scrape, "sse_gateway_max_connections", ""),
        19000.0,
        "the default limits.max_connections"
    );
    assert_eq!(
        metric_value(&scrape, "sse_gateway_upstream_healthy", "upstream=\"pool\""),
        1.0
    );
    assert_eq!(
        metric_value(&scrape, "sse_gateway_source_connected", "source=\"notes\""),
        0.0
    );
}

#[tokio::test]
async fn max_connections_follows_a_reload() {
    let gw = Gateway::start("limits:\n  max_connections: 50\n");
    assert_eq!(gw.metric("sse_gateway_max_connections", "").await, 50.0);
    let yaml = std::fs::read_to_string(gw.config_path()).expect("config");
    std::fs::write(
        gw.config_path(),
        yaml.replace("max_connections: 50", "max_connections: 70"),
    )
    .expect("rewrite config");
    gw.signal("HUP");
    eventually(WAIT, "the reloaded max_connections exported", || async {
        gw.metric("sse_gateway_max_connections", "").await == 70.0
    })
    .await;
}

#[test]
fn every_dashboard_panel_queries_the_selected_datasource() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "sse-gateway");
    let panels = dashboard["panels"].as_array().expect("panels");
    let graphs: Vec<&Value> = panels.iter().filter(|p| p["type"] != "row").collect();
    assert!(graphs.len() >= 20, "{} panels", graphs.len());
    for panel in graphs {
        let title = &panel["title"];
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(
                expr.contains("sse_gateway_") || expr.contains("process_"),
                "{title}: {expr}"
            );
            assert!(expr.contains("instance=~\"$instance\""), "{title}: {expr}");
        }
    }
}
