//! The body of an upstream HTTP/1.1 response as it arrives in pieces: close-delimited, of a
//! `Content-Length`, or in chunks (RFC 9112 section 7.1). The relay of proxied event streams
//! (`front::relay`) decodes it here and frames what it gets anew for the client.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};

/// Longest chunk-size line this decoder reads (hex digits: a chunk of 2^64 bytes at most).
const MAX_SIZE_DIGITS: u8 = 16;

/// How a response body ends, and how much of it has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// No body (a 204 or 304), or the whole body has come.
    Done,
    /// Until the upstream closes the connection.
    UntilClose,
    /// This many bytes more.
    Length(u64),
    /// Chunks, in this state.
    Chunked(Chunk),
}

/// Where in the chunked coding the decoder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// In the hex size of the next chunk.
    Size { size: u64, digits: u8 },
    /// In the chunk extensions after the size, until the line ends.
    Extension { size: u64 },
    /// After a size line's `\r`.
    SizeEnd { size: u64 },
    /// In a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data: its `\r\n`.
    DataEnd { cr: bool },
    /// In the trailer section after the last chunk; `line_start` when at a line's start (an
    /// empty line ends it).
    Trailer { line_start: bool },
}

/// The upstream broke the body's framing.
#[derive(Debug, PartialEq, Eq)]
pub struct FramingError;

impl Body {
    /// The body of a response with `status` and `headers` (RFC 9112 section 6.3), for a
    /// request that was not `HEAD`.
    pub fn of(status: StatusCode, headers: &HeaderMap) -> Result<Body, FramingError> {
        if status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok(Body::Done);
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
            return Ok(if last.eq_ignore_ascii_case("chunked") {
                Body::Chunked(Chunk::Size { size: 0, digits: 0 })
            } else {
                Body::UntilClose
            });
        }
        let mut lengths = headers.get_all(http::header::CONTENT_LENGTH).iter();
        match (lengths.next(), lengths.next()) {
            (None, _) => Ok(Body::UntilClose),
            (Some(length), None) => {
                let length: u64 = length
                    .to_str()
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .ok_or(FramingError)?;
                Ok(if length == 0 {
                    Body::Done
                } else {
                    Body::Length(length)
                })
            }
            (Some(_), Some(_)) => Err(FramingError),
        }
    }

    pub fn is_done(&self) -> bool {
        *self == Body::Done
    }

    /// Whether the upstream closing the connection ends the body as it should (not cut short).
    pub fn ends_at_close(&self) -> bool {
        matches!(self, Body::Done | Body::UntilClose)
    }

    /// Decodes `input`, the next bytes of the body: the data in it (bytes past the body's end
    /// are dropped: the connection is not reused).
    pub fn decode(&mut self, mut input: BytesMut) -> Result<Bytes, FramingError> {
        match self {
            Body::Done => Ok(Bytes::new()),
            Body::UntilClose => Ok(input.freeze()),
            Body::Length(left) => {
                let take = input
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= take as u64;
                if *left == 0 {
                    *self = Body::Done;
                }
                input.truncate(take);
                Ok(input.freeze())
            }
            Body::Chunked(_) => self.decode_chunked(input),
        }
    }

    /// The data of `input` in the chunked coding: the chunks' data moved to the front of the
    /// buffer in place.
    fn decode_chunked(&mut self, mut input: BytesMut) -> Result<Bytes, FramingError> {
        let mut read = 0;
        let mut written = 0;
        while read < input.len() {
            let Body::Chunked(chunk) = self else {
                break;
            };
            let byte = input[read];
            match chunk {
                Chunk::Data(left) => {
                    let take =
                        (input.len() - read).min(usize::try_from(*left).unwrap_or(usize::MAX));
                    input.copy_within(read..read + take, written);
                    read += take;
                    written += take;
                    *left -= take as u64;
                    if *left == 0 {
                        *chunk = Chunk::DataEnd { cr: false };
                    }
                    continue;
                }
                Chunk::Size { size, digits } => match byte {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if *digits == MAX_SIZE_DIGITS {
                            return Err(FramingError);
                        }
                        let digit = (byte as char).to_digit(16).ok_or(FramingError)?;
                        *size = (*size << 4) | u64::from(digit);
                        *digits += 1;
                    }
                    _ if *digits == 0 => return Err(FramingError),
                    b';' | b' ' | b'\t' => *chunk = Chunk::Extension { size: *size },
                    b'\r' => *chunk = Chunk::SizeEnd { size: *size },
                    b'\n' => *self = size_line_done(*size),
                    _ => return Err(FramingError),
                },
                Chunk::Extension { size } => match byte {
                    b'\r' => *chunk = Chunk::SizeEnd { size: *size },
                    b'\n' => *self = size_line_done(*size),
                    _ => {}
                },
                Chunk::SizeEnd { size } => match byte {
                    b'\n' => *self = size_line_done(*size),
                    _ => return Err(FramingError),
                },
                Chunk::DataEnd { cr } => match byte {
                    b'\r' if !*cr => *cr = true,
                    b'\n' => *chunk = Chunk::Size { size: 0, digits: 0 },
                    _ => return Err(FramingError),
                },
                Chunk::Trailer { line_start } => match byte {
                    b'\n' if *line_start => *self = Body::Done,
                    b'\n' => *line_start = true,
                    b'\r' => {}
                    _ => *line_start = false,
                },
            }
            read += 1;
        }
        input.truncate(written);
        Ok(input.freeze())
    }
}

/// After a chunk's size line: its data, or the trailer section after the last chunk.
fn size_line_done(size: u64) -> Body {
    Body::Chunked(if size == 0 {
        Chunk::Trailer { line_start: true }
    } else {
        Chunk::Data(size)
    })
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
        assert_eq!(Body::of(ok, &headers(&[])), Ok(Body::UntilClose));
        assert_eq!(
            Body::of(ok, &headers(&[("content-length", "12")])),
            Ok(Body::Length(12))
        );
        assert_eq!(
            Body::of(ok, &headers(&[("content-length", "0")])),
            Ok(Body::Done)
        );
        assert!(matches!(
            Body::of(
                ok,
                &headers(&[
                    ("transfer-encoding", "gzip, chunked"),
                    ("content-length", "3")
                ])
            ),
            Ok(Body::Chunked(_))
        ));
        assert_eq!(
            Body::of(ok, &headers(&[("transfer-encoding", "chunked, gzip")])),
            Ok(Body::UntilClose)
        );
        assert_eq!(
            Body::of(StatusCode::NO_CONTENT, &headers(&[])),
            Ok(Body::Done)
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
            let body = Body::Chunked(Chunk::Size { size: 0, digits: 0 });
            let (out, done) = decode_in_pieces(body, wire, piece);
            assert_eq!(out, expected, "pieces of {piece}");
            assert!(done, "pieces of {piece}");
        }
    }

    #[test]
    fn a_length_ends_the_body_and_bytes_past_it_are_dropped() {
        let (out, done) = decode_in_pieces(Body::Length(5), b"hello, world", 3);
        assert_eq!(out, b"hello");
        assert!(done);
        let (out, done) = decode_in_pieces(Body::UntilClose, b"all of it", 2);
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
            let mut body = Body::Chunked(Chunk::Size { size: 0, digits: 0 });
            assert_eq!(
                body.decode(BytesMut::from(wire)),
                Err(FramingError),
                "{wire:?}"
            );
        }
    }

    /// Decodes `wire` in pieces of `piece` bytes until an error: the data, whether the body
    /// ended, and whether it failed.
    fn decode_until_error(wire: &[u8], piece: usize) -> (Vec<u8>, bool, bool) {
        let mut body = Body::Chunked(Chunk::Size { size: 0, digits: 0 });
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
