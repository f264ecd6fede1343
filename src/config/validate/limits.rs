//! `limits`: connection counts, rates and sizes.

use super::*;

impl Checker<'_> {
    pub(super) fn limits(&mut self, raw: RawLimits) -> LimitsConfig {
        let RawLimits {
            max_connections,
            max_connections_per_ip,
            max_connections_per_user,
            connect_rate_per_ip,
            publish_rate,
            ticket_rate,
            max_event_bytes,
            max_channels_per_connection,
            header_read_timeout,
        } = raw;
        LimitsConfig {
            max_connections: self.count(
                "limits.max_connections",
                max_connections.as_ref(),
                1,
                default::MAX_CONNECTIONS,
            ),
            max_connections_per_ip: max_connections_per_ip
                .map(|v| self.count("limits.max_connections_per_ip", Some(&v), 1, 1)),
            max_connections_per_user: max_connections_per_user
                .map(|v| self.count("limits.max_connections_per_user", Some(&v), 1, 1)),
            connect_rate_per_ip: connect_rate_per_ip
                .and_then(|r| self.rate("limits.connect_rate_per_ip", r)),
            publish_rate: publish_rate.and_then(|r| self.rate("limits.publish_rate", r)),
            ticket_rate: ticket_rate
                .and_then(|r| self.rate("limits.ticket_rate", r))
                .unwrap_or(default::TICKET_RATE),
            max_event_bytes: self.count(
                "limits.max_event_bytes",
                max_event_bytes.as_ref(),
                1,
                default::MAX_EVENT_BYTES,
            ),
            max_channels_per_connection: self.count(
                "limits.max_channels_per_connection",
                max_channels_per_connection.as_ref(),
                1,
                default::MAX_CHANNELS_PER_CONNECTION,
            ),
            header_read_timeout: self.positive_duration(
                "limits.header_read_timeout",
                header_read_timeout.as_ref(),
                default::HEADER_READ_TIMEOUT,
            ),
        }
    }

    /// A token bucket; `burst` defaults to `per_second`.
    pub(super) fn rate(&mut self, key: &str, raw: Spanned<RawRate>) -> Option<RateLimit> {
        let RawRate { per_second, burst } = raw.value;
        let Some(per_second) = per_second else {
            self.at(
                Pos::of(raw.referenced),
                format!("{key}: needs `per_second`"),
            );
            return None;
        };
        let per_second = self.small_count(&format!("{key}.per_second"), &per_second)?;
        let burst = match burst {
            Some(burst) => self.small_count(&format!("{key}.burst"), &burst)?,
            None => per_second,
        };
        Some(RateLimit { per_second, burst })
    }

    pub(super) fn small_count(&mut self, key: &str, value: &Spanned<i64>) -> Option<u32> {
        match u32::try_from(value.value) {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                self.err(
                    value,
                    format!("{key}: expected 1 to {}, got {}", u32::MAX, value.value),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn limits_rates() {
        let config = load_ok("limits: {publish_rate: {per_second: 5}}");
        assert_eq!(
            config.limits.publish_rate,
            Some(RateLimit {
                per_second: 5,
                burst: 5
            })
        );
        assert_eq!(
            config.limits.ticket_rate,
            RateLimit {
                per_second: 10,
                burst: 20
            },
            "tickets are rate limited unless configured otherwise"
        );
        let config = load_ok("limits: {ticket_rate: {per_second: 2, burst: 7}}");
        assert_eq!(
            config.limits.ticket_rate,
            RateLimit {
                per_second: 2,
                burst: 7
            }
        );
        let found = problems(
            "limits:\n  connect_rate_per_ip: {burst: 3}\n  publish_rate: {per_second: 0}\n  \
             max_connections_per_ip: 0\n  ticket_rate: {per_second: 1, burst: -1}\n",
        );
        assert_eq!(
            found,
            [
                "2:24: limits.connect_rate_per_ip: needs `per_second`",
                "3:30: limits.publish_rate.per_second: expected 1 to 4294967295, got 0",
                "4:27: limits.max_connections_per_ip: must be at least 1, got 0",
                "5:39: limits.ticket_rate.burst: expected 1 to 4294967295, got -1",
            ]
        );
    }

    #[test]
    fn sizes_and_counts() {
        let found = problems(
            "sse: {client_queue: 0, padding: -1}\nhistory: {max_events: -3}\n\
             limits: {max_event_bytes: 0, max_connections: 0}\n",
        );
        assert_eq!(
            found,
            [
                "1:21: sse.client_queue: must be at least 1, got 0",
                "1:33: sse.padding: must not be negative, got -1",
                "2:23: history.max_events: must not be negative, got -3",
                "3:27: limits.max_event_bytes: must be at least 1, got 0",
                "3:47: limits.max_connections: must be at least 1, got 0",
            ]
        );
        one_problem(
            "sse: {padding: 2000000}",
            "1:16: sse.padding: at most 1048576 bytes",
        );
        assert_eq!(load_ok("history: {max_events: 0}").history.max_events, 0);
    }
}
