//! The media model shared by every source, sink and stage.
//!
//! * [`Packet`]: one access unit with its timestamps and a [`Bytes`] payload. Cloning a
//!   packet never copies media bytes, so fan-out to N destinations shares one buffer.
//! * [`Track`] / [`Codec`]: what a track carries. H.264 payloads are length-prefixed (AVCC)
//!   with the decoder configuration record on the track; AAC payloads are raw frames with
//!   the AudioSpecificConfig on the track.
//! * [`MediaInfo`]: the set of tracks. It can change mid-stream; consumers get a new
//!   [`MediaItem::Info`] before any packet that depends on it.
//!
//! HEVC and AV1 (Enhanced RTMP `hvc1`/`av01`, MPEG-TS, MP4) are first class like H.264:
//! length-prefixed NAL units and low-overhead OBUs, the configuration record on the track.
//! Codecs this crate does not parse (VP9 over Enhanced RTMP, MP3, …) are carried
//! opaquely as [`Codec::FlvVideo`] / [`Codec::FlvAudio`]: their packets hold the whole FLV
//! tag body, so they can be relayed to RTMP destinations byte for byte.

mod time;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

pub use self::time::{Timebase, Timestamp};
use crate::codec::aac::AudioSpecificConfig;
use crate::codec::av1::Av1Config;
use crate::codec::avc::AvcDecoderConfig;
use crate::codec::hevc::HevcDecoderConfig;

/// Identifies a track within one [`MediaInfo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(pub u32);

impl fmt::Display for TrackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Video or audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrackKind {
    Video,
    Audio,
}

/// Codec parameters of a track.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Codec {
    /// H.264; packets are AVCC (length-prefixed NAL units).
    H264(AvcDecoderConfig),
    /// H.265/HEVC; packets are length-prefixed NAL units (as in MP4 and Enhanced RTMP `hvc1`).
    Hevc(HevcDecoderConfig),
    /// AV1; packets are temporal units of OBUs with size fields, no temporal delimiter
    /// (as in MP4 and Enhanced RTMP `av01`).
    Av1(Av1Config),
    /// AAC; packets are raw access units (no ADTS header).
    Aac(AudioSpecificConfig),
    /// A video codec relayed without parsing. Packets are whole FLV video tag bodies.
    FlvVideo {
        /// FLV codec id, or for Enhanced RTMP the FourCC (e.g. `hvc1`, `av01`).
        codec: FlvCodecTag,
        /// The FLV tag body of the last sequence header, if the codec has one.
        sequence_header: Option<Bytes>,
    },
    /// An audio codec relayed without parsing. Packets are whole FLV audio tag bodies.
    FlvAudio { codec: FlvCodecTag, sequence_header: Option<Bytes> },
}

/// How an opaque FLV codec is named on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlvCodecTag {
    /// Classic FLV codec id (video: 2 = Sorenson, 4 = VP6, …; audio: 2 = MP3, …).
    Id(u8),
    /// Enhanced RTMP FourCC.
    FourCc([u8; 4]),
}

impl fmt::Display for FlvCodecTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlvCodecTag::Id(id) => write!(f, "flv-codec-{id}"),
            FlvCodecTag::FourCc(cc) => write!(f, "{}", String::from_utf8_lossy(cc)),
        }
    }
}

impl Codec {
    pub fn kind(&self) -> TrackKind {
        match self {
            Codec::H264(_) | Codec::Hevc(_) | Codec::Av1(_) | Codec::FlvVideo { .. } => TrackKind::Video,
            Codec::Aac(_) | Codec::FlvAudio { .. } => TrackKind::Audio,
        }
    }

    /// A short codec name for logs and status displays.
    pub fn name(&self) -> String {
        match self {
            Codec::H264(c) => format!("h264 {}x{}", c.width, c.height),
            Codec::Hevc(c) => format!("hevc {}x{}", c.width, c.height),
            Codec::Av1(c) => format!("av1 {}x{}", c.width, c.height),
            Codec::Aac(c) => format!("aac {} Hz {} ch", c.sample_rate, c.channels),
            Codec::FlvVideo { codec, .. } | Codec::FlvAudio { codec, .. } => codec.to_string(),
        }
    }

    /// True when packets of this codec hold whole FLV tag bodies.
    pub fn is_flv_opaque(&self) -> bool {
        matches!(self, Codec::FlvVideo { .. } | Codec::FlvAudio { .. })
    }
}

/// One elementary stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Track {
    pub id: TrackId,
    pub codec: Codec,
    /// The timebase packets of this track are stamped in.
    pub timebase: Timebase,
}

impl Track {
    pub fn kind(&self) -> TrackKind {
        self.codec.kind()
    }
}

/// Descriptive stream metadata (RTMP `onMetaData`), informational only.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamMetadata {
    pub frame_rate: Option<f64>,
    pub video_bitrate_kbps: Option<u32>,
    pub audio_bitrate_kbps: Option<u32>,
    pub encoder: Option<String>,
}

/// The tracks of a stream.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaInfo {
    pub tracks: Vec<Track>,
    pub metadata: StreamMetadata,
}

impl MediaInfo {
    pub fn track(&self, id: TrackId) -> Option<&Track> {
        self.tracks.iter().find(|t| t.id == id)
    }

    pub fn video(&self) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind() == TrackKind::Video)
    }

    pub fn audio(&self) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind() == TrackKind::Audio)
    }

    /// Replaces the track with the same id, or adds it.
    pub fn set_track(&mut self, track: Track) {
        match self.tracks.iter_mut().find(|t| t.id == track.id) {
            Some(t) => *t = track,
            None => {
                self.tracks.push(track);
                self.tracks.sort_by_key(|t| t.id);
            }
        }
    }
}

/// One access unit.
#[derive(Clone, Debug)]
pub struct Packet {
    pub track: TrackId,
    pub kind: TrackKind,
    /// Decode timestamp.
    pub dts: Timestamp,
    /// Presentation timestamp (equal to `dts` for audio).
    pub pts: Timestamp,
    /// Starts a decodable sequence (IDR for H.264; every audio frame).
    pub keyframe: bool,
    /// The encoded bytes, shared between every consumer of this packet.
    pub payload: Bytes,
}

impl Packet {
    /// Composition offset `pts - dts` in milliseconds.
    pub fn cts_millis(&self) -> i64 {
        self.pts.as_millis() - self.dts.as_millis()
    }

    /// Moves the packet `ms` milliseconds later in media time (earlier when negative),
    /// in its own timebase.
    pub fn shift_millis(&mut self, ms: i64) {
        let by = |t: Timestamp| t.add_ticks(Timestamp::from_millis(ms).rescale(t.timebase()).ticks());
        (self.dts, self.pts) = (by(self.dts), by(self.pts));
    }
}

/// What a [`crate::Source`] yields and a hub subscriber receives.
#[derive(Clone, Debug)]
pub enum MediaItem {
    /// The stream's tracks changed (or are announced for the first time).
    Info(Arc<MediaInfo>),
    Packet(Packet),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloning_a_packet_shares_the_payload() {
        let payload = Bytes::from(vec![1u8; 1000]);
        let p = Packet {
            track: TrackId(0),
            kind: TrackKind::Video,
            dts: Timestamp::from_millis(0),
            pts: Timestamp::from_millis(40),
            keyframe: true,
            payload,
        };
        let mut q = p.clone();
        assert_eq!(p.payload.as_ptr(), q.payload.as_ptr());
        assert_eq!(q.cts_millis(), 40);
        q.dts = Timestamp::new(900, Timebase::HZ_90K);
        q.shift_millis(1500);
        assert_eq!((q.dts.ticks(), q.dts.timebase()), (900 + 135_000, Timebase::HZ_90K), "in its own timebase");
        assert_eq!((q.pts.as_millis(), q.cts_millis()), (1540, 30));
    }

    #[test]
    fn set_track_replaces_by_id() {
        let mut info = MediaInfo::default();
        let opaque = |cc: u8| Track {
            id: TrackId(1),
            codec: Codec::FlvAudio { codec: FlvCodecTag::Id(cc), sequence_header: None },
            timebase: Timebase::MILLIS,
        };
        info.set_track(opaque(2));
        info.set_track(opaque(11));
        assert_eq!(info.tracks.len(), 1);
        assert_eq!(info.audio().map(|t| t.codec.name()), Some("flv-codec-11".to_string()));
    }
}
