//! The audio every rung carries: the source's AAC unchanged, or — for the other codecs an
//! RTMP publisher may send (MP3, G.711, PCM, Nellymoser, Speex) — AAC encoded once on the
//! decoding thread and shared by every rung. The same encoder turns a WebRTC publisher's
//! Opus into AAC at the ingest ([`AacEncoder::from_opus`]).

use std::collections::VecDeque;

use bytes::Bytes;
use ffmpeg_next::software::resampling;
use ffmpeg_next::util::format::Sample;
use ffmpeg_next::util::format::sample::Type as SampleType;
use ffmpeg_next::util::frame;
use ffmpeg_next::{ChannelLayout, Rational, codec, decoder, encoder};
use tracing::{info, warn};

use super::{ffi, media_err, missing_codec};
use crate::codec::aac::AudioSpecificConfig;
use crate::error::Result;
use crate::media::{Codec, FlvCodecTag, Packet, Timebase, Timestamp, Track, TrackId, TrackKind};

pub(super) enum AudioPath {
    None,
    Passthrough(Track),
    Encode(Box<AacEncoder>),
}

impl AudioPath {
    pub(super) fn for_track(track: Option<&Track>, kbps: u32) -> AudioPath {
        let Some(track) = track else { return AudioPath::None };
        match &track.codec {
            Codec::Aac(_) => AudioPath::Passthrough(track.clone()),
            Codec::FlvAudio { codec: FlvCodecTag::Id(id), .. } => match AacEncoder::new(track.clone(), *id, kbps) {
                Ok(e) => AudioPath::Encode(Box::new(e)),
                Err(e) => {
                    warn!(codec = %track.codec.name(), error = %e, "source audio cannot be transcoded; renditions carry no audio");
                    AudioPath::None
                }
            },
            other => {
                warn!(codec = %other.name(), "source audio cannot be transcoded; renditions carry no audio");
                AudioPath::None
            }
        }
    }

    fn source(&self) -> Option<&Track> {
        match self {
            AudioPath::None => None,
            AudioPath::Passthrough(t) => Some(t),
            AudioPath::Encode(e) => Some(&e.source),
        }
    }

    pub(super) fn same_source(&self, other: &AudioPath) -> bool {
        self.source() == other.source()
    }

    pub(super) fn describe(&self) -> &'static str {
        match self {
            AudioPath::None => "none",
            AudioPath::Passthrough(_) => "passthrough",
            AudioPath::Encode(_) => "encode to AAC",
        }
    }

    /// The audio track of every rendition.
    pub(super) fn output_track(&self) -> Option<Track> {
        match self {
            AudioPath::None => None,
            AudioPath::Passthrough(t) => Some(t.clone()),
            AudioPath::Encode(e) => Some(e.output.clone()),
        }
    }

    /// The rendition packets for one source audio packet.
    pub(super) fn process(&mut self, p: Packet) -> Result<Vec<Packet>> {
        match self {
            AudioPath::None => Ok(Vec::new()),
            AudioPath::Passthrough(t) => Ok(if p.track == t.id { vec![p] } else { Vec::new() }),
            AudioPath::Encode(e) => {
                if p.track != e.source.id {
                    return Ok(Vec::new());
                }
                e.push(&p)
            }
        }
    }

    pub(super) fn flush(&mut self) -> Vec<Packet> {
        match self {
            AudioPath::Encode(e) => e.flush(),
            _ => Vec::new(),
        }
    }
}

/// Decoder parameters of a classic FLV audio codec: (libav codec, fixed rate, fixed mono).
fn flv_decoder(id: u8) -> Option<(codec::Id, Option<i32>, bool)> {
    Some(match id {
        0 | 3 => (codec::Id::PCM_S16LE, None, false),
        2 | 14 => (codec::Id::MP3, None, false),
        4 => (codec::Id::NELLYMOSER, Some(16_000), true),
        5 => (codec::Id::NELLYMOSER, Some(8_000), true),
        6 => (codec::Id::NELLYMOSER, None, true),
        7 => (codec::Id::PCM_ALAW, Some(8_000), false),
        8 => (codec::Id::PCM_MULAW, Some(8_000), false),
        11 => (codec::Id::SPEEX, Some(16_000), true),
        _ => return None,
    })
}

/// What an [`AacEncoder`] decodes.
#[derive(Clone, Copy, Debug)]
enum AudioInput {
    /// Classic FLV audio (packets are FLV audio tag bodies) with this codec id.
    Flv(u8),
    /// Opus packets as RTP carries them (48 kHz, one or two channels).
    #[cfg_attr(not(feature = "whip"), allow(dead_code))]
    Opus,
}

/// Decodes FLV audio or Opus, resamples to planar float, and encodes AAC-LC in 1024-sample
/// frames.
pub(crate) struct AacEncoder {
    source: Track,
    input: AudioInput,
    output: Track,
    decoder: Option<decoder::Audio>,
    resampler: Option<resampling::Context>,
    encoder: encoder::Audio,
    rate: u32,
    layout: ChannelLayout,
    channels: usize,
    frame_size: usize,
    fifo: Vec<VecDeque<f32>>,
    /// Timestamp (in 1/rate) of the first sample in the FIFO.
    next_pts: Option<i64>,
}

/// The longest gap in an Opus timeline filled with silence (5 s at 48 kHz).
const MAX_SILENCE_FILL: i64 = 5 * 48_000;

const AAC_RATES: [u32; 9] = [8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000];

impl AacEncoder {
    fn new(source: Track, flv_id: u8, kbps: u32) -> Result<AacEncoder> {
        let (_, fixed_rate, mono) =
            flv_decoder(flv_id).ok_or_else(|| unsupported(format!("FLV audio codec {flv_id} is not supported")))?;
        // The output rate: the source's when AAC has it (known from the FLV header), else 48 kHz.
        let header = match &source.codec {
            Codec::FlvAudio { sequence_header: Some(h), .. } => h.first().copied(),
            _ => None,
        };
        let flv_rate = header.map(|h| [5_512, 11_025, 22_050, 44_100][usize::from((h >> 2) & 3)]);
        let src_rate = fixed_rate.map(|r| r as u32).or(flv_rate).unwrap_or(44_100);
        let rate = if AAC_RATES.contains(&src_rate) && src_rate >= 16_000 { src_rate } else { 48_000 };
        let channels = if mono || header.is_some_and(|h| h & 1 == 0) { 1 } else { 2 };
        AacEncoder::open(source, AudioInput::Flv(flv_id), rate, channels, kbps)
    }

    /// An encoder from Opus (48 kHz, stereo out) to AAC-LC at `kbps`; its packets keep the
    /// track id `track` and are stamped in 1/48000. Gaps in the Opus timestamps (lost
    /// packets, silence suppression) are filled with silence so that the AAC timeline stays
    /// continuous and in step with the video.
    #[cfg_attr(not(feature = "whip"), allow(dead_code))]
    pub(crate) fn from_opus(track: TrackId, kbps: u32) -> Result<AacEncoder> {
        let timebase = Timebase::new(1, 48_000).ok_or_else(|| media_err("bad sample rate"))?;
        let codec = Codec::FlvAudio { codec: FlvCodecTag::FourCc(*b"Opus"), sequence_header: None };
        AacEncoder::open(Track { id: track, codec, timebase }, AudioInput::Opus, 48_000, 2, kbps)
    }

    fn open(source: Track, input: AudioInput, rate: u32, channels: i32, kbps: u32) -> Result<AacEncoder> {
        let layout = ChannelLayout::default(channels);
        let codec = encoder::find(codec::Id::AAC).ok_or_else(|| missing_codec("AAC encoder"))?;
        let mut ctx = codec::Context::new_with_codec(codec);
        ctx.set_flags(codec::Flags::GLOBAL_HEADER);
        let mut enc = ctx.encoder().audio()?;
        enc.set_rate(rate as i32);
        enc.set_channel_layout(layout);
        enc.set_format(Sample::F32(SampleType::Planar));
        enc.set_bit_rate(kbps as usize * 1000);
        enc.set_time_base(Rational::new(1, rate as i32));
        let encoder = enc.open()?;
        let asc = AudioSpecificConfig::parse(Bytes::from(ffi::extradata(&encoder)))?;
        let frame_size = (encoder.frame_size() as usize).max(1);
        let timebase = Timebase::new(1, rate).ok_or_else(|| media_err("bad sample rate"))?;
        let output = Track { id: source.id, codec: Codec::Aac(asc), timebase };
        info!(from = %source.codec.name(), rate, channels, "source audio is encoded to AAC");
        Ok(AacEncoder {
            source,
            input,
            output,
            decoder: None,
            resampler: None,
            encoder,
            rate,
            layout,
            channels: channels as usize,
            frame_size,
            fifo: vec![VecDeque::new(); channels as usize],
            next_pts: None,
        })
    }

    /// The AAC track the packets belong to.
    #[cfg_attr(not(feature = "whip"), allow(dead_code))]
    pub(crate) fn output_track(&self) -> &Track {
        &self.output
    }

    fn open_decoder(&self, header: u8) -> Result<decoder::Audio> {
        let (id, rate, channels) = match self.input {
            AudioInput::Flv(flv_id) => {
                let (id, fixed_rate, mono) =
                    flv_decoder(flv_id).ok_or_else(|| unsupported("unsupported FLV audio".into()))?;
                let rate = fixed_rate.unwrap_or([5_512, 11_025, 22_050, 44_100][usize::from((header >> 2) & 3)]);
                (id, rate, if mono || header & 1 == 0 { 1 } else { 2 })
            }
            // the decoder mixes a mono packet up to the two channels it is opened with
            AudioInput::Opus => (codec::Id::OPUS, 48_000, 2),
        };
        let codec = decoder::find(id).ok_or_else(|| missing_codec(&format!("{id:?} decoder")))?;
        // Rate and channels come from the FLV header for the codecs that do not carry them;
        // libav only exposes their setters on the encoder side of a context.
        let mut params = codec::Context::new_with_codec(codec).encoder().audio()?;
        params.set_rate(rate);
        params.set_channel_layout(ChannelLayout::default(channels));
        let ctx: codec::Context = params.0.0;
        Ok(ctx.decoder().audio()?)
    }

    /// The AAC packets ready after one more source packet.
    pub(crate) fn push(&mut self, p: &Packet) -> Result<Vec<Packet>> {
        let (header, body) = match self.input {
            AudioInput::Flv(_) => match p.payload.split_first() {
                Some((&header, body)) => (header, body),
                None => return Ok(Vec::new()),
            },
            AudioInput::Opus => (0, &p.payload[..]),
        };
        if body.is_empty() {
            return Ok(Vec::new());
        }
        if self.decoder.is_none() {
            self.decoder = Some(self.open_decoder(header)?);
        }
        let mut out = Vec::new();
        let at = p.dts.rescale(self.output.timebase).ticks();
        match self.next_pts {
            None => self.next_pts = Some(at),
            Some(next) if matches!(self.input, AudioInput::Opus) => {
                let expected = next + self.fifo[0].len() as i64;
                let gap = at - expected;
                if gap > MAX_SILENCE_FILL {
                    // too long to fill: what is buffered goes out, the timeline jumps
                    self.encode_ready(&mut out, true)?;
                    self.next_pts = Some(at);
                } else if gap > self.frame_size as i64 / 4 {
                    for q in &mut self.fifo {
                        q.extend(std::iter::repeat_n(0.0, gap as usize));
                    }
                }
            }
            Some(_) => {}
        }
        if let Some(Err(e)) = self.decoder.as_mut().map(|d| d.send_packet(&ffmpeg_next::Packet::copy(body))) {
            warn!(error = %e, "the audio decoder refused a packet; skipped");
            return Ok(out);
        }
        self.drain_decoder(&mut out)?;
        Ok(out)
    }

    fn drain_decoder(&mut self, out: &mut Vec<Packet>) -> Result<()> {
        loop {
            let mut decoded = frame::Audio::empty();
            let Some(dec) = self.decoder.as_mut() else { return Ok(()) };
            if dec.receive_frame(&mut decoded).is_err() {
                return Ok(());
            }
            if decoded.samples() == 0 {
                continue;
            }
            if self.resampler.is_none() {
                self.resampler = Some(resampling::Context::get(
                    decoded.format(),
                    decoded.channel_layout(),
                    decoded.rate(),
                    Sample::F32(SampleType::Planar),
                    self.layout,
                    self.rate,
                )?);
            }
            let Some(rs) = self.resampler.as_mut() else { return Ok(()) };
            let room = decoded.samples() * self.rate as usize / decoded.rate().max(1) as usize + 64;
            let mut converted = frame::Audio::new(Sample::F32(SampleType::Planar), room, self.layout);
            rs.run(&decoded, &mut converted)?;
            let n = converted.samples();
            for (ch, q) in self.fifo.iter_mut().enumerate().take(self.channels) {
                q.extend(converted.plane::<f32>(ch).iter().take(n));
            }
            self.encode_ready(out, false)?;
        }
    }

    /// Encodes whole frames from the FIFO (and the rest, padded, when `last`).
    fn encode_ready(&mut self, out: &mut Vec<Packet>, last: bool) -> Result<()> {
        while self.fifo[0].len() >= self.frame_size || (last && !self.fifo[0].is_empty()) {
            let n = self.fifo[0].len().min(self.frame_size);
            let mut f = frame::Audio::new(Sample::F32(SampleType::Planar), self.frame_size, self.layout);
            f.set_rate(self.rate);
            for (ch, q) in self.fifo.iter_mut().enumerate() {
                let plane = f.plane_mut::<f32>(ch);
                for (dst, src) in plane.iter_mut().zip(q.drain(..n).chain(std::iter::repeat(0.0))) {
                    *dst = src;
                }
            }
            let pts = self.next_pts.unwrap_or(0);
            f.set_pts(Some(pts));
            self.next_pts = Some(pts + n as i64);
            self.encoder.send_frame(&f)?;
            self.receive(out)?;
        }
        Ok(())
    }

    fn receive(&mut self, out: &mut Vec<Packet>) -> Result<()> {
        let mut pkt = ffmpeg_next::Packet::empty();
        while self.encoder.receive_packet(&mut pkt).is_ok() {
            let (Some(data), Some(pts)) = (pkt.data(), pkt.pts()) else { continue };
            let ts = Timestamp::new(pts, self.output.timebase);
            out.push(Packet {
                track: self.output.id,
                kind: TrackKind::Audio,
                dts: ts,
                pts: ts,
                keyframe: true,
                payload: Bytes::copy_from_slice(data),
            });
        }
        Ok(())
    }

    /// What is left once the source ended.
    pub(crate) fn flush(&mut self) -> Vec<Packet> {
        let mut out = Vec::new();
        if let Some(dec) = self.decoder.as_mut() {
            let _ = dec.send_eof();
        }
        let _ = self.drain_decoder(&mut out);
        let _ = self.encode_ready(&mut out, true);
        let _ = self.encoder.send_eof();
        let _ = self.receive(&mut out);
        out
    }
}

fn unsupported(what: String) -> crate::Error {
    super::TranscodeError::Unsupported(what).into()
}
