//! A shadow parser that validates an inbound RTMP chunk stream *before* it reaches
//! `rml_rtmp`.
//!
//! `rml_rtmp`'s deserializer accepts a `SetChunkSize` of 0 (after which it loops forever
//! without consuming input) and reserves a whole message's declared length (up to 16 MiB)
//! per chunk stream as soon as its first chunk arrives, so a peer could pin a CPU or grow
//! memory without bound. The guard follows the same chunk framing (basic header, message
//! header, extended timestamp, payload split by the current chunk size) without copying
//! payloads, and refuses:
//!
//! * a chunk size of 0 or above 2³¹−1,
//! * continuation headers (types 1–3) on a chunk stream that never had a full header,
//! * more than [`GuardLimits::max_partial_messages`] messages in flight at once, or more than
//!   [`GuardLimits::max_partial_bytes`] of declared length in flight.
//!
//! Sans-IO: feed it the bytes in the order received; it keeps at most one header (≤ 18
//! bytes) and one 4-byte control payload between calls.

use std::collections::HashMap;

/// Limits enforced by [`ChunkGuard`].
#[derive(Clone, Copy, Debug)]
pub struct GuardLimits {
    pub max_partial_messages: usize,
    pub max_partial_bytes: u64,
}

impl Default for GuardLimits {
    fn default() -> GuardLimits {
        GuardLimits { max_partial_messages: 16, max_partial_bytes: 32 * 1024 * 1024 }
    }
}

/// Why the chunk stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkGuardError {
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

#[derive(Clone, Copy, Debug, Default)]
struct ChunkStreamState {
    msg_len: u32,
    msg_type: u8,
    /// Bytes of the current message still to come; 0 = between messages.
    remaining: u32,
    /// The last 24-bit timestamp field was 0xFFFFFF (so type-3 chunks carry 4 more bytes).
    extended: bool,
}

#[derive(Debug)]
enum Stage {
    /// Collecting a chunk header into `header`.
    Header,
    /// Skipping/collecting `left` payload bytes of the current chunk on `csid`.
    Payload { csid: u32, left: u32 },
}

/// See the module documentation.
#[derive(Debug)]
pub struct ChunkGuard {
    limits: GuardLimits,
    chunk_size: u32,
    streams: HashMap<u32, ChunkStreamState>,
    stage: Stage,
    header: Vec<u8>,
    /// Payload of a SetChunkSize message being collected.
    control: Vec<u8>,
    bytes_seen: u64,
}

const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;

impl ChunkGuard {
    pub fn new(limits: GuardLimits) -> ChunkGuard {
        ChunkGuard {
            limits,
            chunk_size: 128,
            streams: HashMap::new(),
            stage: Stage::Header,
            header: Vec::with_capacity(18),
            control: Vec::with_capacity(4),
            bytes_seen: 0,
        }
    }

    /// The chunk size the peer currently uses.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Bytes validated so far.
    pub fn bytes_seen(&self) -> u64 {
        self.bytes_seen
    }

    /// Validates the next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), ChunkGuardError> {
        self.bytes_seen += data.len() as u64;
        while !data.is_empty() {
            match self.stage {
                Stage::Header => {
                    let need = match self.header_len() {
                        Ok(Some(n)) => n,
                        Ok(None) => {
                            // need more bytes just to know the header length
                            self.header.push(data[0]);
                            data = &data[1..];
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let take = (need - self.header.len()).min(data.len());
                    self.header.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.header.len() == need {
                        self.finish_header()?;
                    }
                }
                Stage::Payload { csid, left } => {
                    let take = (left as usize).min(data.len());
                    let state = self.streams.get(&csid).copied().unwrap_or_default();
                    if state.msg_type == 1 && self.control.len() < 4 {
                        let n = take.min(4 - self.control.len());
                        self.control.extend_from_slice(&data[..n]);
                    }
                    data = &data[take..];
                    let left = left - take as u32;
                    if left == 0 {
                        self.stage = Stage::Header;
                        self.end_chunk(csid)?;
                    } else {
                        self.stage = Stage::Payload { csid, left };
                    }
                }
            }
        }
        Ok(())
    }

    /// Total header length once enough of it is known; `None` while the basic header
    /// itself is incomplete.
    fn header_len(&self) -> Result<Option<usize>, ChunkGuardError> {
        let Some(&b0) = self.header.first() else {
            return Ok(None);
        };
        let basic = match b0 & 0x3F {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        if self.header.len() < basic {
            return Ok(None);
        }
        let fmt = b0 >> 6;
        let csid = self.csid();
        let msg_header = [11usize, 7, 3, 0][usize::from(fmt)];
        let base = basic + msg_header;
        let extended = if fmt == 3 {
            match self.streams.get(&csid) {
                Some(s) => s.extended,
                None => return Err(ChunkGuardError::NoPreviousHeader { fmt, csid }),
            }
        } else {
            if self.header.len() < basic + 3 {
                return Ok(Some(basic + 3)); // read the timestamp field first
            }
            let ts = &self.header[basic..basic + 3];
            ts == [0xFF, 0xFF, 0xFF]
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

    fn finish_header(&mut self) -> Result<(), ChunkGuardError> {
        // The length may have grown once the timestamp field was known.
        if let Ok(Some(n)) = self.header_len()
            && self.header.len() < n
        {
            return Ok(());
        }
        let fmt = self.header[0] >> 6;
        let csid = self.csid();
        let basic = match self.header[0] & 0x3F {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        let h = &self.header[basic..];
        let prev = self.streams.get(&csid).copied();
        let mut state = match (fmt, prev) {
            (0, p) => {
                let mut s = p.unwrap_or_default();
                s.msg_len = u32::from_be_bytes([0, h[3], h[4], h[5]]);
                s.msg_type = h[6];
                s
            }
            (1, Some(mut s)) => {
                s.msg_len = u32::from_be_bytes([0, h[3], h[4], h[5]]);
                s.msg_type = h[6];
                s
            }
            (_, Some(s)) => s,
            (fmt, None) => return Err(ChunkGuardError::NoPreviousHeader { fmt, csid }),
        };
        if fmt != 3 {
            state.extended = h[..3] == [0xFF, 0xFF, 0xFF];
            if state.remaining != 0 && fmt != 3 {
                // A new header in the middle of a message: rml_rtmp restarts the message.
                state.remaining = 0;
            }
        }
        let starting = state.remaining == 0;
        if starting {
            state.remaining = state.msg_len;
            if state.msg_type == 1 {
                if state.msg_len != 4 {
                    return Err(ChunkGuardError::BadControlLength(state.msg_len));
                }
                self.control.clear();
            }
        }
        self.streams.insert(csid, state);
        self.check_partials()?;
        self.header.clear();
        let this_chunk = state.remaining.min(self.chunk_size);
        if this_chunk == 0 {
            // zero-length message: complete immediately
            self.end_chunk(csid)?;
        } else {
            self.stage = Stage::Payload { csid, left: this_chunk };
        }
        Ok(())
    }

    fn end_chunk(&mut self, csid: u32) -> Result<(), ChunkGuardError> {
        let chunk_size = self.chunk_size;
        let Some(state) = self.streams.get_mut(&csid) else {
            return Ok(());
        };
        let this_chunk = state.remaining.min(chunk_size);
        state.remaining -= this_chunk;
        if state.remaining == 0 && state.msg_type == 1 && self.control.len() == 4 {
            let size = u32::from_be_bytes([self.control[0], self.control[1], self.control[2], self.control[3]]);
            if size == 0 || size > MAX_CHUNK_SIZE {
                return Err(ChunkGuardError::BadChunkSize(size));
            }
            self.chunk_size = size;
            self.control.clear();
        }
        Ok(())
    }

    fn check_partials(&self) -> Result<(), ChunkGuardError> {
        let mut count = 0usize;
        let mut bytes = 0u64;
        for s in self.streams.values() {
            if s.remaining > 0 {
                count += 1;
                bytes += u64::from(s.msg_len);
            }
        }
        if count > self.limits.max_partial_messages {
            return Err(ChunkGuardError::TooManyPartialMessages(count));
        }
        if bytes > self.limits.max_partial_bytes {
            return Err(ChunkGuardError::TooManyPartialBytes(bytes));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn follows_chunk_size_changes_and_split_messages() {
        let mut g = ChunkGuard::new(GuardLimits::default());
        let mut stream = set_chunk_size(4096);
        // a 5000-byte video message: 4096 + type-3 continuation of 904
        stream.extend(type0(6, 40, 5000, 9, 1));
        stream.extend(std::iter::repeat_n(0xAA, 4096));
        stream.push(0xC6);
        stream.extend(std::iter::repeat_n(0xBB, 904));
        // feed byte by byte to exercise resumption
        for b in &stream {
            g.feed(std::slice::from_ref(b)).expect("valid stream");
        }
        assert_eq!(g.chunk_size(), 4096);
        assert!(matches!(g.stage, Stage::Header));
    }

    #[test]
    fn extended_timestamps_on_continuations() {
        let mut g = ChunkGuard::new(GuardLimits::default());
        let mut stream = type0(6, 0x0100_0000, 200, 9, 1);
        stream.extend(std::iter::repeat_n(1, 128));
        stream.push(0xC6);
        stream.extend(0x0100_0000u32.to_be_bytes());
        stream.extend(std::iter::repeat_n(2, 72));
        g.feed(&stream).expect("valid stream");
        assert!(matches!(g.stage, Stage::Header));
    }

    #[test]
    fn refuses_zero_and_huge_chunk_sizes() {
        let mut g = ChunkGuard::new(GuardLimits::default());
        assert_eq!(g.feed(&set_chunk_size(0)), Err(ChunkGuardError::BadChunkSize(0)));
        let mut g = ChunkGuard::new(GuardLimits::default());
        assert_eq!(g.feed(&set_chunk_size(0x8000_0000)), Err(ChunkGuardError::BadChunkSize(0x8000_0000)));
    }

    #[test]
    fn refuses_orphan_continuations_and_memory_amplification() {
        let mut g = ChunkGuard::new(GuardLimits::default());
        assert!(matches!(g.feed(&[0xC5, 1, 2]), Err(ChunkGuardError::NoPreviousHeader { .. })));
        let mut g = ChunkGuard::new(GuardLimits::default());
        let mut res = Ok(());
        for csid in 3..40u8 {
            let mut s = type0(csid, 0, 0xFF_FFFF, 9, 1);
            s.extend(std::iter::repeat_n(0, 128));
            res = g.feed(&s);
            if res.is_err() {
                break;
            }
        }
        assert!(matches!(res, Err(ChunkGuardError::TooManyPartialBytes(_))));
    }
}
