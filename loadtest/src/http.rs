//! Just enough HTTP/1.1 for a client: the response head here, and the body framings a streaming
//! server uses (chunked, as our gateway and nginx send SSE; Content-Length; close-delimited) in
//! [`sse_wire::body`], which the gateway's relay of proxied streams decodes with too.

use tokio::io::{AsyncRead, AsyncReadExt};

pub use sse_wire::body::{BodyDecoder, BodyKind};

/// Longest response head accepted. Real heads are a few hundred bytes.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// The length of the head in the buffer, including the blank line.
    pub len: usize,
    pub body: BodyKind,
    /// Whether the connection may carry another request after this response.
    pub keep_alive: bool,
}

/// Parses the head at the start of `buf`: `Ok(None)` if it is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<ResponseHead>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(format!("response head longer than {MAX_HEAD_BYTES} bytes"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed response head: {e}")),
    };
    let status = response.code.unwrap_or(0);
    let mut chunked = false;
    let mut length = None;
    let mut keep_alive = response.version == Some(1);
    for h in response.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked must be the last coding for the framing to be chunked.
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| format!("bad Content-Length {value:?}"))?;
            if length.is_some_and(|m| m != n) {
                return Err("conflicting Content-Length headers".to_owned());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',') {
                if token.trim().eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.trim().eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    // 1xx, 204 and 304 have no body whatever the headers say.
    let body = if status < 200 || status == 204 || status == 304 {
        BodyKind::Length(0)
    } else if chunked {
        BodyKind::Chunked
    } else if let Some(n) = length {
        BodyKind::Length(n)
    } else {
        BodyKind::Close
    };
    let keep_alive = keep_alive && body != BodyKind::Close;
    Ok(Some(ResponseHead {
        status,
        len,
        body,
        keep_alive,
    }))
}

/// Reads from `conn` into `buf` until it holds a whole response head, and parses it: `buf` then
/// holds the head and whatever body bytes came with it (from [`ResponseHead::len`] on).
pub async fn read_head<R: AsyncRead + Unpin>(
    conn: &mut R,
    buf: &mut Vec<u8>,
) -> Result<ResponseHead, String> {
    loop {
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(format!("response head over {MAX_HEAD_BYTES} bytes"));
        }
        buf.reserve(1024);
        let n = conn
            .read_buf(buf)
            .await
            .map_err(|e| format!("read response: {e}"))?;
        if n == 0 {
            return Err("the server closed before its response head".to_owned());
        }
        if let Some(head) = parse_head(buf)? {
            return Ok(head);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let head = parse_head(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.body, BodyKind::Chunked);
        assert!(head.keep_alive);
        assert_eq!(head.len, 80);

        let head = parse_head(b"HTTP/1.1 202 Accepted\r\ncontent-length: 12\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (head.status, head.body, head.keep_alive),
            (202, BodyKind::Length(12), true)
        );

        let head = parse_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((head.body, head.keep_alive), (BodyKind::Close, false));

        let head = parse_head(b"HTTP/1.0 204 No Content\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((head.body, head.keep_alive), (BodyKind::Length(0), false));

        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nX: y\r\n").unwrap(), None);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_head(&vec![b'a'; MAX_HEAD_BYTES]).is_err());
    }
}
