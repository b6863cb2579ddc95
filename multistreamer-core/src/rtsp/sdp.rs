//! The SDP of an RTSP `ANNOUNCE` (parsed with `sdp-types`) → what each RTP stream carries.

use bytes::Bytes;

use super::depacketize::AacRtpParams;
use crate::codec::aac::AudioSpecificConfig;
use crate::codec::avc::ParameterSets;

/// A malformed or unsupported SDP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP does not parse")]
    Syntax,
    #[error("SDP: {0}")]
    Invalid(String),
}

/// What one `m=` section carries.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaFormat {
    /// H.264; parameter sets from `sprop-parameter-sets` (may be empty: then in band).
    H264 { params: ParameterSets },
    /// H.265 (RFC 7798); parameter sets from `sprop-vps/sps/pps` (may be empty: in band).
    H265 { vps: Vec<Bytes>, sps: Vec<Bytes>, pps: Vec<Bytes> },
    /// AAC in RFC 3640 `mpeg4-generic`.
    Aac { config: AudioSpecificConfig, rtp: AacRtpParams },
    /// AAC in RFC 3016 `MP4A-LATM` (as GStreamer sends it), configuration out of band.
    AacLatm { config: AudioSpecificConfig },
    /// Anything else (Opus, PCMA, …): not ingested.
    Other { encoding: String },
}

/// One announced stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SdpMedia {
    /// The `a=control` value (a URL or a path relative to the presentation).
    pub control: String,
    pub payload_type: u8,
    pub clock_rate: u32,
    pub format: MediaFormat,
}

fn hex(s: &str) -> Option<Vec<u8>> {
    ::hex::decode(s).ok()
}

/// `sprop-parameter-sets` entries: standard base64, padding optional.
fn base64(s: &str) -> Option<Vec<u8>> {
    use ::base64::Engine;
    use ::base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &::base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    LENIENT.decode(s).ok()
}

/// `key=value; key=value` of an `a=fmtp:PT …` line.
fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').map(str::trim).find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
    })
}

/// The AudioSpecificConfig inside a LATM `StreamMuxConfig` (audioMuxVersion 0, one program,
/// one layer): it starts 15 bits in, not byte-aligned.
fn latm_audio_config(mux: &[u8]) -> Result<AudioSpecificConfig, SdpError> {
    let bad = |why: &str| SdpError::Invalid(format!("MP4A-LATM config: {why}"));
    let mut b = crate::codec::bits::BitReader::new(mux);
    let mut read = |n: u32| b.read_bits(n).map_err(|_| bad("truncated"));
    if read(1)? != 0 {
        return Err(bad("audioMuxVersion 1 is not supported"));
    }
    let _same_time_framing = read(1)?;
    let _num_sub_frames = read(6)?;
    if read(4)? != 0 || read(3)? != 0 {
        return Err(bad("more than one program or layer"));
    }
    let object_type = read(5)?;
    let sf_index = read(4)?;
    if object_type == 31 || sf_index == 15 {
        return Err(bad("escaped object type or sample rate"));
    }
    let channels = read(4)?;
    let asc = [((object_type << 3) | (sf_index >> 1)) as u8, (((sf_index & 1) << 7) | (channels << 3)) as u8];
    AudioSpecificConfig::parse(Bytes::copy_from_slice(&asc)).map_err(|e| bad(&e.to_string()))
}

/// Parses an ANNOUNCE body into its media.
pub fn parse_announce(body: &[u8]) -> Result<Vec<SdpMedia>, SdpError> {
    let session = sdp_types::Session::parse(body).map_err(|_| SdpError::Syntax)?;
    let mut out = Vec::new();
    for (i, m) in session.medias.iter().enumerate() {
        let payload_type: u8 = m
            .fmt
            .split_whitespace()
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| SdpError::Invalid(format!("m= line {} has no payload type", i + 1)))?;
        let control = m
            .get_first_attribute_value("control")
            .flatten()
            .map(str::to_string)
            .unwrap_or_else(|| format!("streamid={i}"));
        let rtpmap = m
            .get_attribute_values("rtpmap")
            .flatten()
            .find(|v| v.split_whitespace().next().and_then(|p| p.parse::<u8>().ok()) == Some(payload_type));
        let fmtp = m
            .get_attribute_values("fmtp")
            .flatten()
            .find(|v| v.split_whitespace().next().and_then(|p| p.parse::<u8>().ok()) == Some(payload_type))
            .and_then(|v| v.split_once(' ').map(|(_, rest)| rest))
            .unwrap_or("");
        let Some(rtpmap) = rtpmap else {
            out.push(SdpMedia {
                control,
                payload_type,
                clock_rate: 90_000,
                format: MediaFormat::Other { encoding: format!("static payload type {payload_type}") },
            });
            continue;
        };
        let enc = rtpmap.split_whitespace().nth(1).unwrap_or("");
        let mut parts = enc.split('/');
        let encoding = parts.next().unwrap_or("").to_string();
        let clock_rate: u32 = parts
            .next()
            .and_then(|c| c.parse().ok())
            .filter(|&c| c > 0)
            .ok_or_else(|| SdpError::Invalid(format!("rtpmap {rtpmap:?} has no clock rate")))?;
        let format = if encoding.eq_ignore_ascii_case("H264") {
            let mut params = ParameterSets::default();
            if let Some(sprop) = fmtp_param(fmtp, "sprop-parameter-sets") {
                for set in sprop.split(',') {
                    let nal = base64(set.trim())
                        .ok_or_else(|| SdpError::Invalid("sprop-parameter-sets is not base64".into()))?;
                    match nal.first().map(|h| h & 0x1F) {
                        Some(7) => params.sps.push(Bytes::from(nal)),
                        Some(8) => params.pps.push(Bytes::from(nal)),
                        _ => {}
                    }
                }
            }
            if fmtp_param(fmtp, "packetization-mode").is_some_and(|m| m == "2") {
                return Err(SdpError::Invalid("H.264 packetization-mode 2 (interleaved) is not supported".into()));
            }
            MediaFormat::H264 { params }
        } else if encoding.eq_ignore_ascii_case("H265") {
            if fmtp_param(fmtp, "sprop-max-don-diff").is_some_and(|d| d != "0") {
                return Err(SdpError::Invalid(
                    "H.265 with decoding order numbers (sprop-max-don-diff) is not supported".into(),
                ));
            }
            let sets = |key: &str| -> Result<Vec<Bytes>, SdpError> {
                fmtp_param(fmtp, key)
                    .map(|v| {
                        v.split(',')
                            .map(|set| {
                                base64(set.trim())
                                    .map(Bytes::from)
                                    .ok_or_else(|| SdpError::Invalid(format!("{key} is not base64")))
                            })
                            .collect()
                    })
                    .unwrap_or_else(|| Ok(Vec::new()))
            };
            MediaFormat::H265 { vps: sets("sprop-vps")?, sps: sets("sprop-sps")?, pps: sets("sprop-pps")? }
        } else if encoding.eq_ignore_ascii_case("mpeg4-generic") {
            let config =
                fmtp_param(fmtp, "config").ok_or_else(|| SdpError::Invalid("mpeg4-generic without config".into()))?;
            let raw = hex(config).ok_or_else(|| SdpError::Invalid(format!("config {config:?} is not hex")))?;
            // ffmpeg's config can carry more than the AudioSpecificConfig (an extension):
            // only its first two bytes (or five, for an escaped rate) are the ASC proper.
            let asc = AudioSpecificConfig::parse(Bytes::from(raw.clone()))
                .map_err(|e| SdpError::Invalid(format!("AAC config: {e}")))?;
            let asc_len = if raw.len() >= 5 && ((raw[0] & 0x07) << 1 | raw[1] >> 7) == 15 { 5 } else { 2 };
            let asc = AudioSpecificConfig::parse(Bytes::copy_from_slice(&raw[..asc_len.min(raw.len())])).unwrap_or(asc);
            let num = |k: &str, d: u8| fmtp_param(fmtp, k).and_then(|v| v.parse::<u8>().ok()).unwrap_or(d);
            let mode = fmtp_param(fmtp, "mode").unwrap_or("AAC-hbr");
            if !mode.eq_ignore_ascii_case("AAC-hbr") && !mode.eq_ignore_ascii_case("AAC-lbr") {
                return Err(SdpError::Invalid(format!("mpeg4-generic mode {mode} is not supported")));
            }
            let rtp = AacRtpParams {
                size_length: num("sizelength", 13),
                index_length: num("indexlength", 3),
                index_delta_length: num("indexdeltalength", 3),
            };
            MediaFormat::Aac { config: asc, rtp }
        } else if encoding.eq_ignore_ascii_case("MP4A-LATM") {
            if fmtp_param(fmtp, "cpresent").is_some_and(|c| c != "0") {
                return Err(SdpError::Invalid(
                    "MP4A-LATM with in-band configuration (cpresent=1) is not supported".into(),
                ));
            }
            let config =
                fmtp_param(fmtp, "config").ok_or_else(|| SdpError::Invalid("MP4A-LATM without config".into()))?;
            let raw = hex(config).ok_or_else(|| SdpError::Invalid(format!("config {config:?} is not hex")))?;
            MediaFormat::AacLatm { config: latm_audio_config(&raw)? }
        } else {
            MediaFormat::Other { encoding }
        };
        out.push(SdpMedia { control, payload_type, clock_rate, format });
    }
    if out.is_empty() {
        return Err(SdpError::Invalid("no media".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `ffmpeg -c copy -f rtsp` announces for H.264 + AAC.
    const FFMPEG_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
a=tool:libavformat 59.27.100\r\nm=video 0 RTP/AVP 96\r\nb=AS:200\r\na=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAH6zZQFAFuwEQAAADABAAAAMDwPGDGWA=,aOvjyyLA; profile-level-id=64001F\r\n\
a=control:streamid=0\r\nm=audio 0 RTP/AVP 97\r\nb=AS:96\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=119056E500\r\n\
a=control:streamid=1\r\n";

    #[test]
    fn reads_what_ffmpeg_announces() {
        let media = parse_announce(FFMPEG_SDP.as_bytes()).expect("valid");
        assert_eq!(media.len(), 2);
        assert_eq!((media[0].control.as_str(), media[0].payload_type, media[0].clock_rate), ("streamid=0", 96, 90_000));
        let MediaFormat::H264 { params } = &media[0].format else { panic!("{:?}", media[0].format) };
        let rec = params.to_record().expect("complete parameter sets");
        assert_eq!((rec.width, rec.height), (1280, 720));
        let MediaFormat::Aac { config, rtp } = &media[1].format else { panic!("{:?}", media[1].format) };
        assert_eq!((config.sample_rate, config.channels), (48_000, 2));
        assert_eq!(&config.raw[..], &[0x11, 0x90], "only the AudioSpecificConfig, not ffmpeg's extension");
        assert_eq!(*rtp, AacRtpParams::default());
    }

    #[test]
    fn reads_gstreamer_latm_config() {
        // rtpmp4apay for AAC-LC 48 kHz stereo
        let cfg = latm_audio_config(&[0x40, 0x00, 0x23, 0x20, 0x1f, 0xe0]).expect("valid");
        assert_eq!((cfg.object_type, cfg.sample_rate, cfg.channels), (2, 48_000, 2));
        assert!(latm_audio_config(&[0x80]).is_err());
    }

    #[test]
    fn refuses_broken_sdp() {
        assert_eq!(parse_announce(b"garbage"), Err(SdpError::Syntax));
        let no_rate = FFMPEG_SDP.replace("H264/90000", "H264");
        assert!(parse_announce(no_rate.as_bytes()).is_err());
        let bad_config = FFMPEG_SDP.replace("config=119056E500", "config=zz");
        assert!(parse_announce(bad_config.as_bytes()).is_err());
        let no_config = FFMPEG_SDP.replace(" config=119056E500", "");
        assert!(parse_announce(no_config.as_bytes()).is_err());
    }

    #[test]
    fn h265_takes_its_parameter_sets_and_refuses_decoding_order_numbers() {
        let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n\
a=rtpmap:96 H265/90000\r\na=fmtp:96 sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwA8lZgJ; sprop-pps=RAHBcrRiQA==\r\na=control:streamid=0\r\n";
        let media = parse_announce(sdp.as_bytes()).expect("sdp");
        let MediaFormat::H265 { vps, sps, pps } = &media[0].format else { panic!("{:?}", media[0].format) };
        assert_eq!((vps.len(), sps.len(), pps.len()), (1, 0, 1), "an absent set comes in band");
        assert_eq!(vps[0][0] >> 1, 32);
        let with_don = sdp.replace("sprop-pps", "sprop-max-don-diff=2; sprop-pps");
        assert!(parse_announce(with_don.as_bytes()).is_err());
    }
}
