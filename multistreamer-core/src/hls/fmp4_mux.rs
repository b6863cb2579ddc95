//! Fragmented MP4 (CMAF) for HLS output: an initialization section (`ftyp` + `moov` with one
//! sample entry per track and `trex` defaults) and media segments (`moof` + `mdat`, one
//! `traf` per track). Used for HEVC and AV1, which HLS carries in fMP4 only; read back by
//! [`super::fmp4`] in the tests.

use bytes::{BufMut, Bytes, BytesMut};

use super::HlsError;
use crate::codec::aac::AudioSpecificConfig;
use crate::error::{Error, Result};
use crate::media::Codec;

/// Every track is written at 90 kHz (the hub's timestamps rescale exactly to it).
pub const TIMESCALE: u32 = 90_000;
/// Decode times are shifted by this so that early B-frames stay at or after zero.
const OFFSET: i64 = 126_000;

const VIDEO_ID: u32 = 1;
const AUDIO_ID: u32 = 2;

fn bad(msg: impl Into<String>) -> Error {
    HlsError::Segment(msg.into()).into()
}

/// Writes a box: size, type, then what `body` puts.
fn mp4_box(out: &mut BytesMut, kind: &[u8; 4], body: impl FnOnce(&mut BytesMut)) {
    let at = out.len();
    out.put_u32(0);
    out.put_slice(kind);
    body(out);
    let size = u32::try_from(out.len() - at).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

/// A full box: version and flags first.
fn full_box(out: &mut BytesMut, kind: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut BytesMut)) {
    mp4_box(out, kind, |b| {
        b.put_u32((u32::from(version) << 24) | (flags & 0x00FF_FFFF));
        body(b);
    });
}

/// The video of an fMP4 variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fmp4Video {
    Hevc(crate::codec::hevc::HevcDecoderConfig),
    Av1(crate::codec::av1::Av1Config),
    H264(crate::codec::avc::AvcDecoderConfig),
}

impl Fmp4Video {
    pub fn of(codec: &Codec) -> Option<Fmp4Video> {
        match codec {
            Codec::Hevc(c) => Some(Fmp4Video::Hevc(c.clone())),
            Codec::Av1(c) => Some(Fmp4Video::Av1(c.clone())),
            Codec::H264(c) => Some(Fmp4Video::H264(c.clone())),
            _ => None,
        }
    }

    pub fn size(&self) -> (u32, u32) {
        match self {
            Fmp4Video::Hevc(c) => (c.width, c.height),
            Fmp4Video::Av1(c) => (c.width, c.height),
            Fmp4Video::H264(c) => (c.width, c.height),
        }
    }

    /// The RFC 6381 codec string for the master playlist.
    pub fn codec_string(&self) -> String {
        match self {
            Fmp4Video::Hevc(c) => c.codec_string(),
            Fmp4Video::Av1(c) => c.codec_string(),
            Fmp4Video::H264(c) => c.codec_string(),
        }
    }

    fn sample_entry(&self) -> (&'static [u8; 4], &'static [u8; 4], &Bytes) {
        match self {
            Fmp4Video::Hevc(c) => (b"hvc1", b"hvcC", &c.record),
            Fmp4Video::Av1(c) => (b"av01", b"av1C", &c.record),
            Fmp4Video::H264(c) => (b"avc1", b"avcC", &c.record),
        }
    }
}

/// One sample waiting for its segment.
#[derive(Clone, Debug)]
struct Pending {
    dts: i64,
    cts: i64,
    keyframe: bool,
    data: Bytes,
}

/// Builds the initialization section and the media segments of one variant.
#[derive(Debug)]
pub struct Fmp4Muxer {
    video: Option<Fmp4Video>,
    audio: Option<AudioSpecificConfig>,
    init: Bytes,
    sequence: u32,
    samples: [Vec<Pending>; 2],
}

impl Fmp4Muxer {
    pub fn new(video: Option<Fmp4Video>, audio: Option<AudioSpecificConfig>) -> Fmp4Muxer {
        let init = init_section(video.as_ref(), audio.as_ref());
        Fmp4Muxer { video, audio, init, sequence: 0, samples: [Vec::new(), Vec::new()] }
    }

    /// The initialization section (`EXT-X-MAP`).
    pub fn init(&self) -> &Bytes {
        &self.init
    }

    /// Queues one video access unit; times in 90 kHz.
    pub fn write_video(&mut self, pts: i64, dts: i64, keyframe: bool, data: &Bytes) -> Result<()> {
        if self.video.is_none() {
            return Err(bad("no video track in this fMP4"));
        }
        self.samples[0].push(Pending { dts, cts: pts - dts, keyframe, data: data.clone() });
        Ok(())
    }

    /// Queues one raw AAC frame; time in 90 kHz.
    pub fn write_audio(&mut self, pts: i64, data: &Bytes) -> Result<()> {
        if self.audio.is_none() {
            return Err(bad("no audio track in this fMP4"));
        }
        self.samples[1].push(Pending { dts: pts, cts: 0, keyframe: true, data: data.clone() });
        Ok(())
    }

    /// Whether any sample waits.
    pub fn is_empty(&self) -> bool {
        self.samples.iter().all(Vec::is_empty)
    }

    /// The media segment of the queued samples (`moof` + `mdat`); `end` (90 kHz) is where
    /// the next segment starts, which sets the last samples' durations.
    pub fn segment(&mut self, end: i64) -> Bytes {
        self.sequence = self.sequence.wrapping_add(1);
        let tracks: Vec<(u32, Vec<Pending>)> = [VIDEO_ID, AUDIO_ID]
            .into_iter()
            .zip(std::mem::take(&mut self.samples))
            .filter(|(_, s)| !s.is_empty())
            .collect();
        // the moof's size does not depend on the data offsets it holds: write it once
        // with zero offsets, then patch them in
        let mut moof = BytesMut::new();
        let mut offset_at = Vec::new();
        mp4_box(&mut moof, b"moof", |m| {
            full_box(m, b"mfhd", 0, 0, |b| b.put_u32(self.sequence));
            for (id, samples) in &tracks {
                mp4_box(m, b"traf", |t| {
                    // default-base-is-moof
                    full_box(t, b"tfhd", 0, 0x02_0000, |b| b.put_u32(*id));
                    let base = u64::try_from(samples[0].dts + OFFSET).unwrap_or(0);
                    full_box(t, b"tfdt", 1, 0, |b| b.put_u64(base));
                    // data offset, duration, size, flags, composition offset (signed)
                    full_box(t, b"trun", 1, 0x01 | 0x100 | 0x200 | 0x400 | 0x800, |b| {
                        b.put_u32(samples.len() as u32);
                        offset_at.push(b.len());
                        b.put_i32(0);
                        for (i, s) in samples.iter().enumerate() {
                            let next = samples.get(i + 1).map_or(end, |n| n.dts);
                            let duration = next.saturating_sub(s.dts).clamp(0, i64::from(u32::MAX));
                            b.put_u32(duration as u32);
                            b.put_u32(u32::try_from(s.data.len()).unwrap_or(u32::MAX));
                            // sync sample, or non-sync sample depending on others
                            b.put_u32(if s.keyframe { 0x0200_0000 } else { 0x0101_0000 });
                            b.put_i32(s.cts.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32);
                        }
                    });
                });
            }
        });
        let mut data_offset = moof.len() + 8;
        for ((_, samples), at) in tracks.iter().zip(&offset_at) {
            let off = i32::try_from(data_offset).unwrap_or(i32::MAX);
            moof[*at..*at + 4].copy_from_slice(&off.to_be_bytes());
            data_offset += samples.iter().map(|s| s.data.len()).sum::<usize>();
        }
        let mut out = BytesMut::with_capacity(data_offset);
        out.extend_from_slice(&moof);
        mp4_box(&mut out, b"mdat", |m| {
            for (_, samples) in &tracks {
                for s in samples {
                    m.extend_from_slice(&s.data);
                }
            }
        });
        out.freeze()
    }
}

fn init_section(video: Option<&Fmp4Video>, audio: Option<&AudioSpecificConfig>) -> Bytes {
    let mut out = BytesMut::with_capacity(1024);
    mp4_box(&mut out, b"ftyp", |b| {
        b.put_slice(b"iso6");
        b.put_u32(0);
        for brand in [b"iso6", b"cmfc", b"mp41"] {
            b.put_slice(brand);
        }
    });
    mp4_box(&mut out, b"moov", |m| {
        full_box(m, b"mvhd", 0, 0, |b| {
            b.put_u64(0); // creation, modification
            b.put_u32(TIMESCALE);
            b.put_u32(0); // duration: fragmented
            b.put_u32(0x0001_0000); // rate 1.0
            b.put_u16(0x0100); // volume 1.0
            b.put_slice(&[0; 10]);
            matrix(b);
            b.put_slice(&[0; 24]);
            b.put_u32(AUDIO_ID + 1); // next track id
        });
        if let Some(v) = video {
            trak(m, VIDEO_ID, Some(v), None);
        }
        if let Some(a) = audio {
            trak(m, AUDIO_ID, None, Some(a));
        }
        mp4_box(m, b"mvex", |x| {
            for (id, present) in [(VIDEO_ID, video.is_some()), (AUDIO_ID, audio.is_some())] {
                if present {
                    full_box(x, b"trex", 0, 0, |b| {
                        b.put_u32(id);
                        b.put_u32(1); // sample description index
                        b.put_u32(0);
                        b.put_u32(0);
                        b.put_u32(0);
                    });
                }
            }
        });
    });
    out.freeze()
}

fn matrix(b: &mut BytesMut) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        b.put_u32(v);
    }
}

fn trak(m: &mut BytesMut, id: u32, video: Option<&Fmp4Video>, audio: Option<&AudioSpecificConfig>) {
    mp4_box(m, b"trak", |t| {
        // enabled, in movie, in preview
        full_box(t, b"tkhd", 0, 0x7, |b| {
            b.put_u64(0);
            b.put_u32(id);
            b.put_u32(0);
            b.put_u32(0); // duration
            b.put_u64(0);
            b.put_u16(0); // layer
            b.put_u16(u16::from(audio.is_some())); // alternate group
            b.put_u16(if audio.is_some() { 0x0100 } else { 0 });
            b.put_u16(0);
            matrix(b);
            let (w, h) = video.map_or((0, 0), Fmp4Video::size);
            b.put_u32(w << 16);
            b.put_u32(h << 16);
        });
        mp4_box(t, b"mdia", |md| {
            full_box(md, b"mdhd", 0, 0, |b| {
                b.put_u64(0);
                b.put_u32(TIMESCALE);
                b.put_u32(0);
                b.put_u16(0x55C4); // language "und"
                b.put_u16(0);
            });
            full_box(md, b"hdlr", 0, 0, |b| {
                b.put_u32(0);
                b.put_slice(if video.is_some() { b"vide" } else { b"soun" });
                b.put_slice(&[0; 12]);
                b.put_slice(if video.is_some() { b"Video\0" } else { b"Audio\0" });
            });
            mp4_box(md, b"minf", |mi| {
                if video.is_some() {
                    full_box(mi, b"vmhd", 0, 1, |b| b.put_u64(0));
                } else {
                    full_box(mi, b"smhd", 0, 0, |b| b.put_u32(0));
                }
                mp4_box(mi, b"dinf", |d| {
                    full_box(d, b"dref", 0, 0, |b| {
                        b.put_u32(1);
                        full_box(b, b"url ", 0, 1, |_| {});
                    });
                });
                mp4_box(mi, b"stbl", |s| {
                    full_box(s, b"stsd", 0, 0, |b| {
                        b.put_u32(1);
                        if let Some(v) = video {
                            visual_entry(b, v);
                        }
                        if let Some(a) = audio {
                            audio_entry(b, a);
                        }
                    });
                    full_box(s, b"stts", 0, 0, |b| b.put_u32(0));
                    full_box(s, b"stsc", 0, 0, |b| b.put_u32(0));
                    full_box(s, b"stsz", 0, 0, |b| b.put_u64(0));
                    full_box(s, b"stco", 0, 0, |b| b.put_u32(0));
                });
            });
        });
    });
}

fn visual_entry(b: &mut BytesMut, v: &Fmp4Video) {
    let (entry, config, record) = v.sample_entry();
    let (w, h) = v.size();
    mp4_box(b, entry, |e| {
        e.put_slice(&[0; 6]);
        e.put_u16(1); // data reference index
        e.put_slice(&[0; 16]);
        e.put_u16(u16::try_from(w).unwrap_or(u16::MAX));
        e.put_u16(u16::try_from(h).unwrap_or(u16::MAX));
        e.put_u32(0x0048_0000); // 72 dpi
        e.put_u32(0x0048_0000);
        e.put_u32(0);
        e.put_u16(1); // frame count
        e.put_slice(&[0; 32]); // compressor name
        e.put_u16(0x0018); // depth
        e.put_i16(-1);
        mp4_box(e, config, |c| c.put_slice(record));
    });
}

fn audio_entry(b: &mut BytesMut, a: &AudioSpecificConfig) {
    mp4_box(b, b"mp4a", |e| {
        e.put_slice(&[0; 6]);
        e.put_u16(1);
        e.put_u64(0);
        e.put_u16(u16::from(a.channels.max(1)));
        e.put_u16(16);
        e.put_u32(0);
        e.put_u32(a.sample_rate.min(0xFFFF) << 16);
        full_box(e, b"esds", 0, 0, |d| {
            let asc = &a.raw[..];
            // DecoderSpecificInfo, DecoderConfigDescriptor, SLConfigDescriptor in an
            // ES_Descriptor, each with a one-byte length (an ASC is a few bytes)
            let dsi_len = asc.len() as u8;
            let dcd_len = 13 + 2 + dsi_len;
            let es_len = 3 + 2 + dcd_len + 3;
            d.put_slice(&[0x03, es_len, 0, u8::try_from(AUDIO_ID).unwrap_or(2), 0]);
            d.put_slice(&[0x04, dcd_len, 0x40, 0x15, 0, 0, 0]);
            d.put_u32(0); // max bitrate
            d.put_u32(0); // average bitrate
            d.put_slice(&[0x05, dsi_len]);
            d.put_slice(asc);
            d.put_slice(&[0x06, 1, 2]);
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::fmp4::{parse_init, parse_segment};
    use crate::media::TrackKind;

    fn asc() -> AudioSpecificConfig {
        AudioSpecificConfig::parse(Bytes::from_static(&[0x11, 0x90])).expect("asc")
    }

    #[test]
    fn hevc_and_aac_read_back_with_the_projects_fmp4_reader() {
        let hevc = crate::codec::hevc::testing::config_320x240();
        let mut mux = Fmp4Muxer::new(Some(Fmp4Video::Hevc(hevc.clone())), Some(asc()));
        let tracks = parse_init(mux.init()).expect("init");
        assert_eq!(tracks.len(), 2);
        assert_eq!(tracks[0].codec, Codec::Hevc(hevc));
        assert_eq!(tracks[1].codec, Codec::Aac(asc()));
        let frames: Vec<Bytes> = (0..3u8).map(|i| Bytes::from(vec![0, 0, 0, 2, 0x26 + i, 1])).collect();
        // I P B in decode order, with composition offsets
        mux.write_video(3000, 0, true, &frames[0]).expect("queued");
        mux.write_audio(0, &Bytes::from_static(&[0x21, 0x10])).expect("queued");
        mux.write_video(12_000, 3000, false, &frames[1]).expect("queued");
        mux.write_video(6000, 6000, false, &frames[2]).expect("queued");
        mux.write_audio(1920, &Bytes::from_static(&[0x21, 0x11])).expect("queued");
        let seg = mux.segment(9000);
        let samples = parse_segment(&tracks, &seg).expect("segment");
        let video: Vec<_> = samples.iter().filter(|s| s.kind == TrackKind::Video).collect();
        let audio: Vec<_> = samples.iter().filter(|s| s.kind == TrackKind::Audio).collect();
        assert_eq!(video.iter().map(|s| s.data.clone()).collect::<Vec<_>>(), frames);
        assert_eq!(
            video.iter().map(|s| (s.dts - OFFSET, s.pts - OFFSET, s.keyframe)).collect::<Vec<_>>(),
            vec![(0, 3000, true), (3000, 12_000, false), (6000, 6000, false)]
        );
        assert_eq!(audio.iter().map(|s| s.dts - OFFSET).collect::<Vec<_>>(), vec![0, 1920]);
        assert_eq!(&audio[1].data[..], &[0x21, 0x11]);
        // the next segment continues the timeline
        mux.write_video(9000, 9000, true, &frames[0]).expect("queued");
        let seg = mux.segment(12_000);
        let samples = parse_segment(&tracks, &seg).expect("segment");
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].dts - OFFSET, 9000);
    }

    #[test]
    fn av1_alone_reads_back() {
        let av1 = crate::codec::av1::testing::config_320x240();
        let mut mux = Fmp4Muxer::new(Some(Fmp4Video::Av1(av1.clone())), None);
        let tracks = parse_init(mux.init()).expect("init");
        assert_eq!(tracks.len(), 1);
        assert_eq!(tracks[0].codec, Codec::Av1(av1));
        mux.write_video(0, 0, true, &Bytes::from_static(&[0x32, 0x01, 0x10])).expect("queued");
        let samples = parse_segment(&tracks, &mux.segment(3000)).expect("segment");
        assert_eq!(&samples[0].data[..], &[0x32, 0x01, 0x10]);
        assert!(samples[0].keyframe);
    }
}
