//! Files (and URLs libavformat can open) in and out of the media model:
//! [`FileSource`] demuxes H.264 and AAC into [`MediaItem`]s (AVCC and raw AAC, whatever
//! the container: MP4, FLV, Matroska, MPEG-TS); [`FileWriter`] muxes them into a container
//! chosen by the file name (`.mp4`, `.mkv`, `.ts`, `.flv`, …) without re-encoding.

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ffmpeg_next::format::context::{Input, Output};
use ffmpeg_next::{ChannelLayout, Rational, codec, decoder, format, media};
use tracing::{debug, warn};

use super::{RenditionOutput, TranscodeError, ffi, init, media_err, missing_codec, rational};
use crate::codec::aac::{AudioSpecificConfig, adts_config};
use crate::codec::av1::Av1Config;
use crate::codec::avc::{AvcDecoderConfig, ParameterSets, annexb_to_avcc};
use crate::codec::hevc::HevcDecoderConfig;
use crate::error::{Error, Result};
use crate::media::{Codec, MediaInfo, MediaItem, Packet, Timebase, Timestamp, Track, TrackId, TrackKind};

/// The parameters of a video stream written from packets (no encoder is opened).
fn video_context(
    id: codec::Id,
    what: &'static str,
    width: u32,
    height: u32,
    tb: Timebase,
    record: &[u8],
) -> Result<codec::Context> {
    let codec = decoder::find(id).ok_or_else(|| missing_codec(what))?;
    let mut v = codec::Context::new_with_codec(codec).encoder().video()?;
    v.set_width(width);
    v.set_height(height);
    v.set_format(format::Pixel::YUV420P);
    v.set_time_base(rational(tb));
    let mut ctx: codec::Context = v.0.0;
    ffi::set_extradata(&mut ctx, record)?;
    Ok(ctx)
}

fn timebase_of(r: Rational) -> Result<Timebase> {
    u32::try_from(r.numerator())
        .ok()
        .zip(u32::try_from(r.denominator()).ok())
        .and_then(|(n, d)| Timebase::new(n, d))
        .ok_or_else(|| media_err(format!("unusable time base {r}")))
}

enum Framing {
    /// Packets as the model carries them, the record in the extradata: AVCC with `avcC`,
    /// length-prefixed HEVC with `hvcC`, AV1 OBUs with `av1C` (MP4, FLV, Matroska).
    Avcc,
    /// Annex B packets (MPEG-TS, raw .h264); parameter sets move into the track.
    AnnexB(ParameterSets),
    /// Raw AAC with an AudioSpecificConfig in the extradata.
    Raw,
    /// AAC in ADTS frames (MPEG-TS, .aac); the header is removed.
    Adts,
}

struct Mapped {
    index: usize,
    kind: TrackKind,
    tb: Timebase,
    framing: Framing,
    track: Option<Track>,
}

/// Reads H.264 video and AAC audio from a file or URL. An iterator of items: first the
/// [`MediaItem::Info`], then packets in file order (a new `Info` when a track's
/// configuration is learnt from the stream, as with MPEG-TS).
pub struct FileSource {
    input: Input,
    url: String,
    streams: Vec<Mapped>,
    queue: VecDeque<MediaItem>,
    duration: Option<Duration>,
    video_frames: Option<u64>,
    done: bool,
}

impl fmt::Debug for FileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSource").field("url", &self.url).field("duration", &self.duration).finish()
    }
}

impl FileSource {
    pub fn open(url: &str) -> Result<FileSource> {
        init();
        let input = format::input(&url).map_err(|e| Error::from(e).context(format!("cannot open {url}")))?;
        let mut streams = Vec::new();
        let mut video_frames = None;
        for kind in [TrackKind::Video, TrackKind::Audio] {
            let medium = if kind == TrackKind::Video { media::Type::Video } else { media::Type::Audio };
            let Some(stream) = input.streams().best(medium) else { continue };
            let params = stream.parameters();
            let extradata = ffi::parameters_extradata(&params);
            let tb = timebase_of(stream.time_base())?;
            let id = TrackId(streams.len() as u32);
            let (framing, codec) = match (kind, params.id()) {
                (TrackKind::Video, codec::Id::H264) if extradata.first() == Some(&1) => {
                    (Framing::Avcc, Some(Codec::H264(AvcDecoderConfig::parse(Bytes::from(extradata))?)))
                }
                (TrackKind::Video, codec::Id::H264) => {
                    let mut sets = ParameterSets::default();
                    annexb_to_avcc(&extradata, &mut sets);
                    let codec = sets.is_complete().then(|| sets.to_record()).transpose()?.map(Codec::H264);
                    (Framing::AnnexB(sets), codec)
                }
                (TrackKind::Video, codec::Id::HEVC) if extradata.first() == Some(&1) => {
                    (Framing::Avcc, Some(Codec::Hevc(HevcDecoderConfig::parse(Bytes::from(extradata))?)))
                }
                (TrackKind::Video, codec::Id::AV1) if extradata.first() == Some(&0x81) => {
                    (Framing::Avcc, Some(Codec::Av1(Av1Config::parse(Bytes::from(extradata))?)))
                }
                (TrackKind::Audio, codec::Id::AAC) if !extradata.is_empty() => {
                    (Framing::Raw, Some(Codec::Aac(AudioSpecificConfig::parse(Bytes::from(extradata))?)))
                }
                (TrackKind::Audio, codec::Id::AAC) => (Framing::Adts, None),
                (_, other) => {
                    warn!(
                        url,
                        codec = ?other,
                        "only H.264, HEVC (hvcC) and AV1 (av1C) video and AAC audio are read from files; track ignored"
                    );
                    continue;
                }
            };
            if kind == TrackKind::Video {
                video_frames = u64::try_from(stream.frames()).ok().filter(|&n| n > 0);
            }
            let track = codec.map(|codec| Track { id, codec, timebase: tb });
            streams.push(Mapped { index: stream.index(), kind, tb, framing, track });
        }
        if streams.is_empty() {
            return Err(TranscodeError::Unsupported(format!("{url}: no H.264 or AAC track")).into());
        }
        let duration = u64::try_from(input.duration()).ok().map(Duration::from_micros);
        let mut source = FileSource {
            input,
            url: url.to_string(),
            streams,
            queue: VecDeque::new(),
            duration,
            video_frames,
            done: false,
        };
        source.queue.push_back(MediaItem::Info(source.info()));
        Ok(source)
    }

    /// The tracks known so far.
    pub fn info(&self) -> Arc<MediaInfo> {
        let mut info = MediaInfo::default();
        for s in &self.streams {
            if let Some(t) = &s.track {
                info.set_track(t.clone());
            }
        }
        if let Some(v) = self.streams.iter().find(|s| s.kind == TrackKind::Video) {
            let rate = self.input.stream(v.index).map(|s| s.avg_frame_rate());
            if let Some(r) = rate.filter(|r| r.numerator() > 0 && r.denominator() > 0) {
                info.metadata.frame_rate = Some(f64::from(r.numerator()) / f64::from(r.denominator()));
            }
        }
        Arc::new(info)
    }

    /// The file's duration, when the container says.
    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }

    /// The number of video frames, when the container says.
    pub fn video_frames(&self) -> Option<u64> {
        self.video_frames
    }

    fn read_one(&mut self) -> Result<bool> {
        let mut pkt = ffmpeg_next::Packet::empty();
        match pkt.read(&mut self.input) {
            Ok(()) => {}
            Err(ffmpeg_next::Error::Eof) => return Ok(false),
            Err(e) => return Err(Error::from(e).context(format!("reading {}", self.url))),
        }
        let Some(pos) = self.streams.iter().position(|s| s.index == pkt.stream()) else { return Ok(true) };
        let (Some(data), Some(dts_or_pts)) = (pkt.data(), pkt.dts().or(pkt.pts())) else { return Ok(true) };
        let s = &mut self.streams[pos];
        let (payload, new_track) = match &mut s.framing {
            Framing::Avcc | Framing::Raw => (Bytes::copy_from_slice(data), None),
            Framing::AnnexB(sets) => {
                let mut found = ParameterSets::default();
                let avcc = annexb_to_avcc(data, &mut found);
                let mut new_track = None;
                if found.is_complete() && found != *sets {
                    *sets = found;
                    let rec = sets.to_record()?;
                    new_track = Some(Codec::H264(rec));
                }
                (Bytes::from(avcc), new_track)
            }
            Framing::Adts => {
                let (asc, header_len) = adts_config(data).map_err(Error::from)?;
                let new_track = match &s.track {
                    Some(Track { codec: Codec::Aac(old), .. }) if old.raw == asc.raw => None,
                    _ => Some(Codec::Aac(asc)),
                };
                (Bytes::copy_from_slice(&data[header_len..]), new_track)
            }
        };
        if let Some(codec) = new_track {
            let changed = s.track.as_ref().is_none_or(|t| t.codec != codec);
            let id = TrackId(pos as u32);
            s.track = Some(Track { id, codec, timebase: s.tb });
            if changed {
                let info = self.info();
                self.queue.push_back(MediaItem::Info(info));
            }
        }
        let s = &self.streams[pos];
        if s.track.is_none() || payload.is_empty() {
            return Ok(true); // nothing decodable before the configuration is known
        }
        let dts = Timestamp::new(dts_or_pts, s.tb);
        let pts = pkt.pts().map_or(dts, |p| Timestamp::new(p, s.tb));
        self.queue.push_back(MediaItem::Packet(Packet {
            track: TrackId(pos as u32),
            kind: s.kind,
            dts,
            pts,
            keyframe: s.kind == TrackKind::Audio || pkt.is_key(),
            payload,
        }));
        Ok(true)
    }
}

impl Iterator for FileSource {
    type Item = Result<MediaItem>;

    fn next(&mut self) -> Option<Result<MediaItem>> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            match self.read_one() {
                Ok(true) => {}
                Ok(false) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

struct OutStream {
    track: TrackId,
    index: usize,
    tb: Timebase,
    /// Held back until the next packet of the track gives its duration (so the last frame
    /// of a file counts in its duration, as the muxers need it).
    held: Option<Packet>,
    last_duration: i64,
}

/// Writes the media model to a container file, without re-encoding.
pub struct FileWriter {
    output: Output,
    path: PathBuf,
    streams: Vec<OutStream>,
    header_written: bool,
    finished: bool,
    /// Packets before the header could be written (should not happen: Info comes first).
    dropped: u64,
    /// Muxer options applied when the header is written (e.g. `movflags`).
    options: Vec<(String, String)>,
}

impl fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileWriter").field("path", &self.path).finish()
    }
}

impl FileWriter {
    /// Creates `path`; the container follows the extension.
    pub fn create(path: &Path) -> Result<FileWriter> {
        init();
        let output =
            format::output(&path).map_err(|e| Error::from(e).context(format!("cannot create {}", path.display())))?;
        Ok(FileWriter {
            output,
            path: path.to_path_buf(),
            streams: Vec::new(),
            header_written: false,
            finished: false,
            dropped: 0,
            options: Vec::new(),
        })
    }

    /// Creates `path` with muxer options (`movflags`, `frag_duration`, `flush_packets`…),
    /// applied when the header is written.
    pub fn create_with(path: &Path, options: &[(&str, &str)]) -> Result<FileWriter> {
        let mut w = FileWriter::create(path)?;
        w.options = options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Ok(w)
    }

    /// Sets a container metadata entry (before the header is written).
    pub fn set_metadata(&mut self, key: &str, value: &str) {
        let mut dict = self.output.metadata().to_owned();
        dict.set(key, value);
        self.output.set_metadata(dict);
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Declares the tracks. The first call writes the header; later calls may not change
    /// the set of tracks (a container cannot gain streams mid-file) and are ignored then.
    pub fn write_info(&mut self, info: &MediaInfo) -> Result<()> {
        if self.header_written {
            let same = info.tracks.len() == self.streams.len()
                && info.tracks.iter().all(|t| self.streams.iter().any(|s| s.track == t.id));
            if !same {
                warn!(path = %self.path.display(), "the tracks changed mid-file; new tracks are not recorded");
            }
            return Ok(());
        }
        let mp4 = ["mp4", "mov"].iter().any(|n| self.output.format().name().split(',').any(|f| f == *n));
        for t in &info.tracks {
            let mut tag = None;
            let ctx = match &t.codec {
                Codec::H264(cfg) => {
                    let codec = decoder::find(codec::Id::H264).ok_or_else(|| missing_codec("H.264 decoder"))?;
                    let mut v = codec::Context::new_with_codec(codec).encoder().video()?;
                    v.set_width(cfg.width);
                    v.set_height(cfg.height);
                    v.set_format(format::Pixel::YUV420P);
                    v.set_time_base(rational(t.timebase));
                    let mut ctx: codec::Context = v.0.0;
                    ffi::set_extradata(&mut ctx, &cfg.record)?;
                    ctx
                }
                Codec::Aac(asc) => {
                    let codec = decoder::find(codec::Id::AAC).ok_or_else(|| missing_codec("AAC decoder"))?;
                    let mut a = codec::Context::new_with_codec(codec).encoder().audio()?;
                    a.set_rate(asc.sample_rate as i32);
                    a.set_channel_layout(ChannelLayout::default(i32::from(asc.channels.max(1))));
                    a.set_time_base(rational(t.timebase));
                    let mut ctx: codec::Context = a.0.0;
                    ffi::set_extradata(&mut ctx, &asc.raw)?;
                    ctx
                }
                Codec::Hevc(cfg) => {
                    tag = Some(*b"hvc1");
                    video_context(codec::Id::HEVC, "HEVC decoder", cfg.width, cfg.height, t.timebase, &cfg.record)?
                }
                Codec::Av1(cfg) => {
                    video_context(codec::Id::AV1, "AV1 decoder", cfg.width, cfg.height, t.timebase, &cfg.record)?
                }
                other => {
                    warn!(codec = %other.name(), "track not written: only H.264, HEVC, AV1 and AAC go into files");
                    continue;
                }
            };
            let mut st = self.output.add_stream_with(&ctx)?;
            st.set_time_base(rational(t.timebase));
            if let (Some(tag), true) = (tag, mp4) {
                ffi::set_stream_codec_tag(&mut st, tag);
            }
            self.streams.push(OutStream {
                track: t.id,
                index: st.index(),
                tb: t.timebase,
                held: None,
                last_duration: 0,
            });
        }
        if self.streams.is_empty() {
            return Err(TranscodeError::Unsupported("nothing to write: no H.264, HEVC, AV1 or AAC track".into()).into());
        }
        let mut dict = ffmpeg_next::Dictionary::new();
        for (k, v) in &self.options {
            dict.set(k, v);
        }
        self.output
            .write_header_with(dict)
            .map_err(|e| Error::from(e).context(format!("writing {}", self.path.display())))?;
        // The muxer may have chosen its own time bases.
        for s in &mut self.streams {
            if let Some(st) = self.output.stream(s.index) {
                s.tb = timebase_of(st.time_base())?;
            }
        }
        self.header_written = true;
        Ok(())
    }

    pub fn write_packet(&mut self, p: &Packet) -> Result<()> {
        if !self.header_written {
            self.dropped += 1;
            return Ok(());
        }
        let Some(s) = self.streams.iter_mut().find(|s| s.track == p.track) else { return Ok(()) };
        let Some(prev) = s.held.replace(p.clone()) else { return Ok(()) };
        let duration = (p.dts.rescale(s.tb).ticks() - prev.dts.rescale(s.tb).ticks()).max(0);
        s.last_duration = duration;
        let (index, tb) = (s.index, s.tb);
        self.write_now(&prev, index, tb, duration)
    }

    fn write_now(&mut self, p: &Packet, index: usize, tb: Timebase, duration: i64) -> Result<()> {
        let mut pkt = ffmpeg_next::Packet::copy(&p.payload);
        pkt.set_stream(index);
        pkt.set_pts(Some(p.pts.rescale(tb).ticks()));
        pkt.set_dts(Some(p.dts.rescale(tb).ticks()));
        pkt.set_duration(duration);
        if p.keyframe {
            pkt.set_flags(codec::packet::Flags::KEY);
        }
        pkt.write_interleaved(&mut self.output)
            .map_err(|e| Error::from(e).context(format!("writing {}", self.path.display())))
    }

    /// Writes the trailer (the index of an MP4). Idempotent.
    pub fn finish(&mut self) -> Result<()> {
        if self.finished || !self.header_written {
            return Ok(());
        }
        self.finished = true;
        let held: Vec<(Packet, usize, Timebase, i64)> = self
            .streams
            .iter_mut()
            .filter_map(|s| s.held.take().map(|p| (p, s.index, s.tb, s.last_duration)))
            .collect();
        for (p, index, tb, duration) in held {
            self.write_now(&p, index, tb, duration)?;
        }
        if self.dropped > 0 {
            debug!(dropped = self.dropped, "packets before the header were not written");
        }
        self.output.write_trailer().map_err(|e| Error::from(e).context(format!("finishing {}", self.path.display())))
    }
}

impl RenditionOutput for FileWriter {
    fn info(&mut self, info: Arc<MediaInfo>) -> Result<()> {
        self.write_info(&info)
    }

    fn packet(&mut self, packet: Packet) -> Result<()> {
        self.write_packet(&packet)
    }

    fn finish(&mut self) -> Result<()> {
        FileWriter::finish(self)
    }
}
