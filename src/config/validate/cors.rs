//! `cors`: the allowed origins.

use super::*;

impl Checker<'_> {
    pub(super) fn cors(&mut self, raw: RawCors) -> CorsConfig {
        let RawCors {
            allowed_origins,
            allow_credentials,
        } = raw;
        let allow_credentials = allow_credentials.is_some_and(|b| b.value);
        let mut cors = CorsConfig {
            allowed_origins: Vec::new(),
            allow_any_origin: false,
            allow_credentials,
        };
        for (i, origin) in allowed_origins.unwrap_or_default().into_iter().enumerate() {
            let key = format!("cors.allowed_origins[{i}]");
            if origin.value == "*" {
                if allow_credentials {
                    self.err(
                        &origin,
                        format!(
                            "{key}: \"*\" cannot be used with `allow_credentials: true` \
                             (browsers refuse it); list the origins instead"
                        ),
                    );
                }
                cors.allow_any_origin = true;
                continue;
            }
            if let Err(why) = check_origin(&origin.value) {
                self.err(
                    &origin,
                    format!("{key}: invalid origin {:?}: {why}", origin.value),
                );
            }
            cors.allowed_origins.push(origin.value);
        }
        cors
    }
}

/// An origin as browsers send it: `scheme://host[:port]`, lowercase, no path.
pub(super) fn check_origin(text: &str) -> Result<(), &'static str> {
    let Some((scheme, authority)) = text.split_once("://") else {
        return Err("expected scheme://host[:port], like http://localhost:5173");
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_lowercase())
        && scheme.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')
        });
    if !scheme_ok {
        return Err("the scheme must be lowercase letters, like http or https");
    }
    if authority.contains(['/', '?', '#']) {
        return Err("an origin has no path (not even a trailing /)");
    }
    if authority.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("browsers send origins in lowercase");
    }
    let host = match authority.rsplit_once(':') {
        // An IPv6 literal's last colon is inside the brackets.
        Some((host, port)) if !port.ends_with(']') => {
            if port.parse::<u16>().is_err() {
                return Err("the port must be a number from 0 to 65535");
            }
            host
        }
        _ => authority,
    };
    let host_ok = if let Some(ip6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        ip6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        is_host_name(host)
    };
    if host_ok {
        Ok(())
    } else {
        Err("expected scheme://host[:port], like http://localhost:5173")
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn cors_origins() {
        for ok in [
            "http://localhost:5173",
            "https://example.com",
            "http://[::1]:8080",
            "app://x",
        ] {
            assert_eq!(check_origin(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://localhost:5173/",
            "localhost:5173",
            "HTTP://x",
            "http://Example.com",
            "http://x:port",
            "http://",
            "http://a/b",
        ] {
            assert!(check_origin(bad).is_err(), "{bad} accepted");
        }
        let config = load_ok("cors: {allowed_origins: [\"*\"]}");
        assert!(config.cors.allow_any_origin && config.cors.allowed_origins.is_empty());
        one_problem(
            "cors:\n  allowed_origins: [http://a.example/]\n",
            "2:21: cors.allowed_origins[0]: invalid origin \"http://a.example/\": an origin has \
             no path",
        );
    }
}
