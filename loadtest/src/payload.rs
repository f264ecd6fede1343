//! The event data: `"<seq> <unix_nanos> <padding>"`, or a reference-upstream notification
//! (JSON) whose `title` is `"<seq> <unix_nanos>"`. The time is when the event was due to be
//! published (`sse-loadgen`) or when it was sent (`sse-chaos`).
//!
//! The sequence number lets each stream tell delivered from duplicated from missing events
//! without any per-event state, and the time (wall clock, read on the same machine as the
//! receiver) gives publish→receive latency without a round trip.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch; 0 if the clock is before it.
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The data of event `seq` sent at `sent_nanos`, padded with `x` to `bytes` bytes. When
/// `bytes` is less than the two numbers need, the data is just the numbers.
pub fn make_data(seq: u64, sent_nanos: u64, bytes: usize) -> String {
    let mut data = format!("{seq} {sent_nanos} ");
    if data.len() < bytes {
        data.extend(std::iter::repeat_n('x', bytes - data.len()));
    }
    data
}

/// `data` as the two numbers and the padding after them.
pub fn split_padding(data: &str) -> (&str, &str) {
    let numbers_end = data
        .match_indices(' ')
        .nth(1)
        .map_or(data.len(), |(at, _)| at);
    (
        &data[..numbers_end],
        data[numbers_end..].trim_start_matches(' '),
    )
}

/// Reads `(seq, sent_nanos)` back; `None` if the data is not ours.
pub fn parse_data(data: &str) -> Option<(u64, u64)> {
    let data = if data.starts_with('{') {
        notification_title(data)?
    } else {
        data
    };
    let mut fields = data.splitn(3, ' ');
    let seq = parse_digits(fields.next()?)?;
    let sent = parse_digits(fields.next()?)?;
    (seq > 0).then_some((seq, sent))
}

/// The `title` of a notification as the reference upstream writes it (compact JSON, and our
/// titles hold only digits and a space, so nothing in them is escaped). A scan rather than a
/// JSON parse: this runs for every event on every stream.
fn notification_title(json: &str) -> Option<&str> {
    const KEY: &str = "\"title\":\"";
    let start = json.find(KEY)? + KEY.len();
    let len = json[start..].find('"')?;
    Some(&json[start..start + len])
}

/// Only ASCII digits: `u64::from_str` would also take a leading `+`.
fn parse_digits(field: &str) -> Option<u64> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let data = make_data(7, 1_700_000_000_123_456_789, 64);
        assert_eq!(data.len(), 64);
        assert!(data.starts_with("7 1700000000123456789 xxx"));
        assert_eq!(parse_data(&data), Some((7, 1_700_000_000_123_456_789)));

        let short = make_data(12, 34, 1);
        assert_eq!(short, "12 34 ");
        assert_eq!(parse_data(&short), Some((12, 34)));
        assert_eq!(parse_data("3 4"), Some((3, 4)));
    }

    #[test]
    fn notifications_carry_the_numbers_in_their_title() {
        let data = make_data(9, 1_700_000_000_000_000_001, 40);
        let (title, padding) = split_padding(&data);
        assert_eq!(title, "9 1700000000000000001");
        assert!(!padding.is_empty() && padding.bytes().all(|b| b == b'x'));
        assert_eq!(split_padding("9 5 "), ("9 5", ""));
        let relayed = r#"{"id":"1-9","title":"9 1700000000000000001","body":"xx","level":"info"}"#;
        assert_eq!(parse_data(relayed), Some((9, 1_700_000_000_000_000_001)));
        assert_eq!(parse_data(r#"{"title":"hello"}"#), None);
        assert_eq!(parse_data(r#"{"id":"x"}"#), None);
    }

    #[test]
    fn rejects_foreign_data() {
        for data in [
            "",
            "hello",
            "1",
            "1  2",
            "0 5 x",
            "+1 5",
            "1 -5",
            "a 1 x",
            "{\"reason\":\"unknown id\"}",
            "99999999999999999999 1",
        ] {
            assert_eq!(parse_data(data), None, "{data:?}");
        }
    }

    #[test]
    fn clock_is_after_2020() {
        assert!(unix_nanos() > 1_577_836_800_000_000_000);
    }
}
