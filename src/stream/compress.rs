//! Compressed streams (`sse.compression: true`): the encoding a client's `Accept-Encoding`
//! asks for, and [`Compressed`], the [`Downstream`] that compresses each chunk before the
//! transport writes it.
//!
//! Every chunk (the opening, a batch of events, a heartbeat) ends in a flush, so the client can
//! decode it as soon as it arrives. What an idle stream keeps matters more than the ratio: a
//! compressor's state (gzip's window and hash tables, zstd's context, brotli's hash table and
//! ring buffer) costs tens to hundreds of KiB, against 3.6 KiB for a whole plain stream. So no
//! stream keeps a compressor: each chunk is compressed on its own, and the stream keeps only what
//! its framing needs (gzip: the CRC and length for the trailer; zstd: nothing, each chunk is a
//! frame of its own, and a zstd stream may hold several frames; br: whether the stream header
//! is written). gzip and br still refer back: each chunk may refer to the stream's previous
//! chunk, which the client's decoder has just produced and so holds in its window; the stream
//! keeps that chunk as a handle on its bytes, which an event's chunk shares with every other
//! stream it was sent to. gzip's chunks are deflate blocks from the worker thread's compressor,
//! reset and primed with the previous chunk as a preset dictionary. Brotli's encoder cannot be
//! reset or primed that way, and a fresh one per chunk allocates and zeroes a 256 KiB hash
//! table, so br chunks are meta-blocks written by `brotli_blocks` (its own matcher, the brotli
//! crate's bit writer). zstd frames cannot refer to an earlier frame.

mod brotli_blocks;

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress};

use super::pump::{Downstream, WriteError};

/// gzip's level: 1, the fastest, does nearly as well as higher ones on chunks of a few events.
const GZIP_LEVEL: u32 = 1;
/// zstd's level.
const ZSTD_LEVEL: i32 = 1;

/// A content coding the gateway can write a stream in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    Zstd,
    Brotli,
}

impl Encoding {
    /// In the order preferred when a client accepts several with the same weight: the cheapest
    /// per idle stream first.
    const ALL: [Encoding; 3] = [Encoding::Gzip, Encoding::Zstd, Encoding::Brotli];

    /// Its `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Zstd => "zstd",
            Encoding::Brotli => "br",
        }
    }

    /// The supported encoding an `Accept-Encoding` value weighs highest (`q` values, `*` for any
    /// not named), `None` for identity: when nothing supported is acceptable, or all weigh 0.
    pub fn negotiate(accept: &str) -> Option<Encoding> {
        let mut best: Option<(Encoding, u16)> = None;
        for encoding in Encoding::ALL {
            let q = weight(accept, encoding.token());
            if q > 0 && best.is_none_or(|(_, top)| q > top) {
                best = Some((encoding, q));
            }
        }
        best.map(|(encoding, _)| encoding)
    }
}

/// The weight (in thousandths) `accept` gives `token`: its own entry's, else `*`'s, else 0.
/// An entry whose `q` does not parse counts as 0.
fn weight(accept: &str, token: &str) -> u16 {
    let mut any = None;
    for entry in accept.split(',') {
        let mut parts = entry.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .map(qvalue)
            .next()
            .unwrap_or(Some(1000))
            .unwrap_or(0);
        if name.eq_ignore_ascii_case(token) {
            return q;
        }
        if name == "*" {
            any = Some(q);
        }
    }
    any.unwrap_or(0)
}

/// A `qvalue` (`0`, `0.5`, `1.000`) in thousandths; `None` when it is not one.
fn qvalue(raw: &str) -> Option<u16> {
    let raw = raw.trim();
    let (int, frac) = raw.split_once('.').unwrap_or((raw, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac.bytes().chain(std::iter::repeat(b'0')).take(3);
    let frac = thousandths.fold(0u16, |n, b| n * 10 + u16::from(b - b'0'));
    match int {
        "0" => Some(frac),
        "1" if frac == 0 => Some(1000),
        _ => None,
    }
}

/// A [`Downstream`] whose chunks are compressed before `inner` writes them; each stream has
/// its own.
pub struct Compressed<D> {
    inner: D,
    coder: Coder,
}

enum Coder {
    Gzip(GzipMember),
    /// Whether a frame has gone out: zstd data of no frame at all is not a zstd stream, so one
    /// that ends before its first chunk ends with an empty frame.
    Zstd {
        framed: bool,
    },
    Brotli(BrotliStream),
}

impl<D: Downstream> Compressed<D> {
    pub fn new(inner: D, encoding: Encoding) -> Compressed<D> {
        Compressed {
            inner,
            coder: Coder::new(encoding),
        }
    }
}

impl<D: Downstream + Send> Downstream for Compressed<D> {
    async fn write(&mut self, chunk: Bytes, end: bool) -> Result<(), WriteError> {
        let compressed = self.coder.compress(&chunk, end)?;
        self.inner.write(compressed, end).await
    }

    async fn gone(&mut self) {
        self.inner.gone().await
    }
}

impl Coder {
    fn new(encoding: Encoding) -> Coder {
        match encoding {
            Encoding::Gzip => Coder::Gzip(GzipMember::default()),
            Encoding::Zstd => Coder::Zstd { framed: false },
            Encoding::Brotli => Coder::Brotli(BrotliStream::default()),
        }
    }

    /// `chunk` compressed and flushed; with `end`, the compressed stream's end after it. A
    /// compressor that fails closes the stream.
    fn compress(&mut self, chunk: &Bytes, end: bool) -> Result<Bytes, WriteError> {
        if chunk.is_empty() && !end {
            return Ok(Bytes::new());
        }
        let out = match self {
            Coder::Gzip(member) => member.compress(chunk, end),
            Coder::Zstd { framed: true } if chunk.is_empty() => Some(Vec::new()),
            Coder::Zstd { framed } => {
                let frame = ZSTD.with(|z| z.borrow_mut().as_mut()?.compress(chunk).ok());
                *framed |= frame.is_some();
                frame
            }
            Coder::Brotli(stream) => Some(stream.compress(chunk, end)),
        };
        out.map(Bytes::from).ok_or(WriteError::Closed)
    }
}

thread_local! {
    /// Each worker thread's raw deflate compressor, reset before each chunk.
    static DEFLATE: RefCell<Compress> =
        RefCell::new(Compress::new(Compression::new(GZIP_LEVEL), false));
    /// Each worker thread's zstd compressor: one frame per chunk.
    /// `None` if it could not be made: zstd streams then close at their first chunk.
    static ZSTD: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        RefCell::new(zstd::bulk::Compressor::new(ZSTD_LEVEL).ok());
}

/// The last non-empty chunk a stream wrote: the end of what the client's decoder has produced,
/// which the next chunk may refer to.
#[derive(Default)]
struct Previous(Bytes);

/// The most of the previous chunk a chunk may refer to: deflate's window (brotli's is twice it).
const PRIMING: usize = 32 * 1024;

impl Previous {
    /// The part a chunk may refer to: its last [`PRIMING`] bytes.
    fn window(&self) -> &[u8] {
        &self.0[self.0.len().saturating_sub(PRIMING)..]
    }

    fn update(&mut self, chunk: &Bytes) {
        if !chunk.is_empty() {
            self.0 = chunk.clone();
        }
    }
}

/// One gzip member across a whole stream, written as deflate blocks per chunk by a reset
/// compressor: between chunks only the trailer's CRC and length are kept, and the previous
/// chunk to prime the next one with.
#[derive(Default)]
struct GzipMember {
    started: bool,
    crc: Crc,
    previous: Previous,
}

/// A gzip header with no name, time or flags (RFC 1952): `OS` 255 (unknown).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

impl GzipMember {
    fn compress(&mut self, chunk: &Bytes, end: bool) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(chunk.len() / 2 + 64);
        if !self.started {
            out.extend_from_slice(&GZIP_HEADER);
            self.started = true;
        }
        self.crc.update(chunk);
        DEFLATE.with(|deflate| {
            let mut deflate = deflate.borrow_mut();
            deflate.reset();
            let previous = self.previous.window();
            if !previous.is_empty() {
                deflate.set_dictionary(previous).ok()?;
            }
            let flush = if end {
                FlushCompress::Finish
            } else {
                FlushCompress::Sync
            };
            // Until all input is in and a call left room to spare: the flush is complete.
            loop {
                let before = deflate.total_in() as usize;
                out.reserve(64 + (chunk.len() - before) / 2);
                deflate
                    .compress_vec(&chunk[before..], &mut out, flush)
                    .ok()?;
                if deflate.total_in() as usize == chunk.len() && out.len() < out.capacity() {
                    return Some(());
                }
            }
        })?;
        self.previous.update(chunk);
        if end {
            out.extend_from_slice(&self.crc.sum().to_le_bytes());
            out.extend_from_slice(&self.crc.amount().to_le_bytes());
        }
        Some(out)
    }
}

/// One brotli stream, written as meta-blocks per chunk by `brotli_blocks`: between chunks only
/// whether the stream header is out is kept, and the previous chunk the next one may refer to.
#[derive(Default)]
struct BrotliStream {
    started: bool,
    previous: Previous,
}

impl BrotliStream {
    fn compress(&mut self, chunk: &Bytes, end: bool) -> Vec<u8> {
        let window = self.previous.window();
        let mut input = Vec::with_capacity(window.len() + chunk.len());
        input.extend_from_slice(window);
        input.extend_from_slice(chunk);
        let out = brotli_blocks::chunk(&input, window.len(), !self.started, end);
        self.started = true;
        self.previous.update(chunk);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_highest_weight_wins_and_ties_go_to_the_cheapest() {
        for (accept, expected) in [
            ("gzip", Some(Encoding::Gzip)),
            ("br", Some(Encoding::Brotli)),
            ("zstd", Some(Encoding::Zstd)),
            ("gzip, deflate, br, zstd", Some(Encoding::Gzip)),
            ("br;q=1.0, gzip;q=0.8, zstd;q=0.9", Some(Encoding::Brotli)),
            ("GZIP;Q=0.5, br;q=0.6", Some(Encoding::Brotli)),
            ("*", Some(Encoding::Gzip)),
            ("*;q=0.2, zstd;q=0.3", Some(Encoding::Zstd)),
            ("gzip;q=0, *;q=0.1", Some(Encoding::Zstd)),
            ("gzip;q=0", None),
            ("deflate, identity", None),
            ("", None),
            ("gzip;q=2", None),
            ("gzip;q=0.0001, br;q=abc", None),
        ] {
            assert_eq!(Encoding::negotiate(accept), expected, "{accept}");
        }
    }

    /// Each encoding's chunks, decoded one by one with a streaming decoder, give back each
    /// chunk as soon as it is fed, and the whole stream ends cleanly.
    #[test]
    fn every_chunk_decodes_on_its_own_and_the_stream_ends_cleanly() {
        let chunks: [&[u8]; 4] = [
            b": connected\n\n",
            b"id: 1\nevent: note\ndata: {\"user\":42,\"text\":\"hello hello hello\"}\n\n",
            b"",
            b"id: 2\nevent: note\ndata: {\"user\":42,\"text\":\"hello again\"}\n\n",
        ];
        let chunks = chunks.map(<[u8]>::to_vec);
        for encoding in Encoding::ALL {
            assert_eq!(
                stream_of(encoding, &chunks),
                chunks.concat(),
                "{encoding:?}"
            );
        }
    }

    /// Arbitrary chunks, some of few distinct bytes (so they repeat each other), some of any
    /// (incompressible), some empty: every encoding's stream gives back each chunk as it is fed.
    #[test]
    fn arbitrary_chunks_decode_as_they_arrive() {
        let chunk = prop_oneof![
            prop::collection::vec(prop::sample::select(b"ab{}:\n".to_vec()), 0..3000),
            prop::collection::vec(any::<u8>(), 0..3000),
        ];
        let chunks = prop::collection::vec(chunk, 1..8);
        proptest!(ProptestConfig::with_cases(64), |(chunks in chunks)| {
            for encoding in Encoding::ALL {
                prop_assert_eq!(stream_of(encoding, &chunks), chunks.concat());
            }
        });
    }

    /// A stream that ends before its first chunk is still a whole stream in every encoding
    /// (zstd has no empty stream without a frame: found by the test above).
    #[test]
    fn a_stream_ended_before_its_first_chunk_decodes_as_empty() {
        for encoding in Encoding::ALL {
            assert_eq!(stream_of(encoding, &[]), b"", "{encoding:?}");
            assert_eq!(stream_of(encoding, &[Vec::new()]), b"", "{encoding:?}");
        }
    }

    /// A chunk larger than brotli's window that repeats a part of itself from further back
    /// than the window reaches: the decoder would read that distance as a dictionary word.
    #[test]
    fn a_repeat_beyond_the_window_is_not_referred_to() {
        let mut noise = 7u64;
        let mut random = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    noise = noise
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    b'a' + (noise >> 59) as u8
                })
                .collect()
        };
        let part = random(10_000);
        let far = [part.clone(), random(brotli_blocks::MAX_DISTANCE), part].concat();
        let chunks = vec![random(100), far, random(100)];
        for encoding in Encoding::ALL {
            assert_eq!(
                stream_of(encoding, &chunks),
                chunks.concat(),
                "{encoding:?}"
            );
        }
    }

    /// `chunks` through a stream's coder, each checked to decode as soon as it is fed, then the
    /// whole stream decoded once finished.
    fn stream_of(encoding: Encoding, chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut coder = Coder::new(encoding);
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for chunk in chunks {
            let chunk = Bytes::copy_from_slice(chunk);
            wire.extend_from_slice(&coder.compress(&chunk, false).expect("compress"));
            expected.extend_from_slice(&chunk);
            assert_eq!(decode_prefix(encoding, &wire), expected, "{encoding:?}");
        }
        wire.extend_from_slice(&coder.compress(&Bytes::new(), true).expect("finish"));
        decode_all(encoding, &wire)
    }

    /// What a streaming decoder has produced from an unfinished stream.
    fn decode_prefix(encoding: Encoding, wire: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut decoder: Box<dyn Read> = match encoding {
            Encoding::Gzip => Box::new(flate2::read::GzDecoder::new(wire)),
            Encoding::Zstd => Box::new(zstd::stream::read::Decoder::new(wire).expect("zstd")),
            Encoding::Brotli => Box::new(brotli::Decompressor::new(wire, 4096)),
        };
        let mut buf = [0u8; 256];
        while let Ok(n) = decoder.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    /// A finished stream, decoded whole: fails on a missing or wrong end.
    fn decode_all(encoding: Encoding, wire: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match encoding {
            Encoding::Gzip => flate2::read::GzDecoder::new(wire).read_to_end(&mut out),
            Encoding::Zstd => zstd::stream::read::Decoder::new(wire)
                .expect("zstd")
                .read_to_end(&mut out),
            Encoding::Brotli => brotli::Decompressor::new(wire, 4096).read_to_end(&mut out),
        }
        .expect("a complete stream");
        out
    }
}
