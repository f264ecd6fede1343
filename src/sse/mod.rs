//! SSE wire encoding (placeholder; replaced by the full module).
pub mod parse;
use bytes::{BufMut, Bytes, BytesMut};

pub fn encode_event(id: &str, event: &str, data: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(id.len() + event.len() + data.len() + 32);
    b.put_slice(b"id: ");
    b.put_slice(id.as_bytes());
    b.put_slice(b"\nevent: ");
    b.put_slice(event.as_bytes());
    b.put_slice(b"\n");
    let normalized = data.replace("\r\n", "\n").replace('\r', "\n");
    for line in normalized.split('\n') {
        b.put_slice(b"data: ");
        b.put_slice(line.as_bytes());
        b.put_slice(b"\n");
    }
    b.put_slice(b"\n");
    b.freeze()
}

pub fn encode_comment(text: &str) -> Bytes {
    Bytes::from(format!(": {text}\n\n"))
}

pub fn encode_retry(ms: u64) -> Bytes {
    Bytes::from(format!("retry: {ms}\n\n"))
}

pub fn encode_padding(bytes: usize) -> Bytes {
    if bytes == 0 {
        return Bytes::new();
    }
    Bytes::from(format!(":{}\n\n", " ".repeat(bytes)))
}
