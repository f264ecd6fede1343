//! Where the streams and publishes go, and the rule that it is loopback only.
//!
//! A load generator that opens 19,000 connections is a denial-of-service tool when pointed
//! elsewhere, so every address a URL's host resolves to must be loopback, or the run is refused
//! before a single socket is opened.

use std::net::{IpAddr, SocketAddr};

use crate::UsageError;

/// A resolved `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host[:port]` exactly as in the URL: the `Host` header.
    pub authority: String,
    /// Path and query, at least `/`.
    pub path: String,
    /// Where to connect: the first IPv4 address if the host has one (streams bind IPv4 source
    /// addresses), else the first address.
    pub addr: SocketAddr,
}

/// The parts of an `http://` URL that matter here, before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub authority: String,
    /// The host without brackets (`::1` for `[::1]`).
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Splits an `http://host[:port][/path][?query]` URL. `https` is refused: there is no TLS
/// stack here, on purpose (lean streams, loopback only).
pub fn parse_http_url(url: &str) -> Result<HttpUrl, UsageError> {
    let bad = |why: &str| UsageError(format!("{url:?} is not a usable URL: {why}"));
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some(_) => return Err(bad("only http:// is supported")),
        None => return Err(bad("it has no http:// scheme")),
    };
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    let tail = tail.split('#').next().unwrap_or("");
    let path = match tail.strip_prefix('?') {
        Some(query) => format!("/?{query}"),
        None if tail.is_empty() => "/".to_owned(),
        None => tail.to_owned(),
    };
    if authority.contains('@') {
        return Err(bad("user info is not supported"));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| bad("unclosed [ in the host"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("the host is empty"));
    }
    let port = match port {
        None | Some("") => 80,
        Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
    };
    if path
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(bad("the path has spaces or control characters"));
    }
    Ok(HttpUrl {
        authority: authority.to_owned(),
        host: host.to_owned(),
        port,
        path,
    })
}

/// Whether `ip` is a loopback address: 127.0.0.0/8, `::1`, or an IPv4-mapped `::ffff:127.x.y.z`.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Checks that there is at least one address and that every one is loopback; picks the one to
/// connect to (IPv4 first).
pub fn choose_loopback(url: &str, addrs: &[SocketAddr]) -> Result<SocketAddr, UsageError> {
    if addrs.is_empty() {
        return Err(UsageError(format!(
            "{url:?}: the host resolves to no address"
        )));
    }
    if let Some(outside) = addrs.iter().find(|a| !is_loopback(a.ip())) {
        return Err(UsageError(format!(
            "refusing {url:?}: its host resolves to {}, which is not loopback \
             (only 127.0.0.0/8, ::1 and localhost are allowed)",
            outside.ip()
        )));
    }
    let chosen = addrs.iter().find(|a| a.is_ipv4()).unwrap_or(&addrs[0]);
    Ok(*chosen)
}

/// Parses, resolves and checks a URL.
pub async fn resolve(url: &str) -> Result<Target, UsageError> {
    let parsed = parse_http_url(url)?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((parsed.host.as_str(), parsed.port))
        .await
        .map_err(|e| UsageError(format!("{url:?}: cannot resolve {:?}: {e}", parsed.host)))?
        .collect();
    let addr = choose_loopback(url, &addrs)?;
    Ok(Target {
        authority: parsed.authority,
        path: parsed.path,
        addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        let u = parse_http_url("http://127.0.0.1:8080/events?channel=bench").unwrap();
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 8080);
        assert_eq!(u.path, "/events?channel=bench");

        let u = parse_http_url("HTTP://[::1]:9/x#frag").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 9, "/x"));

        let u = parse_http_url("http://localhost").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("localhost", 80, "/")
        );

        let u = parse_http_url("http://localhost?a=b").unwrap();
        assert_eq!(u.path, "/?a=b");
    }

    #[test]
    fn refuses_bad_urls() {
        for url in [
            "https://127.0.0.1/",
            "127.0.0.1:8080/events",
            "http:///x",
            "http://127.0.0.1:port/",
            "http://[::1/",
            "http://u:p@127.0.0.1/",
            "http://127.0.0.1/a b",
        ] {
            assert!(parse_http_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn loopback_is_127_8_and_v6_one() {
        for ip in ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.2"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "10.0.0.1",
            "0.0.0.0",
            "128.0.0.1",
            "::",
            "::2",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn every_address_must_be_loopback() {
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        let outside: SocketAddr = "192.0.2.1:80".parse().unwrap();
        assert_eq!(choose_loopback("u", &[v6, v4]).unwrap(), v4);
        assert_eq!(choose_loopback("u", &[v6]).unwrap(), v6);
        let err = choose_loopback("u", &[v4, outside]).unwrap_err();
        assert!(err.0.contains("192.0.2.1"), "{err}");
        assert!(choose_loopback("u", &[]).is_err());
    }

    #[tokio::test]
    async fn resolves_localhost_and_refuses_others() {
        let t = resolve("http://localhost:8080/events").await.unwrap();
        assert!(is_loopback(t.addr.ip()));
        assert_eq!(t.authority, "localhost:8080");
        let t = resolve("http://127.0.0.9:1/").await.unwrap();
        assert_eq!(t.addr, "127.0.0.9:1".parse().unwrap());
        // Literal addresses: no DNS needed, so this holds offline too.
        assert!(resolve("http://10.1.2.3:8080/").await.is_err());
        assert!(resolve("http://[2001:db8::1]:8080/").await.is_err());
    }
}
