//! CORS for every gateway endpoint: exact origins, `*` only without credentials, 403 for a
//! present and disallowed `Origin`, and preflight answers.

use crate::config::CorsConfig;
use crate::reply::{ApiError, CommonHeaders};

/// Headers a browser may send on our endpoints (preflight `Access-Control-Allow-Headers`).
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Last-Event-ID, X-API-Key, Cache-Control";
const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";
/// How long browsers may cache a preflight answer, in seconds.
const MAX_AGE: &str = "600";

/// Checks the request's `Origin` and returns the headers every reply must carry.
/// A request without `Origin` is not a cross-origin browser request: no CORS headers, no check.
/// Nor is one whose `Origin` names the gateway itself (its host and port are the request's
/// `Host`): browsers send `Origin` on same-origin POSTs too, and the web UI the gateway serves
/// must be able to publish. The scheme is not compared, since TLS may end before the gateway.
pub fn check(
    cfg: &CorsConfig,
    origin: Option<&[u8]>,
    host: Option<&[u8]>,
) -> Result<CommonHeaders, ApiError> {
    let Some(origin) = origin else {
        return Ok(CommonHeaders::default());
    };
    let origin = std::str::from_utf8(origin).unwrap_or("");
    if is_same_origin(origin, host) {
        return Ok(CommonHeaders::default());
    }
    let listed = cfg.allowed_origins.iter().any(|o| o == origin);
    let mut headers = Vec::with_capacity(3);
    if listed {
        headers.push(("access-control-allow-origin", origin.to_string()));
        headers.push(("vary", "Origin".to_string()));
        if cfg.allow_credentials {
            headers.push(("access-control-allow-credentials", "true".to_string()));
        }
    } else if cfg.allow_any_origin {
        headers.push(("access-control-allow-origin", "*".to_string()));
    } else {
        return Err(ApiError::new(
            403,
            "origin_not_allowed",
            "this Origin is not in cors.allowed_origins",
        ));
    }
    Ok(CommonHeaders(headers))
}

/// Extra headers of a preflight (`OPTIONS`) answer.
pub fn preflight_headers() -> [(&'static str, String); 3] {
    [
        ("access-control-allow-methods", ALLOW_METHODS.to_string()),
        ("access-control-allow-headers", ALLOW_HEADERS.to_string()),
        ("access-control-max-age", MAX_AGE.to_string()),
    ]
}

fn is_same_origin(origin: &str, host: Option<&[u8]>) -> bool {
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match (authority, host) {
        (Some(authority), Some(host)) => {
            !host.is_empty() && authority.as_bytes().eq_ignore_ascii_case(host)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(origins: &[&str], any: bool, credentials: bool) -> CorsConfig {
        CorsConfig {
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            allow_any_origin: any,
            allow_credentials: credentials,
        }
    }

    #[test]
    fn exact_origin_is_echoed_with_credentials() {
        let h = check(
            &cfg(&["http://a.test"], false, true),
            Some(b"http://a.test"),
            None,
        )
        .unwrap();
        assert!(h
            .0
            .contains(&("access-control-allow-origin", "http://a.test".into())));
        assert!(h
            .0
            .contains(&("access-control-allow-credentials", "true".into())));
    }

    #[test]
    fn unlisted_origin_is_forbidden_unless_any() {
        let err = check(
            &cfg(&["http://a.test"], false, true),
            Some(b"http://evil.test"),
            Some(b"gw.test"),
        )
        .unwrap_err();
        assert_eq!(err.status, 403);
        let h = check(&cfg(&[], true, false), Some(b"http://evil.test"), None).unwrap();
        assert_eq!(h.0, vec![("access-control-allow-origin", "*".to_string())]);
    }

    #[test]
    fn no_origin_no_headers() {
        assert!(check(&cfg(&[], false, false), None, None)
            .unwrap()
            .0
            .is_empty());
    }

    #[test]
    fn the_gateways_own_origin_is_not_cross_origin() {
        let none = cfg(&[], false, false);
        for origin in [&b"http://gw.test:8080"[..], b"https://GW.test:8080"] {
            let h = check(&none, Some(origin), Some(b"gw.test:8080")).unwrap();
            assert!(h.0.is_empty());
        }
        for (origin, host) in [
            (&b"http://gw.test"[..], &b"gw.test:8080"[..]),
            (b"http://evil.test:8080", b"gw.test:8080"),
            (b"http://gw.test:8080.evil.test", b"gw.test:8080"),
            (b"gw.test:8080", b"gw.test:8080"),
            (b"http://", b""),
        ] {
            assert_eq!(
                check(&none, Some(origin), Some(host)).unwrap_err().status,
                403
            );
        }
    }
}
