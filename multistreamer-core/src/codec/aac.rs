//! AAC: the AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).

use bytes::Bytes;

use super::CodecError;
use super::bits::BitReader;

const SAMPLE_RATES: [u32; 13] =
    [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

/// A parsed AudioSpecificConfig, keeping the original bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// The config exactly as received.
    pub raw: Bytes,
    /// Audio object type (2 = AAC-LC, 5 = SBR/HE-AAC, 29 = PS).
    pub object_type: u8,
    /// Sampling frequency of the core decoder, in Hz.
    pub sample_rate: u32,
    /// Channel configuration (1 = mono, 2 = stereo, …; 0 = defined in the bitstream).
    pub channels: u8,
}

impl AudioSpecificConfig {
    pub fn parse(raw: Bytes) -> Result<AudioSpecificConfig, CodecError> {
        let mut b = BitReader::new(&raw);
        let mut object_type = b.read_bits(5)? as u8;
        if object_type == 31 {
            object_type = 32 + b.read_bits(6)? as u8;
        }
        if object_type == 0 {
            return Err(CodecError::Invalid("AAC object type 0".into()));
        }
        let index = b.read_bits(4)? as usize;
        let sample_rate = if index == 15 {
            b.read_bits(24)?
        } else {
            *SAMPLE_RATES
                .get(index)
                .ok_or_else(|| CodecError::Invalid(format!("AAC sampling frequency index {index}")))?
        };
        if sample_rate == 0 {
            return Err(CodecError::Invalid("AAC sample rate 0".into()));
        }
        let channels = b.read_bits(4)? as u8;
        Ok(AudioSpecificConfig { raw, object_type, sample_rate, channels })
    }

    /// The RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

/// The configuration carried by an ADTS frame header (AAC in MPEG-TS and `.aac` files),
/// and the header's length (7 bytes, or 9 with a CRC).
pub fn adts_config(frame: &[u8]) -> Result<(AudioSpecificConfig, usize), CodecError> {
    if frame.len() < 7 || frame[0] != 0xFF || frame[1] & 0xF0 != 0xF0 {
        return Err(CodecError::Invalid("no ADTS sync word".into()));
    }
    let header_len = if frame[1] & 1 == 1 { 7 } else { 9 };
    if frame.len() < header_len {
        return Err(CodecError::Truncated("ADTS header"));
    }
    let object_type = ((frame[2] >> 6) & 3) + 1;
    let sf_index = (frame[2] >> 2) & 0x0F;
    let channels = ((frame[2] & 1) << 2) | (frame[3] >> 6);
    let asc = [(object_type << 3) | (sf_index >> 1), ((sf_index & 1) << 7) | (channels << 3)];
    Ok((AudioSpecificConfig::parse(Bytes::copy_from_slice(&asc))?, header_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lc_48k_stereo() {
        let asc = AudioSpecificConfig::parse(Bytes::from_static(&[0x11, 0x90])).expect("valid");
        assert_eq!((asc.object_type, asc.sample_rate, asc.channels), (2, 48000, 2));
        assert_eq!(asc.codec_string(), "mp4a.40.2");
    }

    #[test]
    fn parses_44k_mono_with_extension_bytes() {
        // ffmpeg's RTSP SDP carries configs with trailing extension bits; only the head matters.
        let asc = AudioSpecificConfig::parse(Bytes::from_static(&[0x12, 0x08, 0x56, 0xe5, 0x00])).expect("valid");
        assert_eq!((asc.object_type, asc.sample_rate, asc.channels), (2, 44100, 1));
    }

    #[test]
    fn parses_explicit_frequency_and_escape_object_type() {
        // object type 31 -> escape, 6 bits = 10 -> 42; index 15 -> 24-bit 22050; 2 channels
        let mut bits: u64 = 0;
        let mut n = 0;
        for (v, w) in [(31u64, 5), (10, 6), (15, 4), (22050, 24), (2, 4)] {
            bits = (bits << w) | v;
            n += w;
        }
        bits <<= 64 - n;
        let bytes = bits.to_be_bytes()[..(n as usize).div_ceil(8)].to_vec();
        let asc = AudioSpecificConfig::parse(Bytes::from(bytes)).expect("valid");
        assert_eq!((asc.object_type, asc.sample_rate, asc.channels), (42, 22050, 2));
    }

    #[test]
    fn rejects_garbage() {
        assert!(AudioSpecificConfig::parse(Bytes::new()).is_err());
        assert!(AudioSpecificConfig::parse(Bytes::from_static(&[0x00, 0x00])).is_err());
        assert!(AudioSpecificConfig::parse(Bytes::from_static(&[0x17, 0x80])).is_err()); // index 15 truncated
        assert!(AudioSpecificConfig::parse(Bytes::from_static(&[0x16, 0x80])).is_err()); // index 13
    }

    #[test]
    fn adts_header_gives_the_config() {
        // AAC-LC, 44.1 kHz (index 4), stereo, no CRC.
        let frame = [0xFF, 0xF1, 0x50, 0x80, 0x02, 0x1F, 0xFC, 0xAA];
        let (asc, len) = adts_config(&frame).expect("valid");
        assert_eq!(len, 7);
        assert_eq!((asc.object_type, asc.sample_rate, asc.channels), (2, 44_100, 2));
        assert_eq!(&asc.raw[..], &[0x12, 0x10]);
        assert!(adts_config(&[0x00, 0x01, 2, 3, 4, 5, 6]).is_err());
        assert!(adts_config(&[0xFF, 0xF0, 0x50]).is_err());
    }
}
