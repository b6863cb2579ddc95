//! FLV tag bodies as carried in RTMP audio/video messages: parsing (ingest) and the
//! small headers written in front of payloads (push).
//!
//! Classic FLV (`codec id 7` = AVC, `sound format 10` = AAC) is parsed into the media
//! model. Enhanced RTMP video (the `IsExHeader` bit, FourCC `hvc1`/`av01`/`vp09`…) and
//! other codecs are kept opaque: the whole tag body travels as the packet payload.

use bytes::Bytes;

use crate::codec::CodecError;
use crate::codec::aac::AudioSpecificConfig;
use crate::codec::avc::AvcDecoderConfig;
use crate::media::FlvCodecTag;

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
        // Enhanced RTMP: [1 bit ex-header][3 bit frame type][4 bit packet type][FourCC]...
        let frame_type = (first >> 4) & 0x07;
        let packet_type = first & 0x0F;
        let cc = body.get(1..5).ok_or(FlvError::Truncated("enhanced video"))?;
        let codec = FlvCodecTag::FourCc([cc[0], cc[1], cc[2], cc[3]]);
        if frame_type == 5 {
            return Ok(VideoTag::Ignored);
        }
        return Ok(VideoTag::Opaque {
            codec,
            keyframe: frame_type == 1,
            // packet type 0 = sequence start; 4 = multitrack, 5 = metadata (kept as config too)
            sequence_header: packet_type == 0,
            body: body.clone(),
        });
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
    fn enhanced_rtmp_hevc_is_opaque() {
        let body = Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1', 1, 2, 3]);
        match parse_video(&body) {
            Ok(VideoTag::Opaque { codec, keyframe, sequence_header, body: b }) => {
                assert_eq!(codec, FlvCodecTag::FourCc(*b"hvc1"));
                assert!(keyframe);
                assert!(sequence_header);
                assert_eq!(b, body);
            }
            other => panic!("unexpected {other:?}"),
        }
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
