//! One source's relay: wait for demand (`on_demand`), connect, parse, publish each event through
//! the broker, and on any fault count it, back off and reconnect with the last `Last-Event-ID`.
//! Faults stay on this side: subscribers keep their streams and simply get the events once the
//! upstream is back.

use std::future::pending;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::connectors::http::Connector;
use sse_wire::parse::{ParsedEvent, ParsedItem, Parser, ParserLimits};
use tokio::sync::watch;

use super::backoff::Backoff;
use super::status::{Fault, Phase, SourceStatus};
use super::upstream::{self, Failure, Target};
use super::SourceContext;
use crate::broker::{BrokerError, Draft, SourceMark, SOURCE_LEASE_RENEW};
use crate::config::{
    is_reserved_event_type, is_valid_channel, Config, SourceChannel, SourceConfig, SourceMode,
    SourceTarget,
};
use crate::proxy::Selected;

/// How soon to ask the broker again for the lease when it could not answer.
const BROKER_RETRY: Duration = Duration::from_millis(200);

/// A connection that stayed up this long was healthy, even without events: the next reconnect
/// starts from the base delay.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

pub struct Relay {
    cfg: SourceConfig,
    /// Where to connect: the one URL, or a server of the pool chosen per attempt.
    targets: Targets,
    status: Arc<SourceStatus>,
    ctx: SourceContext,
    connector: Arc<Connector>,
    limits: ParserLimits,
}

/// Where a source connects.
enum Targets {
    Url(Target),
    /// A server of `upstreams.<upstream>`, with this path.
    Pool {
        upstream: String,
        path: String,
    },
}

/// How one connection ended.
enum Ended {
    /// The gateway is draining, or the source was removed or changed by a reload.
    Stopped,
    /// `on_demand` and the last subscriber left (and the linger passed).
    Unwanted,
    /// The upstream closed the stream cleanly.
    Closed,
    /// Another node of the cluster leads the source now.
    NotLeader,
    Failed(Failure),
}

impl Relay {
    pub fn new(
        cfg: SourceConfig,
        config: &Config,
        status: Arc<SourceStatus>,
        ctx: SourceContext,
        connector: Arc<Connector>,
    ) -> Result<Relay, String> {
        let targets = match &cfg.target {
            SourceTarget::Url(url) => Targets::Url(Target::from_url(url)?),
            SourceTarget::Upstream { upstream, path } => Targets::Pool {
                upstream: upstream.clone(),
                path: path.clone(),
            },
        };
        let max_event_bytes = config.limits.max_event_bytes;
        Ok(Relay {
            cfg,
            targets,
            status,
            ctx,
            connector,
            limits: ParserLimits {
                // Room for the field name in front of an event's largest line.
                max_line_bytes: max_event_bytes.saturating_add(64),
                max_event_bytes,
            },
        })
    }

    /// Runs until the gateway drains or `stop` turns true (a reload removed or changed the
    /// source).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        // Skip mode: failing the stream on an oversized event would only get it sent again.
        let mut parser = Parser::new(self.limits).skipping_oversized();
        let mut backoff = Backoff::default();
        let drain = self.ctx.drain.clone();
        let mut stop = pin!(async move {
            tokio::select! {
                () = drain.started() => {}
                _ = stop.wait_for(|stop| *stop) => {}
            }
        });
        for attempt in 0usize.. {
            if self.cfg.mode == SourceMode::OnDemand {
                self.status.set_phase(Phase::Idle);
                tokio::select! {
                    () = self.audience(true) => {}
                    () = &mut stop => break,
                }
            }
            // Only the node that leads the source connects: one upstream connection per
            // cluster (on one node, always this one).
            let leading = tokio::select! {
                leading = self.lead() => leading,
                () = &mut stop => break,
            };
            if !leading {
                continue; // on demand, and the audience left while another node led
            }
            if attempt > 0 {
                self.status.reconnecting();
            }
            let ended = match self.target() {
                Ok((target, server)) => {
                    let ended = tokio::select! {
                        ended = self.connection(&target, &mut parser, &mut backoff) => ended,
                        () = &mut stop => Ended::Stopped,
                    };
                    if let (Some(server), Ended::Failed(_)) = (&server, &ended) {
                        // The pool's passive health counts the source's failures too.
                        server.server().failed(self.passive().as_ref());
                    }
                    ended
                }
                Err(failure) => Ended::Failed(failure),
            };
            if parser.finish() {
                tracing::debug!(source = %self.cfg.name, "the stream ended inside an event; it is discarded");
            }
            match ended {
                Ended::Stopped => break,
                Ended::Unwanted => {
                    self.ctx.broker.release_source(&self.cfg.name).await;
                    continue;
                }
                Ended::NotLeader => continue,
                Ended::Closed => {
                    tracing::info!(source = %self.cfg.name, "the upstream ended the stream; reconnecting");
                }
                Ended::Failed(failure) => self.status.fault(failure.fault, 1, &failure.detail),
            }
            self.status.set_phase(Phase::Backoff);
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = &mut stop => break,
            }
        }
        // Hand the source over at once rather than when the lease lapses.
        self.ctx.broker.release_source(&self.cfg.name).await;
        self.status.set_phase(Phase::Stopped);
    }

    /// Where this attempt connects: the URL, or a healthy server of the pool (held in flight
    /// while connected, so `least_connections` counts it).
    fn target(&self) -> Result<(Target, Option<Selected>), Failure> {
        match &self.targets {
            Targets::Url(target) => Ok((target.clone(), None)),
            Targets::Pool { upstream, path } => {
                let unreachable = |detail: String| Failure {
                    fault: Fault::Connect,
                    detail,
                };
                let pool =
                    self.ctx.pools.get(upstream).ok_or_else(|| {
                        unreachable(format!("no upstream pool named {upstream:?}"))
                    })?;
                let server = pool.select(b"", &[]).ok_or_else(|| {
                    unreachable(format!("no healthy server in upstream pool {upstream:?}"))
                })?;
                let peer = pool.peer(server.server(), None);
                let target = Target::from_server(server.server().label(), peer, path)
                    .map_err(unreachable)?;
                Ok((target, Some(server)))
            }
        }
    }

    fn passive(&self) -> Option<crate::config::PassiveConfig> {
        match &self.targets {
            Targets::Pool { upstream, .. } => self
                .ctx
                .pools
                .get(upstream)
                .and_then(|pool| pool.config.passive.clone()),
            Targets::Url(_) => None,
        }
    }

    /// Waits until this node leads the source; `false` if, on demand, the audience left first.
    async fn lead(&self) -> bool {
        let name = &self.cfg.name;
        let mut gone = pin!(self.unwanted());
        loop {
            // Another node leads: ask again at its lease's renewal pace. The broker cannot
            // answer yet (starting, reconnecting): ask again soon.
            let again = match self.ctx.broker.lead_source(name).await {
                Ok(true) => return true,
                Ok(false) => {
                    self.status.set_phase(Phase::Standby);
                    SOURCE_LEASE_RENEW
                }
                Err(e) => {
                    tracing::debug!(source = %name, error = %e, "cannot take the source's lease yet");
                    self.status.set_phase(Phase::Standby);
                    BROKER_RETRY
                }
            };
            tokio::select! {
                () = tokio::time::sleep(again) => {}
                () = &mut gone => return false,
            }
        }
    }

    /// One connection, from the request to its end.
    async fn connection(
        &self,
        target: &Target,
        parser: &mut Parser,
        backoff: &mut Backoff,
    ) -> Ended {
        self.status.set_phase(Phase::Connecting);
        // Where the cluster's last leader of this source left off, else where this node did
        // (kept in the status, which outlives a relay restarted by a reload).
        let resume = match self.ctx.broker.source_resume_id(&self.cfg.name).await {
            Ok(Some(id)) => id,
            Ok(None) => self.status.last_event_id(),
            // Starting without the cluster's resume point could skip what the last leader
            // read and did not publish: wait for the broker instead.
            Err(e) => {
                return Ended::Failed(Failure {
                    fault: Fault::Publish,
                    detail: format!("where the source resumes is not known yet: {e}"),
                })
            }
        };
        let mut stream = match upstream::open(
            &self.connector,
            target,
            &self.cfg.headers,
            &resume,
            self.cfg.stall_timeout,
        )
        .await
        {
            Ok(stream) => stream,
            Err(failure) => return Ended::Failed(failure),
        };
        self.status.set_phase(Phase::Connected);
        let since = Instant::now();
        let mut unwanted = pin!(self.unwanted());
        let mut deposed = pin!(self.lease_lost());
        let mut items = Vec::new();
        let ended = 'read: loop {
            let chunk = tokio::select! {
                chunk = stream.next_chunk() => chunk,
                () = &mut unwanted => break Ended::Unwanted,
                () = &mut deposed => break Ended::NotLeader,
            };
            let bytes = match chunk {
                Ok(Some(bytes)) => bytes,
                Ok(None) => break Ended::Closed,
                Err(failure) => break Ended::Failed(failure),
            };
            let (skipped, ignored) = (parser.skipped_events(), parser.ignored_lines());
            // Never fails in skip mode; oversized events are counted below instead.
            let _ = parser.push(&bytes, &mut items);
            self.count_dropped(parser, skipped, ignored);
            for item in items.drain(..) {
                match item {
                    ParsedItem::Event(event) => {
                        if let Err(ended) = self.ingest(event, backoff).await {
                            break 'read ended;
                        }
                        backoff.succeeded();
                    }
                    ParsedItem::Retry(ms) => backoff.set_retry(ms),
                    ParsedItem::Comment(_) => {}
                }
            }
        };
        if since.elapsed() >= HEALTHY_AFTER {
            backoff.succeeded();
        }
        ended
    }

    fn count_dropped(&self, parser: &Parser, skipped_before: u64, ignored_before: u64) {
        let skipped = parser.skipped_events() - skipped_before;
        if skipped > 0 {
            let limit = self.limits.max_event_bytes;
            let detail = format!("dropped an event over limits.max_event_bytes ({limit} bytes)");
            self.status.fault(Fault::Oversized, skipped, &detail);
        }
        let ignored = parser.ignored_lines() - ignored_before;
        if ignored > 0 {
            let detail =
                "ignored lines that are not SSE fields (unknown name, bad retry, id with NUL)";
            self.status.fault(Fault::Malformed, ignored, detail);
        }
    }

    /// Resolves when another node has taken the source's lease (renewing it meanwhile). Never
    /// on one node.
    async fn lease_lost(&self) {
        loop {
            tokio::time::sleep(SOURCE_LEASE_RENEW).await;
            // A broker that cannot answer cannot give the lease to another node either: keep
            // reading (publishes wait for the broker meanwhile).
            if let Ok(false) = self.ctx.broker.lead_source(&self.cfg.name).await {
                tracing::warn!(source = %self.cfg.name, "another node took the source over");
                return;
            }
        }
    }

    /// Publishes one upstream event. A broker failure is retried (with backoff) until it is
    /// accepted or the gateway drains: the upstream is not read meanwhile, so nothing is lost.
    /// `Err` when another node leads the source now: it will read this event itself.
    async fn ingest(&self, event: ParsedEvent, backoff: &mut Backoff) -> Result<(), Ended> {
        if is_reserved_event_type(&event.event) {
            // Clients would take it for the gateway's own word about their stream.
            let detail = format!(
                "dropped an event of type {:?}, which is reserved for the gateway",
                event.event
            );
            self.status.fault(Fault::Malformed, 1, &detail);
            return Ok(());
        }
        let channel = match &self.cfg.channel {
            SourceChannel::Fixed(name) => name.as_str().into(),
            SourceChannel::FromEventType { prefix } => {
                let name = format!("{prefix}{}", event.event);
                if !is_valid_channel(&name) {
                    let detail =
                        format!("event type {:?} makes no valid channel name", event.event);
                    self.status.fault(Fault::BadChannel, 1, &detail);
                    return Ok(());
                }
                name.into_boxed_str()
            }
        };
        let draft = Draft {
            channels: Box::new([channel]),
            event_type: event.event.into_boxed_str(),
            data: event.data,
        };
        let mark = SourceMark {
            source: &self.cfg.name,
            upstream_id: &event.id,
        };
        loop {
            match self
                .ctx
                .broker
                .publish_from_source(draft.clone(), mark.clone())
                .await
            {
                Ok(_) => break,
                Err(BrokerError::NotLeader) => return Err(Ended::NotLeader),
                Err(e) => {
                    self.status.fault(Fault::Publish, 1, &e.to_string());
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
        self.status.ingested(&event.id);
        Ok(())
    }

    /// Whether a stream subscribes to one of this source's channels.
    fn has_audience(&self) -> bool {
        let hub = &self.ctx.hub;
        match &self.cfg.channel {
            // One lookup: this runs on every subscribe and leave while the source waits.
            SourceChannel::Fixed(name) => hub.has_subscribers_on(name),
            SourceChannel::FromEventType { prefix } => {
                hub.has_subscribers(|channel| channel.starts_with(prefix.as_str()))
            }
        }
    }

    /// Resolves once the source has (`true`) or lacks (`false`) an audience.
    async fn audience(&self, wanted: bool) {
        let mut changes = self.ctx.hub.watch_subscriptions();
        loop {
            changes.borrow_and_update();
            if self.has_audience() == wanted {
                return;
            }
            if changes.changed().await.is_err() {
                // The hub is gone with the process: nothing will change any more.
                pending::<()>().await;
            }
        }
    }

    /// For `on_demand`: resolves once the source has had no audience for `linger`. Never for
    /// `always`.
    async fn unwanted(&self) {
        if self.cfg.mode == SourceMode::Always {
            return pending().await;
        }
        loop {
            self.audience(false).await;
            if tokio::time::timeout(self.cfg.linger, self.audience(true))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}
