//! H.264: the AVC decoder configuration record (ISO/IEC 14496-15 §5.2.4.1) and the
//! fields of the sequence parameter set we need (profile, level, coded size).

use bytes::Bytes;

use super::CodecError;
use super::bits::BitReader;

/// A parsed `AVCDecoderConfigurationRecord`, keeping the original bytes so relays can
/// forward it unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcDecoderConfig {
    /// The record exactly as received.
    pub record: Bytes,
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    /// Size of the NAL unit length prefix in bytes (1, 2 or 4).
    pub nal_length_size: u8,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
    /// Displayed width in pixels, from the first SPS (cropping applied).
    pub width: u32,
    /// Displayed height in pixels, from the first SPS (cropping applied).
    pub height: u32,
}

impl AvcDecoderConfig {
    /// Parses a decoder configuration record.
    pub fn parse(record: Bytes) -> Result<AvcDecoderConfig, CodecError> {
        let r = &record[..];
        if r.len() < 7 {
            return Err(CodecError::Truncated("AVC decoder configuration record"));
        }
        if r[0] != 1 {
            return Err(CodecError::Invalid(format!("AVC decoder configuration record version {} (expected 1)", r[0])));
        }
        let nal_length_size = (r[4] & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(CodecError::Invalid("NAL length size 3 is not allowed".into()));
        }
        let mut pos = 5;
        let num_sps = usize::from(r[pos] & 0x1F);
        pos += 1;
        let mut sps = Vec::with_capacity(num_sps);
        for _ in 0..num_sps {
            let nal = read_nal(&record, &mut pos, "SPS")?;
            sps.push(nal);
        }
        let num_pps = usize::from(*r.get(pos).ok_or(CodecError::Truncated("PPS count"))?);
        pos += 1;
        let mut pps = Vec::with_capacity(num_pps);
        for _ in 0..num_pps {
            pps.push(read_nal(&record, &mut pos, "PPS")?);
        }
        let first =
            sps.first().ok_or_else(|| CodecError::Invalid("AVC decoder configuration record has no SPS".into()))?;
        let info = SpsInfo::parse(first)?;
        Ok(AvcDecoderConfig {
            profile_idc: r[1],
            constraint_flags: r[2],
            level_idc: r[3],
            nal_length_size,
            sps,
            pps,
            width: info.width,
            height: info.height,
            record,
        })
    }

    /// The RFC 6381 codec string, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        format!("avc1.{:02x}{:02x}{:02x}", self.profile_idc, self.constraint_flags, self.level_idc)
    }
}

fn read_nal(record: &Bytes, pos: &mut usize, what: &'static str) -> Result<Bytes, CodecError> {
    let r = &record[..];
    let len_bytes = r.get(*pos..*pos + 2).ok_or(CodecError::Truncated(what))?;
    let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
    *pos += 2;
    if len == 0 {
        return Err(CodecError::Invalid(format!("empty {what}")));
    }
    if r.len() < *pos + len {
        return Err(CodecError::Truncated(what));
    }
    let nal = record.slice(*pos..*pos + len);
    *pos += len;
    Ok(nal)
}

/// What we read from a sequence parameter set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpsInfo {
    pub profile_idc: u8,
    pub level_idc: u8,
    pub width: u32,
    pub height: u32,
}

impl SpsInfo {
    /// Parses an SPS NAL unit (with its one-byte NAL header, emulation prevention
    /// bytes still in place).
    pub fn parse(nal: &[u8]) -> Result<SpsInfo, CodecError> {
        let header = *nal.first().ok_or(CodecError::Truncated("SPS"))?;
        if header & 0x1F != 7 {
            return Err(CodecError::Invalid(format!("NAL type {} where an SPS (7) was expected", header & 0x1F)));
        }
        let rbsp = unescape_rbsp(&nal[1..]);
        let mut b = BitReader::new(&rbsp);
        let profile_idc = b.read_bits(8)? as u8;
        b.skip(8)?; // constraint flags + reserved
        let level_idc = b.read_bits(8)? as u8;
        b.read_ue()?; // seq_parameter_set_id
        let mut chroma_format_idc = 1;
        let mut separate_colour_plane = false;
        if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
            chroma_format_idc = b.read_ue()?;
            if chroma_format_idc > 3 {
                return Err(CodecError::Invalid(format!("chroma_format_idc {chroma_format_idc}")));
            }
            if chroma_format_idc == 3 {
                separate_colour_plane = b.read_bit()?;
            }
            b.read_ue()?; // bit_depth_luma_minus8
            b.read_ue()?; // bit_depth_chroma_minus8
            b.skip(1)?; // qpprime_y_zero_transform_bypass_flag
            if b.read_bit()? {
                // seq_scaling_matrix_present_flag
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if b.read_bit()? {
                        skip_scaling_list(&mut b, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        b.read_ue()?; // log2_max_frame_num_minus4
        let poc_type = b.read_ue()?;
        match poc_type {
            0 => {
                b.read_ue()?; // log2_max_pic_order_cnt_lsb_minus4
            }
            1 => {
                b.skip(1)?; // delta_pic_order_always_zero_flag
                b.read_se()?; // offset_for_non_ref_pic
                b.read_se()?; // offset_for_top_to_bottom_field
                let n = b.read_ue()?;
                if n > 255 {
                    return Err(CodecError::Invalid(format!("num_ref_frames_in_pic_order_cnt_cycle {n}")));
                }
                for _ in 0..n {
                    b.read_se()?;
                }
            }
            2 => {}
            other => {
                return Err(CodecError::Invalid(format!("pic_order_cnt_type {other}")));
            }
        }
        b.read_ue()?; // max_num_ref_frames
        b.skip(1)?; // gaps_in_frame_num_value_allowed_flag
        let pic_width_in_mbs = u64::from(b.read_ue()?) + 1;
        let pic_height_in_map_units = u64::from(b.read_ue()?) + 1;
        let frame_mbs_only = b.read_bit()?;
        if !frame_mbs_only {
            b.skip(1)?; // mb_adaptive_frame_field_flag
        }
        b.skip(1)?; // direct_8x8_inference_flag
        let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
        if b.read_bit()? {
            crop_l = u64::from(b.read_ue()?);
            crop_r = u64::from(b.read_ue()?);
            crop_t = u64::from(b.read_ue()?);
            crop_b = u64::from(b.read_ue()?);
        }
        let frame_height_in_mbs = (2 - u64::from(frame_mbs_only)) * pic_height_in_map_units;
        let chroma_array_type = if separate_colour_plane { 0 } else { chroma_format_idc };
        let (crop_unit_x, crop_unit_y) = match chroma_array_type {
            0 => (1, 2 - u64::from(frame_mbs_only)),
            1 => (2, 2 * (2 - u64::from(frame_mbs_only))),
            2 => (2, 2 - u64::from(frame_mbs_only)),
            _ => (1, 2 - u64::from(frame_mbs_only)),
        };
        let full_w = pic_width_in_mbs * 16;
        let full_h = frame_height_in_mbs * 16;
        let crop_w = crop_unit_x * (crop_l + crop_r);
        let crop_h = crop_unit_y * (crop_t + crop_b);
        if crop_w >= full_w || crop_h >= full_h || full_w > 16384 || full_h > 16384 {
            return Err(CodecError::Invalid(format!("SPS size {full_w}x{full_h} with cropping {crop_w}x{crop_h}")));
        }
        Ok(SpsInfo { profile_idc, level_idc, width: (full_w - crop_w) as u32, height: (full_h - crop_h) as u32 })
    }
}

fn skip_scaling_list(b: &mut BitReader<'_>, size: usize) -> Result<(), CodecError> {
    let mut last = 8i64;
    let mut next = 8i64;
    for _ in 0..size {
        if next != 0 {
            let delta = i64::from(b.read_se()?);
            next = (last + delta + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Removes emulation prevention bytes (`00 00 03` → `00 00`).
pub fn unescape_rbsp(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &byte in data {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        if byte == 0 {
            zeros += 1;
        } else {
            zeros = 0;
        }
        out.push(byte);
    }
    out
}

/// Iterates over the NAL units of an AVCC (length-prefixed) payload.
pub fn avcc_nal_units(payload: &[u8], length_size: u8) -> AvccNalUnits<'_> {
    AvccNalUnits { data: payload, length_size: usize::from(length_size) }
}

/// Iterator returned by [`avcc_nal_units`]; yields `Err` once on a malformed length.
#[derive(Debug)]
pub struct AvccNalUnits<'a> {
    data: &'a [u8],
    length_size: usize,
}

impl<'a> Iterator for AvccNalUnits<'a> {
    type Item = Result<&'a [u8], CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        if self.data.len() < self.length_size || self.length_size == 0 || self.length_size > 4 {
            self.data = &[];
            return Some(Err(CodecError::Truncated("AVCC NAL length")));
        }
        let mut len = 0usize;
        for &b in &self.data[..self.length_size] {
            len = (len << 8) | usize::from(b);
        }
        let rest = &self.data[self.length_size..];
        if rest.len() < len {
            self.data = &[];
            return Some(Err(CodecError::Truncated("AVCC NAL unit")));
        }
        let (nal, tail) = rest.split_at(len);
        self.data = tail;
        Some(Ok(nal))
    }
}

/// NAL unit types the conversions below treat specially.
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// Iterates over the NAL units of an Annex B byte stream (`00 00 01` / `00 00 00 01` start
/// codes). Bytes before the first start code are ignored; trailing zero bytes of a unit
/// (the next start code's leading zero) are trimmed.
pub fn annexb_nal_units(data: &[u8]) -> AnnexBNalUnits<'_> {
    let start = find_start_code(data, 0).map_or(data.len(), |(_, end)| end);
    AnnexBNalUnits { data, pos: start }
}

/// Iterator returned by [`annexb_nal_units`].
#[derive(Debug)]
pub struct AnnexBNalUnits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for AnnexBNalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while self.pos < self.data.len() {
            let (end, next) = match find_start_code(self.data, self.pos) {
                Some((at, after)) => (at, after),
                None => (self.data.len(), self.data.len()),
            };
            let mut nal = &self.data[self.pos..end];
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            self.pos = next;
            if !nal.is_empty() {
                return Some(nal);
            }
        }
        None
    }
}

/// Finds the next `00 00 01` at or after `from`: (index of its first zero, index after it).
fn find_start_code(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i + 3 <= data.len() {
        match data[i + 2] {
            1 if data[i] == 0 && data[i + 1] == 0 => return Some((i, i + 3)),
            0 => i += 1,
            _ => i += 3,
        }
    }
    None
}

/// Parameter sets met while converting an access unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParameterSets {
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
}

impl ParameterSets {
    pub fn is_complete(&self) -> bool {
        !self.sps.is_empty() && !self.pps.is_empty()
    }

    /// Builds the `AVCDecoderConfigurationRecord` (4-byte NAL lengths) for these sets.
    pub fn to_record(&self) -> Result<AvcDecoderConfig, CodecError> {
        let first = self.sps.first().ok_or_else(|| CodecError::Invalid("no SPS".into()))?;
        if first.len() < 4 {
            return Err(CodecError::Truncated("SPS"));
        }
        if self.pps.is_empty() {
            return Err(CodecError::Invalid("no PPS".into()));
        }
        if self.sps.len() > 31 || self.pps.len() > 255 {
            return Err(CodecError::Invalid("too many parameter sets".into()));
        }
        let mut r = Vec::with_capacity(16 + first.len() + self.pps.iter().map(|p| p.len() + 2).sum::<usize>());
        r.extend_from_slice(&[1, first[1], first[2], first[3], 0xFF, 0xE0 | self.sps.len() as u8]);
        for set in &self.sps {
            push_sized(&mut r, set)?;
        }
        r.push(self.pps.len() as u8);
        for set in &self.pps {
            push_sized(&mut r, set)?;
        }
        AvcDecoderConfig::parse(Bytes::from(r))
    }
}

fn push_sized(out: &mut Vec<u8>, nal: &[u8]) -> Result<(), CodecError> {
    let len = u16::try_from(nal.len()).map_err(|_| CodecError::Invalid("parameter set over 64 KiB".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(nal);
    Ok(())
}

/// Converts one Annex B access unit to AVCC with 4-byte lengths. SPS and PPS are moved out
/// into `sets` (they belong in the decoder configuration record); access unit delimiters
/// are dropped.
pub fn annexb_to_avcc(data: &[u8], sets: &mut ParameterSets) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for nal in annexb_nal_units(data) {
        match nal[0] & 0x1F {
            NAL_SPS => sets.sps.push(Bytes::copy_from_slice(nal)),
            NAL_PPS => sets.pps.push(Bytes::copy_from_slice(nal)),
            NAL_AUD => {}
            _ => {
                // annexb_nal_units never yields units over the input length, which fits in memory
                let len = u32::try_from(nal.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(nal);
            }
        }
    }
    out
}

/// Parameter sets for other modules' tests.
#[cfg(test)]
pub(crate) mod testing {
    use bytes::Bytes;

    use super::AvcDecoderConfig;

    /// Baseline SPS 320x240 (profile 66).
    pub(crate) const SPS_240P_BASELINE: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03,
        0x03, 0xc0, 0xf1, 0x42, 0xa4, 0x80,
    ];

    /// A decoder configuration record with `sps` and one PPS.
    pub(crate) fn record_with(sps: &[u8]) -> Bytes {
        let pps = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
        let mut r = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        r.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        r.extend_from_slice(sps);
        r.push(1);
        r.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        r.extend_from_slice(&pps);
        Bytes::from(r)
    }

    /// The parsed 320x240 Baseline configuration.
    pub(crate) fn config_240p() -> AvcDecoderConfig {
        AvcDecoderConfig::parse(record_with(SPS_240P_BASELINE)).expect("valid record")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x264 SPS for 1280x720 High profile, level 3.1 (`ffmpeg -f lavfi -i testsrc2=size=1280x720 -c:v libx264`).
    const SPS_720P_HIGH: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00,
        0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    /// x264 SPS for 1920x1080 High (cropped from 1088).
    const SPS_1080P_HIGH: &[u8] = &[
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00, 0x04,
        0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc6, 0x58,
    ];
    use super::testing::{SPS_240P_BASELINE, record_with};

    #[test]
    fn parses_720p_high_record() {
        let cfg = AvcDecoderConfig::parse(record_with(SPS_720P_HIGH)).expect("valid record");
        assert_eq!((cfg.width, cfg.height), (1280, 720));
        assert_eq!(cfg.profile_idc, 100);
        assert_eq!(cfg.nal_length_size, 4);
        assert_eq!(cfg.sps.len(), 1);
        assert_eq!(cfg.pps.len(), 1);
        assert_eq!(cfg.codec_string(), "avc1.64001f");
    }

    #[test]
    fn applies_cropping_for_1080p() {
        let sps = SpsInfo::parse(SPS_1080P_HIGH).expect("valid SPS");
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!(sps.level_idc, 40);
    }

    #[test]
    fn parses_baseline_without_chroma_fields() {
        let sps = SpsInfo::parse(SPS_240P_BASELINE).expect("valid SPS");
        assert_eq!((sps.width, sps.height), (320, 240));
        assert_eq!(sps.profile_idc, 66);
    }

    #[test]
    fn rejects_truncated_and_wrong_records() {
        assert!(AvcDecoderConfig::parse(Bytes::from_static(&[1, 2, 3])).is_err());
        assert!(AvcDecoderConfig::parse(Bytes::from_static(&[0, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 3])).is_err());
        let mut r = record_with(SPS_720P_HIGH).to_vec();
        r.truncate(12);
        assert!(AvcDecoderConfig::parse(Bytes::from(r)).is_err());
        // An SPS cut in the middle of its exp-Golomb fields.
        assert!(SpsInfo::parse(&SPS_720P_HIGH[..6]).is_err());
        // Not an SPS at all.
        assert!(SpsInfo::parse(&[0x68, 0xeb]).is_err());
    }

    #[test]
    fn unescapes_emulation_prevention() {
        assert_eq!(unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3]), vec![0, 0, 1, 0, 0]);
    }

    #[test]
    fn splits_avcc_nal_units() {
        let data = [0, 0, 0, 2, 0x65, 0xaa, 0, 0, 0, 1, 0x06];
        let nals: Vec<_> = avcc_nal_units(&data, 4).collect::<Result<_, _>>().expect("valid");
        assert_eq!(nals, vec![&[0x65, 0xaa][..], &[0x06][..]]);
        let bad = [0, 0, 0, 9, 0x65];
        assert!(avcc_nal_units(&bad, 4).any(|r| r.is_err()));
    }

    #[test]
    fn splits_annexb_and_builds_a_record() {
        let pps = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
        let mut au = vec![0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1];
        au.extend_from_slice(SPS_720P_HIGH);
        au.extend_from_slice(&[0, 0, 1]);
        au.extend_from_slice(&pps);
        au.extend_from_slice(&[0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0, 0, 0, 1, 0x06, 0x05]);
        let nals: Vec<&[u8]> = annexb_nal_units(&au).collect();
        assert_eq!(nals.len(), 5);
        assert_eq!(nals[3], &[0x65, 0x88, 0x84][..], "trailing zero before a 4-byte start code is trimmed");
        let mut sets = ParameterSets::default();
        let avcc = annexb_to_avcc(&au, &mut sets);
        assert_eq!(avcc, vec![0, 0, 0, 3, 0x65, 0x88, 0x84, 0, 0, 0, 2, 0x06, 0x05]);
        let cfg = sets.to_record().expect("complete sets");
        assert_eq!(cfg.record, record_with(SPS_720P_HIGH));
        assert_eq!((cfg.width, cfg.height), (1280, 720));
        assert!(ParameterSets::default().to_record().is_err());
        assert_eq!(annexb_nal_units(&[1, 2, 3]).count(), 0);
    }
}
