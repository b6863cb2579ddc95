//! FLV tag bodies as carried in RTMP audio/video messages: parsing (ingest) and the
//! small headers written in front of payloads (push).
//!
//! Classic FLV (`codec id 7` = AVC, `sound format 10` = AAC) and Enhanced RTMP video
//! (the `IsExHeader` bit) with the FourCC `hvc1`, `av01` or `avc1` are parsed into the
//! media model. Other codecs (`vp09`, MP3, …) are kept opaque: the whole tag body travels
//! as the packet payload.

use bytes::Bytes;

use crate::codec::CodecError;
use crate::codec::aac::AudioSpecificConfig;
use crate::codec::av1::Av1Config;
use crate::codec::avc::AvcDecoderConfig;
use crate::codec::hevc::HevcDecoderConfig;
use crate::media::{Codec, FlvCodecTag};

/// The video codecs Enhanced RTMP names by FourCC that this crate parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VideoFourCc {
    Avc,
    Hevc,
    Av1,
}

impl VideoFourCc {
    pub fn from_bytes(cc: &[u8]) -> Option<VideoFourCc> {
        match cc {
            b"avc1" => Some(VideoFourCc::Avc),
            b"hvc1" => Some(VideoFourCc::Hevc),
            b"av01" => Some(VideoFourCc::Av1),
            _ => None,
        }
    }

    pub fn as_bytes(self) -> &'static [u8; 4] {
        match self {
            VideoFourCc::Avc => b"avc1",
            VideoFourCc::Hevc => b"hvc1",
            VideoFourCc::Av1 => b"av01",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VideoFourCc::Avc => "avc1",
            VideoFourCc::Hevc => "hvc1",
            VideoFourCc::Av1 => "av01",
        }
    }

    /// The FourCC of a track's codec, for the codecs sent with an Enhanced RTMP header.
    pub fn of_codec(codec: &Codec) -> Option<VideoFourCc> {
        match codec {
            Codec::Hevc(_) => Some(VideoFourCc::Hevc),
            Codec::Av1(_) => Some(VideoFourCc::Av1),
            _ => None,
        }
    }

    /// Whether a track of `codec` takes this FourCC's frames.
    pub fn matches(self, codec: &Codec) -> bool {
        matches!(
            (self, codec),
            (VideoFourCc::Avc, Codec::H264(_))
                | (VideoFourCc::Hevc, Codec::Hevc(_))
                | (VideoFourCc::Av1, Codec::Av1(_))
        )
    }
}

impl std::fmt::Display for VideoFourCc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed RTMP video message.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoTag {
    AvcSequenceHeader(AvcDecoderConfig),
    /// AVC NAL units (AVCC payload, the 5-byte tag header stripped).
    AvcNalus {
        keyframe: bool,
        cts_ms: i32,
        payload: Bytes,
    },
    /// AVC end of sequence; carries nothing to relay.
    AvcEndOfSequence,
    /// Enhanced RTMP `SequenceStart` of a parsed FourCC: the track's codec.
    ExSequenceHeader(Codec),
    /// Enhanced RTMP coded frames of a parsed FourCC (the header stripped: the payload is
    /// length-prefixed NAL units for `avc1`/`hvc1`, OBUs for `av01`).
    ExFrames {
        fourcc: VideoFourCc,
        keyframe: bool,
        cts_ms: i32,
        payload: Bytes,
    },
    /// A codec relayed without parsing; `body` is the whole tag body.
    Opaque {
        codec: FlvCodecTag,
        keyframe: bool,
        sequence_header: bool,
        body: Bytes,
    },
    /// Video info/command frames (frame type 5) and empty messages: nothing to relay.
    Ignored,
}

/// A parsed RTMP audio message.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioTag {
    AacSequenceHeader(AudioSpecificConfig),
    /// A raw AAC frame (the 2-byte tag header stripped).
    AacRaw(Bytes),
    Opaque {
        codec: FlvCodecTag,
        sequence_header: bool,
        body: Bytes,
    },
    Ignored,
}

/// A malformed FLV tag body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    #[error("truncated FLV {0} tag")]
    Truncated(&'static str),
    #[error("bad codec configuration in FLV {what} sequence header: {source}")]
    Config { what: &'static str, source: CodecError },
    #[error("unsupported Enhanced RTMP {0}")]
    Unsupported(&'static str),
}

const AVC_CODEC_ID: u8 = 7;
const AAC_SOUND_FORMAT: u8 = 10;
const EX_HEADER_AUDIO_FORMAT: u8 = 9;

/// Parses an RTMP video message body.
pub fn parse_video(body: &Bytes) -> Result<VideoTag, FlvError> {
    let Some(&first) = body.first() else {
        return Ok(VideoTag::Ignored);
    };
    if first & 0x80 != 0 {
        return parse_ex_video(first, body);
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0F;
    if frame_type == 5 {
        return Ok(VideoTag::Ignored);
    }
    if codec_id != AVC_CODEC_ID {
        return Ok(VideoTag::Opaque {
            codec: FlvCodecTag::Id(codec_id),
            keyframe: frame_type == 1,
            sequence_header: false,
            body: body.clone(),
        });
    }
    let header = body.get(..5).ok_or(FlvError::Truncated("AVC video"))?;
    let cts = i32::from_be_bytes([0, header[2], header[3], header[4]]);
    // sign-extend the 24-bit composition time
    let cts_ms = (cts << 8) >> 8;
    match header[1] {
        0 => {
            let cfg =
                AvcDecoderConfig::parse(body.slice(5..)).map_err(|source| FlvError::Config { what: "AVC", source })?;
            Ok(VideoTag::AvcSequenceHeader(cfg))
        }
        1 => Ok(VideoTag::AvcNalus { keyframe: frame_type == 1, cts_ms, payload: body.slice(5..) }),
        _ => Ok(VideoTag::AvcEndOfSequence),
    }
}

/// Enhanced RTMP packet types (the low 4 bits of the first byte).
const EX_SEQUENCE_START: u8 = 0;
const EX_CODED_FRAMES: u8 = 1;
const EX_SEQUENCE_END: u8 = 2;
const EX_CODED_FRAMES_X: u8 = 3;
const EX_METADATA: u8 = 4;
const EX_MPEG2TS_SEQUENCE_START: u8 = 5;
const EX_MULTITRACK: u8 = 6;
const EX_MOD_EX: u8 = 7;

/// `[1 bit ex-header][3 bit frame type][4 bit packet type][FourCC]...`
fn parse_ex_video(first: u8, body: &Bytes) -> Result<VideoTag, FlvError> {
    let frame_type = (first >> 4) & 0x07;
    let packet_type = first & 0x0F;
    if packet_type == EX_MULTITRACK || packet_type == EX_MOD_EX {
        // the FourCC comes later (multitrack) or the packet type is wrapped (ModEx): v2
        // features no known encoder sends without being asked to
        return Err(FlvError::Unsupported(if packet_type == EX_MULTITRACK {
            "multitrack video (v2)"
        } else {
            "ModEx video packet (v2)"
        }));
    }
    let cc = body.get(1..5).ok_or(FlvError::Truncated("enhanced video"))?;
    if frame_type == 5 {
        return Ok(VideoTag::Ignored);
    }
    let Some(fourcc) = VideoFourCc::from_bytes(cc) else {
        return Ok(VideoTag::Opaque {
            codec: FlvCodecTag::FourCc([cc[0], cc[1], cc[2], cc[3]]),
            keyframe: frame_type == 1,
            // packet type 0 = sequence start (kept as the codec's configuration)
            sequence_header: packet_type == EX_SEQUENCE_START,
            body: body.clone(),
        });
    };
    let keyframe = frame_type == 1;
    match packet_type {
        EX_SEQUENCE_START => {
            let record = body.slice(5..);
            let codec = match fourcc {
                VideoFourCc::Avc => AvcDecoderConfig::parse(record).map(Codec::H264),
                VideoFourCc::Hevc => HevcDecoderConfig::parse(record).map(Codec::Hevc),
                VideoFourCc::Av1 => Av1Config::parse(record).map(Codec::Av1),
            }
            .map_err(|source| FlvError::Config { what: fourcc.as_str(), source })?;
            Ok(VideoTag::ExSequenceHeader(codec))
        }
        EX_CODED_FRAMES if fourcc != VideoFourCc::Av1 => {
            let h = body.get(5..8).ok_or(FlvError::Truncated("enhanced video"))?;
            let cts = i32::from_be_bytes([0, h[0], h[1], h[2]]);
            Ok(VideoTag::ExFrames { fourcc, keyframe, cts_ms: (cts << 8) >> 8, payload: body.slice(8..) })
        }
        EX_CODED_FRAMES | EX_CODED_FRAMES_X => {
            Ok(VideoTag::ExFrames { fourcc, keyframe, cts_ms: 0, payload: body.slice(5..) })
        }
        EX_SEQUENCE_END | EX_METADATA | EX_MPEG2TS_SEQUENCE_START => Ok(VideoTag::Ignored),
        _ => Err(FlvError::Unsupported("video packet type")),
    }
}

/// The Enhanced RTMP header in front of a sequence start (the configuration record follows).
pub fn ex_sequence_start_header(fourcc: VideoFourCc) -> [u8; 5] {
    let cc = fourcc.as_bytes();
    [0x80 | (1 << 4) | EX_SEQUENCE_START, cc[0], cc[1], cc[2], cc[3]]
}

/// The Enhanced RTMP header in front of coded frames: `CodedFrames` with the composition
/// time for `avc1`/`hvc1` when it is not zero, `CodedFramesX` otherwise. Returns the
/// buffer and the length used.
pub fn ex_frames_header(fourcc: VideoFourCc, keyframe: bool, cts_ms: i32) -> ([u8; 8], usize) {
    let cc = fourcc.as_bytes();
    let frame = if keyframe { 1u8 } else { 2 };
    let mut h = [0x80 | (frame << 4), cc[0], cc[1], cc[2], cc[3], 0, 0, 0];
    if cts_ms != 0 && fourcc != VideoFourCc::Av1 {
        h[0] |= EX_CODED_FRAMES;
        let cts = cts_ms.clamp(-(1 << 23), (1 << 23) - 1).to_be_bytes();
        h[5..8].copy_from_slice(&cts[1..4]);
        (h, 8)
    } else {
        h[0] |= EX_CODED_FRAMES_X;
        (h, 5)
    }
}

/// Parses an RTMP audio message body.
pub fn parse_audio(body: &Bytes) -> Result<AudioTag, FlvError> {
    let Some(&first) = body.first() else {
        return Ok(AudioTag::Ignored);
    };
    let format = first >> 4;
    if format == AAC_SOUND_FORMAT {
        let packet_type = *body.get(1).ok_or(FlvError::Truncated("AAC audio"))?;
        return match packet_type {
            0 => AudioSpecificConfig::parse(body.slice(2..))
                .map(AudioTag::AacSequenceHeader)
                .map_err(|source| FlvError::Config { what: "AAC", source }),
            _ => Ok(AudioTag::AacRaw(body.slice(2..))),
        };
    }
    if format == EX_HEADER_AUDIO_FORMAT {
        // Enhanced RTMP audio: [4 bit format=9][4 bit packet type][FourCC]...
        let cc = body.get(1..5).ok_or(FlvError::Truncated("enhanced audio"))?;
        return Ok(AudioTag::Opaque {
            codec: FlvCodecTag::FourCc([cc[0], cc[1], cc[2], cc[3]]),
            sequence_header: first & 0x0F == 0,
            body: body.clone(),
        });
    }
    Ok(AudioTag::Opaque { codec: FlvCodecTag::Id(format), sequence_header: false, body: body.clone() })
}

/// The 5-byte header in front of an AVC payload: frame type, codec id, packet type, cts.
pub fn avc_header(keyframe: bool, sequence_header: bool, cts_ms: i32) -> [u8; 5] {
    let frame = if keyframe { 0x17 } else { 0x27 };
    let cts = cts_ms.clamp(-(1 << 23), (1 << 23) - 1).to_be_bytes();
    [frame, u8::from(!sequence_header), cts[1], cts[2], cts[3]]
}

/// The 2-byte header in front of an AAC payload. FLV always signals AAC as
/// 44 kHz / 16 bit / stereo (`0xAF`); the real parameters are in the AudioSpecificConfig.
pub fn aac_header(sequence_header: bool) -> [u8; 2] {
    [0xAF, u8::from(!sequence_header)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_avc_nalus_with_negative_cts() {
        let body = Bytes::from_static(&[0x27, 0x01, 0xFF, 0xFF, 0xD8, 0, 0, 0, 1, 0x41]);
        match parse_video(&body) {
            Ok(VideoTag::AvcNalus { keyframe, cts_ms, payload }) => {
                assert!(!keyframe);
                assert_eq!(cts_ms, -40);
                assert_eq!(&payload[..], &[0, 0, 0, 1, 0x41]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn header_round_trips() {
        for cts in [0, 33, 66, -40, 8_388_607] {
            let h = avc_header(true, false, cts);
            let mut body = h.to_vec();
            body.push(0x65);
            match parse_video(&Bytes::from(body)) {
                Ok(VideoTag::AvcNalus { cts_ms, keyframe: true, .. }) => assert_eq!(cts_ms, cts),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn enhanced_rtmp_hevc_and_av1_are_parsed() {
        let hevc = crate::codec::hevc::testing::config_320x240();
        let mut body = ex_sequence_start_header(VideoFourCc::Hevc).to_vec();
        body.extend_from_slice(&hevc.record);
        assert_eq!(parse_video(&Bytes::from(body)), Ok(VideoTag::ExSequenceHeader(Codec::Hevc(hevc))));

        let av1 = crate::codec::av1::testing::config_320x240();
        let mut body = ex_sequence_start_header(VideoFourCc::Av1).to_vec();
        body.extend_from_slice(&av1.record);
        assert_eq!(parse_video(&Bytes::from(body)), Ok(VideoTag::ExSequenceHeader(Codec::Av1(av1))));

        for (fourcc, keyframe, cts) in [
            (VideoFourCc::Hevc, true, 0),
            (VideoFourCc::Hevc, false, -40),
            (VideoFourCc::Hevc, false, 66),
            (VideoFourCc::Av1, true, 0),
        ] {
            let (h, n) = ex_frames_header(fourcc, keyframe, cts);
            let mut body = h[..n].to_vec();
            body.extend_from_slice(&[0, 0, 0, 2, 0x26, 0x01]);
            assert_eq!(
                parse_video(&Bytes::from(body)),
                Ok(VideoTag::ExFrames {
                    fourcc,
                    keyframe,
                    cts_ms: cts,
                    payload: Bytes::from_static(&[0, 0, 0, 2, 0x26, 0x01])
                })
            );
        }
    }

    #[test]
    fn other_fourccs_stay_opaque_and_v2_packets_are_refused() {
        let body = Bytes::from_static(&[0x90, b'v', b'p', b'0', b'9', 1, 2, 3]);
        match parse_video(&body) {
            Ok(VideoTag::Opaque { codec, keyframe, sequence_header, body: b }) => {
                assert_eq!(codec, FlvCodecTag::FourCc(*b"vp09"));
                assert!(keyframe);
                assert!(sequence_header);
                assert_eq!(b, body);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            parse_video(&Bytes::from_static(&[0x96, 0x00, b'h', b'v', b'c', b'1'])),
            Err(FlvError::Unsupported(_))
        ));
        // a bad HEVC record is an error naming the codec
        assert!(matches!(
            parse_video(&Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1', 1, 2, 3])),
            Err(FlvError::Config { what: "hvc1", .. })
        ));
        // the end of the sequence carries nothing
        assert_eq!(parse_video(&Bytes::from_static(&[0x92, b'h', b'v', b'c', b'1'])), Ok(VideoTag::Ignored));
    }

    #[test]
    fn aac_and_mp3() {
        assert!(matches!(
            parse_audio(&Bytes::from_static(&[0xAF, 0x00, 0x11, 0x90])),
            Ok(AudioTag::AacSequenceHeader(_))
        ));
        assert!(matches!(
            parse_audio(&Bytes::from_static(&[0xAF, 0x01, 0x21])),
            Ok(AudioTag::AacRaw(b)) if b[..] == [0x21]
        ));
        assert!(matches!(
            parse_audio(&Bytes::from_static(&[0x2F, 0xFF])),
            Ok(AudioTag::Opaque { codec: FlvCodecTag::Id(2), .. })
        ));
    }

    #[test]
    fn truncated_tags_are_errors_not_panics() {
        assert!(parse_video(&Bytes::from_static(&[0x17, 0x01])).is_err());
        assert!(parse_video(&Bytes::from_static(&[0x17, 0x00, 0, 0, 0, 1])).is_err());
        assert!(parse_video(&Bytes::from_static(&[0x90, b'h'])).is_err());
        assert!(parse_audio(&Bytes::from_static(&[0xAF])).is_err());
        assert!(parse_audio(&Bytes::from_static(&[0xAF, 0x00, 0x00])).is_err());
        assert_eq!(parse_video(&Bytes::new()), Ok(VideoTag::Ignored));
    }
}
