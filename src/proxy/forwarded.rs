//! Who the client is behind proxies (`trusted_proxies`), and the `X-Forwarded-*` headers the
//! gateway sends upstream.

use std::net::IpAddr;

use pingora::http::RequestHeader;

use crate::config::Cidr;

/// The client's address: the connection's peer; or, when the peer is one of `trusted`, the
/// last address of `X-Forwarded-For` that is not (the first one, if every one is). From any
/// other peer the header is ignored: anyone can write it.
pub fn client_ip(
    peer: Option<IpAddr>,
    headers: &http::HeaderMap,
    trusted: &[Cidr],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|cidr| cidr.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| parse_addr(part.trim()))
        .collect();
    let first = forwarded.first().copied();
    while let Some(ip) = forwarded.pop() {
        if !is_trusted(ip) {
            return Some(ip);
        }
    }
    Some(first.unwrap_or(peer))
}

/// An address as `X-Forwarded-For` writes it: bare, or with a port (`1.2.3.4:5678`,
/// `[::1]:80`).
fn parse_addr(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Ok(sock) = text.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    None
}

/// Sets the forwarding headers of a proxied request: the peer's address appended to
/// `X-Forwarded-For`, `X-Forwarded-Proto` (`http` or `https`) and `X-Forwarded-Host` (the
/// request's `Host`).
pub fn apply(
    upstream: &mut RequestHeader,
    peer: Option<IpAddr>,
    https: bool,
    host: Option<&str>,
) -> pingora::Result<()> {
    if let Some(peer) = peer {
        let list = upstream
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        let list = if list.is_empty() {
            peer.to_string()
        } else {
            format!("{list}, {peer}")
        };
        upstream.insert_header("x-forwarded-for", list)?;
    }
    upstream.insert_header("x-forwarded-proto", if https { "https" } else { "http" })?;
    match host {
        Some(host) => upstream.insert_header("x-forwarded-host", host.to_owned())?,
        None => {
            upstream.remove_header("x-forwarded-host");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn the_last_untrusted_forwarded_address_is_the_client_behind_trusted_proxies() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        let proxy = ip("10.1.2.3");
        // A client spoofing the header before the trusted proxy added the real address.
        let h = headers("6.6.6.6, 203.0.113.7, 10.9.9.9");
        assert_eq!(client_ip(proxy, &h, &trusted), ip("203.0.113.7"));
        // From an untrusted peer the header means nothing.
        assert_eq!(
            client_ip(ip("198.51.100.1"), &h, &trusted),
            ip("198.51.100.1")
        );
        // Only proxies in the header: the first one.
        assert_eq!(
            client_ip(proxy, &headers("10.0.0.1, 10.0.0.2"), &trusted),
            ip("10.0.0.1")
        );
        // No header: the peer.
        assert_eq!(client_ip(proxy, &http::HeaderMap::new(), &trusted), proxy);
        // Ports and brackets as some proxies write them.
        assert_eq!(
            client_ip(proxy, &headers("[2001:db8::1]:443"), &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(proxy, &headers("garbage, 203.0.113.9:5000"), &trusted),
            ip("203.0.113.9")
        );
    }
}
