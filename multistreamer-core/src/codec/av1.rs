//! AV1: the codec configuration record (`av1C`, AV1 ISOBMFF binding §2.3) and the fields
//! of the sequence header OBU we need (profile, level, maximum frame size).
//!
//! Packets of an AV1 track are temporal units in the low-overhead OBU format (every OBU
//! with its size field, no temporal delimiter), as in MP4 samples and Enhanced RTMP `av01`
//! frames.

use bytes::{BufMut, Bytes, BytesMut};

use super::CodecError;
use super::bits::BitReader;

/// OBU types (AV1 §6.2.2).
pub const OBU_SEQUENCE_HEADER: u8 = 1;
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;

/// A parsed `AV1CodecConfigurationRecord`, keeping the original bytes so relays can
/// forward it unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Av1Config {
    /// The record exactly as received.
    pub record: Bytes,
    pub seq_profile: u8,
    pub seq_level_idx: u8,
    pub seq_tier: bool,
    pub high_bitdepth: bool,
    pub twelve_bit: bool,
    pub monochrome: bool,
    /// `chroma_subsampling_x`, `chroma_subsampling_y`.
    pub chroma_subsampling: (bool, bool),
    /// The sequence header OBU the record carries (`configOBUs`).
    pub sequence_header: Bytes,
    /// Maximum frame width in pixels, from the sequence header.
    pub width: u32,
    /// Maximum frame height in pixels, from the sequence header.
    pub height: u32,
}

impl Av1Config {
    /// Parses a codec configuration record. The record must carry the sequence header
    /// (every muxer in use writes it; without it the size is unknown).
    pub fn parse(record: Bytes) -> Result<Av1Config, CodecError> {
        let r = &record[..];
        if r.len() < 4 {
            return Err(CodecError::Truncated("AV1 codec configuration record"));
        }
        if r[0] != 0x81 {
            return Err(CodecError::Invalid(format!(
                "AV1 codec configuration record marker/version {:#04x} (expected 0x81)",
                r[0]
            )));
        }
        let mut pos = 4;
        let mut sequence_header = None;
        while pos < r.len() {
            let (obu_type, len) = obu_extent(&r[pos..])?;
            if obu_type == OBU_SEQUENCE_HEADER && sequence_header.is_none() {
                sequence_header = Some(record.slice(pos..pos + len));
            }
            pos += len;
        }
        let sequence_header = sequence_header
            .ok_or_else(|| CodecError::Invalid("AV1 codec configuration record has no sequence header".into()))?;
        let info = SequenceHeaderInfo::parse(&sequence_header)?;
        Ok(Av1Config {
            seq_profile: r[1] >> 5,
            seq_level_idx: r[1] & 0x1F,
            seq_tier: r[2] & 0x80 != 0,
            high_bitdepth: r[2] & 0x40 != 0,
            twelve_bit: r[2] & 0x20 != 0,
            monochrome: r[2] & 0x10 != 0,
            chroma_subsampling: (r[2] & 0x08 != 0, r[2] & 0x04 != 0),
            sequence_header,
            width: info.width,
            height: info.height,
            record,
        })
    }

    /// Builds a record from a sequence header OBU (with its size field).
    pub fn from_sequence_header(obu: Bytes) -> Result<Av1Config, CodecError> {
        let info = SequenceHeaderInfo::parse(&obu)?;
        let mut r = BytesMut::with_capacity(4 + obu.len());
        r.put_u8(0x81);
        r.put_u8((info.seq_profile << 5) | (info.seq_level_idx & 0x1F));
        r.put_u8(
            (u8::from(info.seq_tier) << 7)
                | (u8::from(info.high_bitdepth) << 6)
                | (u8::from(info.twelve_bit) << 5)
                | (u8::from(info.monochrome) << 4)
                | (u8::from(info.chroma_subsampling.0) << 3)
                | (u8::from(info.chroma_subsampling.1) << 2)
                | (info.chroma_sample_position & 0x03),
        );
        r.put_u8(0);
        r.put_slice(&obu);
        Av1Config::parse(r.freeze())
    }

    /// The RFC 6381 / AV1 ISOBMFF codec string, e.g. `av01.0.04M.08`.
    pub fn codec_string(&self) -> String {
        let depth = match (self.high_bitdepth, self.twelve_bit) {
            (true, true) => 12,
            (true, false) => 10,
            _ => 8,
        };
        let tier = if self.seq_tier { 'H' } else { 'M' };
        format!("av01.{}.{:02}{tier}.{depth:02}", self.seq_profile, self.seq_level_idx)
    }
}

/// The type and total length (header, size field and payload) of the OBU at the start of
/// `data`. Only OBUs with a size field are accepted (the low-overhead format).
pub fn obu_extent(data: &[u8]) -> Result<(u8, usize), CodecError> {
    let header = *data.first().ok_or(CodecError::Truncated("OBU header"))?;
    if header & 0x80 != 0 {
        return Err(CodecError::Invalid("OBU forbidden bit set".into()));
    }
    let obu_type = (header >> 3) & 0x0F;
    let extension = header & 0x04 != 0;
    if header & 0x02 == 0 {
        return Err(CodecError::Invalid("OBU without a size field".into()));
    }
    let mut pos = 1 + usize::from(extension);
    let (size, n) = leb128(data.get(pos..).ok_or(CodecError::Truncated("OBU header"))?)?;
    pos += n;
    let end = usize::try_from(size).ok().and_then(|s| pos.checked_add(s)).ok_or(CodecError::Truncated("OBU"))?;
    if end > data.len() {
        return Err(CodecError::Truncated("OBU"));
    }
    Ok((obu_type, end))
}

/// Reads an unsigned LEB128 value (at most 8 bytes); returns it and the bytes used.
fn leb128(data: &[u8]) -> Result<(u64, usize), CodecError> {
    let mut value = 0u64;
    for i in 0..8 {
        let byte = *data.get(i).ok_or(CodecError::Truncated("leb128"))?;
        value |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(CodecError::Invalid("leb128 longer than 8 bytes".into()))
}

/// What we read from a sequence header OBU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequenceHeaderInfo {
    pub seq_profile: u8,
    pub seq_level_idx: u8,
    pub seq_tier: bool,
    pub high_bitdepth: bool,
    pub twelve_bit: bool,
    pub monochrome: bool,
    pub chroma_subsampling: (bool, bool),
    pub chroma_sample_position: u8,
    pub width: u32,
    pub height: u32,
}

impl SequenceHeaderInfo {
    /// Parses a whole sequence header OBU (header and size field first).
    pub fn parse(obu: &[u8]) -> Result<SequenceHeaderInfo, CodecError> {
        let (obu_type, len) = obu_extent(obu)?;
        if obu_type != OBU_SEQUENCE_HEADER {
            return Err(CodecError::Invalid(format!("OBU type {obu_type} where a sequence header was expected")));
        }
        let extension = obu[0] & 0x04 != 0;
        let (_, n) = leb128(&obu[1 + usize::from(extension)..])?;
        let mut b = BitReader::new(&obu[1 + usize::from(extension) + n..len]);
        let seq_profile = b.read_bits(3)? as u8;
        if seq_profile > 2 {
            return Err(CodecError::Invalid(format!("AV1 seq_profile {seq_profile}")));
        }
        b.skip(1)?; // still_picture
        let reduced = b.read_bit()?;
        let (seq_level_idx, seq_tier);
        if reduced {
            seq_level_idx = b.read_bits(5)? as u8;
            seq_tier = false;
        } else {
            let mut buffer_delay_length = 0;
            let mut decoder_model_info_present = false;
            if b.read_bit()? {
                // timing_info
                b.skip(64)?;
                if b.read_bit()? {
                    read_uvlc(&mut b)?;
                }
                decoder_model_info_present = b.read_bit()?;
                if decoder_model_info_present {
                    buffer_delay_length = b.read_bits(5)? + 1;
                    b.skip(32 + 5 + 5)?;
                }
            }
            let initial_display_delay_present = b.read_bit()?;
            let operating_points = b.read_bits(5)? + 1;
            let (mut first_level, mut first_tier) = (0, false);
            for i in 0..operating_points {
                b.skip(12)?; // operating_point_idc
                let level = b.read_bits(5)? as u8;
                let tier = level > 7 && b.read_bit()?;
                if i == 0 {
                    (first_level, first_tier) = (level, tier);
                }
                if decoder_model_info_present && b.read_bit()? {
                    b.skip(2 * buffer_delay_length as usize + 1)?;
                }
                if initial_display_delay_present && b.read_bit()? {
                    b.skip(4)?;
                }
            }
            seq_level_idx = first_level;
            seq_tier = first_tier;
        }
        let width_bits = b.read_bits(4)? + 1;
        let height_bits = b.read_bits(4)? + 1;
        let width = b.read_bits(width_bits)? as u64 + 1;
        let height = b.read_bits(height_bits)? as u64 + 1;
        // the colour configuration follows a handful of optional fields
        let frame_id_numbers_present = !reduced && b.read_bit()?;
        if frame_id_numbers_present {
            b.skip(4 + 3)?;
        }
        b.skip(3)?; // use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
        if !reduced {
            b.skip(4)?; // interintra, masked compound, warped motion, dual filter
            let order_hint = b.read_bit()?;
            if order_hint {
                b.skip(2)?; // jnt_comp, ref_frame_mvs
            }
            let choose_screen_content_tools = b.read_bit()?;
            let force_screen_content_tools = if choose_screen_content_tools { 2 } else { b.read_bits(1)? };
            if force_screen_content_tools > 0 && !b.read_bit()? {
                b.skip(1)?; // seq_force_integer_mv
            }
            if order_hint {
                b.skip(3)?; // order_hint_bits_minus_1
            }
        }
        b.skip(3)?; // enable_superres, enable_cdef, enable_restoration
        // color_config()
        let high_bitdepth = b.read_bit()?;
        let twelve_bit = seq_profile == 2 && high_bitdepth && b.read_bit()?;
        let monochrome = seq_profile != 1 && b.read_bit()?;
        let mut matrix_identity = false;
        if b.read_bit()? {
            let primaries = b.read_bits(8)?;
            let transfer = b.read_bits(8)?;
            let matrix = b.read_bits(8)?;
            matrix_identity = primaries == 1 && transfer == 13 && matrix == 0;
        }
        let (mut sub_x, mut sub_y, mut position) = (true, true, 0u8);
        if monochrome {
            b.skip(1)?;
        } else if matrix_identity {
            (sub_x, sub_y) = (false, false);
        } else {
            b.skip(1)?; // color_range
            match seq_profile {
                0 => {}
                1 => (sub_x, sub_y) = (false, false),
                _ => {
                    if twelve_bit {
                        sub_x = b.read_bit()?;
                        sub_y = sub_x && b.read_bit()?;
                    } else {
                        (sub_x, sub_y) = (true, false);
                    }
                }
            }
            if sub_x && sub_y {
                position = b.read_bits(2)? as u8;
            }
        }
        if width > 65_536 || height > 65_536 {
            return Err(CodecError::Invalid(format!("AV1 frame size {width}x{height}")));
        }
        Ok(SequenceHeaderInfo {
            seq_profile,
            seq_level_idx,
            seq_tier,
            high_bitdepth,
            twelve_bit,
            monochrome,
            chroma_subsampling: (sub_x, sub_y),
            chroma_sample_position: position,
            width: width as u32,
            height: height as u32,
        })
    }
}

fn read_uvlc(b: &mut BitReader<'_>) -> Result<u32, CodecError> {
    let mut zeros = 0;
    while !b.read_bit()? {
        zeros += 1;
        if zeros >= 32 {
            return Ok(u32::MAX);
        }
    }
    Ok(b.read_bits(zeros)?.saturating_add((1u32 << zeros) - 1))
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// The sequence header OBU SVT-AV1 writes for 320x240 4:2:0 8-bit.
    pub fn sequence_header_320x240() -> Bytes {
        Bytes::from_static(&[0x0A, 0x0B, 0x00, 0x00, 0x00, 0x04, 0x3C, 0xFF, 0xBC, 0xFB, 0xF9, 0x00, 0x40])
    }

    pub fn config_320x240() -> Av1Config {
        Av1Config::from_sequence_header(sequence_header_320x240()).expect("fixture record")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_real_sequence_header() {
        let info = SequenceHeaderInfo::parse(&testing::sequence_header_320x240()).expect("sequence header");
        assert_eq!((info.width, info.height), (320, 240));
        assert_eq!(info.seq_profile, 0);
        assert!(!info.high_bitdepth && !info.monochrome);
        assert_eq!(info.chroma_subsampling, (true, true));
    }

    #[test]
    fn a_built_record_parses_back() {
        let cfg = testing::config_320x240();
        assert_eq!(cfg.record.len(), 4 + 13);
        assert_eq!((cfg.width, cfg.height), (320, 240));
        assert_eq!(cfg.sequence_header, testing::sequence_header_320x240());
        assert_eq!(Av1Config::parse(cfg.record.clone()).expect("reparse"), cfg);
        assert!(cfg.codec_string().starts_with("av01.0."), "{}", cfg.codec_string());
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        let cfg = testing::config_320x240();
        for n in 0..cfg.record.len() {
            assert!(Av1Config::parse(cfg.record.slice(..n)).is_err(), "truncated at {n}");
        }
        assert!(obu_extent(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        assert!(obu_extent(&[0x08]).is_err(), "no size field");
    }
}
