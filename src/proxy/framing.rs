//! The body of an upstream HTTP/1.1 response as the relay of proxied event streams
//! (`front::relay`) reads it: which framing the response head gives it (RFC 9112 section 6.3),
//! and its data, decoded by [`sse_wire::body`] (the load generator's clients decode with the same)
//! and gathered in place into one buffer per read, which the relay frames anew for the client.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use sse_wire::body::{BodyDecoder, BodyKind};

/// A response body and how much of it has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body(BodyDecoder);

/// The upstream broke the body's framing.
#[derive(Debug, PartialEq, Eq)]
pub struct FramingError;

impl Body {
    pub fn new(kind: BodyKind) -> Body {
        Body(BodyDecoder::new(kind))
    }

    /// The body of a response with `status` and `headers` (RFC 9112 section 6.3), for a
    /// request that was not `HEAD`.
    pub fn of(status: StatusCode, headers: &HeaderMap) -> Result<Body, FramingError> {
        if status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok(Body::new(BodyKind::Length(0)));
        }
        if let Some(coding) = headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .next_back()
        {
            let last = coding
                .to_str()
                .map_err(|_| FramingError)?
                .rsplit(',')
                .next()
                .unwrap_or("")
                .trim();
            return Ok(Body::new(if last.eq_ignore_ascii_case("chunked") {
                BodyKind::Chunked
            } else {
                BodyKind::Close
            }));
        }
        let mut lengths = headers.get_all(http::header::CONTENT_LENGTH).iter();
        match (lengths.next(), lengths.next()) {
            (None, _) => Ok(Body::new(BodyKind::Close)),
            (Some(length), None) => {
                let length: u64 = length
                    .to_str()
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .ok_or(FramingError)?;
                Ok(Body::new(BodyKind::Length(length)))
            }
            (Some(_), Some(_)) => Err(FramingError),
        }
    }

    pub fn is_done(&self) -> bool {
        self.0.is_done()
    }

    /// The upstream closed the connection: the end of a body that ends so (which is then done),
    /// an error for one that was cut short.
    pub fn closed(&mut self) -> Result<(), FramingError> {
        if !self.0.ends_at_close() {
            return Err(FramingError);
        }
        *self = Body::new(BodyKind::Length(0));
        Ok(())
    }

    /// Decodes `input`, the next bytes of the body: its data, moved to the front of the buffer
    /// in place (bytes past the body's end are dropped: the connection is not reused).
    pub fn decode(&mut self, mut input: BytesMut) -> Result<Bytes, FramingError> {
        let mut read = 0;
        let mut written = 0;
        loop {
            // Where the next data lies in `input` (the decoder hands back a slice of it).
            let data = {
                let mut rest = &input[read..];
                let data = self.0.next_data(&mut rest).map_err(|_| FramingError)?;
                let at = |slice: &[u8]| slice.as_ptr() as usize - input.as_ptr() as usize;
                read = input.len() - rest.len();
                data.map(|data| (at(data), data.len()))
            };
            let Some((start, len)) = data else {
                break;
            };
            input.copy_within(start..start + len, written);
            written += len;
        }
        input.truncate(written);
        Ok(input.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    /// Decodes `wire` split into pieces of `piece` bytes: the data, and whether the body ended.
    fn decode_in_pieces(mut body: Body, wire: &[u8], piece: usize) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        for part in wire.chunks(piece) {
            out.extend_from_slice(&body.decode(BytesMut::from(part)).unwrap());
        }
        (out, body.is_done())
    }

    #[test]
    fn the_framing_follows_the_status_and_headers() {
        let ok = StatusCode::OK;
        assert_eq!(Body::of(ok, &headers(&[])), Ok(Body::new(BodyKind::Close)));
        assert_eq!(
            Body::of(ok, &headers(&[("content-length", "12")])),
            Ok(Body::new(BodyKind::Length(12)))
        );
        assert_eq!(
            Body::of(ok, &headers(&[("content-length", "0")])),
            Ok(Body::new(BodyKind::Length(0)))
        );
        assert_eq!(
            Body::of(
                ok,
                &headers(&[
                    ("transfer-encoding", "gzip, chunked"),
                    ("content-length", "3")
                ])
            ),
            Ok(Body::new(BodyKind::Chunked))
        );
        assert_eq!(
            Body::of(ok, &headers(&[("transfer-encoding", "chunked, gzip")])),
            Ok(Body::new(BodyKind::Close))
        );
        assert_eq!(
            Body::of(StatusCode::NO_CONTENT, &headers(&[])),
            Ok(Body::new(BodyKind::Length(0)))
        );
        assert_eq!(
            Body::of(
                ok,
                &headers(&[("content-length", "1"), ("content-length", "2")])
            ),
            Err(FramingError)
        );
        assert_eq!(
            Body::of(ok, &headers(&[("content-length", "x")])),
            Err(FramingError)
        );
    }

    #[test]
    fn chunks_decode_whatever_the_pieces_they_arrive_in() {
        let wire =
            b"7\r\ndata: a\r\n1A;ext=1\r\nevent: b\ndata: 0123456789\n\r\n0\r\nX-Sum: 1\r\n\r\n";
        let expected = b"data: aevent: b\ndata: 0123456789\n";
        for piece in 1..=wire.len() {
            let body = Body::new(BodyKind::Chunked);
            let (out, done) = decode_in_pieces(body, wire, piece);
            assert_eq!(out, expected, "pieces of {piece}");
            assert!(done, "pieces of {piece}");
        }
    }

    #[test]
    fn a_length_ends_the_body_and_bytes_past_it_are_dropped() {
        let (out, done) = decode_in_pieces(Body::new(BodyKind::Length(5)), b"hello, world", 3);
        assert_eq!(out, b"hello");
        assert!(done);
        let (out, done) = decode_in_pieces(Body::new(BodyKind::Close), b"all of it", 2);
        assert_eq!(out, b"all of it");
        assert!(!done);
    }

    #[test]
    fn broken_chunk_framing_is_an_error() {
        for wire in [
            &b"x\r\n"[..],
            b"3\r\nabcX",
            b"\r\n",
            b"11111111111111111\r\n",
        ] {
            let mut body = Body::new(BodyKind::Chunked);
            assert_eq!(
                body.decode(BytesMut::from(wire)),
                Err(FramingError),
                "{wire:?}"
            );
        }
    }

    #[test]
    fn a_close_ends_only_a_body_that_ends_so() {
        let mut body = Body::new(BodyKind::Close);
        assert_eq!(body.closed(), Ok(()));
        assert!(body.is_done());
        for kind in [BodyKind::Chunked, BodyKind::Length(3)] {
            let mut body = Body::new(kind);
            assert_eq!(body.closed(), Err(FramingError), "{kind:?}");
            assert!(!body.is_done(), "{kind:?}");
        }
    }

    /// Decodes `wire` in pieces of `piece` bytes until an error: the data, whether the body
    /// ended, and whether it failed.
    fn decode_until_error(wire: &[u8], piece: usize) -> (Vec<u8>, bool, bool) {
        let mut body = Body::new(BodyKind::Chunked);
        let mut out = Vec::new();
        for part in wire.chunks(piece) {
            match body.decode(BytesMut::from(part)) {
                Ok(data) => out.extend_from_slice(&data),
                Err(FramingError) => return (out, body.is_done(), true),
            }
        }
        (out, body.is_done(), false)
    }

    /// What an upstream sends is not trusted: any bytes, in any pieces, decode without a panic
    /// and to the same data, end and error as when they arrive at once.
    #[test]
    fn any_bytes_in_any_pieces_decode_as_they_do_whole() {
        use proptest::prelude::*;
        // Bytes the chunked coding is made of, so that valid runs are likely, and any bytes.
        let framing = prop::sample::select(b"0123456789aAfF;\r\n x".to_vec());
        let bytes = prop_oneof![framing, any::<u8>()];
        proptest!(ProptestConfig::with_cases(256), |(wire in prop::collection::vec(bytes, 0..256), piece in 1usize..8)| {
            let (whole, whole_done, whole_failed) = decode_until_error(&wire, wire.len().max(1));
            let (pieces, done, failed) = decode_until_error(&wire, piece);
            prop_assert_eq!(failed, whole_failed);
            prop_assert_eq!(done, whole_done);
            if !failed {
                prop_assert_eq!(pieces, whole);
            }
        });
    }
}
