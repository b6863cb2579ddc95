//! RTP → media model: the RTP header, H.264 (RFC 6184: single NAL unit, STAP-A, FU-A) and
//! H.265 (RFC 7798: single NAL unit, AP, FU) into length-prefixed access units, AAC (RFC 3640 `mpeg4-generic`, AAC-hbr) into raw access units, and
//! 32-bit RTP timestamps unwrapped into a 64-bit timeline. Sans-IO and fuzzed.

use bytes::Bytes;

use crate::codec::avc::ParameterSets;

/// A malformed RTP packet or payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("RTP packet too short ({0} bytes)")]
    Short(usize),
    #[error("not RTP version 2")]
    Version,
    #[error("malformed RTP: {0}")]
    Malformed(&'static str),
}

/// The parts of an RTP packet we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    pub fn parse(data: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        if data.len() < 12 {
            return Err(RtpError::Short(data.len()));
        }
        if data[0] >> 6 != 2 {
            return Err(RtpError::Version);
        }
        let padding = data[0] & 0x20 != 0;
        let extension = data[0] & 0x10 != 0;
        let csrc = usize::from(data[0] & 0x0F);
        let mut start = 12 + 4 * csrc;
        if data.len() < start {
            return Err(RtpError::Malformed("CSRC list past the end"));
        }
        if extension {
            let ext = data.get(start..start + 4).ok_or(RtpError::Malformed("extension header past the end"))?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            if data.len() < start {
                return Err(RtpError::Malformed("extension past the end"));
            }
        }
        let mut end = data.len();
        if padding {
            let pad = usize::from(data[end - 1]);
            if pad == 0 || end - start < pad {
                return Err(RtpError::Malformed("bad padding"));
            }
            end -= pad;
        }
        Ok(RtpPacket {
            marker: data[1] & 0x80 != 0,
            payload_type: data[1] & 0x7F,
            sequence: u16::from_be_bytes([data[2], data[3]]),
            timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
            payload: &data[start..end],
        })
    }
}

/// Unwraps 32-bit RTP timestamps: each value is placed at the point nearest to the previous
/// one (modulo 2³²), so a camera running for days stays monotonic. Starts at 0.
#[derive(Debug, Default, Clone)]
pub struct RtpClock {
    first: Option<u32>,
    last: i64,
    last_raw: u32,
}

impl RtpClock {
    pub fn unwrap(&mut self, ts: u32) -> i64 {
        match self.first {
            None => {
                self.first = Some(ts);
                self.last = 0;
            }
            Some(_) => {
                let delta = ts.wrapping_sub(self.last_raw) as i32;
                self.last += i64::from(delta);
            }
        }
        self.last_raw = ts;
        self.last
    }

    /// The raw RTP timestamp the timeline starts at.
    pub fn origin(&self) -> Option<u32> {
        self.first
    }
}

/// Decode timestamps for video that arrives with presentation times only (RTP).
///
/// With B-frames, frames arrive in decode order but their presentation times are out of
/// order by at most `reorder` frames, so the decode time of the n-th frame is the
/// presentation time of the (n − reorder)-th frame in display order: the
/// (reorder + 1)-th largest presentation time seen so far. That gives evenly spaced decode
/// times at once, with no frame held back. `reorder` starts at 2 (x264's default B-frame
/// pyramid) and grows to the deepest reordering seen; before the first frames, `reorder`
/// frames of 1/30 s are assumed. Decode times always rise (by at least RTMP's millisecond)
/// and stay at or below the presentation time whenever rising allows it. Callers shift
/// presentation times by [`DtsEstimator::allowance`] so that no decode time is negative.
#[derive(Debug, Clone)]
pub struct DtsEstimator {
    allowance: i64,
    min_step: i64,
    frame: i64,
    reorder: usize,
    /// The most recent presentation times, oldest first (a few more than `reorder`).
    recent: std::collections::VecDeque<i64>,
    last: Option<i64>,
}

/// The deepest reordering followed (H.264 allows 16; encoders use up to 4).
const MAX_REORDER: usize = 8;

impl DtsEstimator {
    /// For a clock of `clock_rate` Hz: 200 ms allowance, 1 ms steps.
    pub fn new(clock_rate: u32) -> DtsEstimator {
        let clock = i64::from(clock_rate.max(1000));
        DtsEstimator {
            allowance: clock / 5,
            min_step: clock / 1000,
            frame: clock / 30,
            reorder: 2,
            recent: std::collections::VecDeque::with_capacity(2 * MAX_REORDER + 2),
            last: None,
        }
    }

    /// The allowance in ticks: timelines are shifted by it so no DTS is negative.
    pub fn allowance(&self) -> i64 {
        self.allowance
    }

    /// The reordering depth followed now, in frames.
    #[cfg(test)]
    pub fn reorder(&self) -> usize {
        self.reorder
    }

    /// Moves what was seen so far by `delta` ticks (the presentation times moved with it).
    pub fn shift(&mut self, delta: i64) {
        self.recent.iter_mut().for_each(|p| *p += delta);
        if let Some(last) = &mut self.last {
            *last += delta;
        }
    }

    pub fn dts(&mut self, pts: i64) -> i64 {
        if self.recent.is_empty() {
            // frames assumed before the first, so that the first decode times are spaced too
            for k in (1..=MAX_REORDER as i64).rev() {
                self.recent.push_back(pts.saturating_sub(k * self.frame));
            }
        }
        let later = self.recent.iter().filter(|&&p| p > pts).count();
        self.reorder = self.reorder.max(later.min(MAX_REORDER));
        if self.recent.len() == 2 * MAX_REORDER + 2 {
            self.recent.pop_front();
        }
        self.recent.push_back(pts);
        let mut largest = [i64::MIN; MAX_REORDER + 1];
        for &p in &self.recent {
            // keep the reorder + 1 largest, in descending order
            let n = self.reorder + 1;
            if p > largest[n - 1] {
                let at = largest[..n].iter().position(|&l| p > l).unwrap_or(n - 1);
                largest.copy_within(at..n - 1, at + 1);
                largest[at] = p;
            }
        }
        let candidate = largest[self.reorder].min(pts);
        let dts = match self.last {
            Some(last) => candidate.max(last + self.min_step),
            None => candidate,
        };
        self.last = Some(dts);
        dts
    }
}

/// One complete H.264 access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// RTP timestamp.
    pub timestamp: u32,
    /// AVCC (4-byte lengths), parameter sets and delimiters removed.
    pub data: Bytes,
    /// Contains an IDR slice.
    pub keyframe: bool,
}

/// Reassembles H.264 access units from RTP payloads (packetization modes 0 and 1), or
/// H.265 ones ([`H264Depacketizer::hevc`]).
#[derive(Debug, Default)]
pub struct H264Depacketizer {
    /// Parameter sets seen in band (or given from `sprop-parameter-sets`).
    pub params: ParameterSets,
    /// H.265: the RFC 7798 payload formats, and its video parameter sets.
    hevc: bool,
    pub vps: Vec<Bytes>,
    params_changed: bool,
    nals: Vec<u8>,
    keyframe: bool,
    timestamp: Option<u32>,
    fu: Option<Vec<u8>>,
    /// Units lost to malformed or missing packets (the access unit is dropped).
    pub errors: u64,
    broken: bool,
    last_seq: Option<u16>,
}

/// The largest access unit accepted (a 4K intra frame fits comfortably).
const MAX_ACCESS_UNIT: usize = 16 * 1024 * 1024;

impl H264Depacketizer {
    /// A depacketizer that knows the parameter sets already (from the SDP).
    pub fn with_params(params: ParameterSets) -> H264Depacketizer {
        H264Depacketizer { params, ..Default::default() }
    }

    /// An H.265 depacketizer that knows the parameter sets given in the SDP (may be empty).
    pub fn hevc(vps: Vec<Bytes>, sps: Vec<Bytes>, pps: Vec<Bytes>) -> H264Depacketizer {
        H264Depacketizer { params: ParameterSets { sps, pps }, vps, hevc: true, ..Default::default() }
    }

    /// The track's codec once its parameter sets are known (H.264 or HEVC).
    pub fn codec(&self) -> Option<Result<crate::media::Codec, crate::codec::CodecError>> {
        if self.hevc {
            let complete = !self.vps.is_empty() && self.params.is_complete();
            complete.then(|| {
                crate::codec::hevc::HevcDecoderConfig::from_parameter_sets(
                    &self.vps,
                    &self.params.sps,
                    &self.params.pps,
                )
                .map(crate::media::Codec::Hevc)
            })
        } else {
            self.params.is_complete().then(|| self.params.to_record().map(crate::media::Codec::H264))
        }
    }

    /// Whether the parameter sets changed since the last call (a new configuration).
    pub fn take_params_changed(&mut self) -> bool {
        std::mem::take(&mut self.params_changed)
    }

    fn add_nal(&mut self, nal: &[u8]) {
        let Some(&header) = nal.first() else { return };
        if self.hevc {
            self.add_hevc_nal(nal);
            return;
        }
        match header & 0x1F {
            7 => {
                if self.params.sps.first().map(|s| &s[..]) != Some(nal) {
                    self.params.sps = vec![Bytes::copy_from_slice(nal)];
                    self.params_changed = true;
                }
            }
            8 => {
                if self.params.pps.first().map(|s| &s[..]) != Some(nal) {
                    self.params.pps = vec![Bytes::copy_from_slice(nal)];
                    self.params_changed = true;
                }
            }
            9 => {} // access unit delimiter
            t => {
                if t == 5 {
                    self.keyframe = true;
                }
                if self.nals.len() + nal.len() + 4 > MAX_ACCESS_UNIT {
                    self.broken = true;
                    return;
                }
                self.nals.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                self.nals.extend_from_slice(nal);
            }
        }
    }

    fn add_hevc_nal(&mut self, nal: &[u8]) {
        use crate::codec::hevc::{NAL_AUD, NAL_PPS, NAL_SPS, NAL_VPS, is_irap, nal_type};
        if nal.len() < 2 {
            self.broken = true;
            return;
        }
        let Some(t) = nal_type(nal) else { return };
        let set = match t {
            NAL_VPS => Some(&mut self.vps),
            NAL_SPS => Some(&mut self.params.sps),
            NAL_PPS => Some(&mut self.params.pps),
            _ => None,
        };
        if let Some(set) = set {
            if set.first().map(|s| &s[..]) != Some(nal) {
                *set = vec![Bytes::copy_from_slice(nal)];
                self.params_changed = true;
            }
            return;
        }
        if t == NAL_AUD {
            return;
        }
        self.keyframe |= is_irap(t);
        if self.nals.len() + nal.len() + 4 > MAX_ACCESS_UNIT {
            self.broken = true;
            return;
        }
        self.nals.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        self.nals.extend_from_slice(nal);
    }

    /// The units of an aggregation packet (STAP-A, H.265 AP): a 16-bit size before each.
    fn add_aggregated(&mut self, mut rest: &[u8], truncated: &'static str) -> Result<(), RtpError> {
        while !rest.is_empty() {
            let size = rest.get(..2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            let Some(nal) = size.and_then(|n| rest.get(2..2 + n)) else {
                self.broken = true;
                return Err(RtpError::Malformed(truncated));
            };
            self.add_nal(nal);
            rest = &rest[2 + nal.len()..];
        }
        Ok(())
    }

    /// One fragment of a fragmented unit (FU-A, H.265 FU): `fu_header` holds the start and
    /// end bits, `nal_header` the unit's own header (rebuilt by the caller), `data` the
    /// fragment.
    fn add_fragment(
        &mut self,
        fu_header: u8,
        nal_header: &[u8],
        data: &[u8],
        too_large: &'static str,
    ) -> Result<(), RtpError> {
        if fu_header & 0x80 != 0 {
            let mut nal = Vec::with_capacity(data.len() * 4);
            nal.extend_from_slice(nal_header);
            nal.extend_from_slice(data);
            self.fu = Some(nal);
        } else if let Some(nal) = self.fu.as_mut() {
            if nal.len() + data.len() > MAX_ACCESS_UNIT {
                self.fu = None;
                self.broken = true;
                return Err(RtpError::Malformed(too_large));
            }
            nal.extend_from_slice(data);
        } else {
            // a continuation without its start (lost or truncated): drop the unit
            self.broken = true;
        }
        if fu_header & 0x40 != 0
            && let Some(nal) = self.fu.take()
        {
            self.add_nal(&nal);
        }
        Ok(())
    }

    /// RFC 7798 payloads: a NAL unit (types 0–47), an aggregation packet (48) or a
    /// fragmentation unit (49), without decoding order numbers.
    fn push_hevc(&mut self, p: &[u8]) -> Result<(), RtpError> {
        if p.len() < 2 {
            self.broken = true;
            return Err(RtpError::Malformed("H.265 payload shorter than its header"));
        }
        match (p[0] >> 1) & 0x3F {
            0..=47 => self.add_nal(p),
            48 => self.add_aggregated(&p[2..], "truncated H.265 aggregation packet")?,
            49 => {
                let Some(&fu_header) = p.get(2) else {
                    self.broken = true;
                    return Err(RtpError::Malformed("truncated H.265 FU header"));
                };
                // the NAL header: the payload header's F, layer and TID bits, the FU's type
                let header = [(p[0] & 0x81) | ((fu_header & 0x3F) << 1), p[1]];
                self.add_fragment(fu_header, &header, &p[3..], "H.265 FU too large")?;
            }
            _ => {
                self.broken = true;
                return Err(RtpError::Malformed("unsupported H.265 payload (PACI)"));
            }
        }
        Ok(())
    }

    fn finish_unit(&mut self) -> Option<AccessUnit> {
        let ts = self.timestamp.take()?;
        let data = std::mem::take(&mut self.nals);
        let keyframe = std::mem::take(&mut self.keyframe);
        self.fu = None;
        if std::mem::take(&mut self.broken) {
            self.errors += 1;
            return None;
        }
        (!data.is_empty()).then(|| AccessUnit { timestamp: ts, data: Bytes::from(data), keyframe })
    }

    /// Feeds one RTP packet; returns an access unit when one is complete (at the marker bit,
    /// or when the timestamp moves on).
    pub fn push(&mut self, pkt: &RtpPacket<'_>) -> Result<Option<AccessUnit>, RtpError> {
        let mut done = None;
        if self.timestamp.is_some_and(|t| t != pkt.timestamp) {
            done = self.finish_unit();
        }
        if let Some(last) = self.last_seq
            && pkt.sequence != last.wrapping_add(1)
        {
            // A lost packet: the unit being built (if any) is incomplete.
            if self.timestamp.is_some() || self.fu.is_some() {
                self.broken = true;
            }
        }
        self.last_seq = Some(pkt.sequence);
        self.timestamp = Some(pkt.timestamp);
        let p = pkt.payload;
        if self.hevc {
            self.push_hevc(p)?;
            if pkt.marker {
                let unit = self.finish_unit();
                return Ok(done.or(unit));
            }
            return Ok(done);
        }
        let Some(&header) = p.first() else {
            self.broken = true;
            return Err(RtpError::Malformed("empty H.264 payload"));
        };
        match header & 0x1F {
            1..=23 => self.add_nal(p),
            24 => self.add_aggregated(&p[1..], "truncated STAP-A")?,
            28 => {
                // FU-A: indicator, FU header (S, E, type), fragment
                let Some(&fu_header) = p.get(1) else {
                    self.broken = true;
                    return Err(RtpError::Malformed("truncated FU-A header"));
                };
                let nal_header = [(header & 0xE0) | (fu_header & 0x1F)];
                self.add_fragment(fu_header, &nal_header, &p[2..], "FU-A unit too large")?;
            }
            _ => {
                self.broken = true;
                return Err(RtpError::Malformed("unsupported H.264 packetization (STAP-B, MTAP, FU-B)"));
            }
        }
        if pkt.marker {
            let unit = self.finish_unit();
            return Ok(done.or(unit));
        }
        Ok(done)
    }
}

/// RFC 3640 parameters of an `mpeg4-generic` AAC stream (from the SDP `fmtp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacRtpParams {
    pub size_length: u8,
    pub index_length: u8,
    pub index_delta_length: u8,
}

impl Default for AacRtpParams {
    /// AAC-hbr, as ffmpeg and GStreamer send it.
    fn default() -> AacRtpParams {
        AacRtpParams { size_length: 13, index_length: 3, index_delta_length: 3 }
    }
}

/// Splits RFC 3640 payloads into raw AAC access units with their RTP timestamps (each
/// following unit of a packet is 1024 samples later).
pub fn depacketize_aac(params: AacRtpParams, pkt: &RtpPacket<'_>) -> Result<Vec<(u32, Bytes)>, RtpError> {
    let p = pkt.payload;
    if p.len() < 2 {
        return Err(RtpError::Malformed("AAC payload without AU headers"));
    }
    let header_bits = usize::from(u16::from_be_bytes([p[0], p[1]]));
    let header_bytes = header_bits.div_ceil(8);
    let headers = p.get(2..2 + header_bytes).ok_or(RtpError::Malformed("AU headers past the end"))?;
    let mut data = &p[2 + header_bytes..];
    let per_header = usize::from(params.size_length) + usize::from(params.index_length);
    let later_header = usize::from(params.size_length) + usize::from(params.index_delta_length);
    if params.size_length == 0 || params.size_length > 16 || per_header == 0 {
        return Err(RtpError::Malformed("unsupported AU header layout"));
    }
    let mut out = Vec::new();
    let mut bit = 0usize;
    let mut i = 0u32;
    while bit + if i == 0 { per_header } else { later_header } <= header_bits {
        let size = read_bits(headers, bit, usize::from(params.size_length)).ok_or(RtpError::Malformed("AU header"))?;
        bit += if i == 0 { per_header } else { later_header };
        let size = size as usize;
        if size > data.len() {
            return Err(RtpError::Malformed("AU size past the end of the packet"));
        }
        let ts = pkt.timestamp.wrapping_add(i.wrapping_mul(1024));
        out.push((ts, Bytes::copy_from_slice(&data[..size])));
        data = &data[size..];
        i += 1;
        if i > 1024 {
            return Err(RtpError::Malformed("too many AUs"));
        }
    }
    Ok(out)
}

/// Splits RFC 3016 `MP4A-LATM` payloads (`cpresent=0`: the configuration is in the SDP)
/// into raw AAC access units: each is preceded by its length as a run of 255s and a last
/// byte below 255.
pub fn depacketize_latm(pkt: &RtpPacket<'_>) -> Result<Vec<(u32, Bytes)>, RtpError> {
    let mut data = pkt.payload;
    let mut out = Vec::new();
    let mut i = 0u32;
    while !data.is_empty() {
        let mut len = 0usize;
        loop {
            let (&b, rest) = data.split_first().ok_or(RtpError::Malformed("LATM length past the end"))?;
            data = rest;
            len += usize::from(b);
            if b != 0xFF {
                break;
            }
        }
        if len > data.len() {
            return Err(RtpError::Malformed("LATM frame past the end of the packet"));
        }
        out.push((pkt.timestamp.wrapping_add(i.wrapping_mul(1024)), Bytes::copy_from_slice(&data[..len])));
        data = &data[len..];
        i += 1;
        if i > 1024 {
            return Err(RtpError::Malformed("too many LATM frames"));
        }
    }
    Ok(out)
}

fn read_bits(data: &[u8], start: usize, len: usize) -> Option<u32> {
    let mut v = 0u32;
    for b in start..start + len {
        let byte = *data.get(b / 8)?;
        v = (v << 1) | u32::from((byte >> (7 - b % 8)) & 1);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80, if marker { 0xE0 } else { 0x60 }];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 1]);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn parses_rtp_headers_and_rejects_garbage() {
        let raw = rtp(7, 90_000, true, &[0x65, 1, 2]);
        let p = RtpPacket::parse(&raw).expect("valid");
        assert_eq!(
            (p.sequence, p.timestamp, p.marker, p.payload_type, p.payload),
            (7, 90_000, true, 96, &[0x65, 1, 2][..])
        );
        assert_eq!(RtpPacket::parse(&raw[..5]), Err(RtpError::Short(5)));
        let mut bad = raw.clone();
        bad[0] = 0x40;
        assert_eq!(RtpPacket::parse(&bad), Err(RtpError::Version));
        let mut pad = raw;
        pad[0] |= 0x20;
        *pad.last_mut().expect("byte") = 200;
        assert!(RtpPacket::parse(&pad).is_err());
    }

    #[test]
    fn unwraps_32_bit_timestamps_for_days() {
        let mut c = RtpClock::default();
        assert_eq!(c.unwrap(u32::MAX - 1000), 0);
        assert_eq!(c.unwrap(500), 1501);
        // 14 hours at 90 kHz is past 2^32: stays monotonic in steps of a frame.
        let mut c = RtpClock::default();
        let mut raw = 4_000_000_000u32;
        let mut last = c.unwrap(raw);
        for _ in 0..(14 * 3600 * 30) {
            raw = raw.wrapping_add(3000);
            let t = c.unwrap(raw);
            assert_eq!(t - last, 3000);
            last = t;
        }
        assert!(last > i64::from(u32::MAX));
    }

    #[test]
    fn decode_times_rise_below_presentation_times() {
        // I P B B P B B … at 30 fps in decode order, shifted by the allowance: decode times
        // one frame apart from the first, each at or before its presentation time
        let mut d = DtsEstimator::new(90_000);
        let mut pts = vec![18_000];
        for gop in 0..4 {
            let base = 18_000 + gop * 9_000;
            pts.extend([base + 9_000, base + 3_000, base + 6_000]);
        }
        let dts: Vec<i64> = pts.iter().map(|&p| d.dts(p)).collect();
        assert_eq!(dts.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>(), vec![3_000; pts.len() - 1]);
        assert!(dts.iter().zip(&pts).all(|(d, p)| d <= p), "{dts:?} {pts:?}");
        assert_eq!(dts[0], 18_000 - 6_000);

        // no B-frames: a constant offset of two frames
        let mut d = DtsEstimator::new(90_000);
        let dts: Vec<i64> = (0..10).map(|i| d.dts(18_000 + i * 3_000)).collect();
        assert!(dts.iter().enumerate().all(|(i, t)| *t == 12_000 + i as i64 * 3_000), "{dts:?}");

        // deeper reordering than assumed (a pyramid of seven B-frames: three deep): a few
        // short steps while it is learnt, then even again, and always rising
        let mut d = DtsEstimator::new(90_000);
        let mut pts = vec![18_000];
        for gop in 0..6 {
            let base = 18_000 + gop * 24_000;
            pts.extend([8, 4, 2, 1, 3, 6, 5, 7].map(|k| base + k * 3_000));
        }
        let dts: Vec<i64> = pts.iter().map(|&p| d.dts(p)).collect();
        assert!(dts.windows(2).all(|w| w[1] > w[0]), "{dts:?}");
        assert_eq!(d.reorder(), 3);
        let tail: Vec<i64> = dts[9..].windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(tail, vec![3_000; tail.len()], "{dts:?}");
        assert!(dts[9..].iter().zip(&pts[9..]).all(|(d, p)| d <= p), "{dts:?} {pts:?}");
    }

    #[test]
    fn reassembles_single_stap_a_and_fu_a() {
        let mut d = H264Depacketizer::default();
        let sps = [0x67, 0x64, 0x00, 0x1f, 0xac];
        let pps = [0x68, 0xeb];
        let mut stap = vec![24];
        for n in [&sps[..], &pps[..]] {
            stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
            stap.extend_from_slice(n);
        }
        assert_eq!(d.push(&RtpPacket::parse(&rtp(1, 0, false, &stap)).expect("rtp")).expect("ok"), None);
        assert!(d.take_params_changed());
        assert!(d.params.is_complete());
        // an IDR in three FU-A fragments
        let fu = |s: bool, e: bool, body: &[u8]| {
            let mut v = vec![0x7C, (if s { 0x80 } else { 0 }) | (if e { 0x40 } else { 0 }) | 5];
            v.extend_from_slice(body);
            v
        };
        assert_eq!(
            d.push(&RtpPacket::parse(&rtp(2, 0, false, &fu(true, false, &[1, 2]))).expect("rtp")).expect("ok"),
            None
        );
        assert_eq!(
            d.push(&RtpPacket::parse(&rtp(3, 0, false, &fu(false, false, &[3]))).expect("rtp")).expect("ok"),
            None
        );
        let au = d.push(&RtpPacket::parse(&rtp(4, 0, true, &fu(false, true, &[4]))).expect("rtp")).expect("ok");
        let au = au.expect("complete unit");
        assert!(au.keyframe);
        assert_eq!(&au.data[..], &[0, 0, 0, 5, 0x65, 1, 2, 3, 4]);
        // a single NAL P-frame, completed by the next timestamp
        assert_eq!(d.push(&RtpPacket::parse(&rtp(5, 3000, false, &[0x41, 9])).expect("rtp")).expect("ok"), None);
        let au = d.push(&RtpPacket::parse(&rtp(6, 6000, false, &[0x41, 8])).expect("rtp")).expect("ok").expect("unit");
        assert_eq!((au.timestamp, au.keyframe, &au.data[..]), (3000, false, &[0, 0, 0, 2, 0x41, 9][..]));
    }

    #[test]
    fn truncated_fu_a_and_lost_packets_drop_the_unit_not_the_stream() {
        let mut d = H264Depacketizer::default();
        // a continuation without its start
        assert_eq!(d.push(&RtpPacket::parse(&rtp(1, 0, true, &[0x7C, 0x45, 1])).expect("rtp")).expect("ok"), None);
        assert_eq!(d.errors, 1);
        assert!(d.push(&RtpPacket::parse(&rtp(2, 10, true, &[0x7C])).expect("rtp")).is_err());
        // sequence gap inside a unit
        let _ = d.push(&RtpPacket::parse(&rtp(10, 20, false, &[0x7C, 0x85, 1])).expect("rtp"));
        let au = d.push(&RtpPacket::parse(&rtp(12, 20, true, &[0x7C, 0x45, 2])).expect("rtp")).expect("ok");
        assert_eq!(au, None, "a unit with a lost packet is dropped");
        // and the next good unit comes through
        let au = d.push(&RtpPacket::parse(&rtp(13, 30, true, &[0x41, 7])).expect("rtp")).expect("ok");
        assert!(au.is_some());
    }

    #[test]
    fn splits_latm_payloads() {
        let mut payload = vec![0xFF, 0x01];
        payload.extend(std::iter::repeat_n(7u8, 256));
        payload.push(2);
        payload.extend_from_slice(&[8, 9]);
        let raw = rtp(1, 0, true, &payload);
        let aus = depacketize_latm(&RtpPacket::parse(&raw).expect("rtp")).expect("valid");
        assert_eq!(aus.len(), 2);
        assert_eq!(aus[0].1.len(), 256);
        assert_eq!(aus[1], (1024, Bytes::from_static(&[8, 9])));
        let raw = rtp(2, 0, true, &[5, 1, 2]);
        assert!(depacketize_latm(&RtpPacket::parse(&raw).expect("rtp")).is_err());
    }

    #[test]
    fn splits_aac_hbr_payloads() {
        // two AUs of 3 and 2 bytes: AU-headers-length 32 bits, 13-bit size + 3-bit index
        let mut payload = vec![0x00, 0x20];
        payload.extend_from_slice(&((3u16 << 3).to_be_bytes()));
        payload.extend_from_slice(&((2u16 << 3).to_be_bytes()));
        payload.extend_from_slice(&[1, 2, 3, 4, 5]);
        let raw = rtp(1, 1000, true, &payload);
        let aus = depacketize_aac(AacRtpParams::default(), &RtpPacket::parse(&raw).expect("rtp")).expect("valid");
        assert_eq!(aus, vec![(1000, Bytes::from_static(&[1, 2, 3])), (2024, Bytes::from_static(&[4, 5]))]);
        let mut bad = payload.clone();
        bad[3] = 0xF8; // size larger than the data
        let raw = rtp(2, 0, true, &bad);
        assert!(depacketize_aac(AacRtpParams::default(), &RtpPacket::parse(&raw).expect("rtp")).is_err());
    }

    #[test]
    fn hevc_single_units_aggregation_and_fragments_make_access_units() {
        let (vps, sps, pps) = crate::codec::hevc::testing::parameter_sets_320x240();
        let mut d = H264Depacketizer::hevc(Vec::new(), Vec::new(), Vec::new());
        assert!(d.codec().is_none(), "no parameter sets yet");
        // an aggregation packet with the three parameter sets
        let mut ap = vec![48 << 1, 0x01];
        for set in [&vps, &sps, &pps] {
            ap.extend_from_slice(&(set.len() as u16).to_be_bytes());
            ap.extend_from_slice(set);
        }
        let buf = rtp(1, 3000, false, &ap);
        assert_eq!(d.push(&RtpPacket::parse(&buf).expect("rtp")).expect("valid"), None);
        assert!(d.take_params_changed());
        match d.codec() {
            Some(Ok(crate::media::Codec::Hevc(c))) => assert_eq!((c.width, c.height), (320, 240)),
            other => panic!("{other:?}"),
        }
        // an IDR (type 19) in three fragments
        let idr: Vec<u8> = [0x26, 0x01].into_iter().chain((0..30).map(|i| i as u8)).collect();
        let fu = |s: bool, e: bool, part: &[u8]| {
            let mut p = vec![49 << 1, 0x01, (u8::from(s) << 7) | (u8::from(e) << 6) | 19];
            p.extend_from_slice(part);
            p
        };
        let parts = [&idr[2..12], &idr[12..22], &idr[22..]];
        let mut unit = None;
        for (i, part) in parts.iter().enumerate() {
            let buf = rtp(2 + i as u16, 3000, i == 2, &fu(i == 0, i == 2, part));
            unit = d.push(&RtpPacket::parse(&buf).expect("rtp")).expect("valid");
        }
        let unit = unit.expect("the marker ends the access unit");
        assert!(unit.keyframe);
        let mut expected = (idr.len() as u32).to_be_bytes().to_vec();
        expected.extend_from_slice(&idr);
        assert_eq!(&unit.data[..], &expected[..]);
        // a lost fragment drops its unit, the next one comes through
        let buf = rtp(6, 6000, false, &fu(true, false, &[1, 2, 3]));
        let _ = d.push(&RtpPacket::parse(&buf).expect("rtp"));
        let buf = rtp(8, 6000, true, &fu(false, true, &[4, 5]));
        assert_eq!(d.push(&RtpPacket::parse(&buf).expect("rtp")).expect("valid"), None);
        let trail = [0x02, 0x01, 0xD0, 0x09];
        let buf = rtp(9, 9000, true, &trail);
        let unit = d.push(&RtpPacket::parse(&buf).expect("rtp")).expect("valid").expect("a single NAL unit");
        assert!(!unit.keyframe);
        assert_eq!(&unit.data[4..], &trail[..]);
        // PACI and short payloads are errors, not panics
        assert!(d.push(&RtpPacket::parse(&rtp(10, 9000, false, &[50 << 1, 1, 0])).expect("rtp")).is_err());
        assert!(d.push(&RtpPacket::parse(&rtp(11, 9000, false, &[0x26])).expect("rtp")).is_err());
    }
}
