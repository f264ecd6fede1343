//! Compressed event streams (`sse.compression: true`): `GET /events` answers with the
//! `Content-Encoding` the client's `Accept-Encoding` names (gzip, br, zstd), and every event is
//! flushed through the compressor, so the client decodes each one as it arrives. Without the
//! header, or with compression off, nothing changes.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;

const WAIT: Duration = Duration::from_secs(15);

/// A streaming decoder fed the body's bytes as they arrive.
enum Decoder {
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Brotli(Box<brotli::DecompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl Decoder {
    fn new(encoding: &str) -> Decoder {
        match encoding {
            "gzip" => Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new())),
            "br" => Decoder::Brotli(Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096))),
            "zstd" => Decoder::Zstd(zstd::stream::write::Decoder::new(Vec::new()).expect("zstd")),
            other => panic!("no decoder for {other}"),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let writer: &mut dyn Write = match self {
            Decoder::Gzip(d) => d,
            Decoder::Brotli(d) => d.as_mut(),
            Decoder::Zstd(d) => d,
        };
        writer.write_all(bytes).expect("valid compressed stream");
        writer.flush().expect("flush");
    }

    /// Everything decoded so far.
    fn text(&self) -> String {
        let out = match self {
            Decoder::Gzip(d) => d.get_ref(),
            Decoder::Brotli(d) => d.get_ref(),
            Decoder::Zstd(d) => d.get_ref(),
        };
        String::from_utf8_lossy(out).into_owned()
    }
}

fn varies_by_encoding(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get_all("vary")
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"accept-encoding"))
}

#[tokio::test]
async fn each_event_is_decodable_as_it_arrives_in_gzip_br_and_zstd() {
    /// How soon after its publish each event must decode.
    const PROMPT: Duration = Duration::from_millis(500);
    let gw = Gateway::start("sse:\n  compression: true\n");
    for encoding in ["gzip", "br", "zstd"] {
        let channel = format!("packed-{encoding}");
        let url = gw.url(&format!("/events?channel={channel}"));
        // The same stream uncompressed, to compare the decoded bytes with.
        let plain = http().get(&url).send().await.expect("plain stream");
        assert!(plain.headers().get("content-encoding").is_none());
        let mut plain = plain.bytes_stream();
        let mut plain_text = Vec::new();
        let resp = http()
            .get(&url)
            .header("accept-encoding", encoding)
            .send()
            .await
            .expect("stream");
        assert_eq!(resp.status(), 200, "{encoding}");
        assert_eq!(resp.headers()["content-encoding"], encoding);
        assert!(varies_by_encoding(resp.headers()), "{encoding}");
        assert_eq!(
            resp.headers()["content-type"],
            "text/event-stream; charset=utf-8"
        );
        let mut body = resp.bytes_stream();
        let mut decoder = Decoder::new(encoding);
        // The opening comment is flushed too: EventSource sees `open` at once.
        while !decoder.text().contains(": connected") {
            let chunk = tokio::time::timeout(WAIT, body.next())
                .await
                .unwrap_or_else(|_| panic!("{encoding}: the opening never decoded"))
                .expect("open")
                .expect("chunk");
            decoder.push(&chunk);
        }
        // Each event decodes promptly, before the next is published.
        let mut frame = String::new();
        for n in 1..=3 {
            let id = gw.publish_ok(&channel, "note", &format!("event {n}")).await;
            let published = Instant::now();
            frame = format!("id: {id}\nevent: note\ndata: event {n}\n\n");
            while !decoder.text().contains(&frame) {
                let chunk = tokio::time::timeout_at((published + PROMPT).into(), body.next())
                    .await
                    .unwrap_or_else(|_| panic!("{encoding}: event {n} not decodable in {PROMPT:?}"))
                    .expect("open")
                    .expect("chunk");
                decoder.push(&chunk);
            }
        }
        while !String::from_utf8_lossy(&plain_text).contains(&frame) {
            let chunk = tokio::time::timeout(WAIT, plain.next())
                .await
                .expect("plain stream")
                .expect("open")
                .expect("chunk");
            plain_text.extend_from_slice(&chunk);
        }
        assert_eq!(
            decoder.text(),
            String::from_utf8_lossy(&plain_text),
            "{encoding}"
        );
    }
}

#[tokio::test]
async fn without_accept_encoding_or_with_compression_off_the_stream_is_plain() {
    let on = Gateway::start("sse:\n  compression: true\n");
    let off = Gateway::start("");
    for (gw, accept) in [(&on, None), (&off, Some("gzip, br, zstd"))] {
        let headers: Vec<(&str, &str)> =
            accept.map(|a| ("accept-encoding", a)).into_iter().collect();
        let mut client = SseClient::connect_with(&gw.url("/events?channel=plain"), &headers).await;
        assert_eq!(client.status, 200);
        assert!(
            client.headers.get("content-encoding").is_none(),
            "{accept:?}"
        );
        gw.publish_ok("plain", "note", "as is").await;
        assert_eq!(client.next_event(WAIT).await.expect("event").data, "as is");
    }
}

#[tokio::test]
async fn identity_when_nothing_accepted_is_supported() {
    let gw = Gateway::start("sse:\n  compression: true\n");
    for accept in ["deflate, identity", "gzip;q=0, br;q=0, zstd;q=0"] {
        let mut client = SseClient::connect_with(
            &gw.url("/events?channel=as-is"),
            &[("accept-encoding", accept)],
        )
        .await;
        assert_eq!(client.status, 200);
        assert!(client.headers.get("content-encoding").is_none(), "{accept}");
        assert!(varies_by_encoding(&client.headers), "{accept}");
        gw.publish_ok("as-is", "note", "plain").await;
        assert_eq!(client.next_event(WAIT).await.expect("event").data, "plain");
    }
}
