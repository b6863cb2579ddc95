//! MPEG-TS (ISO/IEC 13818-1) as HLS uses it: a small demuxer (PAT → PMT → PES of H.264
//! and ADTS AAC) and a muxer writing the same subset. Sans-IO and fuzzed.

use bytes::Bytes;

use super::HlsError;
use crate::codec::aac::AudioSpecificConfig;
use crate::codec::avc::{AvcDecoderConfig, avcc_nal_units};
use crate::codec::hevc::{self, HevcDecoderConfig};
use crate::error::{Error, Result};
use crate::media::Codec;

/// Size of one transport packet.
pub const PACKET_SIZE: usize = 188;
const SYNC: u8 = 0x47;
/// Stream types of the PMT we understand.
const STREAM_TYPE_H264: u8 = 0x1B;
const STREAM_TYPE_HEVC: u8 = 0x24;
const STREAM_TYPE_ADTS_AAC: u8 = 0x0F;
/// A PES larger than this is refused (a 4K intra frame is a few MB).
const MAX_PES: usize = 16 << 20;
/// PTS and DTS are 33-bit counters of the 90 kHz clock.
pub const PTS_WRAP: i64 = 1 << 33;

fn bad(msg: impl Into<String>) -> Error {
    HlsError::Segment(msg.into()).into()
}

/// What an elementary stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EsKind {
    /// H.264 Annex B access units.
    H264,
    /// HEVC Annex B access units.
    Hevc,
    /// AAC in ADTS frames.
    AdtsAac,
}

/// One reassembled PES packet.
#[derive(Clone, Debug)]
pub struct Pes {
    pub kind: EsKind,
    /// 33-bit 90 kHz presentation time, as on the wire.
    pub pts: Option<u64>,
    /// 33-bit 90 kHz decode time (the PTS when absent).
    pub dts: Option<u64>,
    pub data: Bytes,
}

#[derive(Debug)]
struct EsState {
    pid: u16,
    kind: EsKind,
    buf: Vec<u8>,
    pts: Option<u64>,
    dts: Option<u64>,
    started: bool,
}

/// Demultiplexes transport packets into PES packets of the first H.264 and AAC streams.
#[derive(Debug, Default)]
pub struct TsDemuxer {
    pmt_pid: Option<u16>,
    streams: Vec<EsState>,
    /// Packets seen (for "is this TS at all" checks).
    packets: u64,
}

impl TsDemuxer {
    pub fn new() -> TsDemuxer {
        TsDemuxer::default()
    }

    /// Whether a PMT announced at least one stream we can read.
    pub fn has_streams(&self) -> bool {
        !self.streams.is_empty()
    }

    /// (video, audio): whether the PMT announced an H.264 and an AAC stream.
    pub fn announced(&self) -> (bool, bool) {
        let has = |k| self.streams.iter().any(|s| s.kind == k);
        (has(EsKind::H264) || has(EsKind::Hevc), has(EsKind::AdtsAac))
    }

    /// Feeds whole transport packets (a segment); completed PES packets go to `out`.
    /// Data that does not start with a sync byte is refused; a lost sync later is skipped
    /// to the next sync byte.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Pes>) -> Result<()> {
        if self.packets == 0 && data.first() != Some(&SYNC) {
            return Err(bad("not MPEG-TS (no sync byte at the start)"));
        }
        let mut pos = 0;
        while pos + PACKET_SIZE <= data.len() {
            if data[pos] != SYNC {
                // resynchronise: the next sync byte followed by another one a packet later
                pos += 1;
                while pos + PACKET_SIZE <= data.len()
                    && !(data[pos] == SYNC && data.get(pos + PACKET_SIZE).is_none_or(|&b| b == SYNC))
                {
                    pos += 1;
                }
                continue;
            }
            self.packet(&data[pos..pos + PACKET_SIZE], out)?;
            self.packets += 1;
            pos += PACKET_SIZE;
        }
        Ok(())
    }

    /// Emits the PES packets still being assembled (the end of a segment).
    pub fn flush(&mut self, out: &mut Vec<Pes>) {
        for s in &mut self.streams {
            emit(s, out);
        }
    }

    fn packet(&mut self, p: &[u8], out: &mut Vec<Pes>) -> Result<()> {
        let pusi = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
        let afc = (p[3] >> 4) & 3;
        if p[1] & 0x80 != 0 {
            // transport error indicator: the packet is damaged
            return Ok(());
        }
        let mut start = 4;
        if afc & 2 != 0 {
            start += 1 + usize::from(p[4]);
        }
        if afc & 1 == 0 || start >= PACKET_SIZE {
            return Ok(());
        }
        let payload = &p[start..];
        if pid == 0 {
            if pusi && let Some(section) = psi_section(payload) {
                self.pat(section);
            }
        } else if Some(pid) == self.pmt_pid {
            if pusi && let Some(section) = psi_section(payload) {
                self.pmt(section);
            }
        } else if let Some(s) = self.streams.iter_mut().find(|s| s.pid == pid) {
            if pusi {
                emit(s, out);
                let (pts, dts, body) = pes_header(payload)?;
                s.pts = pts;
                s.dts = dts;
                s.started = true;
                s.buf.extend_from_slice(body);
            } else if s.started {
                if s.buf.len() + payload.len() > MAX_PES {
                    return Err(bad(format!("PES on PID {pid} exceeds {} MiB", MAX_PES >> 20)));
                }
                s.buf.extend_from_slice(payload);
            }
        }
        Ok(())
    }

    fn pat(&mut self, section: &[u8]) {
        // table_id 0; programs after the 8-byte header, before the CRC
        if section.first() != Some(&0) || section.len() < 12 {
            return;
        }
        for prog in section[8..section.len() - 4].chunks_exact(4) {
            let number = u16::from_be_bytes([prog[0], prog[1]]);
            if number != 0 {
                self.pmt_pid = Some((u16::from(prog[2] & 0x1F) << 8) | u16::from(prog[3]));
                return;
            }
        }
    }

    fn pmt(&mut self, section: &[u8]) {
        if section.first() != Some(&2) || section.len() < 16 {
            return;
        }
        let info_len = usize::from(u16::from_be_bytes([section[10] & 0x0F, section[11]]));
        let mut pos = 12 + info_len;
        let end = section.len() - 4;
        let mut found = Vec::new();
        while pos + 5 <= end {
            let stream_type = section[pos];
            let pid = (u16::from(section[pos + 1] & 0x1F) << 8) | u16::from(section[pos + 2]);
            let es_len = usize::from(u16::from_be_bytes([section[pos + 3] & 0x0F, section[pos + 4]]));
            let kind = match stream_type {
                STREAM_TYPE_H264 => Some(EsKind::H264),
                STREAM_TYPE_HEVC => Some(EsKind::Hevc),
                STREAM_TYPE_ADTS_AAC => Some(EsKind::AdtsAac),
                _ => None,
            };
            // the first video and the first audio stream
            let video = |k: EsKind| k != EsKind::AdtsAac;
            if let Some(kind) = kind
                && !found.iter().any(|(_, k)| video(*k) == video(kind))
            {
                found.push((pid, kind));
            }
            pos += 5 + es_len;
        }
        // keep partial PES of streams that stay (a repeated PMT mid-stream)
        self.streams.retain(|s| found.contains(&(s.pid, s.kind)));
        for (pid, kind) in found {
            if !self.streams.iter().any(|s| s.pid == pid) {
                self.streams.push(EsState { pid, kind, buf: Vec::new(), pts: None, dts: None, started: false });
            }
        }
    }
}

fn emit(s: &mut EsState, out: &mut Vec<Pes>) {
    if s.started && !s.buf.is_empty() {
        out.push(Pes { kind: s.kind, pts: s.pts, dts: s.dts.or(s.pts), data: Bytes::from(std::mem::take(&mut s.buf)) });
    }
    s.buf.clear();
    s.started = false;
}

/// The section a PSI payload starts (after its pointer field), bounded by section_length.
fn psi_section(payload: &[u8]) -> Option<&[u8]> {
    let pointer = usize::from(*payload.first()?);
    let section = payload.get(1 + pointer..)?;
    if section.len() < 3 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([section[1] & 0x0F, section[2]]));
    section.get(..3 + len)
}

fn read_ts(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1) & 0x07) << 30
        | u64::from(b[1]) << 22
        | (u64::from(b[2]) >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4]) >> 1
}

type PesHeader<'a> = (Option<u64>, Option<u64>, &'a [u8]);

fn pes_header(p: &[u8]) -> Result<PesHeader<'_>> {
    if p.len() < 9 || p[..3] != [0, 0, 1] {
        return Err(bad("PES without a start code"));
    }
    let header_len = usize::from(p[8]);
    let body = p.get(9 + header_len..).ok_or_else(|| bad("PES header longer than its packet"))?;
    let flags = p[7] >> 6;
    let pts = (flags & 2 != 0).then(|| p.get(9..14).map(read_ts)).flatten();
    let dts = (flags == 3).then(|| p.get(14..19).map(read_ts)).flatten();
    Ok((pts, dts, body))
}

/// Splits an ADTS stream into (header length, whole frame length) pairs; stops at garbage.
pub fn adts_frames(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < 7 || rest[0] != 0xFF || rest[1] & 0xF0 != 0xF0 {
            return None;
        }
        let len = (usize::from(rest[3] & 3) << 11) | (usize::from(rest[4]) << 3) | (usize::from(rest[5]) >> 5);
        if len < 7 || len > rest.len() {
            return None;
        }
        let (frame, tail) = rest.split_at(len);
        rest = tail;
        Some(frame)
    })
}

// ---------------------------------------------------------------------------------------
// Muxer
// ---------------------------------------------------------------------------------------

const PMT_PID: u16 = 0x1000;
const VIDEO_PID: u16 = 0x100;
const AUDIO_PID: u16 = 0x101;
/// Timestamps written are shifted by this (as ffmpeg does) so early B-frame DTS stay positive.
pub const MUX_DELAY: i64 = 126_000;

const SAMPLE_RATES: [u32; 13] =
    [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

/// The video a [`TsMuxer`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TsVideo {
    H264(AvcDecoderConfig),
    Hevc(HevcDecoderConfig),
}

impl TsVideo {
    /// The TS form of a track's codec (H.264 or HEVC; AV1 has no TS mapping in use).
    pub fn of(codec: &Codec) -> Option<TsVideo> {
        match codec {
            Codec::H264(c) => Some(TsVideo::H264(c.clone())),
            Codec::Hevc(c) => Some(TsVideo::Hevc(c.clone())),
            _ => None,
        }
    }

    fn stream_type(&self) -> u8 {
        match self {
            TsVideo::H264(_) => STREAM_TYPE_H264,
            TsVideo::Hevc(_) => STREAM_TYPE_HEVC,
        }
    }

    /// An access unit delimiter NAL unit.
    fn delimiter(&self) -> &'static [u8] {
        match self {
            TsVideo::H264(_) => &[0x09, 0xF0],
            TsVideo::Hevc(_) => &[0x46, 0x01, 0x50],
        }
    }

    fn is_delimiter(&self, nal: &[u8]) -> bool {
        match self {
            TsVideo::H264(_) => nal.first().map(|b| b & 0x1F) == Some(9),
            TsVideo::Hevc(_) => hevc::nal_type(nal) == Some(hevc::NAL_AUD),
        }
    }

    /// The parameter sets written before each keyframe.
    fn parameter_sets(&self) -> Vec<&Bytes> {
        match self {
            TsVideo::H264(c) => c.sps.iter().chain(c.pps.iter()).collect(),
            TsVideo::Hevc(c) => c.vps.iter().chain(c.sps.iter()).chain(c.pps.iter()).collect(),
        }
    }

    fn nal_length_size(&self) -> u8 {
        match self {
            TsVideo::H264(c) => c.nal_length_size,
            TsVideo::Hevc(c) => c.nal_length_size,
        }
    }
}

/// Writes H.264/HEVC (length-prefixed in, Annex B out) and AAC (raw in, ADTS out) into
/// transport packets.
#[derive(Debug)]
pub struct TsMuxer {
    video: Option<TsVideo>,
    audio: Option<AudioSpecificConfig>,
    /// Continuity counters: PAT, PMT, video, audio.
    cc: [u8; 4],
}

impl TsMuxer {
    pub fn new(video: Option<TsVideo>, audio: Option<AudioSpecificConfig>) -> TsMuxer {
        TsMuxer { video, audio, cc: [0; 4] }
    }

    fn pcr_pid(&self) -> u16 {
        if self.video.is_some() { VIDEO_PID } else { AUDIO_PID }
    }

    /// Writes the PAT and PMT (at the start of every segment).
    pub fn write_tables(&mut self, out: &mut Vec<u8>) {
        let pat = [0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xE0 | (PMT_PID >> 8) as u8, PMT_PID as u8];
        self.section(out, 0, 0, 0x00, &pat);
        let mut pmt = vec![0x00, 0x01, 0xC1, 0x00, 0x00];
        let pcr = self.pcr_pid();
        pmt.extend_from_slice(&[0xE0 | (pcr >> 8) as u8, pcr as u8, 0xF0, 0x00]);
        if let Some(v) = &self.video {
            pmt.extend_from_slice(&[v.stream_type(), 0xE0 | (VIDEO_PID >> 8) as u8, VIDEO_PID as u8, 0xF0, 0x00]);
        }
        if self.audio.is_some() {
            pmt.extend_from_slice(&[STREAM_TYPE_ADTS_AAC, 0xE0 | (AUDIO_PID >> 8) as u8, AUDIO_PID as u8, 0xF0, 0x00]);
        }
        self.section(out, PMT_PID, 1, 0x02, &pmt);
    }

    /// `body` is the section after section_length (table id extension onwards).
    fn section(&mut self, out: &mut Vec<u8>, pid: u16, cc_index: usize, table_id: u8, body: &[u8]) {
        let mut s = Vec::with_capacity(body.len() + 8);
        let len = body.len() + 4; // + CRC
        s.extend_from_slice(&[table_id, 0xB0 | ((len >> 8) as u8 & 0x0F), len as u8]);
        s.extend_from_slice(body);
        let crc = crc32_mpeg2(&s);
        s.extend_from_slice(&crc.to_be_bytes());
        let start = out.len();
        out.extend_from_slice(&[SYNC, 0x40 | (pid >> 8) as u8, pid as u8, 0x10 | self.next_cc(cc_index), 0x00]);
        out.extend_from_slice(&s);
        out.resize(start + PACKET_SIZE, 0xFF);
    }

    fn next_cc(&mut self, i: usize) -> u8 {
        let c = self.cc[i];
        self.cc[i] = (c + 1) & 0x0F;
        c
    }

    /// Writes one video access unit; `pts`/`dts` in 90 kHz (before [`MUX_DELAY`]).
    pub fn write_video(&mut self, out: &mut Vec<u8>, pts: i64, dts: i64, keyframe: bool, avcc: &[u8]) -> Result<()> {
        let Some(video) = &self.video else { return Err(bad("no video track in this TS")) };
        let mut es = Vec::with_capacity(avcc.len() + 64);
        // an access unit delimiter, the parameter sets before a keyframe, then the NAL
        // units without any delimiter of their own
        es.extend_from_slice(&[0, 0, 0, 1]);
        es.extend_from_slice(video.delimiter());
        if keyframe {
            for set in video.parameter_sets() {
                es.extend_from_slice(&[0, 0, 0, 1]);
                es.extend_from_slice(set);
            }
        }
        for nal in avcc_nal_units(avcc, video.nal_length_size()) {
            let nal = nal?;
            if video.is_delimiter(nal) {
                continue;
            }
            es.extend_from_slice(&[0, 0, 0, 1]);
            es.extend_from_slice(nal);
        }
        let pcr = (self.pcr_pid() == VIDEO_PID).then_some(dts + MUX_DELAY - 9000);
        self.pes(out, VIDEO_PID, 2, 0xE0, pts, Some(dts), keyframe, pcr, &es);
        Ok(())
    }

    /// Writes one raw AAC frame (an ADTS header is added); `pts` in 90 kHz.
    pub fn write_audio(&mut self, out: &mut Vec<u8>, pts: i64, raw: &[u8]) -> Result<()> {
        let Some(asc) = &self.audio else { return Err(bad("no audio track in this TS")) };
        let len = raw.len() + 7;
        if len > 0x1FFF {
            return Err(bad("AAC frame too large for ADTS"));
        }
        let sf = SAMPLE_RATES.iter().position(|&r| r == asc.sample_rate).unwrap_or(4) as u8;
        let profile = asc.object_type.saturating_sub(1).min(3);
        let ch = asc.channels & 7;
        let mut es = Vec::with_capacity(len);
        es.extend_from_slice(&[
            0xFF,
            0xF1,
            (profile << 6) | (sf << 2) | (ch >> 2),
            ((ch & 3) << 6) | ((len >> 11) as u8 & 3),
            (len >> 3) as u8,
            (((len & 7) as u8) << 5) | 0x1F,
            0xFC,
        ]);
        es.extend_from_slice(raw);
        let pcr = (self.pcr_pid() == AUDIO_PID).then_some(pts + MUX_DELAY - 9000);
        self.pes(out, AUDIO_PID, 3, 0xC0, pts, None, true, pcr, &es);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn pes(
        &mut self,
        out: &mut Vec<u8>,
        pid: u16,
        cc_index: usize,
        stream_id: u8,
        pts: i64,
        dts: Option<i64>,
        random_access: bool,
        pcr: Option<i64>,
        es: &[u8],
    ) {
        let pts = (pts + MUX_DELAY).rem_euclid(PTS_WRAP) as u64;
        let dts = dts.map(|d| (d + MUX_DELAY).rem_euclid(PTS_WRAP) as u64).filter(|&d| d != pts);
        let mut header = vec![0, 0, 1, stream_id, 0, 0, 0x80];
        match dts {
            Some(d) => {
                header.extend_from_slice(&[0xC0, 10]);
                header.extend_from_slice(&encode_ts(0x3, pts));
                header.extend_from_slice(&encode_ts(0x1, d));
            }
            None => {
                header.extend_from_slice(&[0x80, 5]);
                header.extend_from_slice(&encode_ts(0x2, pts));
            }
        }
        let pes_len = header.len() - 6 + es.len();
        if stream_id != 0xE0 || pes_len <= 0xFFFF {
            let l = u16::try_from(pes_len).unwrap_or(0);
            header[4..6].copy_from_slice(&l.to_be_bytes());
        }
        let mut payload = header;
        payload.extend_from_slice(es);
        let mut rest = &payload[..];
        let mut first = true;
        while !rest.is_empty() {
            let start = out.len();
            let pusi = if first { 0x40 } else { 0 };
            out.extend_from_slice(&[SYNC, pusi | (pid >> 8) as u8, pid as u8, 0]);
            let cc = self.next_cc(cc_index);
            // adaptation field: PCR and random access on the first packet, stuffing on the last
            let mut af = Vec::new();
            if first && (pcr.is_some() || random_access) {
                let mut flags = 0u8;
                if random_access {
                    flags |= 0x40;
                }
                af.push(0);
                if let Some(pcr) = pcr {
                    flags |= 0x10;
                    af.push(flags);
                    let base = pcr.rem_euclid(PTS_WRAP) as u64;
                    af.extend_from_slice(&[
                        (base >> 25) as u8,
                        (base >> 17) as u8,
                        (base >> 9) as u8,
                        (base >> 1) as u8,
                        ((base as u8 & 1) << 7) | 0x7E,
                        0,
                    ]);
                } else {
                    af.push(flags);
                }
            }
            let room = PACKET_SIZE - 4 - af.len();
            let take = rest.len().min(room);
            if take < room {
                // stuffing: grow (or create) the adaptation field
                let stuff = room - take;
                if af.is_empty() {
                    if stuff == 1 {
                        af.push(0);
                    } else {
                        af.push(0);
                        af.push(0);
                        af.resize(stuff, 0xFF);
                    }
                } else {
                    af.resize(af.len() + stuff, 0xFF);
                }
            }
            if !af.is_empty() {
                af[0] = (af.len() - 1) as u8;
                out[start + 3] = 0x30 | cc;
                out.extend_from_slice(&af);
            } else {
                out[start + 3] = 0x10 | cc;
            }
            out.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            first = false;
            debug_assert_eq!(out.len() - start, PACKET_SIZE);
        }
    }
}

fn encode_ts(prefix: u8, ts: u64) -> [u8; 5] {
    [
        (prefix << 4) | (((ts >> 30) as u8 & 7) << 1) | 1,
        (ts >> 22) as u8,
        (((ts >> 15) as u8) << 1) | 1,
        (ts >> 7) as u8,
        ((ts as u8) << 1) | 1,
    ]
}

/// CRC-32/MPEG-2 of a PSI section.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04C1_1DB7 } else { crc << 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::codec::avc::testing::config_240p as config;

    #[test]
    fn crc_matches_the_known_pat() {
        // ffmpeg's PAT for one program, PMT PID 0x1000
        let section = [0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00];
        assert_eq!(crc32_mpeg2(&section), 0x2AB1_04B2);
    }

    #[test]
    fn mux_then_demux_round_trips() {
        let asc = AudioSpecificConfig::parse(Bytes::from_static(&[0x12, 0x10])).expect("asc");
        let mut mux = TsMuxer::new(Some(TsVideo::H264(config())), Some(asc));
        let mut ts = Vec::new();
        mux.write_tables(&mut ts);
        // a big IDR access unit spanning many packets, then a small one
        let mut idr = vec![0, 0, 0x03, 0xE8, 0x65];
        idr.extend((0..999).map(|i| (i % 251) as u8 | 1));
        mux.write_video(&mut ts, 3000, 0, true, &idr).expect("video");
        mux.write_audio(&mut ts, 100, &[0x21, 0x10, 0x04]).expect("audio");
        mux.write_video(&mut ts, 6000, 3000, false, &[0, 0, 0, 2, 0x41, 0x9A]).expect("video");
        assert_eq!(ts.len() % PACKET_SIZE, 0);
        let mut demux = TsDemuxer::new();
        let mut pes = Vec::new();
        demux.push(&ts, &mut pes).expect("demux");
        demux.flush(&mut pes);
        assert_eq!(pes.len(), 3);
        // a PES is complete when the next one of its PID starts (or at the end)
        let audio = pes.remove(2);
        pes.insert(1, audio);
        assert_eq!(pes[0].kind, EsKind::H264);
        assert_eq!(pes[0].pts, Some(3000 + MUX_DELAY as u64));
        assert_eq!(pes[0].dts, Some(MUX_DELAY as u64));
        let nals: Vec<&[u8]> = crate::codec::avc::annexb_nal_units(&pes[0].data).collect();
        assert_eq!(nals.len(), 4, "AUD, SPS, PPS, IDR");
        assert_eq!(nals[3], &idr[4..]);
        assert_eq!(pes[1].kind, EsKind::AdtsAac);
        let frames: Vec<&[u8]> = adts_frames(&pes[1].data).collect();
        assert_eq!(frames, vec![&[0xFF, 0xF1, 0x50, 0x80, 0x01, 0x5F, 0xFC, 0x21, 0x10, 0x04][..]]);
        assert_eq!(pes[2].dts, Some(3000 + MUX_DELAY as u64));
    }

    #[test]
    fn refuses_what_is_not_ts_and_survives_garbage() {
        let mut d = TsDemuxer::new();
        let mut out = Vec::new();
        assert!(d.push(b"<html>not found</html>", &mut out).is_err());
        let mut junk = vec![SYNC; 188 * 4];
        junk[1] = 0x1F;
        junk[200] = 0x00;
        d.push(&junk, &mut out).expect("resyncs");
        assert!(out.is_empty());
    }
}
