//! Who is calling, and what they may do.
//!
//! # Layout
//! - this module: the [`Principal`] a request acts as, where its credential is read from
//!   ([`Authenticator::identify`], [`Authenticator::identify_stream`]), and the channel policies
//!   ([`authorize`]);
//! - [`jwt`]: verifying JSON Web Tokens into a principal;
//! - [`ticket`]: single-use connect tickets for `EventSource`, which cannot send headers;
//! - [`redact`]: keeping credentials that travel in URLs out of logs.
//!
//! # Where a credential is read
//! The first of these that is present is the request's credential; the others are not looked
//! at. A credential that is present and not valid is 401, never "anonymous".
//! 1. `Authorization: Bearer X`: an API key if `X` is one (compared in constant time with every
//!    key), else a JWT;
//! 2. `X-API-Key: X`: API keys only;
//! 3. the cookie `auth.cookie_name` (JWT; only where a browser needs it: streams and tickets,
//!    and only when `auth.jwt` is set);
//! 4. `?access_token=` (JWT), then `?ticket=`: streams only, since `EventSource` can send
//!    nothing else. A ticket is looked at here and spent only once its stream is admitted
//!    (see [`ticket`]).
//!
//! Publishing and the admin endpoints take headers only: a cookie is sent by the browser on its
//! own, which is how cross-site request forgery works.

pub mod jwt;
pub mod redact;
pub mod ticket;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pingora::http::RequestHeader;

pub use jwt::JwtVerifier;
pub use ticket::{Issued, Ticket, TicketStore};

use crate::config::{ApiKey, AuthConfig, ChannelPattern, Config, Policy};
use crate::reply::ApiError;

/// An authenticated caller and its rights.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The API key's name or the token's subject (never the credential itself); shown in
    /// `/clients`.
    pub name: Box<str>,
    pub publish: Vec<ChannelPattern>,
    /// A JWT's `subscribe` patterns; API keys have none.
    pub subscribe: Vec<ChannelPattern>,
    pub admin: bool,
    /// When the credential stops being valid (a JWT's `exp`); `None` for API keys. A stream
    /// opened with it ends then.
    pub expires: Option<SystemTime>,
    /// What kind of credential it was (a ticket stands for the credential it was issued to).
    pub credential: Credential,
}

/// The kinds of credential a principal comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    ApiKey,
    Jwt,
}

impl Principal {
    /// The rights this principal has under a reloaded `auth:` section, for streams opened
    /// before the reload: an API key's are those of the key of the same name now (none if it
    /// was removed); a JWT's stay what its claims said as long as JWTs are accepted at all (the
    /// token itself is not kept, so a changed key cannot be checked against it).
    pub fn under(&self, auth: &AuthConfig) -> Option<Principal> {
        match self.credential {
            Credential::ApiKey => auth
                .api_keys
                .iter()
                .find(|key| key.name.as_str() == &*self.name)
                .map(key_principal),
            Credential::Jwt => auth.jwt.as_ref().map(|_| self.clone()),
        }
    }
}

/// The principal of a configured API key.
fn key_principal(key: &ApiKey) -> Principal {
    Principal {
        name: key.name.as_str().into(),
        publish: key.publish.clone(),
        subscribe: Vec::new(),
        admin: key.admin,
        expires: None,
        credential: Credential::ApiKey,
    }
}

/// Which places an endpoint reads a credential from (see the module docs for why they differ).
/// Streams read more places still: see [`Authenticator::identify_stream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /broadcast` and the admin endpoints: `Authorization` and `X-API-Key`.
    Api,
    /// `POST /tickets`: the headers, then the cookie.
    Tickets,
}

/// Who opens a stream.
#[derive(Debug, Default)]
pub struct StreamCaller {
    /// `None`: no credential presented.
    pub who: Option<Principal>,
    /// The ticket that stands for `who`, when one was presented: spend it
    /// ([`Authenticator::spend_ticket`]) once the stream is admitted, not before.
    pub ticket: Option<Ticket>,
}

/// A caller with a credential other than a ticket.
impl From<Principal> for StreamCaller {
    fn from(who: Principal) -> StreamCaller {
        StreamCaller {
            who: Some(who),
            ticket: None,
        }
    }
}

/// Checks credentials against the configured API keys and JWT key, and issues and redeems
/// tickets.
pub struct Authenticator {
    keys: Vec<ApiKey>,
    jwt: Option<JwtVerifier>,
    cookie_name: String,
    ticket_ttl: Duration,
    /// Shared with the janitor, and kept across config reloads.
    tickets: Arc<TicketStore>,
}

impl Authenticator {
    /// Fails only for a JWT key that cannot be used, which `config::load` already reports.
    pub fn new(cfg: &AuthConfig, tickets: Arc<TicketStore>) -> Result<Authenticator, String> {
        Ok(Authenticator {
            keys: cfg.api_keys.clone(),
            jwt: cfg.jwt.as_ref().map(JwtVerifier::new).transpose()?,
            cookie_name: cfg.cookie_name.clone(),
            ticket_ttl: cfg.ticket_ttl,
            tickets,
        })
    }

    /// `Ok(None)`: no credential presented. `Err`: a credential was presented and is not valid
    /// (401: a wrong credential is not treated as anonymous).
    pub fn identify(
        &self,
        req: &RequestHeader,
        endpoint: Endpoint,
    ) -> Result<Option<Principal>, ApiError> {
        self.header_credential(req, endpoint == Endpoint::Tickets)
            .transpose()
    }

    /// `GET /events`: the headers, the cookie, then `?access_token=` and `?ticket=`. A ticket
    /// is only looked at: 401 `invalid_ticket` if it is not live, 503 `broker_unavailable` if
    /// the shared broker holding it cannot be reached.
    pub async fn identify_stream(&self, req: &RequestHeader) -> Result<StreamCaller, ApiError> {
        if let Some(found) = self.header_credential(req, true) {
            return found.map(StreamCaller::from);
        }
        let (mut access_token, mut ticket) = (None, None);
        for (key, value) in form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes()) {
            match &*key {
                "access_token" if access_token.is_none() => access_token = Some(value),
                "ticket" if ticket.is_none() => ticket = Some(value.into_owned()),
                _ => {}
            }
        }
        if let Some(token) = access_token {
            return self.jwt(token.as_bytes()).map(StreamCaller::from);
        }
        let Some(ticket) = ticket else {
            return Ok(StreamCaller::default());
        };
        let (who, ticket) = self.tickets.peek(&ticket).await?;
        Ok(StreamCaller {
            who: Some(who),
            ticket: Some(ticket),
        })
    }

    /// The credential of the headers, then (with `cookie_too`) of the cookie: `None` when
    /// there is none.
    fn header_credential(
        &self,
        req: &RequestHeader,
        cookie_too: bool,
    ) -> Option<Result<Principal, ApiError>> {
        if let Some(token) = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()))
        {
            return Some(self.api_key(token).map_or_else(|| self.jwt(token), Ok));
        }
        if let Some(presented) = req.headers.get("x-api-key") {
            return Some(
                self.api_key(presented.as_bytes())
                    .ok_or_else(|| unauthenticated("the API key is not valid")),
            );
        }
        if !cookie_too {
            return None;
        }
        // Without JWTs configured the cookie is not read at all: it may belong to another app on
        // the same host, and a browser sends it on its own.
        self.jwt
            .as_ref()
            .and_then(|_| cookie(req, &self.cookie_name))
            .map(|token| self.jwt(token))
    }

    /// Issues a connect ticket for `who` (see [`ticket`]).
    pub async fn issue_ticket(&self, who: &Principal) -> Result<Issued, ApiError> {
        self.tickets.issue(who, self.ticket_ttl).await
    }

    /// Spends the ticket of a stream that was just admitted: 401 `invalid_ticket` if another
    /// request spent it first (or it expired in between), and that stream must not open.
    pub async fn spend_ticket(&self, ticket: Ticket) -> Result<(), ApiError> {
        self.tickets.spend(ticket).await
    }

    /// The principal of the API key `presented`, if it is one.
    fn api_key(&self, presented: &[u8]) -> Option<Principal> {
        // Check every key, so the time taken does not tell which one came closest.
        let mut found = None;
        for key in &self.keys {
            if constant_time_eq(key.key.as_bytes(), presented) && found.is_none() {
                found = Some(key);
            }
        }
        found.map(key_principal)
    }

    fn jwt(&self, token: &[u8]) -> Result<Principal, ApiError> {
        let Some(verifier) = &self.jwt else {
            return Err(unauthenticated(
                "the credential is not valid (no API key matches, and JWTs are not enabled)",
            ));
        };
        let token =
            std::str::from_utf8(token).map_err(|_| unauthenticated("the token is malformed"))?;
        verifier.verify(token)
    }
}

/// The token of `Authorization: Bearer <token>`; other schemes are not ours.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then_some(token.trim_ascii())
}

fn cookie<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a [u8]> {
    cookie_value(&req.headers, name)
}

/// The value of cookie `name` in the `Cookie` headers (the first if it appears more than once:
/// browsers put the most specific path first). An empty value counts as absent, as some apps
/// "log out" by setting the cookie empty.
pub fn cookie_value<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            let (key, value) = (&pair[..eq], &pair[eq + 1..]);
            if key.trim_ascii() != name.as_bytes() {
                return None;
            }
            let value = value.trim_ascii();
            // RFC 6265 allows the value in double quotes.
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            Some(value)
        })
        .filter(|v| !v.is_empty())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthenticated(message: impl Into<String>) -> ApiError {
    ApiError::new(401, "unauthorized", message)
}

/// What a caller wants to do on a channel.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    Subscribe,
    Publish,
}

/// Applies a channel policy: 401 when a credential is needed and none was given, 403 when the
/// credential does not cover the channel.
pub fn authorize(
    policy: Policy,
    who: Option<&Principal>,
    action: Action,
    channel: &str,
) -> Result<(), ApiError> {
    match (policy, who) {
        (Policy::Public, _) => Ok(()),
        (_, None) => Err(unauthenticated("this channel needs a credential")),
        (Policy::Authenticated, Some(_)) => Ok(()),
        (Policy::Claims, Some(p)) => {
            let patterns = match action {
                Action::Subscribe => &p.subscribe,
                Action::Publish => &p.publish,
            };
            if patterns.iter().any(|pat| pat.matches(channel)) {
                Ok(())
            } else {
                Err(ApiError::new(
                    403,
                    "forbidden",
                    format!("the credential does not cover channel {channel}"),
                ))
            }
        }
    }
}

/// Checks `action` on every channel against its rule's policy (`claims` when no rule matches).
pub fn authorize_channels(
    cfg: &Config,
    who: Option<&Principal>,
    action: Action,
    channels: &[Box<str>],
) -> Result<(), ApiError> {
    for channel in channels {
        let policy = cfg
            .channel_rule(channel)
            .map_or(Policy::Claims, |r| match action {
                Action::Subscribe => r.subscribe,
                Action::Publish => r.publish,
            });
        authorize(policy, who, action, channel)?;
    }
    Ok(())
}

/// For what lasts (a stream, a ticket): 401 when the credential has already expired by this
/// node's clock. `auth.jwt.leeway` may have let such a token verify (clock skew), but a stream
/// opened with it would end at once with `token_expired`, and `EventSource` would reconnect with
/// the same token until the leeway ran out; a 401 stops it at the first try.
pub fn require_time_left(who: Option<&Principal>) -> Result<(), ApiError> {
    match who.and_then(|p| p.expires) {
        Some(at) if at <= SystemTime::now() => Err(unauthenticated("the token has expired")),
        _ => Ok(()),
    }
}

/// Admin endpoints: 401 without a credential, 403 with one that is not admin.
pub fn require_admin(who: Option<&Principal>) -> Result<(), ApiError> {
    match who {
        None => Err(unauthenticated("admin endpoints need a credential")),
        Some(p) if p.admin => Ok(()),
        Some(_) => Err(ApiError::new(
            403,
            "forbidden",
            "the credential has no admin right",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{JwtAlgorithm, JwtConfig, JwtKeyMaterial, JwtKeySource};
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &[u8] = b"unit-test-secret-unit-test-secret-0123";

    fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn config(jwt: bool) -> AuthConfig {
        AuthConfig {
            api_keys: vec![ApiKey {
                name: "dev".into(),
                key: "s3cret".into(),
                publish: vec![ChannelPattern::Prefix("news".into())],
                admin: false,
            }],
            cookie_name: "sse_token".into(),
            jwt: jwt.then(|| JwtConfig {
                algorithms: vec![JwtAlgorithm::Hs256],
                key: JwtKeySource::SecretEnv("X".into()),
                key_material: JwtKeyMaterial::Secret(SECRET.to_vec()),
                leeway: Duration::from_secs(30),
                audience: None,
                issuer: None,
            }),
            ticket_ttl: Duration::from_secs(30),
        }
    }

    fn auth() -> Authenticator {
        Authenticator::new(&config(true), Arc::default()).unwrap()
    }

    fn token(sub: &str) -> String {
        let exp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        let claims = serde_json::json!({"sub": sub, "exp": exp, "subscribe": ["user.{sub}.*"]});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    /// Where a test request goes: an endpoint of `identify`, or a stream.
    #[derive(Clone, Copy)]
    enum At {
        Api,
        Tickets,
        Stream,
    }

    /// Who the request is at `at`: `Ok(None)` anonymous, `Err(code)` refused.
    fn who(a: &Authenticator, r: &RequestHeader, at: At) -> Result<Option<String>, String> {
        let found = match at {
            At::Api => a.identify(r, Endpoint::Api),
            At::Tickets => a.identify(r, Endpoint::Tickets),
            // With tickets in this process, nothing is awaited.
            At::Stream => futures_util::FutureExt::now_or_never(a.identify_stream(r))
                .expect("ready at once")
                .map(|caller| caller.who),
        };
        found
            .map(|p| p.map(|p| p.name.to_string()))
            .map_err(|e| format!("{} {}", e.status, e.code))
    }

    #[test]
    fn keys_by_header_and_bearer() {
        let a = auth();
        let api = At::Api;
        let dev = Ok(Some("dev".to_string()));
        assert_eq!(who(&a, &req("/", &[("x-api-key", "s3cret")]), api), dev);
        assert_eq!(
            who(&a, &req("/", &[("authorization", "Bearer s3cret")]), api),
            dev
        );
        assert_eq!(
            who(&a, &req("/", &[("authorization", "bearer s3cret")]), api),
            dev
        );
        assert_eq!(who(&a, &req("/", &[]), api), Ok(None));
        let refused = Err("401 unauthorized".to_string());
        assert_eq!(who(&a, &req("/", &[("x-api-key", "nope")]), api), refused);
        // A bearer that is not a key is taken for a JWT, and this one is not valid.
        assert_eq!(
            who(&a, &req("/", &[("authorization", "Bearer nope")]), api),
            refused
        );
        // Another scheme is not ours.
        assert_eq!(
            who(&a, &req("/", &[("authorization", "Basic s3cret")]), api),
            Ok(None)
        );
        let api_key = a
            .identify(&req("/", &[("x-api-key", "s3cret")]), Endpoint::Api)
            .unwrap()
            .unwrap();
        assert!(api_key.subscribe.is_empty() && api_key.expires.is_none());
    }

    #[test]
    fn a_jwt_is_read_from_bearer_cookie_and_query_in_that_order() {
        let a = auth();
        let (alice, bob) = (token("alice"), token("bob"));
        let stream = At::Stream;
        let bearer = format!("Bearer {alice}");
        let cookie = format!("theme=dark; sse_token={bob}");
        let by_bearer = req(
            "/events",
            &[("authorization", &bearer), ("cookie", &cookie)],
        );
        assert_eq!(who(&a, &by_bearer, stream), Ok(Some("alice".into())));
        let by_cookie = req(
            &format!("/events?access_token={alice}"),
            &[("cookie", &cookie)],
        );
        assert_eq!(who(&a, &by_cookie, stream), Ok(Some("bob".into())));
        let by_query = req(&format!("/events?channel=x&access_token={alice}"), &[]);
        assert_eq!(who(&a, &by_query, stream), Ok(Some("alice".into())));
        let p = futures_util::FutureExt::now_or_never(a.identify_stream(&by_query))
            .unwrap()
            .unwrap()
            .who
            .unwrap();
        assert_eq!(p.subscribe, [ChannelPattern::Prefix("user.alice.".into())]);
        assert!(p.expires.is_some());

        // The first credential present decides: a bad bearer is not rescued by a good cookie.
        let bad_first = req(
            "/events",
            &[("authorization", "Bearer x.y.z"), ("cookie", &cookie)],
        );
        assert_eq!(who(&a, &bad_first, stream), Err("401 unauthorized".into()));
    }

    #[test]
    fn each_endpoint_reads_only_its_places() {
        let a = auth();
        let t = token("alice");
        let cookie = format!("sse_token={t}");
        let by_cookie = req("/x", &[("cookie", &cookie)]);
        let by_query = req(&format!("/x?access_token={t}"), &[]);
        assert_eq!(who(&a, &by_cookie, At::Api), Ok(None));
        assert_eq!(who(&a, &by_query, At::Api), Ok(None));
        assert_eq!(who(&a, &by_cookie, At::Tickets), Ok(Some("alice".into())));
        assert_eq!(who(&a, &by_query, At::Tickets), Ok(None));
        assert_eq!(who(&a, &by_query, At::Stream), Ok(Some("alice".into())));
    }

    #[test]
    fn cookies_are_parsed_strictly_by_name() {
        let a = auth();
        let t = token("alice");
        for header in [
            format!("sse_token={t}"),
            format!("a=1;sse_token=\"{t}\""),
            format!("x_sse_token=1; sse_token={t}; y=2"),
        ] {
            assert_eq!(
                who(&a, &req("/", &[("cookie", &header)]), At::Stream),
                Ok(Some("alice".into())),
                "{header}"
            );
        }
        // Two Cookie headers (HTTP/2 may split them).
        let two = req(
            "/",
            &[("cookie", "a=1"), ("cookie", &format!("sse_token={t}"))],
        );
        assert_eq!(who(&a, &two, At::Stream), Ok(Some("alice".into())));
        for header in ["sse_token=", "other=1", "sse_tokenx=1", "sse_token"] {
            assert_eq!(
                who(&a, &req("/", &[("cookie", header)]), At::Stream),
                Ok(None)
            );
        }
        assert_eq!(
            who(
                &a,
                &req("/", &[("cookie", "sse_token=garbage")]),
                At::Stream
            ),
            Err("401 unauthorized".into())
        );
    }

    #[test]
    fn without_jwt_the_cookie_is_ignored_and_tokens_refused() {
        let a = Authenticator::new(&config(false), Arc::default()).unwrap();
        let t = token("alice");
        let cookie = format!("sse_token={t}");
        assert_eq!(
            who(&a, &req("/", &[("cookie", &cookie)]), At::Stream),
            Ok(None)
        );
        let query = req(&format!("/events?access_token={t}"), &[]);
        assert_eq!(who(&a, &query, At::Stream), Err("401 unauthorized".into()));
        let bearer = format!("Bearer {t}");
        let header = req("/", &[("authorization", &bearer)]);
        assert_eq!(who(&a, &header, At::Api), Err("401 unauthorized".into()));
    }

    #[tokio::test]
    async fn tickets_are_read_on_streams_only_and_spent_once() {
        let a = auth();
        let dev = a.identify(&req("/", &[("x-api-key", "s3cret")]), Endpoint::Tickets);
        let issued = a.issue_ticket(&dev.unwrap().unwrap()).await.unwrap();
        let url = req(&format!("/events?channel=x&ticket={}", issued.ticket), &[]);
        assert_eq!(who(&a, &url, At::Tickets), Ok(None));
        // Looking at it does not use it up: only spending does.
        assert_eq!(who(&a, &url, At::Stream), Ok(Some("dev".into())));
        let caller = a.identify_stream(&url).await.unwrap();
        assert_eq!(caller.who.map(|p| p.name), Some("dev".into()));
        a.spend_ticket(caller.ticket.expect("a ticket"))
            .await
            .unwrap();
        assert_eq!(who(&a, &url, At::Stream), Err("401 invalid_ticket".into()));
        // A credential in a header comes first; the ticket is then not read at all.
        let mut with_key = url.clone();
        with_key.insert_header("x-api-key", "s3cret").unwrap();
        let caller = a.identify_stream(&with_key).await.unwrap();
        assert!(caller.ticket.is_none());
    }

    #[test]
    fn only_credentials_with_time_left_open_what_lasts() {
        let mut p = auth()
            .identify(&req("/", &[("x-api-key", "s3cret")]), Endpoint::Api)
            .unwrap()
            .unwrap();
        assert!(require_time_left(None).is_ok());
        assert!(
            require_time_left(Some(&p)).is_ok(),
            "API keys do not expire"
        );
        p.expires = Some(SystemTime::now() + Duration::from_secs(5));
        assert!(require_time_left(Some(&p)).is_ok());
        p.expires = Some(SystemTime::now() - Duration::from_secs(1));
        assert_eq!(require_time_left(Some(&p)).unwrap_err().status, 401);
    }

    #[test]
    fn policies() {
        let p = auth()
            .identify(&req("/", &[("x-api-key", "s3cret")]), Endpoint::Api)
            .unwrap()
            .unwrap();
        assert!(authorize(Policy::Public, None, Action::Publish, "x").is_ok());
        assert_eq!(
            authorize(Policy::Claims, None, Action::Publish, "news")
                .unwrap_err()
                .status,
            401
        );
        assert!(authorize(Policy::Claims, Some(&p), Action::Publish, "news.eu").is_ok());
        assert_eq!(
            authorize(Policy::Claims, Some(&p), Action::Publish, "sport")
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            authorize(Policy::Claims, Some(&p), Action::Subscribe, "news")
                .unwrap_err()
                .status,
            403
        );
        assert!(authorize(Policy::Authenticated, Some(&p), Action::Subscribe, "any").is_ok());
        assert_eq!(require_admin(Some(&p)).unwrap_err().status, 403);
    }
}
