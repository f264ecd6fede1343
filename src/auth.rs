//! Who is calling, and what they may do. Today: API keys from `auth.api_keys`. JWT arrives later
//! behind the same [`Authenticator::identify`] and [`Principal`], so callers do not change.

use pingora::http::RequestHeader;

use crate::config::{ApiKey, AuthConfig, ChannelPattern, Config, Policy};
use crate::reply::ApiError;

/// An authenticated caller and its rights.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's name (never the key itself); shown in `/clients` and logs.
    pub name: Box<str>,
    pub publish: Vec<ChannelPattern>,
    pub subscribe: Vec<ChannelPattern>,
    pub admin: bool,
}

/// Checks credentials against the configured keys.
pub struct Authenticator {
    keys: Vec<ApiKey>,
}

impl Authenticator {
    pub fn new(cfg: &AuthConfig) -> Authenticator {
        Authenticator {
            keys: cfg.api_keys.clone(),
        }
    }

    /// `Ok(None)`: no credential presented. `Err`: a credential was presented and is not valid
    /// (401: a wrong key is not treated as anonymous).
    pub fn identify(&self, req: &RequestHeader) -> Result<Option<Principal>, ApiError> {
        let Some(presented) = presented_key(req) else {
            return Ok(None);
        };
        // Check every key, so the time taken does not tell which one came closest.
        let mut found = None;
        for key in &self.keys {
            if constant_time_eq(key.key.as_bytes(), presented) && found.is_none() {
                found = Some(key);
            }
        }
        match found {
            Some(key) => Ok(Some(Principal {
                name: key.name.as_str().into(),
                publish: key.publish.clone(),
                subscribe: Vec::new(),
                admin: key.admin,
            })),
            None => Err(unauthenticated("the credential is not valid")),
        }
    }
}

/// The key from `X-API-Key`, or `Authorization: Bearer`.
fn presented_key(req: &RequestHeader) -> Option<&[u8]> {
    if let Some(v) = req.headers.get("x-api-key") {
        return Some(v.as_bytes());
    }
    let auth = req.headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = auth.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then_some(token.trim_ascii())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthenticated(message: &str) -> ApiError {
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

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn auth() -> Authenticator {
        Authenticator {
            keys: vec![ApiKey {
                name: "dev".into(),
                key: "s3cret".into(),
                publish: vec![ChannelPattern::Prefix("news".into())],
                admin: false,
            }],
        }
    }

    #[test]
    fn keys_by_header_and_bearer() {
        let a = auth();
        assert!(a
            .identify(&req(&[("x-api-key", "s3cret")]))
            .unwrap()
            .is_some());
        assert!(a
            .identify(&req(&[("authorization", "Bearer s3cret")]))
            .unwrap()
            .is_some());
        assert!(a
            .identify(&req(&[("authorization", "bearer s3cret")]))
            .unwrap()
            .is_some());
        assert!(a.identify(&req(&[])).unwrap().is_none());
        assert_eq!(
            a.identify(&req(&[("x-api-key", "nope")]))
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            a.identify(&req(&[("authorization", "Basic s3cret")]))
                .unwrap()
                .map(|p| p.name),
            None
        );
    }

    #[test]
    fn policies() {
        let p = auth()
            .identify(&req(&[("x-api-key", "s3cret")]))
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
