//! [`SseClient`]: what to subscribe to and how to connect, checked into [`Settings`] when a
//! stream starts.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use reqwest::Url;
use sse_wire::parse::ParserLimits;

use crate::{Backoff, Credential, Error, EventStream};

/// How long connecting may take before the attempt counts as failed (and is retried).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The default of [`SseClient::max_event_bytes`]: room for the gateway's largest event
/// (`limits.max_event_bytes`, 64 KiB by default, as base64 a third more) many times over.
const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Called on `token_expired` for a fresh credential.
type RefreshCredential = Arc<dyn Fn() -> BoxFuture<'static, Option<Credential>> + Send + Sync>;

/// A client of the gateway's `GET /events`: what to subscribe to and how to connect. Set it up
/// with the chained methods, then [`stream`](Self::stream) opens an [`EventStream`].
///
/// ```no_run
/// # async fn run() -> Result<(), sse_client::Error> {
/// use futures_util::StreamExt;
/// use sse_client::{Credential, Message, SseClient};
///
/// let mut events = SseClient::new("http://127.0.0.1:8080/events")
///     .channel("news")
///     .credential(Credential::ApiKey("my-key".into()))
///     .stream()?;
/// while let Some(message) = events.next().await {
///     match message? {
///         Message::Event(e) => println!("{} {}: {}", e.id, e.event, e.data),
///         Message::Reset(r) => println!("missed events ({}): refetch", r.reason),
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SseClient {
    url: String,
    channels: Vec<String>,
    types: Vec<String>,
    last_event_id: String,
    credential: Option<Credential>,
    tickets: bool,
    tickets_url: Option<String>,
    refresh: Option<RefreshCredential>,
    backoff: Backoff,
    max_attempts: Option<u32>,
    max_event_bytes: usize,
    idle_timeout: Option<Duration>,
    http: Option<reqwest::Client>,
}

impl fmt::Debug for SseClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseClient")
            .field("url", &self.url)
            .field("channels", &self.channels)
            .field("types", &self.types)
            .field("last_event_id", &self.last_event_id)
            .field("credential", &self.credential)
            .field("tickets", &self.tickets)
            .field("tickets_url", &self.tickets_url)
            .field("backoff", &self.backoff)
            .field("max_attempts", &self.max_attempts)
            .field("max_event_bytes", &self.max_event_bytes)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl SseClient {
    /// A client of the stream at `url`, the gateway's `sse.path` (`http://host:8080/events`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            channels: Vec::new(),
            types: Vec::new(),
            last_event_id: String::new(),
            credential: None,
            tickets: false,
            tickets_url: None,
            refresh: None,
            backoff: Backoff::default(),
            max_attempts: None,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            idle_timeout: None,
            http: None,
        }
    }

    /// Subscribes to a channel (`?channel=`); call once per channel.
    pub fn channel(mut self, name: impl Into<String>) -> Self {
        self.channels.push(name.into());
        self
    }

    /// Only events of these types are delivered (`?types=`, filtered by the gateway).
    pub fn types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.types = types.into_iter().map(Into::into).collect();
        self
    }

    /// The resume point of the first connection: events after this id are replayed. Later
    /// connections resume from the last event received.
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = id.into();
        self
    }

    /// The credential, sent in a header with every connection (or, with
    /// [`tickets`](Self::tickets), with every `POST /tickets`).
    pub fn credential(mut self, credential: Credential) -> Self {
        self.credential = Some(credential);
        self
    }

    /// Connects with single-use tickets: before every (re)connection, `POST /tickets` (at the
    /// stream's origin; see [`tickets_url`](Self::tickets_url)) trades the credential for a
    /// ticket, and the stream is opened with `?ticket=`, so the credential itself never goes
    /// to the stream's URL. Needs a [`credential`](Self::credential).
    pub fn tickets(mut self, on: bool) -> Self {
        self.tickets = on;
        self
    }

    /// Where tickets come from, when not `/tickets` at the stream's origin. Implies
    /// [`tickets`](Self::tickets).
    pub fn tickets_url(mut self, url: impl Into<String>) -> Self {
        self.tickets = true;
        self.tickets_url = Some(url.into());
        self
    }

    /// Called when the gateway ends the stream with `event: token_expired` (at the token's
    /// `exp`). Return a fresh credential to reconnect with it at once, resuming where the
    /// stream stopped; return `None` to end the stream with [`Error::TokenExpired`]. Without
    /// this, the stream ends with that error: reconnecting with the same credential would only
    /// be refused.
    pub fn on_token_expired<F, Fut>(mut self, refresh: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Credential>> + Send + 'static,
    {
        self.refresh = Some(Arc::new(move || refresh().boxed()));
        self
    }

    /// Reconnect delays. The wait is never shorter than the gateway's `retry:` or a
    /// `Retry-After`.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Connection attempts that may fail in a row before the stream ends with
    /// [`Error::GaveUp`]. Default: never gives up on failures that can mend.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// The largest event (and line) the stream may carry, in bytes; a larger one ends the
    /// stream with [`Error::Malformed`]. Default 1 MiB.
    pub fn max_event_bytes(mut self, bytes: usize) -> Self {
        self.max_event_bytes = bytes;
        self
    }

    /// A connection on which nothing (no event, no heartbeat) arrives for this long is taken
    /// for dead, closed, and replaced, resuming from the last event id: a peer that vanished
    /// without closing the connection would otherwise hold the stream forever. Set it well
    /// above the gateway's `sse.heartbeat_interval` (15 s by default), e.g. 3 times. Default:
    /// none.
    pub fn idle_timeout(mut self, limit: Duration) -> Self {
        self.idle_timeout = Some(limit);
        self
    }

    /// The HTTP client to connect with, e.g. one with TLS settings. It must not set a total
    /// request timeout, which would cut every stream. Default: a new client with a 10 s
    /// connect timeout.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Opens the stream: it connects when first polled, and reconnects by itself until an
    /// error that another try cannot mend, which is its last item.
    pub fn stream(&self) -> Result<EventStream, Error> {
        Ok(EventStream::new(
            Arc::new(self.settings()?),
            self.credential.clone(),
            self.last_event_id.clone(),
        ))
    }

    fn settings(&self) -> Result<Settings, Error> {
        let mut url = parse_url(&self.url)?;
        {
            let mut query = url.query_pairs_mut();
            for channel in &self.channels {
                query.append_pair("channel", channel);
            }
            if !self.types.is_empty() {
                query.append_pair("types", &self.types.join(","));
            }
        }
        let tickets_url = match (self.tickets, &self.tickets_url) {
            (false, _) => None,
            _ if self.credential.is_none() => {
                return Err(Error::Settings("tickets need a credential".into()))
            }
            (true, Some(tickets_url)) => Some(parse_url(tickets_url)?),
            (true, None) => Some(url.join("/tickets").map_err(|e| bad_url(&self.url, e))?),
        };
        let http = match &self.http {
            Some(http) => http.clone(),
            None => reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .build()
                .map_err(|e| Error::Settings(format!("cannot build an HTTP client: {e}")))?,
        };
        Ok(Settings {
            url,
            tickets_url,
            refresh: self.refresh.clone(),
            backoff: self.backoff,
            max_attempts: self.max_attempts,
            idle_timeout: self.idle_timeout,
            limits: ParserLimits {
                max_line_bytes: self.max_event_bytes,
                max_event_bytes: self.max_event_bytes,
            },
            http,
        })
    }
}

fn parse_url(url: &str) -> Result<Url, Error> {
    Url::parse(url).map_err(|e| bad_url(url, e))
}

fn bad_url(url: &str, error: impl fmt::Display) -> Error {
    Error::Settings(format!("{url:?} is not a URL: {error}"))
}

/// The checked settings every connection of a stream uses.
pub(crate) struct Settings {
    /// The stream URL with its channels and types, without resume point or ticket.
    pub url: Url,
    pub tickets_url: Option<Url>,
    pub refresh: Option<RefreshCredential>,
    pub backoff: Backoff,
    pub max_attempts: Option<u32>,
    pub idle_timeout: Option<Duration>,
    pub limits: ParserLimits,
    pub http: reqwest::Client,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_and_types_go_into_the_query() {
        let s = SseClient::new("http://gw.test/events?x=1")
            .channel("news")
            .channel("a/b")
            .types(["alert", "note"])
            .settings()
            .unwrap();
        assert_eq!(
            s.url.as_str(),
            "http://gw.test/events?x=1&channel=news&channel=a%2Fb&types=alert%2Cnote"
        );
        assert!(s.tickets_url.is_none());
    }

    #[test]
    fn tickets_come_from_the_streams_origin_unless_told() {
        let client = SseClient::new("http://gw.test:8080/sse/events")
            .channel("news")
            .credential(Credential::ApiKey("k".into()))
            .tickets(true);
        let s = client.settings().unwrap();
        assert_eq!(
            s.tickets_url.unwrap().as_str(),
            "http://gw.test:8080/tickets"
        );
        let s = client.tickets_url("http://auth.test/t").settings().unwrap();
        assert_eq!(s.tickets_url.unwrap().as_str(), "http://auth.test/t");
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let refused = |client: SseClient| match client.stream() {
            Err(Error::Settings(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(refused(SseClient::new("not a url")).contains("not a URL"));
        assert!(
            refused(SseClient::new("http://gw.test/events").tickets(true)).contains("credential")
        );
    }
}
