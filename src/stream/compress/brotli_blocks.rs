//! One brotli stream (RFC 7932) written a chunk at a time by code that keeps nothing between
//! chunks but the previous chunk: each chunk becomes one compressed meta-block (more for a chunk
//! over [`MAX_BLOCK`]) and an empty metadata block that brings the stream to a byte boundary, so
//! the client decodes the chunk as soon as it has it.
//!
//! The brotli crate's encoder cannot be used this way: its state (hash table, ring buffer) must
//! live as long as the stream (128 KiB per idle stream at quality 2), and a fresh encoder per
//! chunk allocates and zeroes a 256 KiB hash table each time. Instead the matches are found here,
//! greedily (at the last distance, else by a hash table sized to the chunk), and the crate's bit
//! writer stores them. What
//! the decoder needs from before the chunk is in its window already: the previous chunk, which
//! it has just produced. The rules that make a meta-block sound in the middle of a stream the
//! encoder has not seen:
//! - every distance reaches back at most to the start of the previous chunk and at most
//!   [`MAX_DISTANCE`] (the window less 16): the decoder reads a longer distance as a reference
//!   into the static dictionary, so none is ever written;
//! - the distance cache is the decoder's, holding distances from earlier chunks the encoder does
//!   not know: a distance is only written as "the last one" (code 0) after this chunk wrote it
//!   explicitly, which puts it first in the decoder's cache too;
//! - literals use one Huffman code with no context, so the two bytes before the chunk (which
//!   choose a literal's context) do not matter.

use brotli::enc::backward_references::BrotliEncoderParams;
use brotli::enc::brotli_bit_stream::{
    BrotliStoreMetaBlockTrivial, BrotliStoreSyncMetaBlock, BrotliWriteEmptyLastMetaBlock,
    RecoderState,
};
use brotli::enc::command::{Command, InitCommand};
use brotli::enc::encode::{BrotliEncoderInitParams, InitInsertCommand};
use brotli::enc::StandardAlloc;
use brotli::interface::{PredictionModeContextMap, StaticCommand};
use brotli::{InputPair, InputReferenceMut};

/// The window's size as log2, written once in the stream header (as one 0 bit): a client's
/// decoder keeps this much of the stream.
const WINDOW_BITS: u32 = 16;
/// The longest distance a meta-block may use: beyond it the decoder reads a dictionary word.
pub const MAX_DISTANCE: usize = (1 << WINDOW_BITS) - 16;
/// The shortest match written: shorter ones cost as much as their literals.
const MIN_MATCH: usize = 4;
/// The largest hash table, as log2 of its entries (128 KiB); smaller inputs get one their size.
const MAX_TABLE_BITS: u32 = 15;
/// The most of a chunk one meta-block holds; a larger chunk is written as several.
const MAX_BLOCK: usize = 1 << 20;
/// Room for one meta-block's header and Huffman codes in the output, beyond twice its length.
const BLOCK_OVERHEAD: usize = 2048;
/// Distance codes below 16 name entries of the distance cache; distance `d` is code `d + 15`.
const EXPLICIT_DISTANCE: usize = 15;

/// The bytes of one chunk of a brotli stream: `input[start..]` compressed, referring back into
/// `input[..start]`, which must be the end of what the decoder has already produced (never
/// further back than [`MAX_DISTANCE`]). `header` starts the stream (its first chunk); `end`
/// finishes it.
pub fn chunk(input: &[u8], start: usize, header: bool, end: bool) -> Vec<u8> {
    let params = BrotliEncoderInitParams();
    let length = input.len() - start;
    let blocks = length.div_ceil(MAX_BLOCK);
    // BrotliWriteBits writes 8 bytes at a time: the spare 8 at the end.
    let mut storage = vec![0u8; 2 * length + (blocks + 1) * BLOCK_OVERHEAD + 8];
    // The stream header: WBITS 16 is a single 0 bit.
    let mut bit = usize::from(header);
    let mut matcher = Matcher::new(input, start);
    let mut block_start = start;
    while block_start < input.len() {
        let block_end = input.len().min(block_start + MAX_BLOCK);
        let commands = matcher.commands(block_end, &params);
        BrotliStoreMetaBlockTrivial(
            &mut StandardAlloc::default(),
            input,
            block_start,
            block_end - block_start,
            // The input is not a ring buffer: a mask past its end.
            (input.len() + 1).next_power_of_two() - 1,
            0,
            &params,
            // The distance cache: only read to log meta-blocks, which is off.
            &[0; 4],
            &commands,
            commands.len(),
            &mut RecoderState::new(),
            &mut bit,
            &mut storage,
            &mut |_: &mut PredictionModeContextMap<InputReferenceMut>,
                  _: &mut [StaticCommand],
                  _: InputPair,
                  _: &mut StandardAlloc| {},
        );
        block_start = block_end;
    }
    if end {
        BrotliWriteEmptyLastMetaBlock(&mut bit, &mut storage);
    } else if length > 0 || header {
        // An empty metadata block: the rest of the last byte is padding.
        BrotliStoreSyncMetaBlock(&mut bit, &mut storage);
    }
    storage.truncate(bit.div_ceil(8));
    storage
}

/// Greedy LZ77 over one chunk's input: each position is tried at the last distance written,
/// and looked up by its first 4 bytes in a table of the latest position with the same hash.
struct Matcher<'a> {
    input: &'a [u8],
    table: Vec<u32>,
    bits: u32,
    /// Where the next command's literals start.
    pos: usize,
    /// The last distance this chunk wrote, which the decoder's cache then holds first.
    last_distance: Option<usize>,
}

impl<'a> Matcher<'a> {
    /// A matcher for `input[start..]` that knows every position of `input[..start]`.
    fn new(input: &'a [u8], start: usize) -> Matcher<'a> {
        let bits = input
            .len()
            .max(256)
            .next_power_of_two()
            .trailing_zeros()
            .min(MAX_TABLE_BITS);
        let mut matcher = Matcher {
            input,
            table: vec![0; 1 << bits],
            bits,
            pos: start,
            last_distance: None,
        };
        for p in 0..start {
            matcher.remember(p);
        }
        matcher
    }

    /// The commands that produce `input[pos..end]`, the last one's literals running to `end`.
    fn commands(&mut self, end: usize, params: &BrotliEncoderParams) -> Vec<Command> {
        let mut commands = Vec::new();
        let literals = self.pos;
        let mut literals_from = literals;
        let mut pos = literals;
        while pos + MIN_MATCH <= end {
            let Some((distance, len)) = self.find(pos, end) else {
                self.remember(pos);
                pos += 1;
                continue;
            };
            let code = if self.last_distance == Some(distance) {
                0
            } else {
                distance + EXPLICIT_DISTANCE
            };
            self.last_distance = Some(distance);
            let mut command = Command::default();
            InitCommand(
                &mut command,
                &params.dist,
                pos - literals_from,
                len,
                len,
                code,
            );
            commands.push(command);
            for p in pos..pos + len {
                self.remember(p);
            }
            pos += len;
            literals_from = pos;
        }
        if literals_from < end {
            let mut command = Command::default();
            InitInsertCommand(&mut command, end - literals_from);
            commands.push(command);
        }
        self.pos = end;
        commands
    }

    /// The match for `pos`, up to `end`, as its distance and length: the one at the last
    /// distance unless the table knows one longer by more than a byte (the last distance is
    /// written as a code with no extra bits, or none at all). Events of one shape repeat each
    /// other's fields at one distance, the length of an event.
    fn find(&self, pos: usize, end: usize) -> Option<(usize, usize)> {
        let repeat = self
            .last_distance
            .filter(|&distance| distance <= pos)
            .map(|distance| (distance, self.match_length(pos - distance, pos, end)))
            .filter(|&(_, len)| len >= MIN_MATCH);
        let known = self
            .candidate(pos)
            .map(|from| (pos - from, self.match_length(from, pos, end)));
        match (repeat, known) {
            (Some((_, short)), Some((_, long))) if long > short + 1 => known,
            (Some(_), _) => repeat,
            (None, _) => known,
        }
    }

    /// The latest earlier position with `pos`'s hash, if it is within [`MAX_DISTANCE`] and its
    /// first bytes are `pos`'s.
    fn candidate(&self, pos: usize) -> Option<usize> {
        let from = (self.table[self.hash(pos)?] as usize).checked_sub(1)?;
        let input = self.input;
        (pos - from <= MAX_DISTANCE && input[from..from + MIN_MATCH] == input[pos..pos + MIN_MATCH])
            .then_some(from)
    }

    /// How many bytes from `from` on equal those from `pos` on, up to `end` (the two may
    /// overlap: a copy reads what it has just written).
    fn match_length(&self, from: usize, pos: usize, end: usize) -> usize {
        self.input[from..]
            .iter()
            .zip(&self.input[pos..end])
            .take_while(|(a, b)| a == b)
            .count()
    }

    /// Records `pos` as the latest position with its hash (positions are stored plus one: 0 is
    /// an empty entry).
    fn remember(&mut self, pos: usize) {
        if let Some(h) = self.hash(pos) {
            self.table[h] = pos as u32 + 1;
        }
    }

    /// The table index of the 4 bytes at `pos`; `None` near the end of the input.
    fn hash(&self, pos: usize) -> Option<usize> {
        let bytes: [u8; 4] = self.input.get(pos..pos + 4)?.try_into().ok()?;
        Some((u32::from_le_bytes(bytes).wrapping_mul(0x1E35_A7BD) >> (32 - self.bits)) as usize)
    }
}
