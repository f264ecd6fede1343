//! `POST /broadcast`: validate, authorize, hand to the broker, answer 202 once it is in history.

use base64::Engine as _;
use bytes::BytesMut;
use pingora::protocols::http::ServerSession;
use serde::{Deserialize, Serialize};

use crate::broker::Draft;
use crate::config::{is_reserved_event_type, is_valid_channel, is_valid_event_type, Config};
use crate::reply::ApiError;

/// The request body, as the contract defines it. Every field is optional, and none may be
/// `null` in place of being left out: `"data": null` publishes `null`, and `null` where a string
/// or a list belongs is a value of the wrong type (`invalid_json`), never "absent" (which would
/// make `{"data": 1, "data_base64": null}` pass as a publish with one kind of data).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    #[serde(default, deserialize_with = "present")]
    channel: Option<String>,
    #[serde(default, deserialize_with = "present")]
    channels: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    event: Option<String>,
    #[serde(default, deserialize_with = "present")]
    data: Option<serde_json::Value>,
    /// Binary data as standard base64, sent as that same text.
    #[serde(default, deserialize_with = "present")]
    data_base64: Option<String>,
}

/// A field that is present holds a `T` (serde's own `Option` would take `null` for absent).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The 202 reply.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub id: String,
    pub channels: Vec<String>,
}

/// The largest body read for an event of at most `max_event_bytes` of data: room for the data
/// as base64 (4/3 of it) or JSON-escaped, and the rest of the body; the data itself is then held
/// to `max_event_bytes` (decoded, for `data_base64`).
pub fn body_limit(max_event_bytes: usize) -> usize {
    max_event_bytes.saturating_mul(2).saturating_add(4096)
}

/// Reads the body, at most `limit` bytes; 413 beyond, without reading the rest.
pub async fn read_body(session: &mut ServerSession, limit: usize) -> Result<BytesMut, ApiError> {
    let too_large = || {
        ApiError::new(
            413,
            "payload_too_large",
            format!("the body is over {limit} bytes (twice limits.max_event_bytes and 4 KiB)"),
        )
    };
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => {
                return Err(ApiError::bad_request(
                    "bad_body",
                    "the request body could not be read",
                ))
            }
        }
    }
}

/// Checks the content type: JSON only (415 otherwise).
pub fn require_json(session: &ServerSession) -> Result<(), ApiError> {
    let ct = session
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or(b"");
    let essence = ct.split(|&b| b == b';').next().unwrap_or(b"").trim_ascii();
    if essence.eq_ignore_ascii_case(b"application/json") {
        Ok(())
    } else {
        Err(ApiError::new(
            415,
            "unsupported_media_type",
            "send the event as Content-Type: application/json",
        ))
    }
}

/// Turns a body into a draft, checking everything the contract requires.
pub fn parse(body: &[u8], cfg: &Config) -> Result<Draft, ApiError> {
    let body: Body = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid body: {e}")))?;
    let names = match (body.channel, body.channels) {
        (Some(one), None) => vec![one],
        (None, Some(many)) if !many.is_empty() => many,
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "missing_channel",
                "channels is empty",
            ))
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "missing_channel",
                "give \"channel\" or \"channels\"",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "ambiguous_channel",
                "give \"channel\" or \"channels\", not both",
            ))
        }
    };
    let max = cfg.limits.max_channels_per_connection;
    if names.len() > max {
        return Err(ApiError::bad_request(
            "too_many_channels",
            format!("at most {max} channels per event"),
        ));
    }
    let mut channels: Vec<Box<str>> = Vec::with_capacity(names.len());
    for name in names {
        if !is_valid_channel(&name) {
            return Err(ApiError::bad_request(
                "invalid_channel",
                "channel names match [A-Za-z0-9._:/-]{1,128}",
            ));
        }
        if !channels.iter().any(|c| **c == *name) {
            channels.push(name.into());
        }
    }
    let event_type = body.event.unwrap_or_else(|| "message".to_string());
    if !is_valid_event_type(&event_type) {
        return Err(ApiError::bad_request(
            "invalid_event",
            "event names match [A-Za-z0-9._:-]{1,64}",
        ));
    }
    if is_reserved_event_type(&event_type) {
        return Err(ApiError::bad_request(
            "reserved_event",
            format!("{event_type} is an event type of the gateway's own (reset, token_expired, access_revoked, heartbeat)"),
        ));
    }
    let (data, size) = match (body.data, body.data_base64) {
        (None, None) => {
            return Err(ApiError::bad_request(
                "missing_data",
                "give \"data\" or \"data_base64\"",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "ambiguous_data",
                "give \"data\" or \"data_base64\", not both",
            ))
        }
        (Some(serde_json::Value::String(s)), None) => {
            let size = s.len();
            (s, size)
        }
        (Some(other), None) => {
            let text = other.to_string();
            let size = text.len();
            (text, size)
        }
        (None, Some(encoded)) => {
            // Sent as the same text; what counts against the limit is what it stands for.
            let size = base64::engine::general_purpose::STANDARD
                .decode(&encoded)
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_base64",
                        "data_base64 is not standard base64 (A-Z a-z 0-9 + /, padded with =)",
                    )
                })?
                .len();
            (encoded, size)
        }
    };
    if size > cfg.limits.max_event_bytes {
        return Err(ApiError::new(
            413,
            "payload_too_large",
            "the event data is over limits.max_event_bytes",
        ));
    }
    Ok(Draft {
        channels: channels.into_boxed_slice(),
        event_type: event_type.into(),
        data,
    })
}
