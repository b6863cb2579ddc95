//! H.265/HEVC: the HEVC decoder configuration record (`hvcC`, ISO/IEC 14496-15 §8.3.3.1)
//! and the fields of the sequence parameter set we need (profile, level, coded size).
//!
//! Packets of an HEVC track are length-prefixed NAL units, as in MP4 samples and Enhanced
//! RTMP `hvc1` frames; the prefix size is the record's `nal_length_size`.

use bytes::{BufMut, Bytes, BytesMut};

use super::CodecError;
use super::avc::unescape_rbsp;
use super::bits::BitReader;

/// NAL unit types of the parameter sets (H.265 table 7-1).
pub const NAL_VPS: u8 = 32;
pub const NAL_SPS: u8 = 33;
pub const NAL_PPS: u8 = 34;
pub const NAL_AUD: u8 = 35;

/// The NAL unit type of an HEVC NAL unit (its two-byte header first).
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| (b >> 1) & 0x3F)
}

/// Whether a NAL unit type is an IRAP picture (BLA, IDR or CRA: a random access point).
pub fn is_irap(nal_type: u8) -> bool {
    (16..=23).contains(&nal_type)
}

/// A parsed `HEVCDecoderConfigurationRecord`, keeping the original bytes so relays can
/// forward it unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HevcDecoderConfig {
    /// The record exactly as received.
    pub record: Bytes,
    pub profile_space: u8,
    pub tier_flag: bool,
    pub profile_idc: u8,
    pub profile_compatibility: u32,
    /// The 48 bits of general constraint indicator flags.
    pub constraint_flags: [u8; 6],
    pub level_idc: u8,
    /// Size of the NAL unit length prefix in bytes (1, 2 or 4).
    pub nal_length_size: u8,
    pub vps: Vec<Bytes>,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
    /// Displayed width in pixels, from the first SPS (conformance window applied).
    pub width: u32,
    /// Displayed height in pixels, from the first SPS (conformance window applied).
    pub height: u32,
}

const RECORD_HEADER: usize = 23;

impl HevcDecoderConfig {
    /// Parses a decoder configuration record.
    pub fn parse(record: Bytes) -> Result<HevcDecoderConfig, CodecError> {
        let r = &record[..];
        if r.len() < RECORD_HEADER {
            return Err(CodecError::Truncated("HEVC decoder configuration record"));
        }
        if r[0] != 1 {
            return Err(CodecError::Invalid(format!(
                "HEVC decoder configuration record version {} (expected 1)",
                r[0]
            )));
        }
        let nal_length_size = (r[21] & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(CodecError::Invalid("NAL length size 3 is not allowed".into()));
        }
        let arrays = usize::from(r[22]);
        let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
        let mut pos = RECORD_HEADER;
        for _ in 0..arrays {
            let header = r.get(pos..pos + 3).ok_or(CodecError::Truncated("HEVC parameter set array"))?;
            let kind = header[0] & 0x3F;
            let count = usize::from(u16::from_be_bytes([header[1], header[2]]));
            pos += 3;
            for _ in 0..count {
                let len_bytes = r.get(pos..pos + 2).ok_or(CodecError::Truncated("HEVC parameter set"))?;
                let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
                pos += 2;
                if len < 2 || r.len() < pos + len {
                    return Err(CodecError::Truncated("HEVC parameter set"));
                }
                let nal = record.slice(pos..pos + len);
                pos += len;
                match kind {
                    NAL_VPS => vps.push(nal),
                    NAL_SPS => sps.push(nal),
                    NAL_PPS => pps.push(nal),
                    // SEI and other arrays are allowed and kept in `record` only
                    _ => {}
                }
            }
        }
        let first =
            sps.first().ok_or_else(|| CodecError::Invalid("HEVC decoder configuration record has no SPS".into()))?;
        let info = HevcSpsInfo::parse(first)?;
        let mut constraint_flags = [0u8; 6];
        constraint_flags.copy_from_slice(&r[6..12]);
        Ok(HevcDecoderConfig {
            profile_space: r[1] >> 6,
            tier_flag: r[1] & 0x20 != 0,
            profile_idc: r[1] & 0x1F,
            profile_compatibility: u32::from_be_bytes([r[2], r[3], r[4], r[5]]),
            constraint_flags,
            level_idc: r[12],
            nal_length_size,
            vps,
            sps,
            pps,
            width: info.width,
            height: info.height,
            record,
        })
    }

    /// Builds a record (4-byte NAL lengths) from parameter sets found in a bitstream, each
    /// a NAL unit with its two-byte header.
    pub fn from_parameter_sets(vps: &[Bytes], sps: &[Bytes], pps: &[Bytes]) -> Result<HevcDecoderConfig, CodecError> {
        let first = sps.first().ok_or_else(|| CodecError::Invalid("no HEVC SPS".into()))?;
        if vps.is_empty() || pps.is_empty() {
            return Err(CodecError::Invalid("an HEVC record needs a VPS, an SPS and a PPS".into()));
        }
        let info = HevcSpsInfo::parse(first)?;
        let mut r = BytesMut::with_capacity(64);
        r.put_u8(1);
        r.put_slice(&info.general_profile_tier_level);
        r.put_u16(0xF000); // reserved + min_spatial_segmentation_idc 0
        r.put_u8(0xFC); // reserved + parallelismType 0 (unknown)
        r.put_u8(0xFC | (info.chroma_format_idc & 0x03));
        r.put_u8(0xF8 | (info.bit_depth_luma_minus8 & 0x07));
        r.put_u8(0xF8 | (info.bit_depth_chroma_minus8 & 0x07));
        r.put_u16(0); // avgFrameRate unknown
        // constantFrameRate 0, numTemporalLayers, temporalIdNested, lengthSizeMinusOne 3
        r.put_u8(((info.max_sub_layers & 0x07) << 3) | (u8::from(info.temporal_id_nested) << 2) | 0x03);
        r.put_u8(3);
        for (kind, sets) in [(NAL_VPS, vps), (NAL_SPS, sps), (NAL_PPS, pps)] {
            r.put_u8(0x80 | kind); // array_completeness: every set is in the record
            r.put_u16(u16::try_from(sets.len()).map_err(|_| CodecError::Invalid("too many parameter sets".into()))?);
            for nal in sets {
                let len =
                    u16::try_from(nal.len()).map_err(|_| CodecError::Invalid("parameter set over 64 KiB".into()))?;
                r.put_u16(len);
                r.put_slice(nal);
            }
        }
        HevcDecoderConfig::parse(r.freeze())
    }

    /// The RFC 6381 codec string, e.g. `hvc1.1.6.L93.B0`.
    pub fn codec_string(&self) -> String {
        let space = ["", "A", "B", "C"][usize::from(self.profile_space & 0x03)];
        let tier = if self.tier_flag { 'H' } else { 'L' };
        let mut s = format!(
            "hvc1.{space}{}.{:X}.{tier}{}",
            self.profile_idc,
            self.profile_compatibility.reverse_bits(),
            self.level_idc
        );
        let last = self.constraint_flags.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        for b in &self.constraint_flags[..last] {
            s.push_str(&format!(".{b:X}"));
        }
        s
    }
}

/// What we read from an HEVC sequence parameter set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HevcSpsInfo {
    /// `profile_space..general_level_idc`: the 12 bytes a decoder configuration record copies.
    pub general_profile_tier_level: [u8; 12],
    pub max_sub_layers: u8,
    pub temporal_id_nested: bool,
    pub chroma_format_idc: u8,
    pub bit_depth_luma_minus8: u8,
    pub bit_depth_chroma_minus8: u8,
    pub width: u32,
    pub height: u32,
}

impl HevcSpsInfo {
    /// Parses an SPS NAL unit (two-byte NAL header first, emulation prevention bytes in place).
    pub fn parse(nal: &[u8]) -> Result<HevcSpsInfo, CodecError> {
        if nal_type(nal) != Some(NAL_SPS) {
            return Err(CodecError::Invalid(format!(
                "NAL type {:?} where an HEVC SPS ({NAL_SPS}) was expected",
                nal_type(nal)
            )));
        }
        let rbsp = unescape_rbsp(nal.get(2..).ok_or(CodecError::Truncated("HEVC SPS"))?);
        let mut b = BitReader::new(&rbsp);
        b.skip(4)?; // sps_video_parameter_set_id
        let max_sub_layers_minus1 = b.read_bits(3)? as u8;
        let temporal_id_nested = b.read_bit()?;
        // profile_tier_level(1, max_sub_layers_minus1): the general part is byte aligned here
        let general: [u8; 12] =
            rbsp.get(1..13).and_then(|s| s.try_into().ok()).ok_or(CodecError::Truncated("HEVC profile_tier_level"))?;
        b.skip(96)?;
        let mut sub_profile = [false; 8];
        let mut sub_level = [false; 8];
        for i in 0..usize::from(max_sub_layers_minus1) {
            sub_profile[i] = b.read_bit()?;
            sub_level[i] = b.read_bit()?;
        }
        if max_sub_layers_minus1 > 0 {
            b.skip(2 * (8 - usize::from(max_sub_layers_minus1)))?;
        }
        for i in 0..usize::from(max_sub_layers_minus1) {
            if sub_profile[i] {
                b.skip(88)?;
            }
            if sub_level[i] {
                b.skip(8)?;
            }
        }
        b.read_ue()?; // sps_seq_parameter_set_id
        let chroma_format_idc = b.read_ue()?;
        if chroma_format_idc > 3 {
            return Err(CodecError::Invalid(format!("HEVC chroma_format_idc {chroma_format_idc}")));
        }
        let separate_colour_plane = chroma_format_idc == 3 && b.read_bit()?;
        let coded_width = b.read_ue()?;
        let coded_height = b.read_ue()?;
        let (sub_w, sub_h): (u64, u64) = match (chroma_format_idc, separate_colour_plane) {
            (1, _) => (2, 2),
            (2, _) => (2, 1),
            _ => (1, 1),
        };
        let (mut width, mut height) = (coded_width, coded_height);
        if b.read_bit()? {
            let (left, right, top, bottom) = (b.read_ue()?, b.read_ue()?, b.read_ue()?, b.read_ue()?);
            let crop_w = sub_w * (u64::from(left) + u64::from(right));
            let crop_h = sub_h * (u64::from(top) + u64::from(bottom));
            width = u32::try_from(u64::from(coded_width).saturating_sub(crop_w)).unwrap_or(0);
            height = u32::try_from(u64::from(coded_height).saturating_sub(crop_h)).unwrap_or(0);
        }
        let bit_depth_luma_minus8 = b.read_ue()?;
        let bit_depth_chroma_minus8 = b.read_ue()?;
        if width == 0 || height == 0 || width > 16_888 || height > 16_888 {
            return Err(CodecError::Invalid(format!("HEVC picture size {width}x{height}")));
        }
        if bit_depth_luma_minus8 > 8 || bit_depth_chroma_minus8 > 8 {
            return Err(CodecError::Invalid("HEVC bit depth over 16".into()));
        }
        Ok(HevcSpsInfo {
            general_profile_tier_level: general,
            max_sub_layers: max_sub_layers_minus1 + 1,
            temporal_id_nested,
            chroma_format_idc: chroma_format_idc as u8,
            bit_depth_luma_minus8: bit_depth_luma_minus8 as u8,
            bit_depth_chroma_minus8: bit_depth_chroma_minus8 as u8,
            width,
            height,
        })
    }
}

/// Test fixtures: parameter sets of a real 320x240 Main-profile stream (x265).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// VPS, SPS and PPS as x265 writes them for 320x240 (4:2:0, 8 bit).
    pub fn parameter_sets_320x240() -> (Bytes, Bytes, Bytes) {
        let vps = Bytes::from_static(&[
            0x40, 0x01, 0x0C, 0x01, 0xFF, 0xFF, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
            0x03, 0x00, 0x3C, 0x95, 0x98, 0x09,
        ]);
        let sps = Bytes::from_static(&[
            0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x3C,
            0xA0, 0x0A, 0x08, 0x0F, 0x16, 0x59, 0x59, 0xA4, 0x93, 0x2B, 0xC0, 0x5A, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02,
            0x00, 0x00, 0x03, 0x00, 0x3C, 0x10,
        ]);
        let pps = Bytes::from_static(&[0x44, 0x01, 0xC1, 0x72, 0xB4, 0x62, 0x40]);
        (vps, sps, pps)
    }

    /// A record built from [`parameter_sets_320x240`].
    pub fn config_320x240() -> HevcDecoderConfig {
        let (vps, sps, pps) = parameter_sets_320x240();
        HevcDecoderConfig::from_parameter_sets(&[vps], &[sps], &[pps]).expect("fixture record")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_size_and_profile_from_a_real_sps() {
        let (_, sps, _) = testing::parameter_sets_320x240();
        let info = HevcSpsInfo::parse(&sps).expect("sps");
        assert_eq!((info.width, info.height), (320, 240));
        assert_eq!(info.chroma_format_idc, 1);
        assert_eq!(info.general_profile_tier_level[0] & 0x1F, 1, "Main profile");
    }

    #[test]
    fn a_built_record_parses_back_with_every_set() {
        let cfg = testing::config_320x240();
        assert_eq!((cfg.width, cfg.height), (320, 240));
        assert_eq!(cfg.nal_length_size, 4);
        assert_eq!((cfg.vps.len(), cfg.sps.len(), cfg.pps.len()), (1, 1, 1));
        assert_eq!(cfg.profile_idc, 1);
        assert_eq!(cfg.level_idc, 60);
        assert!(cfg.codec_string().starts_with("hvc1.1.6.L60"), "{}", cfg.codec_string());
        let again = HevcDecoderConfig::parse(cfg.record.clone()).expect("reparse");
        assert_eq!(again, cfg);
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        let cfg = testing::config_320x240();
        for n in 0..cfg.record.len() {
            assert!(HevcDecoderConfig::parse(cfg.record.slice(..n)).is_err(), "truncated at {n}");
        }
        let mut bad = cfg.record.to_vec();
        bad[0] = 2;
        assert!(HevcDecoderConfig::parse(Bytes::from(bad)).is_err());
        assert!(HevcSpsInfo::parse(&[0x40, 0x01]).is_err(), "a VPS is not an SPS");
    }
}
