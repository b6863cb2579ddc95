//! HLS segments (MPEG-TS or fMP4) and continuous transport streams → the hub's media
//! model: length-prefixed H.264/HEVC (or AV1 OBUs, from fMP4) with the decoder
//! configuration record, raw AAC with its AudioSpecificConfig, 33-bit PTS unwrapped.

use bytes::Bytes;
use tracing::debug;

use super::HlsError;
use super::fmp4::{self, Fmp4Track};
use super::ts::{self, EsKind, PTS_WRAP, TsDemuxer};
use crate::codec::aac::{AudioSpecificConfig, adts_config};
use crate::codec::avc::{ParameterSets, annexb_nal_units, annexb_to_avcc};
use crate::codec::hevc::{self, HevcDecoderConfig};
use crate::error::Result;
use crate::media::{Codec, MediaInfo, Timebase, Timestamp, Track, TrackId, TrackKind};

/// The track ids HLS inputs are published with.
pub const VIDEO_TRACK: TrackId = TrackId(0);
pub const AUDIO_TRACK: TrackId = TrackId(1);

/// One access unit of a segment, timestamps in `timebase` (unwrapped, not yet offset).
#[derive(Clone, Debug)]
pub struct Frame {
    pub kind: TrackKind,
    pub timebase: Timebase,
    pub dts: i64,
    pub pts: i64,
    pub keyframe: bool,
    pub payload: Bytes,
}

/// Demuxes the segments of one media playlist, in order.
#[derive(Debug, Default)]
pub struct SegmentDemuxer {
    ts: TsDemuxer,
    fmp4: Option<Vec<Fmp4Track>>,
    /// The fMP4 track ids published: (video, audio).
    fmp4_main: (Option<u32>, Option<u32>),
    /// The video codec (H.264 from TS or fMP4; HEVC and AV1 from fMP4).
    video: Option<(Codec, Timebase)>,
    audio: Option<(AudioSpecificConfig, Timebase)>,
    /// The last unwrapped 90 kHz time (TS only).
    reference: Option<i64>,
}

impl SegmentDemuxer {
    pub fn new() -> SegmentDemuxer {
        SegmentDemuxer::default()
    }

    /// Switches to fMP4 with this initialization section (`#EXT-X-MAP`).
    pub fn set_init(&mut self, init: &[u8]) -> Result<()> {
        let tracks = fmp4::parse_init(init)?;
        self.video = None;
        self.audio = None;
        self.fmp4_main = (None, None);
        // the first video and the first AAC track
        for t in &tracks {
            let tb = Timebase::new(1, t.timescale).unwrap_or(Timebase::HZ_90K);
            match &t.codec {
                c @ (Codec::H264(_) | Codec::Hevc(_) | Codec::Av1(_)) if self.video.is_none() => {
                    self.video = Some((c.clone(), tb));
                    self.fmp4_main.0 = Some(t.id);
                }
                Codec::Aac(a) if self.audio.is_none() => {
                    self.audio = Some((a.clone(), tb));
                    self.fmp4_main.1 = Some(t.id);
                }
                _ => {}
            }
        }
        self.fmp4 = Some(tracks);
        Ok(())
    }

    /// The tracks met so far.
    pub fn info(&self) -> MediaInfo {
        let mut info = MediaInfo::default();
        if let Some((c, tb)) = &self.video {
            info.set_track(Track { id: VIDEO_TRACK, codec: c.clone(), timebase: *tb });
        }
        if let Some((a, tb)) = &self.audio {
            info.set_track(Track { id: AUDIO_TRACK, codec: Codec::Aac(a.clone()), timebase: *tb });
        }
        info
    }

    /// Demuxes one whole segment. Video frames before the first SPS/PPS are dropped (they
    /// cannot be decoded).
    /// Frames come out in decode order across tracks.
    pub fn demux(&mut self, segment: &[u8]) -> Result<Vec<Frame>> {
        let mut frames = match &self.fmp4 {
            Some(tracks) => self.demux_fmp4(tracks, segment)?,
            None => self.demux_ts(segment)?,
        };
        // fMP4 stores each track's run separately; TS emits a PES when the next one starts
        frames.sort_by_cached_key(|f| Timestamp::new(f.dts, f.timebase).rescale(Timebase::HZ_90K).ticks());
        Ok(frames)
    }

    fn demux_fmp4(&self, tracks: &[Fmp4Track], segment: &[u8]) -> Result<Vec<Frame>> {
        let samples = fmp4::parse_segment(tracks, segment)?;
        let mut out = Vec::with_capacity(samples.len());
        for s in samples {
            if Some(s.track) != self.fmp4_main.0 && Some(s.track) != self.fmp4_main.1 {
                continue;
            }
            let Some(t) = tracks.iter().find(|t| t.id == s.track) else { continue };
            out.push(Frame {
                kind: s.kind,
                timebase: Timebase::new(1, t.timescale).unwrap_or(Timebase::HZ_90K),
                dts: s.dts,
                pts: s.pts,
                keyframe: s.keyframe,
                payload: s.data,
            });
        }
        Ok(out)
    }

    fn unwrap(&mut self, raw: u64) -> i64 {
        let raw = (raw & (PTS_WRAP as u64 - 1)) as i64;
        let v = match self.reference {
            None => raw,
            Some(last) => raw + (last - raw + PTS_WRAP / 2).div_euclid(PTS_WRAP) * PTS_WRAP,
        };
        self.reference = Some(v);
        v
    }

    fn demux_ts(&mut self, segment: &[u8]) -> Result<Vec<Frame>> {
        let mut pes = Vec::new();
        self.ts.push(segment, &mut pes)?;
        self.ts.flush(&mut pes);
        if !self.ts.has_streams() {
            return Err(HlsError::Segment("the segment has no H.264, HEVC or AAC stream (no usable PMT)".into()).into());
        }
        Ok(self.ts_frames(pes))
    }

    /// Demuxes the next bytes of a continuous transport stream (SRT, UDP): access units
    /// come out once the next one of their stream starts, in decode order within each
    /// stream (not sorted across streams). `chunk` holds whole 188-byte packets.
    pub fn push_ts(&mut self, chunk: &[u8]) -> Result<Vec<Frame>> {
        let mut pes = Vec::new();
        self.ts.push(chunk, &mut pes)?;
        Ok(self.ts_frames(pes))
    }

    /// The access units still being assembled at the end of a continuous stream.
    pub fn finish_ts(&mut self) -> Vec<Frame> {
        let mut pes = Vec::new();
        self.ts.flush(&mut pes);
        self.ts_frames(pes)
    }

    /// The elementary streams the transport stream's PMT announced (that we can read).
    pub fn ts_streams(&self) -> (bool, bool) {
        self.ts.announced()
    }

    fn ts_frames(&mut self, pes: Vec<ts::Pes>) -> Vec<Frame> {
        let mut out = Vec::with_capacity(pes.len());
        for p in pes {
            let Some(pts_raw) = p.pts else { continue };
            let dts_raw = p.dts.unwrap_or(pts_raw);
            let dts = self.unwrap(dts_raw);
            // the PTS is at most a few seconds after the DTS: unwrap it next to it
            let pts_low = (pts_raw & (PTS_WRAP as u64 - 1)) as i64;
            let pts = pts_low + (dts - pts_low + PTS_WRAP / 2).div_euclid(PTS_WRAP) * PTS_WRAP;
            match p.kind {
                EsKind::H264 => self.video_pes(&p.data, dts, pts.max(dts), &mut out),
                EsKind::Hevc => self.hevc_pes(&p.data, dts, pts.max(dts), &mut out),
                EsKind::AdtsAac => self.audio_pes(&p.data, pts, &mut out),
            }
        }
        out
    }

    fn video_pes(&mut self, data: &[u8], dts: i64, pts: i64, out: &mut Vec<Frame>) {
        let mut sets = ParameterSets::default();
        let avcc = annexb_to_avcc(data, &mut sets);
        if sets.is_complete()
            && !matches!(&self.video, Some((Codec::H264(c), _)) if c.sps == sets.sps && c.pps == sets.pps)
            && let Ok(cfg) = sets.to_record()
        {
            self.video = Some((Codec::H264(cfg), Timebase::HZ_90K));
        }
        if self.video.is_none() || avcc.is_empty() {
            return;
        }
        let keyframe = annexb_nal_units(data).any(|n| n[0] & 0x1F == 5);
        out.push(Frame {
            kind: TrackKind::Video,
            timebase: Timebase::HZ_90K,
            dts,
            pts,
            keyframe,
            payload: Bytes::from(avcc),
        });
    }

    /// An HEVC access unit: parameter sets move into the track (a new record when they
    /// change), the other NAL units become length-prefixed.
    fn hevc_pes(&mut self, data: &[u8], dts: i64, pts: i64, out: &mut Vec<Frame>) {
        let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
        let mut payload = Vec::with_capacity(data.len() + 16);
        let mut keyframe = false;
        for nal in annexb_nal_units(data) {
            if nal.len() < 2 {
                continue;
            }
            match hevc::nal_type(nal) {
                Some(hevc::NAL_VPS) => vps.push(Bytes::copy_from_slice(nal)),
                Some(hevc::NAL_SPS) => sps.push(Bytes::copy_from_slice(nal)),
                Some(hevc::NAL_PPS) => pps.push(Bytes::copy_from_slice(nal)),
                Some(hevc::NAL_AUD) => {}
                Some(t) => {
                    keyframe |= hevc::is_irap(t);
                    // annexb_nal_units never yields units over the input length
                    let len = u32::try_from(nal.len()).unwrap_or(u32::MAX);
                    payload.extend_from_slice(&len.to_be_bytes());
                    payload.extend_from_slice(nal);
                }
                None => {}
            }
        }
        let same = matches!(&self.video, Some((Codec::Hevc(c), _)) if c.vps == vps && c.sps == sps && c.pps == pps);
        if !sps.is_empty() && !same {
            match HevcDecoderConfig::from_parameter_sets(&vps, &sps, &pps) {
                Ok(cfg) => self.video = Some((Codec::Hevc(cfg), Timebase::HZ_90K)),
                Err(e) => debug!(error = %e, "HEVC parameter sets not usable"),
            }
        }
        if !matches!(self.video, Some((Codec::Hevc(_), _))) || payload.is_empty() {
            return;
        }
        out.push(Frame {
            kind: TrackKind::Video,
            timebase: Timebase::HZ_90K,
            dts,
            pts,
            keyframe,
            payload: Bytes::from(payload),
        });
    }

    fn audio_pes(&mut self, data: &[u8], pts: i64, out: &mut Vec<Frame>) {
        let mut t = pts;
        for frame in ts::adts_frames(data) {
            let Ok((asc, header)) = adts_config(frame) else { break };
            let rate = i64::from(asc.sample_rate.max(1));
            if self.audio.as_ref().is_none_or(|(a, _)| a.raw != asc.raw) {
                self.audio = Some((asc, Timebase::HZ_90K));
            }
            let Some(raw) = frame.get(header..) else { break };
            out.push(Frame {
                kind: TrackKind::Audio,
                timebase: Timebase::HZ_90K,
                dts: t,
                pts: t,
                keyframe: true,
                payload: Bytes::copy_from_slice(raw),
            });
            t += 1024 * 90_000 / rate;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwraps_33_bit_timestamps_both_ways() {
        let mut d = SegmentDemuxer::new();
        assert_eq!(d.unwrap((PTS_WRAP - 3000) as u64), PTS_WRAP - 3000);
        assert_eq!(d.unwrap(3000), PTS_WRAP + 3000, "forward across the wrap");
        assert_eq!(d.unwrap(6000), PTS_WRAP + 6000);
        assert_eq!(d.unwrap((PTS_WRAP - 1000) as u64), PTS_WRAP - 1000, "a B-frame just before the wrap");
    }

    #[test]
    fn ts_segment_gives_configured_tracks() {
        use super::super::ts::{TsMuxer, TsVideo};
        let cfg = crate::codec::avc::testing::config_240p();
        let asc = AudioSpecificConfig::parse(Bytes::from_static(&[0x11, 0x90])).expect("asc");
        let mut mux = TsMuxer::new(Some(TsVideo::H264(cfg.clone())), Some(asc.clone()));
        let mut seg = Vec::new();
        mux.write_tables(&mut seg);
        mux.write_video(&mut seg, PTS_WRAP - 126_000 - 10, PTS_WRAP - 126_000 - 3010, true, &[0, 0, 0, 2, 0x65, 0x88])
            .expect("video");
        mux.write_audio(&mut seg, PTS_WRAP - 126_000 - 3010, &[1, 2, 3]).expect("audio");
        mux.write_video(&mut seg, 100, 0, false, &[0, 0, 0, 2, 0x41, 0x9A]).expect("video");
        let mut d = SegmentDemuxer::new();
        let frames = d.demux(&seg).expect("demux");
        assert_eq!(frames.len(), 3);
        assert!(frames[0].keyframe && !frames[2].keyframe);
        assert_eq!(&frames[0].payload[..], &[0, 0, 0, 2, 0x65, 0x88]);
        assert!(frames[2].dts > frames[0].dts, "monotonic across the 33-bit wrap");
        let info = d.info();
        assert_eq!(info.video().map(|t| t.codec.clone()), Some(Codec::H264(cfg)));
        assert_eq!(info.audio().map(|t| t.codec.clone()), Some(Codec::Aac(asc)));
        assert!(SegmentDemuxer::new().demux(b"not a transport stream").is_err());
    }

    #[test]
    fn hevc_access_units_move_their_parameter_sets_into_the_track_and_keep_sei() {
        let (vps, sps, pps) = crate::codec::hevc::testing::parameter_sets_320x240();
        let sei: &[u8] = &[0x4E, 0x01, 0x05, 0x01, 0xAA, 0x80];
        let idr: &[u8] = &[0x28, 0x01, 0xAF, 0x1D, 0x80];
        let trail: &[u8] = &[0x02, 0x01, 0xD0, 0x09];
        let annexb = |nals: &[&[u8]]| {
            let mut v = Vec::new();
            for n in nals {
                v.extend_from_slice(&[0, 0, 0, 1]);
                v.extend_from_slice(n);
            }
            v
        };
        let length_prefixed = |nals: &[&[u8]]| {
            let mut v = Vec::new();
            for n in nals {
                v.extend_from_slice(&(n.len() as u32).to_be_bytes());
                v.extend_from_slice(n);
            }
            v
        };
        let aud: &[u8] = &[0x46, 0x01, 0x10];
        let mut d = SegmentDemuxer::new();
        let mut out = Vec::new();
        // a picture before any parameter set cannot be decoded: dropped
        d.hevc_pes(&annexb(&[aud, trail]), 0, 0, &mut out);
        assert!(out.is_empty() && d.info().video().is_none());
        d.hevc_pes(&annexb(&[aud, &vps, &sps, &pps, sei, idr]), 3000, 3000, &mut out);
        d.hevc_pes(&annexb(&[aud, trail]), 6000, 6000, &mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].keyframe && !out[1].keyframe);
        assert_eq!(&out[0].payload[..], &length_prefixed(&[sei, idr])[..]);
        assert_eq!(&out[1].payload[..], &length_prefixed(&[trail])[..]);
        match d.info().video().map(|t| &t.codec) {
            Some(Codec::Hevc(c)) => {
                assert_eq!((c.width, c.height), (320, 240));
                assert_eq!((c.vps.clone(), c.sps.clone(), c.pps.clone()), (vec![vps], vec![sps], vec![pps]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hevc_survives_the_ts_muxer_and_demuxer() {
        use super::super::ts::{TsMuxer, TsVideo};
        let cfg = crate::codec::hevc::testing::config_320x240();
        let idr = [0u8, 0, 0, 6, 0x28, 0x01, 0xAF, 0x1D, 0x80, 0x41];
        let trail = [0u8, 0, 0, 4, 0x02, 0x01, 0xD0, 0x09];
        let mut mux = TsMuxer::new(Some(TsVideo::Hevc(cfg.clone())), None);
        let mut ts = Vec::new();
        mux.write_tables(&mut ts);
        mux.write_video(&mut ts, 0, 0, true, &idr).expect("mux");
        mux.write_video(&mut ts, 3000, 3000, false, &trail).expect("mux");
        let mut d = SegmentDemuxer::new();
        let frames = d.demux(&ts).expect("demux");
        assert_eq!(frames.len(), 2);
        assert!(frames[0].keyframe && !frames[1].keyframe);
        assert_eq!((&frames[0].payload[..], &frames[1].payload[..]), (&idr[..], &trail[..]));
        assert_eq!(d.info().video().map(|t| t.codec.clone()), Some(Codec::Hevc(cfg)));
    }
}
