//! Binary data in events: `POST /broadcast` takes `"data_base64"` (standard base64) instead of
//! `"data"` and delivers the same base64 text as the event's data, with `event:` as published;
//! invalid base64 and both fields at once are 400 and publish nothing. Not built yet: ignored
//! with the contract's reason.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// Bytes 0x00 0x01 0x02 0xff 0xfe, padding included: no text encoding would carry them.
const BYTES_BASE64: &str = "AAEC//4=";

#[tokio::test]

async fn data_base64_is_delivered_as_the_same_text_with_its_event_type() {
    let gw = Gateway::start("");
    let mut client = SseClient::connect(&gw.url("/events?channel=bin")).await;
    let (status, body) = gw
        .publish(json!({"channel": "bin", "event": "blob", "data_base64": BYTES_BASE64}))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id");
    let event = client.next_event(WAIT).await.expect("event");
    assert_eq!(
        (event.id.as_str(), event.event.as_str(), event.data.as_str()),
        (id, "blob", BYTES_BASE64)
    );
    let frame = format!("id: {id}\nevent: blob\ndata: {BYTES_BASE64}\n\n");
    assert!(
        String::from_utf8_lossy(&client.raw).contains(&frame),
        "on the wire as published"
    );
}

#[tokio::test]

async fn invalid_base64_and_both_data_fields_are_400_and_publish_nothing() {
    let gw = Gateway::start("");
    let mut client = SseClient::connect(&gw.url("/events?channel=bin")).await;
    let accepted = gw
        .publish(json!({"channel": "bin", "data_base64": BYTES_BASE64}))
        .await;
    assert_eq!(accepted.0, 202, "data_base64 accepted: {}", accepted.1);
    for (what, body) in [
        (
            "not base64",
            json!({"channel": "bin", "data_base64": "not base64!"}),
        ),
        (
            "URL-safe alphabet",
            json!({"channel": "bin", "data_base64": "AAEC__4="}),
        ),
        ("not a string", json!({"channel": "bin", "data_base64": 42})),
        // Canonical only, as api/openapi.yaml's pattern says: the unused bits of the last
        // character are zero ("QQ==" is the one spelling of byte 0x41), and padding is there.
        (
            "non-canonical last character",
            json!({"channel": "bin", "data_base64": "QR=="}),
        ),
        ("no padding", json!({"channel": "bin", "data_base64": "QQ"})),
        (
            "both fields",
            json!({"channel": "bin", "data": "text", "data_base64": BYTES_BASE64}),
        ),
    ] {
        let (status, reply) = gw.publish(body).await;
        assert_eq!(status, 400, "{what}: {reply}");
        assert!(reply["error"]["code"].is_string(), "{what}: {reply}");
    }
    gw.publish_ok("bin", "message", "after").await;
    let data = client.data(2, WAIT).await;
    assert_eq!(
        data,
        [BYTES_BASE64, "after"],
        "nothing refused was published"
    );
}

#[tokio::test]
async fn data_base64_counts_against_max_event_bytes_by_its_decoded_size() {
    use base64::Engine as _;
    let gw = Gateway::start("limits:\n  max_event_bytes: 3000\n");
    let mut client = SseClient::connect(&gw.url("/events?channel=bin")).await;
    let bytes: Vec<u8> = (0..3000u32).map(|n| (n % 256) as u8).collect();
    let fits = base64::engine::general_purpose::STANDARD.encode(&bytes);
    assert!(fits.len() > 3000, "the text is longer than the limit");
    let (status, body) = gw
        .publish(json!({"channel": "bin", "data_base64": fits}))
        .await;
    assert_eq!(status, 202, "3000 bytes decoded fit: {body}");
    let over = base64::engine::general_purpose::STANDARD.encode([&bytes[..], &[0]].concat());
    let (status, body) = gw
        .publish(json!({"channel": "bin", "data_base64": over}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let event = client.next_event(WAIT).await.expect("event");
    assert_eq!(
        event.data, fits,
        "every byte value round-trips as the same text"
    );
}
