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

use super::backoff::Backoff;
use super::status::{Fault, Phase, SourceStatus};
use super::upstream::{self, Failure, Target};
use crate::broker::Draft;
use crate::config::{
    is_valid_channel, Config, SourceChannel, SourceConfig, SourceMode, SourceTarget,
};
use crate::gateway::App;

/// A connection that stayed up this long was healthy, even without events: the next reconnect
/// starts from the base delay.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

pub struct Relay {
    cfg: SourceConfig,
    /// One per server of the pool (or the one URL); attempts go round them.
    targets: Vec<Target>,
    status: Arc<SourceStatus>,
    app: Arc<App>,
    connector: Arc<Connector>,
    limits: ParserLimits,
}

/// How one connection ended.
enum Ended {
    /// The gateway is draining.
    Stopped,
    /// `on_demand` and the last subscriber left (and the linger passed).
    Unwanted,
    /// The upstream closed the stream cleanly.
    Closed,
    Failed(Failure),
}

impl Relay {
    pub fn new(
        cfg: SourceConfig,
        config: &Config,
        status: Arc<SourceStatus>,
        app: Arc<App>,
        connector: Arc<Connector>,
    ) -> Result<Relay, String> {
        let targets = match &cfg.target {
            SourceTarget::Url(url) => vec![Target::from_url(url)?],
            SourceTarget::Upstream { upstream, path } => config
                .upstreams
                .iter()
                .find(|u| &u.name == upstream)
                .ok_or_else(|| format!("no upstream named {upstream:?}"))?
                .servers
                .iter()
                .map(|server| Target::from_server(server, path))
                .collect::<Result<_, _>>()?,
        };
        let max_event_bytes = config.limits.max_event_bytes;
        Ok(Relay {
            cfg,
            targets,
            status,
            app,
            connector,
            limits: ParserLimits {
                // Room for the field name in front of an event's largest line.
                max_line_bytes: max_event_bytes.saturating_add(64),
                max_event_bytes,
            },
        })
    }

    /// Runs until the gateway drains.
    pub async fn run(self) {
        // Skip mode: failing the stream on an oversized event would only get it sent again.
        let mut parser = Parser::new(self.limits).skipping_oversized();
        let mut backoff = Backoff::default();
        let mut stop = pin!(self.app.drain.started());
        for attempt in 0usize.. {
            if self.cfg.mode == SourceMode::OnDemand {
                self.status.set_phase(Phase::Idle);
                tokio::select! {
                    () = self.audience(true) => {}
                    () = &mut stop => break,
                }
            }
            if attempt > 0 {
                self.status.reconnecting();
            }
            let target = &self.targets[attempt % self.targets.len()];
            let ended = tokio::select! {
                ended = self.connection(target, &mut parser, &mut backoff) => ended,
                () = &mut stop => Ended::Stopped,
            };
            if parser.finish() {
                tracing::debug!(source = %self.cfg.name, "the stream ended inside an event; it is discarded");
            }
            match ended {
                Ended::Stopped => break,
                Ended::Unwanted => continue,
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
        self.status.set_phase(Phase::Stopped);
    }

    /// One connection, from the request to its end.
    async fn connection(
        &self,
        target: &Target,
        parser: &mut Parser,
        backoff: &mut Backoff,
    ) -> Ended {
        self.status.set_phase(Phase::Connecting);
        let mut stream = match upstream::open(
            &self.connector,
            target,
            &self.cfg.headers,
            parser.last_event_id(),
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
        let mut items = Vec::new();
        let ended = loop {
            let chunk = tokio::select! {
                chunk = stream.next_chunk() => chunk,
                () = &mut unwanted => break Ended::Unwanted,
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
                        self.ingest(event, backoff).await;
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

    /// Publishes one upstream event. A broker failure is retried (with backoff) until it is
    /// accepted or the gateway drains: the upstream is not read meanwhile, so nothing is lost.
    async fn ingest(&self, event: ParsedEvent, backoff: &mut Backoff) {
        let channel = match &self.cfg.channel {
            SourceChannel::Fixed(name) => name.as_str().into(),
            SourceChannel::FromEventType { prefix } => {
                let name = format!("{prefix}{}", event.event);
                if !is_valid_channel(&name) {
                    let detail =
                        format!("event type {:?} makes no valid channel name", event.event);
                    self.status.fault(Fault::BadChannel, 1, &detail);
                    return;
                }
                name.into_boxed_str()
            }
        };
        let draft = Draft {
            channels: Box::new([channel]),
            event_type: event.event.into_boxed_str(),
            data: event.data,
        };
        while let Err(e) = self.app.broker.publish(draft.clone()).await {
            self.status.fault(Fault::Publish, 1, &e.to_string());
            tokio::time::sleep(backoff.next_delay()).await;
        }
        self.status.ingested(&event.id);
    }

    /// Whether a stream subscribes to one of this source's channels.
    fn has_audience(&self) -> bool {
        self.app
            .hub
            .has_subscribers(|channel| match &self.cfg.channel {
                SourceChannel::Fixed(name) => channel == name,
                SourceChannel::FromEventType { prefix } => channel.starts_with(prefix.as_str()),
            })
    }

    /// Resolves once the source has (`true`) or lacks (`false`) an audience.
    async fn audience(&self, wanted: bool) {
        let mut changes = self.app.hub.watch_subscriptions();
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
