//! [`EventStream`]: one subscription that outlives its connections. A [`Session`] connects,
//! parses the stream, handles what the gateway says about the stream itself (`retry:`, `reset`,
//! `token_expired`, `access_revoked`, heartbeats), and reconnects after a drop or a failure
//! that can mend, resuming from the last event id.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, Stream, StreamExt};
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use sse_wire::parse::{ParseError, ParsedItem, Parser};

use crate::client::Settings;
use crate::credential::fetch_ticket;
use crate::{Credential, Error, Message};

/// The event types the gateway sends about the stream itself.
const RESET: &str = "reset";
const TOKEN_EXPIRED: &str = "token_expired";
const ACCESS_REVOKED: &str = "access_revoked";
const HEARTBEAT: &str = "heartbeat";

/// The events of one subscription, across reconnects: a [`Stream`] of [`Message`]s.
///
/// It connects when first polled. When the connection drops (the gateway kicked the client,
/// ended the stream's lifetime, shut down, or the network broke) it reconnects after the
/// gateway's `retry:` and resumes with `Last-Event-ID`, so no event is lost or repeated while
/// the gateway's history covers the gap; when it does not, the next item is a
/// [`Message::Reset`]. Failed connections are retried with [`Backoff`](crate::Backoff), never
/// sooner than a `Retry-After`.
///
/// An `Err` item is the last one: the stream then ends. Dropping the stream closes its
/// connection.
pub struct EventStream {
    /// The session, while no poll is in progress; `None` once the stream has ended.
    session: Option<Session>,
    /// The session at work on the next item.
    in_flight: Option<BoxFuture<'static, (Session, Result<Message, Error>)>>,
    /// As of the last item yielded.
    last_event_id: String,
    connections: u64,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("last_event_id", &self.last_event_id)
            .field("connections", &self.connections)
            .field("ended", &self.is_ended())
            .finish()
    }
}

impl EventStream {
    pub(crate) fn new(
        settings: Arc<Settings>,
        credential: Option<Credential>,
        last_event_id: String,
    ) -> Self {
        let parser = Parser::new(settings.limits);
        Self {
            session: Some(Session {
                settings,
                credential,
                parser,
                body: None,
                parsed: VecDeque::new(),
                broken: None,
                retry: Duration::ZERO,
                wait: None,
                failures: 0,
                last_event_id: last_event_id.clone(),
                connections: 0,
            }),
            in_flight: None,
            last_event_id,
            connections: 0,
        }
    }

    /// The id of the last event (or `reset`) yielded, or the initial resume point: what to
    /// store to resume from in a later run.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Connections opened so far (the first one, then one per reconnect).
    pub fn connections(&self) -> u64 {
        self.connections
    }

    /// Whether the stream has ended (after its last, `Err`, item).
    pub fn is_ended(&self) -> bool {
        self.session.is_none() && self.in_flight.is_none()
    }
}

impl Stream for EventStream {
    type Item = Result<Message, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let in_flight = match &mut this.in_flight {
            Some(in_flight) => in_flight,
            None => {
                let Some(mut session) = this.session.take() else {
                    return Poll::Ready(None);
                };
                this.in_flight.insert(Box::pin(async move {
                    let item = session.next().await;
                    (session, item)
                }))
            }
        };
        let (session, item) = ready!(in_flight.as_mut().poll(cx));
        this.in_flight = None;
        this.last_event_id.clone_from(&session.last_event_id);
        this.connections = session.connections;
        if item.is_ok() {
            this.session = Some(session);
        }
        Poll::Ready(Some(item))
    }
}

type Body = BoxStream<'static, reqwest::Result<Bytes>>;

/// The state of one subscription between connections: everything an `EventSource` keeps (last
/// event id, reconnection time) and the backoff's count.
struct Session {
    settings: Arc<Settings>,
    /// The one in force: the first one, or the last from `on_token_expired`.
    credential: Option<Credential>,
    parser: Parser,
    /// The open connection's body, if one is open.
    body: Option<Body>,
    /// Items parsed and not yet handled.
    parsed: VecDeque<ParsedItem>,
    /// Why the stream cannot be read on, reported once the items parsed before it are handled.
    broken: Option<ParseError>,
    /// The gateway's `retry:`, zero until it sends one.
    retry: Duration,
    /// How long to wait before the next connection attempt.
    wait: Option<Duration>,
    /// Connection attempts failed in a row.
    failures: u32,
    last_event_id: String,
    connections: u64,
}

impl Session {
    /// The next item. An `Err` is final: the caller drops the session.
    async fn next(&mut self) -> Result<Message, Error> {
        loop {
            while let Some(item) = self.parsed.pop_front() {
                if let Some(message) = self.handle(item).await? {
                    return Ok(message);
                }
            }
            if let Some(error) = self.broken.take() {
                return Err(error.into());
            }
            match &mut self.body {
                Some(body) => match self.settings.idle_timeout {
                    None => {
                        let chunk = body.next().await;
                        self.read(chunk);
                    }
                    Some(limit) => match tokio::time::timeout(limit, body.next()).await {
                        Ok(chunk) => self.read(chunk),
                        Err(_) => {
                            tracing::info!(?limit, "sse-client: the stream went silent");
                            self.dropped();
                        }
                    },
                },
                None => self.connect().await?,
            }
        }
    }

    /// Acts on one parsed item; returns what the app is to see of it.
    async fn handle(&mut self, item: ParsedItem) -> Result<Option<Message>, Error> {
        let event = match item {
            ParsedItem::Comment(_) => return Ok(None),
            ParsedItem::Retry(ms) => {
                self.retry = Duration::from_millis(ms);
                return Ok(None);
            }
            ParsedItem::Event(event) => event,
        };
        self.last_event_id.clone_from(&event.id);
        match event.event.as_str() {
            RESET => Ok(Some(Message::Reset(event.into()))),
            HEARTBEAT => Ok(None),
            TOKEN_EXPIRED => self.token_expired().await.map(|()| None),
            ACCESS_REVOKED => Err(Error::AccessRevoked),
            _ => Ok(Some(Message::Event(event.into()))),
        }
    }

    /// Handles one read of the body: parses a chunk, or notes that the connection ended.
    fn read(&mut self, chunk: Option<reqwest::Result<Bytes>>) {
        match chunk {
            Some(Ok(chunk)) => {
                let mut items = Vec::new();
                let parsed = self.parser.push(&chunk, &mut items);
                self.parsed.extend(items);
                if let Err(error) = parsed {
                    self.body = None;
                    self.broken = Some(error);
                }
            }
            Some(Err(error)) => {
                tracing::info!(error = %error.without_url(), "sse-client: the stream broke");
                self.dropped();
            }
            None => {
                tracing::debug!("sse-client: the gateway ended the stream");
                self.dropped();
            }
        }
    }

    /// The connection is gone: what it had not finished is discarded, and the next one waits
    /// the gateway's `retry:` (or the first backoff step, if longer).
    fn dropped(&mut self) {
        self.body = None;
        self.parser.finish();
        self.wait = Some(self.settings.backoff.wait(1, self.retry));
    }

    /// The gateway ended the stream at the credential's expiry. Reconnecting with the same
    /// credential would be refused, so a new one must come from the app.
    async fn token_expired(&mut self) -> Result<(), Error> {
        self.body = None;
        self.parsed.clear();
        self.parser.finish();
        let refresh = self.settings.refresh.clone().ok_or(Error::TokenExpired)?;
        let credential = refresh().await.ok_or(Error::TokenExpired)?;
        tracing::debug!("sse-client: the credential expired; reconnecting with a new one");
        self.credential = Some(credential);
        self.wait = None;
        Ok(())
    }

    /// Connects, retrying failures that can mend with backoff, until a stream is open.
    async fn connect(&mut self) -> Result<(), Error> {
        loop {
            if let Some(wait) = self.wait.take() {
                tokio::time::sleep(wait).await;
            }
            let error = match self.open().await {
                Ok(body) => {
                    self.body = Some(body);
                    self.failures = 0;
                    self.connections += 1;
                    return Ok(());
                }
                Err(error) => error,
            };
            if !error.is_transient(self.settings.tickets_url.is_some()) {
                return Err(error);
            }
            self.failures = self.failures.saturating_add(1);
            if self
                .settings
                .max_attempts
                .is_some_and(|max| self.failures >= max)
            {
                return Err(Error::GaveUp {
                    attempts: self.failures,
                    last: Box::new(error),
                });
            }
            let floor = self.retry.max(error.retry_after().unwrap_or_default());
            let wait = self.settings.backoff.wait(self.failures, floor);
            tracing::info!(
                error = %error,
                failures = self.failures,
                wait_ms = wait.as_millis() as u64,
                "sse-client: connecting failed; trying again"
            );
            self.wait = Some(wait);
        }
    }

    /// One connection attempt: a fresh ticket if tickets are used, then `GET` the stream with
    /// the resume point, checked to be an event stream.
    async fn open(&mut self) -> Result<Body, Error> {
        let settings = &self.settings;
        let endpoint = settings.url.path();
        let mut url = settings.url.clone();
        let ticket = match (&settings.tickets_url, &self.credential) {
            (Some(tickets_url), Some(credential)) => {
                Some(fetch_ticket(&settings.http, tickets_url, credential).await?)
            }
            _ => None,
        };
        // The header, as EventSource sends it; an id no header can carry goes in the query.
        let last_event_id = Some(self.last_event_id.as_str())
            .filter(|id| !id.is_empty())
            .map(|id| HeaderValue::from_str(id).map_err(|_| id));
        if let Some(ticket) = &ticket {
            url.query_pairs_mut().append_pair("ticket", ticket);
        }
        if let Some(Err(id)) = last_event_id {
            url.query_pairs_mut().append_pair("lastEventId", id);
        }
        let mut request = settings.http.get(url).header(ACCEPT, "text/event-stream");
        if let Some(Ok(id)) = last_event_id {
            request = request.header("last-event-id", id);
        }
        if let (None, Some(credential)) = (&ticket, &self.credential) {
            request = credential.apply(request);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Error::network(endpoint, e))?;
        if !response.status().is_success() {
            return Err(Error::from_response(endpoint, response).await);
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        if !content_type
            .to_ascii_lowercase()
            .starts_with("text/event-stream")
        {
            return Err(Error::NotEventStream {
                endpoint: endpoint.to_owned(),
                content_type,
            });
        }
        Ok(response.bytes_stream().boxed())
    }
}
