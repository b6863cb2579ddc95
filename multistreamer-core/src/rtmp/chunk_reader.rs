//! The inbound RTMP chunk stream, parsed once.
//!
//! Sans-IO: feed it the bytes in the order received and it hands back each complete
//! message (type, message stream, timestamp, payload). Each payload is assembled once, as
//! its chunks arrive, into a buffer sized for the whole message and then frozen into a
//! [`Bytes`] that the hub, every destination, the GOP cache and the recorders share; small
//! messages (audio, commands) are carved out of a shared 64 KiB block, so in steady state
//! there is no allocation per audio message. The ingest hands only the few non-media
//! messages (commands, metadata, control) on to `rml_rtmp`'s session.
//!
//! It also refuses what would let a peer pin a CPU or grow memory without bound:
//!
//! * a chunk size of 0 or above 2³¹−1 (`rml_rtmp` loops forever on 0),
//! * continuation headers (types 1–3) on a chunk stream that never had a full header,
//! * a `SetChunkSize` whose length is not 4,
//! * more than [`ChunkLimits::max_partial_messages`] messages in flight at once, or more than
//!   [`ChunkLimits::max_partial_bytes`] of declared length in flight (buffers grow with the
//!   bytes received, never past the declared length, so the limits bound memory).
//!
//! Timestamps follow the rules `rml_rtmp` and FFmpeg apply: a type-0 header sets the
//! timestamp, types 1 and 2 add their delta, a type-3 header that starts a new message adds
//! the last header's timestamp field again; extended timestamps (field `0xFFFFFF`) are read
//! on every chunk of such a stream, continuation chunks included. Arithmetic wraps at 2³².

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

/// Limits enforced by [`ChunkReader`].
#[derive(Clone, Copy, Debug)]
pub struct ChunkLimits {
    pub max_partial_messages: usize,
    pub max_partial_bytes: u64,
}

impl Default for ChunkLimits {
    fn default() -> ChunkLimits {
        ChunkLimits { max_partial_messages: 16, max_partial_bytes: 32 * 1024 * 1024 }
    }
}

/// Why the chunk stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("peer set an invalid chunk size {0}")]
    BadChunkSize(u32),
    #[error("SetChunkSize message with length {0} (expected 4)")]
    BadControlLength(u32),
    #[error("chunk header type {fmt} on chunk stream {csid} that has no previous header")]
    NoPreviousHeader { fmt: u8, csid: u32 },
    #[error("too many partially received messages ({0})")]
    TooManyPartialMessages(usize),
    #[error("too many bytes of partially received messages ({0})")]
    TooManyPartialBytes(u64),
}

/// Message type ids the reader itself acts on.
pub const TYPE_SET_CHUNK_SIZE: u8 = 1;
pub const TYPE_ABORT: u8 = 2;

/// One complete message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub type_id: u8,
    pub stream_id: u32,
    pub timestamp: u32,
    pub payload: Bytes,
}

/// The state of one chunk stream: its last header and the message being assembled.
#[derive(Debug, Default)]
struct ChunkStream {
    timestamp: u32,
    /// The last type-0/1/2 header's timestamp field (absolute for type 0, a delta
    /// otherwise; the extended value when the field was 0xFFFFFF).
    ts_field: u32,
    /// The field was 0xFFFFFF: every chunk of the stream carries 4 more bytes.
    extended: bool,
    msg_len: u32,
    msg_type: u8,
    stream_id: u32,
    /// The message being assembled; `None` between messages.
    partial: Option<BytesMut>,
    /// Its bytes still to come (of `msg_len`, which no header changes mid-message: a
    /// type-0/1 header abandons the message first).
    remaining: u32,
}

#[derive(Debug)]
enum Stage {
    /// Collecting a chunk header.
    Header,
    /// `left` payload bytes of the current chunk on `csid` still to come.
    Payload { csid: u32, left: u32 },
}

/// Messages up to this size are carved out of a shared block.
const SMALL_MESSAGE: usize = 8 * 1024;
const BLOCK: usize = 64 * 1024;
/// Room reserved at first for a large message (a keyframe of a 6 Mb/s stream fits).
const FIRST_RESERVE: usize = 256 * 1024;
const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// The longest chunk header: 3-byte basic header, 11-byte message header, 4-byte extended
/// timestamp.
const MAX_HEADER: usize = 18;

/// See the module documentation.
#[derive(Debug)]
pub struct ChunkReader {
    limits: ChunkLimits,
    chunk_size: u32,
    streams: HashMap<u32, ChunkStream>,
    stage: Stage,
    header: [u8; MAX_HEADER],
    header_len: usize,
    /// Messages in flight and their declared bytes.
    partial_count: usize,
    partial_bytes: u64,
    block: BytesMut,
    bytes_seen: u64,
}

impl ChunkReader {
    pub fn new(limits: ChunkLimits) -> ChunkReader {
        ChunkReader {
            limits,
            chunk_size: 128,
            streams: HashMap::new(),
            stage: Stage::Header,
            header: [0; MAX_HEADER],
            header_len: 0,
            partial_count: 0,
            partial_bytes: 0,
            block: BytesMut::new(),
            bytes_seen: 0,
        }
    }

    /// The chunk size the peer currently uses.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Bytes read so far.
    pub fn bytes_seen(&self) -> u64 {
        self.bytes_seen
    }

    /// Parses the next bytes of the stream and calls `on_message` with each message it
    /// completes, in order. `SetChunkSize` and `Abort` take effect here and are passed on
    /// too. After an error the reader must not be fed again.
    pub fn feed<E: From<ChunkError>>(
        &mut self,
        mut data: &[u8],
        mut on_message: impl FnMut(Message) -> Result<(), E>,
    ) -> Result<(), E> {
        self.bytes_seen += data.len() as u64;
        while !data.is_empty() {
            match self.stage {
                Stage::Header => {
                    let need = match self.header_need()? {
                        Some(n) => n,
                        None => {
                            // the basic header is not complete: take one byte at a time
                            self.header[self.header_len] = data[0];
                            self.header_len += 1;
                            data = &data[1..];
                            continue;
                        }
                    };
                    let take = (need - self.header_len).min(data.len());
                    self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
                    self.header_len += take;
                    data = &data[take..];
                    if self.header_len == need
                        && self.header_need()? == Some(need)
                        && let Some(message) = self.finish_header()?
                    {
                        self.on_complete(&message)?;
                        on_message(message)?;
                    }
                }
                Stage::Payload { csid, left } => {
                    let take = (left as usize).min(data.len());
                    let (now, rest) = data.split_at(take);
                    data = rest;
                    let left = left - take as u32;
                    let Some(stream) = self.streams.get_mut(&csid) else {
                        return Err(ChunkError::NoPreviousHeader { fmt: 3, csid }.into());
                    };
                    if let Some(partial) = stream.partial.as_mut() {
                        partial.extend_from_slice(now);
                        stream.remaining -= take as u32;
                    }
                    if left > 0 {
                        self.stage = Stage::Payload { csid, left };
                        continue;
                    }
                    self.stage = Stage::Header;
                    if let Some(message) = self.end_chunk(csid) {
                        self.on_complete(&message)?;
                        on_message(message)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The whole header's length once enough of it is known; `None` while the basic
    /// header itself is incomplete.
    fn header_need(&self) -> Result<Option<usize>, ChunkError> {
        if self.header_len == 0 {
            return Ok(None);
        }
        let b0 = self.header[0];
        let basic = basic_len(b0);
        if self.header_len < basic {
            return Ok(None);
        }
        let fmt = b0 >> 6;
        let base = basic + [11usize, 7, 3, 0][usize::from(fmt)];
        let extended = if fmt == 3 {
            let csid = self.csid();
            match self.streams.get(&csid) {
                Some(s) => s.extended,
                None => return Err(ChunkError::NoPreviousHeader { fmt, csid }),
            }
        } else {
            if self.header_len < basic + 3 {
                return Ok(Some(basic + 3)); // the timestamp field first
            }
            self.header[basic..basic + 3] == [0xFF, 0xFF, 0xFF]
        };
        Ok(Some(base + if extended { 4 } else { 0 }))
    }

    fn csid(&self) -> u32 {
        match self.header[0] & 0x3F {
            0 => 64 + u32::from(self.header[1]),
            1 => 64 + u32::from(self.header[1]) + 256 * u32::from(self.header[2]),
            c => u32::from(c),
        }
    }

    /// Applies a complete header; returns a message when it completes one (length 0).
    fn finish_header(&mut self) -> Result<Option<Message>, ChunkError> {
        let fmt = self.header[0] >> 6;
        let csid = self.csid();
        let h = &self.header[basic_len(self.header[0])..self.header_len];
        let ext = |h: &[u8]| u32::from_be_bytes([h[h.len() - 4], h[h.len() - 3], h[h.len() - 2], h[h.len() - 1]]);
        let stream = match (fmt, self.streams.get_mut(&csid)) {
            (0, Some(s)) => s,
            (0, None) => self.streams.entry(csid).or_default(),
            (_, Some(s)) => s,
            (fmt, None) => return Err(ChunkError::NoPreviousHeader { fmt, csid }),
        };
        let mut abandoned = 0;
        if fmt != 3 {
            let field = u32::from_be_bytes([0, h[0], h[1], h[2]]);
            if stream.partial.take().is_some() {
                // A new header in the middle of a message: that message is abandoned.
                abandoned = stream.msg_len;
            }
            stream.extended = field == 0xFF_FFFF;
            let value = if stream.extended { ext(h) } else { field };
            stream.ts_field = value;
            stream.timestamp = if fmt == 0 { value } else { stream.timestamp.wrapping_add(value) };
            if fmt <= 1 {
                stream.msg_len = u32::from_be_bytes([0, h[3], h[4], h[5]]);
                stream.msg_type = h[6];
            }
            if fmt == 0 {
                stream.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
            }
        } else if stream.partial.is_none() {
            // type 3 starting a new message: the last delta again (as rml_rtmp reads it,
            // the extended value this chunk carries)
            let delta = if stream.extended { ext(h) } else { stream.ts_field };
            stream.timestamp = stream.timestamp.wrapping_add(delta);
        }
        let starting = stream.partial.is_none();
        let (msg_len, msg_type) = (stream.msg_len, stream.msg_type);
        let message = (starting && msg_len == 0).then(|| Message {
            type_id: stream.msg_type,
            stream_id: stream.stream_id,
            timestamp: stream.timestamp,
            payload: Bytes::new(),
        });
        self.partial_count -= usize::from(abandoned > 0);
        self.partial_bytes -= u64::from(abandoned);
        self.header_len = 0;
        if starting {
            if msg_type == TYPE_SET_CHUNK_SIZE && msg_len != 4 {
                return Err(ChunkError::BadControlLength(msg_len));
            }
            if message.is_some() {
                return Ok(message);
            }
            if self.partial_count + 1 > self.limits.max_partial_messages {
                return Err(ChunkError::TooManyPartialMessages(self.partial_count + 1));
            }
            if self.partial_bytes + u64::from(msg_len) > self.limits.max_partial_bytes {
                return Err(ChunkError::TooManyPartialBytes(self.partial_bytes + u64::from(msg_len)));
            }
            let buf = self.carve(msg_len as usize);
            self.partial_count += 1;
            self.partial_bytes += u64::from(msg_len);
            if let Some(s) = self.streams.get_mut(&csid) {
                s.partial = Some(buf);
                s.remaining = msg_len;
            }
        }
        let left = self.streams.get(&csid).map_or(0, |s| s.remaining);
        self.stage = Stage::Payload { csid, left: left.min(self.chunk_size) };
        Ok(None)
    }

    /// A chunk's payload is complete: returns the message if it is too.
    fn end_chunk(&mut self, csid: u32) -> Option<Message> {
        let stream = self.streams.get_mut(&csid)?;
        if stream.remaining > 0 {
            return None;
        }
        let partial = stream.partial.take()?;
        self.partial_count -= 1;
        self.partial_bytes -= u64::from(stream.msg_len);
        Some(Message {
            type_id: stream.msg_type,
            stream_id: stream.stream_id,
            timestamp: stream.timestamp,
            payload: partial.freeze(),
        })
    }

    /// What the reader does with a complete message itself.
    fn on_complete(&mut self, message: &Message) -> Result<(), ChunkError> {
        match message.type_id {
            TYPE_SET_CHUNK_SIZE => {
                let p = &message.payload;
                if p.len() != 4 {
                    return Err(ChunkError::BadControlLength(p.len() as u32));
                }
                let size = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                if size == 0 || size > MAX_CHUNK_SIZE {
                    return Err(ChunkError::BadChunkSize(size));
                }
                self.chunk_size = size;
            }
            TYPE_ABORT if message.payload.len() >= 4 => {
                let p = &message.payload;
                let csid = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                if let Some(s) = self.streams.get_mut(&csid)
                    && s.partial.take().is_some()
                {
                    self.partial_count -= 1;
                    self.partial_bytes -= u64::from(s.msg_len);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// An empty buffer for a message of `len` bytes: small ones share a block; large ones
    /// get room for up to [`FIRST_RESERVE`] and grow as their bytes arrive, so a declared
    /// length costs nothing until the peer sends it.
    fn carve(&mut self, len: usize) -> BytesMut {
        if len > SMALL_MESSAGE {
            return BytesMut::with_capacity(len.min(FIRST_RESERVE));
        }
        if self.block.capacity() < len {
            self.block = BytesMut::with_capacity(BLOCK);
        }
        let rest = self.block.split_off(len);
        std::mem::replace(&mut self.block, rest)
    }
}

fn basic_len(b0: u8) -> usize {
    match b0 & 0x3F {
        0 => 2,
        1 => 3,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::ChunkDeserializer;

    fn type0(csid: u8, ts: u32, len: u32, ty: u8, msid: u32) -> Vec<u8> {
        let mut v = vec![csid];
        let tsf = ts.min(0xFFFFFF);
        v.extend_from_slice(&tsf.to_be_bytes()[1..]);
        v.extend_from_slice(&len.to_be_bytes()[1..]);
        v.push(ty);
        v.extend_from_slice(&msid.to_le_bytes());
        if ts >= 0xFFFFFF {
            v.extend_from_slice(&ts.to_be_bytes());
        }
        v
    }

    fn set_chunk_size(size: u32) -> Vec<u8> {
        let mut v = type0(2, 0, 4, 1, 0);
        v.extend_from_slice(&size.to_be_bytes());
        v
    }

    fn read_all(input: &[u8], step: usize) -> Result<Vec<Message>, ChunkError> {
        let mut r = ChunkReader::new(ChunkLimits::default());
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            r.feed(piece, |m| {
                out.push(m);
                Ok::<(), ChunkError>(())
            })?;
        }
        Ok(out)
    }

    /// Every message rml_rtmp's deserializer reads from `input` (whole).
    fn rml_messages(input: &[u8]) -> Vec<Message> {
        let mut de = ChunkDeserializer::new();
        let mut out = Vec::new();
        let mut next: &[u8] = input;
        while let Some(m) = de.get_next_message(next).expect("rml parses it") {
            if m.type_id == TYPE_SET_CHUNK_SIZE {
                let size = u32::from_be_bytes([m.data[0], m.data[1], m.data[2], m.data[3]]);
                de.set_max_chunk_size(size as usize).expect("chunk size");
            }
            out.push(Message {
                type_id: m.type_id,
                stream_id: m.message_stream_id,
                timestamp: m.timestamp.value,
                payload: m.data.clone(),
            });
            next = &[];
        }
        out
    }

    /// A stream with every header form: chunk size change, split messages, type 1/2/3
    /// headers starting messages, extended timestamps on continuations, a zero-length
    /// message.
    fn mixed_stream() -> Vec<u8> {
        let mut s = set_chunk_size(4096);
        // a 5000-byte video message: 4096 + type-3 continuation of 904
        s.extend(type0(6, 40, 5000, 9, 1));
        s.extend(std::iter::repeat_n(0xAA, 4096));
        s.push(0xC6);
        s.extend(std::iter::repeat_n(0xBB, 904));
        // type 1: delta 33, new length 300
        s.extend([0x46, 0, 0, 33, 0, 1, 0x2C, 9]);
        s.extend(std::iter::repeat_n(0xCC, 300));
        // type 2: delta 34, same length
        s.extend([0x86, 0, 0, 34]);
        s.extend(std::iter::repeat_n(0xDD, 300));
        // type 3 starting a new message: the delta again
        s.push(0xC6);
        s.extend(std::iter::repeat_n(0xEE, 300));
        // audio on another chunk stream with an extended timestamp on its continuation
        s.extend(set_chunk_size(128));
        s.extend(type0(4, 0x0100_0000, 200, 8, 1));
        s.extend(std::iter::repeat_n(1, 128));
        s.push(0xC4);
        s.extend(0x0100_0000u32.to_be_bytes());
        s.extend(std::iter::repeat_n(2, 72));
        // a type-3 header starting the next audio message: the extended delta again
        s.push(0xC4);
        s.extend(0x0100_0000u32.to_be_bytes());
        s.extend(std::iter::repeat_n(3, 128));
        s.push(0xC4);
        s.extend(0x0100_0000u32.to_be_bytes());
        s.extend(std::iter::repeat_n(4, 72));
        // a zero-length data message
        s.extend(type0(5, 7, 0, 18, 1));
        s
    }

    #[test]
    fn reads_what_rml_rtmp_reads_however_the_input_is_split() {
        let input = mixed_stream();
        let expected = rml_messages(&input);
        assert_eq!(expected.len(), 9);
        let timestamps: Vec<u32> = expected.iter().map(|m| m.timestamp).collect();
        assert_eq!(timestamps, [0, 40, 73, 107, 141, 0, 0x0100_0000, 0x0200_0000, 7]);
        for step in [1, 2, 3, 7, 128, 4096, input.len()] {
            assert_eq!(read_all(&input, step).expect("valid stream"), expected, "split every {step} bytes");
        }
    }

    #[test]
    fn interleaved_chunk_streams_are_assembled_apart() {
        // two 200-byte messages whose chunks alternate (rml_rtmp cannot read this)
        let mut s = type0(6, 10, 200, 9, 1);
        s.extend(std::iter::repeat_n(9, 128));
        s.extend(type0(4, 20, 200, 8, 1));
        s.extend(std::iter::repeat_n(8, 128));
        s.push(0xC6);
        s.extend(std::iter::repeat_n(9, 72));
        s.push(0xC4);
        s.extend(std::iter::repeat_n(8, 72));
        let got = read_all(&s, 5).expect("valid stream");
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].type_id, got[0].timestamp), (9, 10));
        assert!(got[0].payload.iter().all(|&b| b == 9) && got[0].payload.len() == 200);
        assert_eq!((got[1].type_id, got[1].timestamp), (8, 20));
        assert!(got[1].payload.iter().all(|&b| b == 8) && got[1].payload.len() == 200);
    }

    #[test]
    fn abort_drops_the_partial_message() {
        let mut s = type0(6, 10, 300, 9, 1);
        s.extend(std::iter::repeat_n(9, 128));
        s.extend(type0(2, 0, 4, TYPE_ABORT, 0));
        s.extend(6u32.to_be_bytes());
        s.extend(type0(6, 50, 3, 9, 1));
        s.extend([1, 2, 3]);
        let got = read_all(&s, 1000).expect("valid stream");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].payload.as_ref(), &[1, 2, 3]);
        assert_eq!(got[1].timestamp, 50);
    }

    #[test]
    fn refuses_zero_and_huge_chunk_sizes() {
        assert_eq!(read_all(&set_chunk_size(0), 100), Err(ChunkError::BadChunkSize(0)));
        assert_eq!(read_all(&set_chunk_size(0x8000_0000), 100), Err(ChunkError::BadChunkSize(0x8000_0000)));
        let mut bad = type0(2, 0, 5, 1, 0);
        bad.extend([0, 0, 16, 0, 0]);
        assert_eq!(read_all(&bad, 100), Err(ChunkError::BadControlLength(5)));
    }

    #[test]
    fn refuses_orphan_continuations_and_memory_amplification() {
        assert!(matches!(read_all(&[0xC5, 1, 2], 10), Err(ChunkError::NoPreviousHeader { .. })));
        assert!(matches!(read_all(&[0x45, 0, 0, 1, 0, 0, 1, 9], 10), Err(ChunkError::NoPreviousHeader { .. })));
        let mut s = Vec::new();
        for csid in 3..40u8 {
            s.extend(type0(csid, 0, 0xFF_FFFF, 9, 1));
            s.extend(std::iter::repeat_n(0, 128));
        }
        assert!(matches!(read_all(&s, 4096), Err(ChunkError::TooManyPartialBytes(_))));
        let mut s = Vec::new();
        for csid in 3..40u8 {
            s.extend(type0(csid, 0, 1000, 9, 1));
            s.extend(std::iter::repeat_n(0, 128));
        }
        assert_eq!(read_all(&s, 4096), Err(ChunkError::TooManyPartialMessages(17)));
    }

    #[test]
    fn a_message_larger_than_the_first_reserve_grows_as_it_arrives() {
        let len = FIRST_RESERVE + 40_000;
        let body: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let mut s = set_chunk_size(4096);
        s.extend(type0(6, 1000, len as u32, 9, 1));
        for (i, piece) in body.chunks(4096).enumerate() {
            if i > 0 {
                s.push(0xC6);
            }
            s.extend_from_slice(piece);
        }
        let got = read_all(&s, 1500).expect("valid stream");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].payload.as_ref(), &body[..]);
        // a declared length alone reserves no more than the first reserve
        let mut r = ChunkReader::new(ChunkLimits::default());
        r.feed(&type0(6, 0, 0xFF_FFFF, 9, 1), |_| Ok::<(), ChunkError>(())).expect("header");
        let reserved = r.streams.get(&6).and_then(|c| c.partial.as_ref()).map(|p| p.capacity());
        assert_eq!(reserved, Some(FIRST_RESERVE));
    }

    #[test]
    fn small_messages_share_a_block() {
        let mut s = Vec::new();
        for i in 0..10u32 {
            s.extend(type0(4, i * 21, 100, 8, 1));
            s.extend(std::iter::repeat_n(i as u8, 100));
        }
        let got = read_all(&s, s.len()).expect("valid stream");
        assert_eq!(got.len(), 10);
        // consecutive payloads lie next to each other in one allocation
        for w in got.windows(2) {
            assert_eq!(w[0].payload.as_ptr().wrapping_add(100), w[1].payload.as_ptr());
        }
        for (i, m) in got.iter().enumerate() {
            assert!(m.payload.iter().all(|&b| b == i as u8));
        }
    }
}
