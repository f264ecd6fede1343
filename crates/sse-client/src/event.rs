//! What the stream yields: the app's events, and `reset`, which says events were missed.

use base64::Engine;
use sse_wire::parse::ParsedEvent;

use crate::Error;

/// One item of an [`EventStream`](crate::EventStream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// An event published on one of the stream's channels.
    Event(Event),
    /// The gateway could not resume from the last event id (unknown, malformed, or older than
    /// its history): events may have been missed, and the app must refetch its state. The
    /// stream goes on live after it.
    Reset(Reset),
}

/// An event as published: `POST /broadcast`'s `event` and `data`, and the id the gateway gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's id (`id:`), an opaque string: what the client resumes from.
    pub id: String,
    /// The event type (`event:`), `message` when the publisher named none.
    pub event: String,
    /// The data text: a published string verbatim, any other JSON value as compact JSON, or
    /// the base64 text of a `data_base64` publish. Several `data:` lines are joined with `\n`.
    pub data: String,
}

impl Event {
    /// The data parsed as JSON into `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_str(&self.data)?)
    }

    /// The data decoded as standard base64: the bytes of a `data_base64` publish. The stream
    /// cannot tell binary events from text ones (SSE is text), so decoding is on request.
    pub fn bytes(&self) -> Result<Vec<u8>, Error> {
        Ok(base64::engine::general_purpose::STANDARD.decode(&self.data)?)
    }
}

impl From<ParsedEvent> for Event {
    fn from(e: ParsedEvent) -> Self {
        Self {
            id: e.id,
            event: e.event,
            data: e.data,
        }
    }
}

/// What the gateway said with `event: reset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    /// `malformed_id`, `unknown_id`, `history_evicted`, or a reason of a later gateway
    /// (`unknown` when the data names none).
    pub reason: String,
    /// The reset event's id: a safe resume point from now on.
    pub id: String,
}

impl From<ParsedEvent> for Reset {
    fn from(e: ParsedEvent) -> Self {
        #[derive(serde::Deserialize)]
        struct Data {
            reason: String,
        }
        let reason = serde_json::from_str::<Data>(&e.data)
            .map_or_else(|_| "unknown".to_owned(), |d| d.reason);
        Self { reason, id: e.id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(event: &str, data: &str) -> ParsedEvent {
        ParsedEvent {
            id: "7-1".into(),
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn bytes_decode_standard_base64_and_refuse_anything_else() {
        let e = Event::from(parsed("blob", "AP+A"));
        assert_eq!(e.bytes().unwrap(), [0x00, 0xff, 0x80]);
        for bad in ["AP-_", "AP+", "not base64!"] {
            let e = Event::from(parsed("blob", bad));
            assert!(matches!(e.bytes(), Err(Error::Base64(_))), "{bad}");
        }
    }

    #[test]
    fn json_parses_the_data() {
        let e = Event::from(parsed("note", r#"{"n":3}"#));
        let v: serde_json::Value = e.json().unwrap();
        assert_eq!(v["n"], 3);
        assert!(matches!(
            Event::from(parsed("note", "plain")).json::<u8>(),
            Err(Error::Json(_))
        ));
    }

    #[test]
    fn a_reset_names_its_reason_or_unknown() {
        let r = Reset::from(parsed("reset", r#"{"reason":"history_evicted"}"#));
        assert_eq!(
            (r.reason.as_str(), r.id.as_str()),
            ("history_evicted", "7-1")
        );
        assert_eq!(Reset::from(parsed("reset", "?")).reason, "unknown");
    }
}
