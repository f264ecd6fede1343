//! `sources`: upstream SSE streams relayed into channels.

use super::*;

impl Checker<'_> {
    pub(super) fn sources(
        &mut self,
        raw: Vec<Spanned<RawSource>>,
        upstreams: &[UpstreamConfig],
    ) -> Vec<SourceConfig> {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, entry) in raw.into_iter().enumerate() {
            let at = format!("sources[{i}]");
            let entry_pos = Pos::of(entry.referenced);
            let RawSource {
                name,
                url,
                upstream,
                path,
                channel,
                channel_from_event_type,
                channel_prefix,
                mode,
                linger,
                stall_timeout,
                headers,
            } = entry.value;
            let Some(name) = self.entry_name(&at, entry_pos, i, name, &mut names, |name, first| {
                format!("{name:?} is also sources[{first}]")
            }) else {
                continue;
            };
            let target = match (url, upstream, path) {
                (Some(url), None, None) => {
                    if !is_http_url(&url.value) {
                        self.err(
                            &url,
                            format!(
                                "{at}.url: expected an http:// or https:// URL, got {:?}",
                                url.value
                            ),
                        );
                    }
                    SourceTarget::Url(url.value)
                }
                (None, Some(upstream), path) => {
                    self.upstream_ref(&format!("{at}.upstream"), &upstream, upstreams);
                    if path.is_none() {
                        self.err(&upstream, format!("{at}: `upstream` needs a `path`"));
                    }
                    let path = self.http_path(&format!("{at}.path"), path.as_ref(), "/");
                    SourceTarget::Upstream {
                        upstream: upstream.value,
                        path,
                    }
                }
                (Some(url), Some(_), _) => {
                    self.err(
                        &url,
                        format!("{at}: set either `url` or `upstream`, not both"),
                    );
                    continue;
                }
                (Some(_), None, Some(path)) => {
                    self.err(&path, format!("{at}.path: only used with `upstream`"));
                    continue;
                }
                (None, None, _) => {
                    self.at(
                        entry_pos,
                        format!("{at}: needs `url`, or `upstream` and `path`"),
                    );
                    continue;
                }
            };
            let from_event_type = channel_from_event_type.as_ref().is_some_and(|b| b.value);
            let channel = match (channel, from_event_type) {
                (Some(channel), false) => {
                    if let Some(prefix) = &channel_prefix {
                        self.err(
                            prefix,
                            format!(
                                "{at}.channel_prefix: only used with `channel_from_event_type`"
                            ),
                        );
                    }
                    if !is_valid_channel(&channel.value) {
                        self.err(
                            &channel,
                            format!(
                                "{at}.channel: invalid channel name {:?}: expected \
                                 [A-Za-z0-9._:/-], 1 to 128 characters",
                                channel.value
                            ),
                        );
                    }
                    SourceChannel::Fixed(channel.value)
                }
                (None, true) => {
                    let prefix = channel_prefix.map(|p| p.value).unwrap_or_default();
                    if !prefix.is_empty() && !is_valid_channel(&prefix) {
                        self.at(
                            entry_pos,
                            format!(
                                "{at}.channel_prefix: {prefix:?} has characters a channel name \
                                 cannot have ([A-Za-z0-9._:/-])"
                            ),
                        );
                    }
                    SourceChannel::FromEventType { prefix }
                }
                (Some(channel), true) => {
                    self.err(
                        &channel,
                        format!(
                            "{at}: set either `channel` or `channel_from_event_type: true`, \
                             not both"
                        ),
                    );
                    continue;
                }
                (None, false) => {
                    self.at(
                        entry_pos,
                        format!("{at}: needs `channel`, or `channel_from_event_type: true`"),
                    );
                    continue;
                }
            };
            let mode = self.one_of(
                &format!("{at}.mode"),
                mode.as_ref(),
                &[
                    ("always", SourceMode::Always),
                    ("on_demand", SourceMode::OnDemand),
                ],
                SourceMode::Always,
            );
            if let (SourceMode::Always, Some(linger)) = (mode, &linger) {
                self.err(
                    linger,
                    format!("{at}.linger: only used with `mode: on_demand`"),
                );
            }
            let linger = self.duration(&format!("{at}.linger"), linger.as_ref(), default::LINGER);
            let stall_timeout = self.positive_duration(
                &format!("{at}.stall_timeout"),
                stall_timeout.as_ref(),
                default::STALL_TIMEOUT,
            );
            let mut checked_headers = Vec::new();
            for (header, value) in headers.unwrap_or_default() {
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    self.err(
                        &value,
                        format!("{at}.headers: invalid header name {header:?}"),
                    );
                } else if http::HeaderValue::from_str(&value.value).is_err() {
                    // The value may be a credential: named by its header only.
                    self.err(
                        &value,
                        format!("{at}.headers.{header}: invalid header value"),
                    );
                }
                checked_headers.push((header, value.value));
            }
            out.push(SourceConfig {
                name,
                target,
                channel,
                mode,
                linger,
                stall_timeout,
                headers: checked_headers,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn sources_routes_and_upstreams() {
        let text = "\
upstreams:
  api:
    servers: [\"10.0.0.1:80\", \"backend:8080\"]
    balance: least_connections
    health_check: {interval: 2s}
sources:
  - name: feed
    upstream: api
    path: /feed
    channel_from_event_type: true
    channel_prefix: feed.
    mode: on_demand
    linger: 5s
    stall_timeout: 20s
    headers: {Authorization: Bearer abc}
routes:
  - {path_prefix: /api/, host: example.com, upstream: api, strip_prefix: true}
";
        let config = load_ok(text);
        assert_eq!(
            config.sources,
            [SourceConfig {
                name: "feed".into(),
                target: SourceTarget::Upstream {
                    upstream: "api".into(),
                    path: "/feed".into()
                },
                channel: SourceChannel::FromEventType {
                    prefix: "feed.".into()
                },
                mode: SourceMode::OnDemand,
                linger: Duration::from_secs(5),
                stall_timeout: Duration::from_secs(20),
                headers: vec![("Authorization".into(), "Bearer abc".into())],
            }]
        );
        assert_eq!(config.upstreams[0].balance, Balance::LeastConnections);
        assert_eq!(
            config.upstreams[0].health_check,
            Some(HealthCheckConfig {
                path: "/healthz".into(),
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(2),
                healthy_after: 1,
                unhealthy_after: 2,
            })
        );
        assert_eq!(config.routes[0].host.as_deref(), Some("example.com"));
        assert!(config.routes[0].strip_prefix);

        let text = "\
upstreams:
  api: {servers: [\"nohost\", \"h:0\"], balance: fastest}
  empty: {}
sources:
  - {name: a, url: \"ftp://x\", channel: a}
  - {name: a, url: \"http://x\", upstream: api, channel: a}
  - {name: b, upstream: nope, path: /x, channel: \"bad channel\"}
  - {name: c, url: \"http://x\"}
  - {name: d, url: \"http://x\", channel: d, headers: {\"bad header\": v, X-Ok: \"\\n\"}}
  - {name: e, url: \"http://x\", channel: e, channel_prefix: p., linger: 5s, stall_timeout: 0s}
routes:
  - {path_prefix: api, upstream: missing}
  - {upstream: api}
";
        let found = problems(text);
        let expected = [
            "2:19: upstreams.api.servers[0]: invalid server \"nohost\"",
            "2:29: upstreams.api.servers[1]: invalid server \"h:0\"",
            "2:46: upstreams.api.balance: unknown value \"fastest\"",
            "3:10: upstreams.empty: needs `servers`",
            "5:20: sources[0].url: expected an http:// or https:// URL",
            "6:12: sources[1].name: \"a\" is also sources[0]",
            "6:20: sources[1]: set either `url` or `upstream`, not both",
            "7:25: sources[2].upstream: no upstream named \"nope\"",
            "7:50: sources[2].channel: invalid channel name \"bad channel\"",
            "8:5: sources[3]: needs `channel`, or `channel_from_event_type: true`",
            "9:68: sources[4].headers: invalid header name \"bad header\"",
            "9:77: sources[4].headers.X-Ok: invalid header value",
            "10:60: sources[5].channel_prefix: only used with `channel_from_event_type`",
            "10:72: sources[5].linger: only used with `mode: on_demand`",
            "10:91: sources[5].stall_timeout: must be more than 0s",
            "12:19: routes[0].path_prefix: invalid path \"api\"",
            "12:34: routes[0].upstream: no upstream named \"missing\"",
            "13:5: routes[1]: needs `path_prefix` and `upstream`",
        ];
        assert_starts(&found, &expected);
    }
}
