//! Values every section uses: durations, counts, choices, paths, channel patterns, and the
//! shapes of addresses, hosts, URLs and names.

use super::*;

impl Checker<'_> {
    pub(super) fn duration(
        &mut self,
        key: &str,
        value: Option<&Spanned<String>>,
        default: Duration,
    ) -> Duration {
        let Some(value) = value else { return default };
        match parse_duration(&value.value) {
            Ok(d) => d,
            Err(why) => {
                self.err(
                    value,
                    format!("{key}: invalid duration {:?}: {why}", value.value),
                );
                default
            }
        }
    }

    /// A duration that must not be zero (an interval or a timeout that has to be able to pass).
    pub(super) fn positive_duration(
        &mut self,
        key: &str,
        value: Option<&Spanned<String>>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(key, value, default);
        match value {
            Some(value) if d.is_zero() => {
                self.err(value, format!("{key}: must be more than 0s"));
                default
            }
            _ => d,
        }
    }

    /// A duration of at most `max` (given with its text for the message): a larger value would
    /// defeat what the setting is for.
    pub(super) fn bounded_duration(
        &mut self,
        key: &str,
        value: Option<&Spanned<String>>,
        default: Duration,
        (max, max_text): (Duration, &str),
    ) -> Duration {
        let d = self.duration(key, value, default);
        match value {
            Some(value) if d > max => {
                self.err(value, format!("{key}: must be at most {max_text}"));
                default
            }
            _ => d,
        }
    }

    /// A duration where `0s` means "none".
    pub(super) fn optional_duration(
        &mut self,
        key: &str,
        value: Option<&Spanned<String>>,
        default: Option<Duration>,
    ) -> Option<Duration> {
        let d = self.duration(key, value, default.unwrap_or(Duration::ZERO));
        (!d.is_zero()).then_some(d)
    }

    /// A size or count of at least `min` (0 or 1).
    pub(super) fn count(
        &mut self,
        key: &str,
        value: Option<&Spanned<i64>>,
        min: i64,
        default: usize,
    ) -> usize {
        let Some(value) = value else { return default };
        let n = value.value;
        let problem = if n < 0 {
            format!("{key}: must not be negative, got {n}")
        } else if n < min {
            format!("{key}: must be at least {min}, got {n}")
        } else {
            match usize::try_from(n) {
                Ok(n) => return n,
                Err(_) => format!("{key}: {n} is too large for this platform"),
            }
        };
        self.err(value, problem);
        default
    }

    /// One of the `options` names; `default` when absent.
    pub(super) fn one_of<T: Copy>(
        &mut self,
        key: &str,
        value: Option<&Spanned<String>>,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        value
            .and_then(|v| self.one_of_required(key, v, options))
            .unwrap_or(default)
    }

    pub(super) fn one_of_required<T: Copy>(
        &mut self,
        key: &str,
        value: &Spanned<String>,
        options: &[(&str, T)],
    ) -> Option<T> {
        if let Some((_, t)) = options.iter().find(|(name, _)| *name == value.value) {
            return Some(*t);
        }
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        self.err(
            value,
            format!(
                "{key}: unknown value {:?}: expected one of {}",
                value.value,
                names.join(", ")
            ),
        );
        None
    }

    /// An HTTP path (starts with `/`); `default` when absent.
    pub(super) fn http_path(
        &mut self,
        key: &str,
        value: Option<&Spanned<String>>,
        default: &str,
    ) -> String {
        let Some(value) = value else {
            return default.to_owned();
        };
        let valid = value.value.starts_with('/')
            && !value
                .value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#');
        if !valid {
            self.err(
                value,
                format!(
                    "{key}: invalid path {:?}: expected an absolute path like /events",
                    value.value
                ),
            );
            return default.to_owned();
        }
        value.value.clone()
    }

    /// A channel pattern: a channel name, a prefix ending in `*`, or `*` alone.
    pub(super) fn pattern(&mut self, key: &str, value: &Spanned<String>) -> Option<ChannelPattern> {
        let text = value.value.as_str();
        let pattern = ChannelPattern::parse(text);
        if pattern.is_none() {
            self.err(
                value,
                format!(
                    "{key}: invalid channel pattern {text:?}: expected a channel name \
                     ([A-Za-z0-9._:/-], 1 to 128 characters), optionally ending in *, or * alone"
                ),
            );
        }
        pattern
    }
}

/// `15s`, `500ms`, `10m`, `1h`, `2d`: an integer and a unit.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    const HINT: &str = "expected an integer and a unit (ms, s, m, h or d), like \"15s\"";
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(HINT.to_owned());
    }
    let millis_per_unit: u64 = match unit.trim_start() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(format!("missing unit; {HINT}")),
        _ => return Err(HINT.to_owned()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(millis_per_unit))
        .map(Duration::from_millis)
        .ok_or_else(|| "too large".to_owned())
}

/// `ip:port` (IPv6 in brackets); `localhost:port` means 127.0.0.1.
pub(super) fn parse_listen(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    let port = text.strip_prefix("localhost:")?.parse::<u16>().ok()?;
    Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

/// `host:port` where host is an IP address or a DNS name and port is not 0.
pub(super) fn is_host_port(text: &str) -> bool {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return addr.port() != 0;
    }
    match text.rsplit_once(':') {
        Some((host, port)) => is_host_name(host) && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

/// A DNS name or IPv4 address (letters, digits, `-`, `.`); no port.
pub(super) fn is_host_name(text: &str) -> bool {
    (1..=253).contains(&text.len())
        && !text.starts_with(['-', '.'])
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// An absolute `http://` or `https://` URL with a host.
/// An absolute `http://` or `https://` URL with a host, as a request can be made to it.
pub(super) fn is_http_url(text: &str) -> bool {
    let Ok(uri) = text.parse::<http::Uri>() else {
        return false;
    };
    matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some_and(|h| !h.is_empty())
}

/// An HTTP token (RFC 9110), which is what a cookie name must be.
pub(super) fn is_http_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("15s", 15_000),
            ("500ms", 500),
            ("10m", 600_000),
            ("1h", 3_600_000),
            ("2d", 172_800_000),
            ("0s", 0),
            (" 5 s ", 5_000),
        ];
        for (text, millis) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
        for text in [
            "15",
            "s",
            "",
            "1.5s",
            "-1s",
            "15 seconds",
            "1w",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} parsed");
        }
        assert!(parse_duration("15")
            .unwrap_err()
            .starts_with("missing unit"));
    }
}
