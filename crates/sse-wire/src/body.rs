//! An HTTP/1.1 response body's framing (RFC 9112 section 7.1), decoded as it arrives in pieces:
//! chunked (as the gateway and nginx send an event stream), of a `Content-Length`, or until the
//! connection closes. What an event stream rides on: the load generator's clients read it, and
//! the gateway's relay of proxied event streams decodes its upstream with it.
//!
//! The decoder is a small state machine rather than a buffer: it hands back slices of the
//! caller's read buffer, so an idle stream holds a few bytes of framing state and nothing else,
//! and no input, however it is split, makes it hold more.

use std::fmt;

/// Longest chunk-extension or trailer line accepted; nobody sends these, so keep it small.
const MAX_FRAMING_LINE: usize = 4096;

/// How the body's end is marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Chunked,
    Length(u64),
    /// Until the server closes the connection.
    Close,
}

/// A framing error: the server sent something that is not HTTP/1.1 chunked encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError(pub &'static str);

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad chunked body: {}", self.0)
    }
}

impl std::error::Error for BodyError {}

/// Where in the body the decoder is. Chunk framing is parsed byte by byte (it is short);
/// chunk data is passed through as slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line's hex digits.
    Size {
        value: u64,
        digits: u8,
    },
    /// Skipping a chunk extension up to its CR.
    Extension {
        value: u64,
        len: u16,
    },
    /// After the size line's CR.
    SizeLf {
        value: u64,
    },
    /// Inside chunk data, this many bytes left.
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines, ended by an empty one.
    Trailer {
        len: u16,
    },
    TrailerLf {
        len: u16,
    },
    /// Close-delimited: everything is data.
    UntilClose,
    /// Content-Length: this many bytes left.
    Length(u64),
    Done,
}

/// Decodes a response body incrementally, from chunks of input split anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyDecoder {
    state: State,
}

impl BodyDecoder {
    pub fn new(kind: BodyKind) -> Self {
        let state = match kind {
            BodyKind::Chunked => State::Size {
                value: 0,
                digits: 0,
            },
            BodyKind::Length(0) => State::Done,
            BodyKind::Length(n) => State::Length(n),
            BodyKind::Close => State::UntilClose,
        };
        Self { state }
    }

    /// Whether the body has ended (last chunk and trailers read, or length reached).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the end of the connection is the proper end of this body.
    pub fn ends_at_close(&self) -> bool {
        matches!(self.state, State::UntilClose | State::Done)
    }

    /// Returns the next piece of body data in `input`, advancing `input` past it and past any
    /// framing before it. `Ok(None)` when `input` is used up, or the body is done (any bytes
    /// after the end are left in `input`).
    pub fn next_data<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<&'a [u8]>, BodyError> {
        loop {
            let Some(&byte) = input.first() else {
                return Ok(None);
            };
            match self.state {
                State::UntilClose => {
                    let data = *input;
                    *input = &[];
                    return Ok(Some(data));
                }
                State::Length(left) | State::Data(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    let (data, rest) = input.split_at(take);
                    *input = rest;
                    let left = left - take as u64;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::DataCr,
                        _ => State::Data(left),
                    };
                    return Ok(Some(data));
                }
                State::Done => return Ok(None),
                _ => {}
            }
            *input = &input[1..];
            self.state = self.step(byte)?;
        }
    }

    /// One byte of chunk framing.
    fn step(&self, byte: u8) -> Result<State, BodyError> {
        Ok(match self.state {
            State::Size { value, digits } => match (byte as char).to_digit(16) {
                Some(d) if digits < 16 => State::Size {
                    value: value << 4 | u64::from(d),
                    digits: digits + 1,
                },
                Some(_) => return Err(BodyError("chunk size over 16 hex digits")),
                None if digits == 0 => return Err(BodyError("chunk size expected")),
                None => match byte {
                    b'\r' => State::SizeLf { value },
                    b';' | b' ' | b'\t' => State::Extension { value, len: 0 },
                    _ => return Err(BodyError("bad byte in a chunk size")),
                },
            },
            State::Extension { value, len } => match byte {
                b'\r' => State::SizeLf { value },
                _ if usize::from(len) >= MAX_FRAMING_LINE => {
                    return Err(BodyError("chunk extension too long"))
                }
                _ => State::Extension {
                    value,
                    len: len + 1,
                },
            },
            State::SizeLf { value } => match byte {
                b'\n' if value == 0 => State::Trailer { len: 0 },
                b'\n' => State::Data(value),
                _ => return Err(BodyError("LF expected after a chunk size")),
            },
            State::DataCr => match byte {
                b'\r' => State::DataLf,
                _ => return Err(BodyError("CRLF expected after chunk data")),
            },
            State::DataLf => match byte {
                b'\n' => State::Size {
                    value: 0,
                    digits: 0,
                },
                _ => return Err(BodyError("CRLF expected after chunk data")),
            },
            State::Trailer { len } => match byte {
                b'\r' => State::TrailerLf { len },
                _ if usize::from(len) >= MAX_FRAMING_LINE => {
                    return Err(BodyError("trailer line too long"))
                }
                _ => State::Trailer { len: len + 1 },
            },
            State::TrailerLf { len } => match byte {
                b'\n' if len == 0 => State::Done,
                b'\n' => State::Trailer { len: 0 },
                _ => return Err(BodyError("LF expected in the trailer")),
            },
            State::UntilClose | State::Length(_) | State::Data(_) | State::Done => self.state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in the given pieces; returns the body and whether it was done.
    fn decode(kind: BodyKind, pieces: &[&[u8]]) -> Result<(Vec<u8>, bool), BodyError> {
        let mut decoder = BodyDecoder::new(kind);
        let mut body = Vec::new();
        for piece in pieces {
            let mut input = *piece;
            while let Some(data) = decoder.next_data(&mut input)? {
                body.extend_from_slice(data);
            }
        }
        Ok((body, decoder.is_done()))
    }

    const CHUNKED: &[u8] =
        b"7\r\nretry: \r\n19;ext=1\r\n3000\n: open\n\ndata: hello\n\r\n0\r\nX-T: 1\r\n\r\n";
    const BODY: &[u8] = b"retry: 3000\n: open\n\ndata: hello\n";

    #[test]
    fn chunked_split_anywhere() {
        for i in 0..=CHUNKED.len() {
            for j in i..=CHUNKED.len() {
                let pieces = [&CHUNKED[..i], &CHUNKED[i..j], &CHUNKED[j..]];
                assert_eq!(
                    decode(BodyKind::Chunked, &pieces).unwrap(),
                    (BODY.to_vec(), true),
                    "split at {i}, {j}"
                );
            }
        }
    }

    #[test]
    fn chunked_byte_by_byte_and_unfinished() {
        let pieces: Vec<&[u8]> = CHUNKED.chunks(1).collect();
        assert_eq!(
            decode(BodyKind::Chunked, &pieces).unwrap(),
            (BODY.to_vec(), true)
        );
        let cut = &CHUNKED[..CHUNKED.len() - 10];
        assert!(!decode(BodyKind::Chunked, &[cut]).unwrap().1);
    }

    #[test]
    fn chunked_uppercase_hex_and_bytes_after_the_end() {
        let mut decoder = BodyDecoder::new(BodyKind::Chunked);
        let mut input: &[u8] = b"A\r\n0123456789\r\n0\r\n\r\nEXTRA";
        assert_eq!(
            decoder.next_data(&mut input).unwrap(),
            Some(&b"0123456789"[..])
        );
        assert_eq!(decoder.next_data(&mut input).unwrap(), None);
        assert!(decoder.is_done());
        assert_eq!(input, b"EXTRA");
    }

    #[test]
    fn chunked_errors() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"3\nabc\r\n",
            b"3\r\nabcX",
            b"3\r\nabc\rX",
            b"11111111111111111\r\n",
            b"0\r\n\rX",
        ] {
            assert!(decode(BodyKind::Chunked, &[bad]).is_err(), "{bad:?}");
        }
        let long_ext = [b"1;".to_vec(), vec![b'x'; 5000]].concat();
        assert!(decode(BodyKind::Chunked, &[&long_ext]).is_err());
    }

    #[test]
    fn length_and_close_bodies() {
        assert_eq!(
            decode(BodyKind::Length(5), &[b"he", b"llo world"]).unwrap(),
            (b"hello".to_vec(), true)
        );
        assert_eq!(
            decode(BodyKind::Length(0), &[b"x"]).unwrap(),
            (vec![], true)
        );
        assert_eq!(
            decode(BodyKind::Close, &[b"a", b"", b"bc"]).unwrap(),
            (b"abc".to_vec(), false)
        );
        assert!(BodyDecoder::new(BodyKind::Close).ends_at_close());
        assert!(!BodyDecoder::new(BodyKind::Chunked).ends_at_close());
    }
}
