//! Outbound media chunking without copying payloads.
//!
//! A message becomes chunk headers (kept in a small owned buffer) interleaved with
//! slices of the shared payload [`Bytes`]; the socket gets them with vectored writes.
//! Every message starts with a type-0 header on our own chunk streams (which `rml_rtmp`
//! never uses), so no header-compression state is shared with the session's serializer.

use std::io::{self, IoSlice};
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::AsyncWrite;

/// Chunk stream ids used for media (rml_rtmp uses 2–6).
pub(crate) const CSID_DATA: u8 = 7;
pub(crate) const CSID_AUDIO: u8 = 8;
pub(crate) const CSID_VIDEO: u8 = 9;

pub(crate) const TYPE_AUDIO: u8 = 8;
pub(crate) const TYPE_VIDEO: u8 = 9;
pub(crate) const TYPE_DATA_AMF0: u8 = 18;
pub(crate) const TYPE_COMMAND_AMF0: u8 = 20;

#[derive(Debug)]
enum Segment {
    Own(Range<usize>),
    Shared(Bytes),
}

/// Bytes queued for the socket: owned header bytes and shared payload slices.
#[derive(Debug, Default)]
pub(crate) struct OutBuf {
    own: Vec<u8>,
    segments: Vec<Segment>,
    len: usize,
    /// Write progress: segment index and offset within it.
    pos: (usize, usize),
    /// Contiguous copy for streams without vectored writes (TLS).
    flat: Vec<u8>,
    flat_pos: usize,
}

impl OutBuf {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn clear(&mut self) {
        self.own.clear();
        self.segments.clear();
        self.len = 0;
        self.pos = (0, 0);
        self.flat.clear();
        self.flat_pos = 0;
    }

    pub(crate) fn push_own(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let start = self.own.len();
        self.own.extend_from_slice(bytes);
        let end = self.own.len();
        match self.segments.last_mut() {
            Some(Segment::Own(r)) if r.end == start => r.end = end,
            _ => self.segments.push(Segment::Own(start..end)),
        }
        self.len += bytes.len();
    }

    pub(crate) fn push_shared(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        self.segments.push(Segment::Shared(bytes));
    }

    /// Writes everything, with vectored writes where the stream supports them. Keeps its
    /// progress, so it can be polled again after `Pending`; clears the buffer when done
    /// and returns the number of bytes written.
    pub(crate) fn poll_write_to<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        w: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<u64>> {
        if self.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let total = self.len as u64;
        if !w.is_write_vectored() {
            // TLS and other non-vectored streams: one contiguous buffer.
            if self.flat.is_empty() {
                let mut flat = std::mem::take(&mut self.flat);
                for seg in &self.segments {
                    flat.extend_from_slice(self.slice(seg));
                }
                self.flat = flat;
            }
            while self.flat_pos < self.flat.len() {
                let n = ready!(Pin::new(&mut *w).poll_write(cx, &self.flat[self.flat_pos..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::WriteZero, "socket accepted no bytes")));
                }
                self.flat_pos += n;
            }
            self.clear();
            return Poll::Ready(Ok(total));
        }
        while self.pos.0 < self.segments.len() {
            let (idx, off) = self.pos;
            let mut slices: [IoSlice<'_>; 64] = [IoSlice::new(&[]); 64];
            let mut count = 0;
            let mut first_off = off;
            for seg in self.segments[idx..].iter().take(64) {
                slices[count] = IoSlice::new(&self.slice(seg)[first_off..]);
                first_off = 0;
                count += 1;
            }
            let mut n = ready!(Pin::new(&mut *w).poll_write_vectored(cx, &slices[..count]))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::WriteZero, "socket accepted no bytes")));
            }
            let (mut idx, mut off) = self.pos;
            while n > 0 {
                let seg_left = self.slice(&self.segments[idx]).len() - off;
                if n >= seg_left {
                    n -= seg_left;
                    idx += 1;
                    off = 0;
                } else {
                    off += n;
                    n = 0;
                }
            }
            self.pos = (idx, off);
        }
        self.clear();
        Poll::Ready(Ok(total))
    }

    fn slice<'a>(&'a self, seg: &'a Segment) -> &'a [u8] {
        match seg {
            Segment::Own(r) => &self.own[r.clone()],
            Segment::Shared(b) => b,
        }
    }

    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for seg in &self.segments {
            v.extend_from_slice(self.slice(seg));
        }
        v
    }
}

/// Serializes media messages into RTMP chunks for one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MediaChunker {
    pub(crate) chunk_size: u32,
    pub(crate) stream_id: u32,
}

impl MediaChunker {
    /// Appends one message (`prefix` + `payload`) to `out`.
    pub(crate) fn message(
        &self,
        out: &mut OutBuf,
        csid: u8,
        type_id: u8,
        timestamp: u32,
        prefix: &[u8],
        payload: &Bytes,
    ) {
        debug_assert!((3..64).contains(&csid));
        let total = prefix.len() + payload.len();
        let extended = timestamp >= 0xFF_FFFF;
        let ts_field = if extended { 0xFF_FFFF } else { timestamp };
        let mut h = [0u8; 16];
        h[0] = csid;
        h[1..4].copy_from_slice(&ts_field.to_be_bytes()[1..]);
        h[4..7].copy_from_slice(&(total.min(0xFF_FFFF) as u32).to_be_bytes()[1..]);
        h[7] = type_id;
        h[8..12].copy_from_slice(&self.stream_id.to_le_bytes());
        let mut hlen = 12;
        if extended {
            h[12..16].copy_from_slice(&timestamp.to_be_bytes());
            hlen = 16;
        }
        out.push_own(&h[..hlen]);
        let cs = self.chunk_size.max(1) as usize;
        // first chunk: prefix then as much payload as fits
        let prefix_len = prefix.len().min(cs);
        out.push_own(&prefix[..prefix_len]);
        let mut written = prefix_len;
        let first_payload = (cs - prefix_len).min(payload.len());
        out.push_shared(payload.slice(..first_payload));
        written += first_payload;
        let mut pos = first_payload;
        let mut cont = [0u8; 5];
        cont[0] = 0xC0 | csid;
        let cont_len = if extended {
            cont[1..5].copy_from_slice(&timestamp.to_be_bytes());
            5
        } else {
            1
        };
        while written < total {
            out.push_own(&cont[..cont_len]);
            let n = cs.min(payload.len() - pos);
            out.push_shared(payload.slice(pos..pos + n));
            pos += n;
            written += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::ChunkDeserializer;

    fn roundtrip(chunk_size: u32, ts: u32, payload_len: usize) {
        let payload = Bytes::from((0..payload_len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let chunker = MediaChunker { chunk_size, stream_id: 1 };
        let mut out = OutBuf::default();
        chunker.message(&mut out, CSID_VIDEO, TYPE_VIDEO, ts, &[0x17, 1, 0, 0, 0], &payload);
        chunker.message(&mut out, CSID_VIDEO, TYPE_VIDEO, ts.wrapping_add(33), &[0x27, 1, 0, 0, 0], &payload);
        let bytes = out.to_vec();
        assert_eq!(bytes.len(), out.len());
        let mut de = ChunkDeserializer::new();
        if chunk_size != 128 {
            de.set_max_chunk_size(chunk_size as usize).expect("chunk size");
        }
        let m1 = de.get_next_message(&bytes).expect("parse").expect("message 1");
        assert_eq!(m1.timestamp.value, ts);
        assert_eq!(m1.type_id, TYPE_VIDEO);
        assert_eq!(m1.message_stream_id, 1);
        assert_eq!(&m1.data[..5], &[0x17, 1, 0, 0, 0]);
        assert_eq!(&m1.data[5..], &payload[..]);
        let m2 = de.get_next_message(&[]).expect("parse").expect("message 2");
        assert_eq!(m2.timestamp.value, ts.wrapping_add(33));
        assert_eq!(&m2.data[5..], &payload[..]);
    }

    #[test]
    fn chunks_parse_back_with_rml_rtmp() {
        roundtrip(128, 0, 10);
        roundtrip(128, 1000, 1000);
        roundtrip(4096, 40, 100_000);
        roundtrip(4096, 40, 4091); // exactly one chunk with the prefix
    }

    #[test]
    fn extended_timestamps_on_every_chunk() {
        roundtrip(128, 0x0100_0000, 600);
        roundtrip(4096, 0xFFFF_FFF0, 9000);
    }

    #[tokio::test]
    async fn vectored_write_handles_partial_writes() {
        let payload = Bytes::from(vec![7u8; 50_000]);
        let mut out = OutBuf::default();
        MediaChunker { chunk_size: 128, stream_id: 1 }.message(
            &mut out,
            CSID_AUDIO,
            TYPE_AUDIO,
            5,
            &[0xAF, 1],
            &payload,
        );
        let expected = out.to_vec();
        // a duplex pipe with a tiny buffer forces many short writes
        let (mut a, mut b) = tokio::io::duplex(97);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got).await.map(|_| got)
        });
        let written = std::future::poll_fn(|cx| out.poll_write_to(&mut a, cx)).await.expect("write");
        assert_eq!(written as usize, expected.len());
        assert!(out.is_empty());
        drop(a);
        let got = reader.await.expect("join").expect("read");
        assert_eq!(got, expected);
    }
}
