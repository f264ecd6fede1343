//! Keeping credentials that travel in URLs out of logs.
//!
//! `?access_token=` and `?ticket=` put a credential in the request target, which proxies, access
//! logs and error messages love to print. Whatever the gateway logs about a request target goes
//! through [`target`] first. (The gateway itself never logs raw request heads: see
//! `gateway::Gateway::process_new_http`.)

use std::borrow::Cow;

/// Query parameters whose values are credentials.
pub const SECRET_PARAMS: &[&str] = &["access_token", "ticket"];

/// What replaces a secret value.
pub const REDACTED: &str = "REDACTED";

/// `path?query` with the values of [`SECRET_PARAMS`] replaced by `REDACTED`. Keys are compared
/// after percent-decoding (`access%5Ftoken` is the same parameter to the query parser).
pub fn target(path_and_query: &str) -> Cow<'_, str> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return Cow::Borrowed(path_and_query);
    };
    match query_string(query) {
        Cow::Borrowed(_) => Cow::Borrowed(path_and_query),
        Cow::Owned(q) => Cow::Owned(format!("{path}?{q}")),
    }
}

/// A query string with the values of [`SECRET_PARAMS`] replaced.
pub fn query_string(query: &str) -> Cow<'_, str> {
    let secret = |pair: &str| {
        let raw_key = pair.split_once('=').map_or(pair, |(k, _)| k);
        form_urlencoded::parse(raw_key.as_bytes())
            .next()
            .is_some_and(|(key, _)| SECRET_PARAMS.contains(&&*key))
    };
    if !query.split('&').any(secret) {
        return Cow::Borrowed(query);
    }
    let parts: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| {
            if secret(pair) {
                let raw_key = pair.split_once('=').map_or(pair, |(k, _)| k);
                Cow::Owned(format!("{raw_key}={REDACTED}"))
            } else {
                Cow::Borrowed(pair)
            }
        })
        .collect();
    Cow::Owned(parts.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_replaced_and_the_rest_kept() {
        assert_eq!(
            target("/events?channel=a&access_token=eyJ.x.y&ticket=abc&lastEventId=1-2"),
            "/events?channel=a&access_token=REDACTED&ticket=REDACTED&lastEventId=1-2"
        );
        assert_eq!(
            target("/events?access%5Ftoken=eyJ&ticket"),
            "/events?access%5Ftoken=REDACTED&ticket=REDACTED"
        );
        assert!(matches!(target("/events?channel=a"), Cow::Borrowed(_)));
        assert!(matches!(target("/healthz"), Cow::Borrowed(_)));
    }
}
