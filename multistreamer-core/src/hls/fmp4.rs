//! Fragmented MP4 (CMAF) as HLS uses it: the initialization section (`moov` with `avc1`/
//! `mp4a` sample entries and `trex` defaults) and media segments (`moof` + `mdat`).
//! Sans-IO and fuzzed; only what is needed to get H.264 and AAC samples out.

use bytes::Bytes;

use super::HlsError;
use crate::codec::aac::AudioSpecificConfig;
use crate::codec::av1::Av1Config;
use crate::codec::avc::AvcDecoderConfig;
use crate::codec::hevc::HevcDecoderConfig;
use crate::error::{Error, Result};
use crate::media::{Codec, TrackKind};

fn bad(msg: impl Into<String>) -> Error {
    HlsError::Segment(msg.into()).into()
}

/// A track announced by the initialization section.
#[derive(Clone, Debug)]
pub struct Fmp4Track {
    pub id: u32,
    pub timescale: u32,
    pub codec: Codec,
    default_duration: u32,
    default_size: u32,
    default_flags: u32,
}

/// One sample of a media segment.
#[derive(Clone, Debug)]
pub struct Sample {
    pub track: u32,
    pub kind: TrackKind,
    /// Decode time in the track's timescale.
    pub dts: i64,
    pub pts: i64,
    pub keyframe: bool,
    pub data: Bytes,
}

/// Iterates over the boxes of `data`: (type, body, offset of the box in `data`).
fn boxes(data: &[u8]) -> impl Iterator<Item = Result<([u8; 4], &[u8], usize)>> {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= data.len() {
            return None;
        }
        let rest = &data[pos..];
        if rest.len() < 8 {
            failed = true;
            return Some(Err(bad("truncated MP4 box header")));
        }
        let size32 = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as u64;
        let kind = [rest[4], rest[5], rest[6], rest[7]];
        let (header, size) = match size32 {
            0 => (8u64, rest.len() as u64),
            1 => {
                let Some(b) = rest.get(8..16) else {
                    failed = true;
                    return Some(Err(bad("truncated MP4 large box size")));
                };
                (16, u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            }
            n => (8, n),
        };
        if size < header || size > rest.len() as u64 {
            failed = true;
            return Some(Err(bad(format!("MP4 box {} has a bad size", String::from_utf8_lossy(&kind)))));
        }
        let at = pos;
        pos += size as usize;
        Some(Ok((kind, &rest[header as usize..size as usize], at)))
    })
}

fn find<'a>(data: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>> {
    for b in boxes(data) {
        let (k, body, _) = b?;
        if &k == kind {
            return Ok(Some(body));
        }
    }
    Ok(None)
}

fn need<'a>(data: &'a [u8], kind: &[u8; 4]) -> Result<&'a [u8]> {
    find(data, kind)?.ok_or_else(|| bad(format!("no {} box", String::from_utf8_lossy(kind))))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]])).ok_or_else(|| bad("truncated MP4 box"))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64> {
    Ok((u64::from(u32_at(b, at)?) << 32) | u64::from(u32_at(b, at + 4)?))
}

/// Parses an initialization section into its H.264 and AAC tracks (others are skipped).
pub fn parse_init(init: &[u8]) -> Result<Vec<Fmp4Track>> {
    let moov = need(init, b"moov")?;
    let mut tracks = Vec::new();
    let mut trex = Vec::new();
    if let Some(mvex) = find(moov, b"mvex")? {
        for b in boxes(mvex) {
            let (k, body, _) = b?;
            if &k == b"trex" {
                trex.push((u32_at(body, 4)?, u32_at(body, 12)?, u32_at(body, 16)?, u32_at(body, 20)?));
            }
        }
    }
    for b in boxes(moov) {
        let (k, trak, _) = b?;
        if &k != b"trak" {
            continue;
        }
        let tkhd = need(trak, b"tkhd")?;
        let id = if tkhd.first() == Some(&1) { u32_at(tkhd, 20)? } else { u32_at(tkhd, 12)? };
        let mdia = need(trak, b"mdia")?;
        let mdhd = need(mdia, b"mdhd")?;
        let timescale = if mdhd.first() == Some(&1) { u32_at(mdhd, 20)? } else { u32_at(mdhd, 12)? };
        if timescale == 0 {
            return Err(bad("track timescale 0"));
        }
        let stbl = need(need(mdia, b"minf")?, b"stbl")?;
        let stsd = need(stbl, b"stsd")?;
        let entries = stsd.get(8..).ok_or_else(|| bad("truncated stsd"))?;
        let Some(entry) = boxes(entries).next() else { continue };
        let (fourcc, body, _) = entry?;
        let codec = match &fourcc {
            b"avc1" | b"avc3" => {
                let children = body.get(78..).ok_or_else(|| bad("truncated avc1 sample entry"))?;
                let avcc = need(children, b"avcC")?;
                Codec::H264(AvcDecoderConfig::parse(Bytes::copy_from_slice(avcc))?)
            }
            b"hvc1" | b"hev1" => {
                let children = body.get(78..).ok_or_else(|| bad("truncated hvc1 sample entry"))?;
                let hvcc = need(children, b"hvcC")?;
                Codec::Hevc(HevcDecoderConfig::parse(Bytes::copy_from_slice(hvcc))?)
            }
            b"av01" => {
                let children = body.get(78..).ok_or_else(|| bad("truncated av01 sample entry"))?;
                let av1c = need(children, b"av1C")?;
                Codec::Av1(Av1Config::parse(Bytes::copy_from_slice(av1c))?)
            }
            b"mp4a" => {
                let children = body.get(28..).ok_or_else(|| bad("truncated mp4a sample entry"))?;
                let esds = need(children, b"esds")?;
                Codec::Aac(AudioSpecificConfig::parse(Bytes::copy_from_slice(esds_config(esds)?))?)
            }
            _ => continue,
        };
        let d = trex.iter().find(|t| t.0 == id).copied().unwrap_or((id, 0, 0, 0));
        tracks.push(Fmp4Track { id, timescale, codec, default_duration: d.1, default_size: d.2, default_flags: d.3 });
    }
    if tracks.is_empty() {
        return Err(bad("the initialization section has no H.264, HEVC, AV1 or AAC track"));
    }
    Ok(tracks)
}

/// The DecoderSpecificInfo (AudioSpecificConfig) inside an `esds` box.
fn esds_config(esds: &[u8]) -> Result<&[u8]> {
    let mut p = esds.get(4..).ok_or_else(|| bad("truncated esds"))?;
    loop {
        let (&tag, rest) = p.split_first().ok_or_else(|| bad("esds without a DecoderSpecificInfo"))?;
        let mut len = 0usize;
        let mut rest = rest;
        for _ in 0..4 {
            let (&b, r) = rest.split_first().ok_or_else(|| bad("truncated esds descriptor"))?;
            rest = r;
            len = (len << 7) | usize::from(b & 0x7F);
            if b & 0x80 == 0 {
                break;
            }
        }
        let body = rest.get(..len).ok_or_else(|| bad("truncated esds descriptor"))?;
        match tag {
            0x03 => {
                // ES_Descriptor: ES_ID, flags, optional fields, then sub-descriptors
                let flags = *body.get(2).ok_or_else(|| bad("truncated ES_Descriptor"))?;
                let mut skip = 3;
                if flags & 0x80 != 0 {
                    skip += 2;
                }
                if flags & 0x40 != 0 {
                    skip += 1 + usize::from(*body.get(skip).ok_or_else(|| bad("truncated ES_Descriptor"))?);
                }
                if flags & 0x20 != 0 {
                    skip += 2;
                }
                p = body.get(skip..).ok_or_else(|| bad("truncated ES_Descriptor"))?;
            }
            0x04 => p = body.get(13..).ok_or_else(|| bad("truncated DecoderConfigDescriptor"))?,
            0x05 => return Ok(body),
            _ => p = rest.get(len..).ok_or_else(|| bad("truncated esds"))?,
        }
    }
}

/// Extracts the samples of every `moof`/`mdat` pair of a media segment.
pub fn parse_segment(tracks: &[Fmp4Track], segment: &[u8]) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for b in boxes(segment) {
        let (k, moof, moof_at) = b?;
        if &k != b"moof" {
            continue;
        }
        for tb in boxes(moof) {
            let (k, traf, _) = tb?;
            if &k == b"traf" {
                parse_traf(tracks, segment, moof_at, traf, &mut out)?;
            }
        }
    }
    Ok(out)
}

fn parse_traf(tracks: &[Fmp4Track], segment: &[u8], moof_at: usize, traf: &[u8], out: &mut Vec<Sample>) -> Result<()> {
    let tfhd = need(traf, b"tfhd")?;
    let flags = u32_at(tfhd, 0)? & 0x00FF_FFFF;
    let id = u32_at(tfhd, 4)?;
    let Some(track) = tracks.iter().find(|t| t.id == id) else { return Ok(()) };
    let mut at = 8;
    let mut base = moof_at as u64;
    if flags & 0x01 != 0 {
        base = u64_at(tfhd, at)?;
        at += 8;
    }
    if flags & 0x02 != 0 {
        at += 4;
    }
    let mut def_duration = track.default_duration;
    let mut def_size = track.default_size;
    let mut def_flags = track.default_flags;
    if flags & 0x08 != 0 {
        def_duration = u32_at(tfhd, at)?;
        at += 4;
    }
    if flags & 0x10 != 0 {
        def_size = u32_at(tfhd, at)?;
        at += 4;
    }
    if flags & 0x20 != 0 {
        def_flags = u32_at(tfhd, at)?;
    }
    let mut dts = match find(traf, b"tfdt")? {
        Some(t) if t.first() == Some(&1) => u64_at(t, 4)? as i64,
        Some(t) => i64::from(u32_at(t, 4)?),
        None => 0,
    };
    let kind = track.codec.kind();
    let mut next_offset = base;
    for b in boxes(traf) {
        let (k, trun, _) = b?;
        if &k != b"trun" {
            continue;
        }
        let version = trun.first().copied().unwrap_or(0);
        let tflags = u32_at(trun, 0)? & 0x00FF_FFFF;
        let count = u32_at(trun, 4)?;
        let mut p = 8;
        let mut offset = next_offset;
        if tflags & 0x01 != 0 {
            offset = base.wrapping_add_signed(i64::from(u32_at(trun, p)? as i32));
            p += 4;
        }
        let mut first_flags = None;
        if tflags & 0x04 != 0 {
            first_flags = Some(u32_at(trun, p)?);
            p += 4;
        }
        let per_sample = [0x100, 0x200, 0x400, 0x800].iter().filter(|&&f| tflags & f != 0).count() * 4;
        if per_sample > 0 && (count as usize) > trun.len() / per_sample {
            return Err(bad("trun sample count exceeds the box"));
        }
        for i in 0..count {
            let mut duration = def_duration;
            let mut size = def_size;
            let mut sflags = if i == 0 { first_flags.unwrap_or(def_flags) } else { def_flags };
            let mut cts = 0i64;
            if tflags & 0x100 != 0 {
                duration = u32_at(trun, p)?;
                p += 4;
            }
            if tflags & 0x200 != 0 {
                size = u32_at(trun, p)?;
                p += 4;
            }
            if tflags & 0x400 != 0 {
                sflags = u32_at(trun, p)?;
                p += 4;
            }
            if tflags & 0x800 != 0 {
                let v = u32_at(trun, p)?;
                cts = if version == 0 { i64::from(v) } else { i64::from(v as i32) };
                p += 4;
            }
            let start = usize::try_from(offset).map_err(|_| bad("sample offset out of range"))?;
            let end = start.checked_add(size as usize).filter(|&e| e <= segment.len());
            let Some(end) = end else { return Err(bad("sample data outside the segment")) };
            let keyframe = kind == TrackKind::Audio || sflags & 0x0001_0000 == 0;
            out.push(Sample {
                track: id,
                kind,
                dts,
                pts: dts + cts,
                keyframe,
                data: Bytes::copy_from_slice(&segment[start..end]),
            });
            dts += i64::from(duration);
            offset = end as u64;
        }
        next_offset = offset;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    fn init_with_aac() -> Vec<u8> {
        let tkhd = bx(b"tkhd", &[&[0u8; 12][..], &7u32.to_be_bytes(), &[0; 64]].concat());
        let mdhd = bx(b"mdhd", &[&[0u8; 12][..], &48000u32.to_be_bytes(), &[0; 8]].concat());
        // esds: ES_Descriptor(ES_ID=1, flags 0) > DecoderConfigDescriptor > DecoderSpecificInfo 11 90
        let dsi = [0x05, 0x02, 0x11, 0x90];
        let dcd = [&[0x04, 13 + dsi.len() as u8, 0x40, 0x15][..], &[0; 11], &dsi].concat();
        let esd = [&[0x03, 3 + dcd.len() as u8, 0, 1, 0][..], &dcd].concat();
        let esds = bx(b"esds", &[&[0u8; 4][..], &esd].concat());
        let mp4a = bx(b"mp4a", &[&[0u8; 28][..], &esds].concat());
        let stsd = bx(b"stsd", &[&[0u8, 0, 0, 0, 0, 0, 0, 1][..], &mp4a].concat());
        let stbl = bx(b"stbl", &stsd);
        let minf = bx(b"minf", &stbl);
        let mdia = bx(b"mdia", &[mdhd, minf].concat());
        let trak = bx(b"trak", &[tkhd, mdia].concat());
        let trex =
            bx(b"trex", &[&[0u8; 4][..], &7u32.to_be_bytes(), &[0, 0, 0, 1], &1024u32.to_be_bytes(), &[0; 8]].concat());
        let mvex = bx(b"mvex", &trex);
        [bx(b"ftyp", b"iso6"), bx(b"moov", &[trak, mvex].concat())].concat()
    }

    #[test]
    fn reads_aac_samples_with_trex_defaults() {
        let tracks = parse_init(&init_with_aac()).expect("init");
        assert_eq!(tracks.len(), 1);
        assert_eq!(tracks[0].timescale, 48000);
        assert!(matches!(&tracks[0].codec, Codec::Aac(a) if a.sample_rate == 48000 && a.channels == 2));
        // moof: tfhd (default-base-is-moof), tfdt v1 = 96000, trun with sizes and a data offset
        let tfhd = bx(b"tfhd", &[&[0u8, 0x02, 0, 0][..], &7u32.to_be_bytes()].concat());
        let tfdt = bx(b"tfdt", &[&[1u8, 0, 0, 0][..], &96000u64.to_be_bytes()].concat());
        let trun_len = 8 + 4 + 4 + 4 + 2 * 4;
        let traf_len = 8 + tfhd.len() + tfdt.len() + trun_len;
        let moof_len = 8 + traf_len;
        let data_offset = (moof_len + 8) as u32;
        let trun = bx(
            b"trun",
            &[
                &[0u8, 0, 0x02, 0x01][..],
                &2u32.to_be_bytes(),
                &data_offset.to_be_bytes(),
                &3u32.to_be_bytes(),
                &2u32.to_be_bytes(),
            ]
            .concat(),
        );
        let traf = bx(b"traf", &[tfhd, tfdt, trun].concat());
        let moof = bx(b"moof", &traf);
        assert_eq!(moof.len(), moof_len);
        let seg = [moof, bx(b"mdat", &[1, 2, 3, 4, 5])].concat();
        let samples = parse_segment(&tracks, &seg).expect("segment");
        assert_eq!(samples.len(), 2);
        assert_eq!((samples[0].dts, &samples[0].data[..]), (96000, &[1u8, 2, 3][..]));
        assert_eq!((samples[1].dts, &samples[1].data[..]), (97024, &[4u8, 5][..]));
    }

    #[test]
    fn refuses_garbage() {
        assert!(parse_init(b"#EXTM3U\n").is_err());
        assert!(parse_init(&bx(b"moov", &bx(b"trak", b"xx"))).is_err());
        let tracks = parse_init(&init_with_aac()).expect("init");
        let huge = bx(
            b"moof",
            &bx(
                b"traf",
                &[bx(b"tfhd", &[0, 0, 0, 0, 0, 0, 0, 7]), bx(b"trun", &[0, 0, 0x02, 0, 0xFF, 0xFF, 0xFF, 0xFF])]
                    .concat(),
            ),
        );
        assert!(parse_segment(&tracks, &huge).is_err());
    }
}
