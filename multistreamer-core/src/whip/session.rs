//! One WHIP publisher: its WebRTC state driven by the datagrams routed to it and by its
//! timers, and its frames turned into hub items.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::format::Codec as RtcCodec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Event, IceConnectionState, Input, Output, Rtc, RtcError};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Datagram;
use super::OfferSummary;
use crate::codec::avc::{ParameterSets, annexb_to_avcc, avcc_nal_units};
use crate::error::{Error, ErrorKind, Result};
use crate::hub::Publisher;
use crate::media::{
    Codec, MediaInfo, MediaItem, Packet, StreamMetadata, Timebase, Timestamp, Track, TrackId, TrackKind,
};
use crate::source::{ItemReader, from_reader, publish_source};
use crate::sync::lock;
use crate::transcode::audio::AacEncoder;

pub(crate) const VIDEO_TRACK: TrackId = TrackId(0);
pub(crate) const AUDIO_TRACK: TrackId = TrackId(1);

/// Keyframe requests (PLI) while one is awaited, at most this often.
const KEYFRAME_REQUEST_EVERY: Duration = Duration::from_secs(1);

/// What [`super::WhipServer::publish`] hands a new session.
pub(super) struct SessionParts {
    pub rtc: Arc<Mutex<Rtc>>,
    pub rx: mpsc::Receiver<Datagram>,
    /// The sockets and the candidate each stands for.
    pub sockets: Vec<(Arc<UdpSocket>, SocketAddr)>,
    pub summary: OfferSummary,
    pub audio_kbps: u32,
    pub connect_timeout: Duration,
    pub cancel: CancellationToken,
    pub start: Instant,
}

pub(super) struct Session {
    rtc: Arc<Mutex<Rtc>>,
    rx: mpsc::Receiver<Datagram>,
    sockets: Vec<(Arc<UdpSocket>, SocketAddr)>,
    cancel: CancellationToken,
    connect_deadline: Instant,
    /// When the WebRTC state next wants a timeout input.
    deadline: Instant,
    connected: bool,
    video_mid: Option<Mid>,
    audio_mid: Option<Mid>,
    last_keyframe_request: Option<Instant>,
    media: Converter,
    queue: VecDeque<MediaItem>,
    failure: Option<Error>,
    done: bool,
    flushed: bool,
}

impl Session {
    pub(super) fn new(parts: SessionParts) -> Session {
        Session {
            rtc: parts.rtc,
            rx: parts.rx,
            sockets: parts.sockets,
            cancel: parts.cancel,
            connect_deadline: parts.start + parts.connect_timeout,
            deadline: parts.start,
            connected: false,
            video_mid: None,
            audio_mid: None,
            last_keyframe_request: None,
            media: Converter::new(parts.start, parts.summary, parts.audio_kbps),
            queue: VecDeque::new(),
            failure: None,
            done: false,
            flushed: false,
        }
    }

    /// Publishes the session's media until it ends.
    pub(super) async fn publish(self, publisher: Publisher) -> Result<()> {
        let mut source = from_reader(self);
        publish_source(&mut source, &publisher).await
    }

    /// One mutation of the WebRTC state, then everything it produced.
    fn mutate(&mut self, f: impl FnOnce(&mut Rtc) -> std::result::Result<(), RtcError>) -> Result<()> {
        let rtc = Arc::clone(&self.rtc);
        let mut rtc = lock(&rtc);
        f(&mut rtc).map_err(rtc_error)?;
        self.drain(&mut rtc)
    }

    fn drain(&mut self, rtc: &mut Rtc) -> Result<()> {
        loop {
            match rtc.poll_output().map_err(rtc_error)? {
                Output::Timeout(t) => {
                    self.deadline = t;
                    break;
                }
                Output::Transmit(t) => self.transmit(&t),
                Output::Event(e) => self.event(e),
            }
        }
        if !rtc.is_alive() && !self.done {
            self.done = true;
            info!("the publisher's WebRTC connection closed");
        }
        // a keyframe awaited: ask for one (a mutation of its own, drained in turn)
        let now = Instant::now();
        let due = self.last_keyframe_request.is_none_or(|t| now.duration_since(t) >= KEYFRAME_REQUEST_EVERY);
        let writer = if self.connected && self.media.wants_keyframe() && due {
            self.video_mid.and_then(|mid| rtc.writer(mid))
        } else {
            None
        };
        if let Some(mut writer) = writer {
            self.last_keyframe_request = Some(now);
            match writer.request_keyframe(None, KeyframeRequestKind::Pli) {
                Ok(()) => {
                    debug!("keyframe requested");
                    return self.drain(rtc);
                }
                Err(e) => debug!(error = %e, "keyframe request not sent"),
            }
        }
        Ok(())
    }

    fn transmit(&self, t: &Transmit) {
        let socket = self.sockets.iter().find(|(_, c)| *c == t.source).or_else(|| self.sockets.first());
        if let Some(Err(e)) = socket.map(|(udp, _)| udp.try_send_to(&t.contents, t.destination)) {
            debug!(destination = %t.destination, error = %e, "WHIP datagram not sent");
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                self.connected = true;
                info!("WHIP publisher connected (ICE and DTLS up)");
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.done = true;
                self.failure = Some(Error::new(
                    ErrorKind::Disconnected,
                    "the publisher's WebRTC connection was lost (no answer to connectivity checks)",
                ));
            }
            Event::MediaAdded(m) => match m.kind {
                MediaKind::Video if self.video_mid.is_none() => self.video_mid = Some(m.mid),
                MediaKind::Audio if self.audio_mid.is_none() => self.audio_mid = Some(m.mid),
                _ => {}
            },
            Event::MediaData(d) => {
                let mut items = Vec::new();
                match d.params.spec().codec {
                    RtcCodec::H264 if self.video_mid.is_none_or(|m| m == d.mid) => {
                        self.video_mid = Some(d.mid);
                        self.media.video(&d, &mut items);
                    }
                    RtcCodec::Opus if self.audio_mid.is_none_or(|m| m == d.mid) => {
                        self.audio_mid = Some(d.mid);
                        self.media.audio(&d, &mut items);
                    }
                    _ => {}
                }
                self.queue.extend(items);
            }
            _ => {}
        }
    }

    fn input(&mut self, d: Datagram) -> Result<()> {
        let Ok(contents) = d.data.as_slice().try_into() else { return Ok(()) };
        let receive = Receive { proto: Protocol::Udp, source: d.source, destination: d.destination, contents };
        self.mutate(|rtc| rtc.handle_input(Input::Receive(d.at, receive)))
    }
}

impl ItemReader for Session {
    async fn next_item(&mut self) -> Result<Option<MediaItem>> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Ok(Some(item));
            }
            if let Some(e) = self.failure.take() {
                return Err(e);
            }
            if self.done {
                if !self.flushed {
                    self.flushed = true;
                    let mut items = Vec::new();
                    self.media.finish(&mut items);
                    self.queue.extend(items);
                    continue;
                }
                return Ok(None);
            }
            if !self.connected && Instant::now() >= self.connect_deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "the WebRTC connection did not come up (ICE or DTLS): is the media UDP port reachable from the publisher?",
                ));
            }
            let wake = if self.connected { self.deadline } else { self.deadline.min(self.connect_deadline) };
            tokio::select! {
                _ = self.cancel.cancelled() => {
                    info!("WHIP session stopped (DELETE, or the server is stopping)");
                    lock(&self.rtc).disconnect();
                    self.done = true;
                }
                d = self.rx.recv() => match d {
                    Some(d) => self.input(d)?,
                    None => self.done = true,
                },
                _ = tokio::time::sleep_until(wake.into()) => {
                    self.mutate(|rtc| rtc.handle_input(Input::Timeout(Instant::now())))?;
                }
            }
        }
    }
}

fn rtc_error(e: RtcError) -> Error {
    Error::new(ErrorKind::Protocol, format!("WebRTC: {e}"))
}

/// An RTP clock placed on the session's timeline by the arrival of its first frame.
#[derive(Clone, Copy, Debug)]
struct Clock {
    rtp0: i64,
    rate: i64,
    /// When the first frame arrived, µs after the session started.
    at0_us: i64,
}

impl Clock {
    fn new(rtp: u64, rate: u32, at0_us: i64) -> Clock {
        Clock { rtp0: rtp as i64, rate: i64::from(rate.max(1)), at0_us }
    }

    /// µs after the session started.
    fn micros(&self, rtp: u64) -> i64 {
        self.at0_us + (rtp as i64 - self.rtp0) * 1_000_000 / self.rate
    }

    /// Ticks (of this clock's rate) after `origin_us`.
    fn ticks_after(&self, rtp: u64, origin_us: i64) -> i64 {
        (self.at0_us - origin_us) * self.rate / 1_000_000 + (rtp as i64 - self.rtp0)
    }
}

/// WebRTC frames → hub items. The two RTP clocks are placed on one timeline by the arrival
/// of each one's first frame (sender reports are not waited for), and the timeline starts
/// at the first video keyframe (at the first audio frame without video); Opus becomes AAC.
pub(crate) struct Converter {
    start: Instant,
    summary: OfferSummary,
    sets: ParameterSets,
    video: Option<Track>,
    aac: Option<AacEncoder>,
    info_changed: bool,
    need_keyframe: bool,
    video_clock: Option<Clock>,
    audio_clock: Option<Clock>,
    origin_us: Option<i64>,
    last_video: Option<i64>,
    audio_failed: bool,
    /// Video frames dropped while a keyframe was awaited.
    pub(crate) dropped_video: u64,
}

impl Converter {
    pub(crate) fn new(start: Instant, summary: OfferSummary, audio_kbps: u32) -> Converter {
        let aac = if summary.audio {
            match AacEncoder::from_opus(AUDIO_TRACK, audio_kbps) {
                Ok(e) => Some(e),
                Err(e) => {
                    warn!(error = %e, "Opus cannot be encoded to AAC here; the stream carries no audio");
                    None
                }
            }
        } else {
            None
        };
        Converter {
            start,
            summary,
            sets: ParameterSets::default(),
            video: None,
            aac,
            info_changed: true,
            need_keyframe: true,
            video_clock: None,
            audio_clock: None,
            origin_us: None,
            last_video: None,
            audio_failed: false,
            dropped_video: 0,
        }
    }

    fn wants_keyframe(&self) -> bool {
        self.summary.video && self.need_keyframe
    }

    fn since_start(&self, at: Instant) -> i64 {
        i64::try_from(at.saturating_duration_since(self.start).as_micros()).unwrap_or(i64::MAX / 4)
    }

    /// One H.264 access unit (Annex B, as the WebRTC stack reassembles it).
    fn video(&mut self, d: &MediaData, out: &mut Vec<MediaItem>) {
        let mut sets = ParameterSets::default();
        let avcc = annexb_to_avcc(&d.data, &mut sets);
        if sets.is_complete() && sets != self.sets {
            match sets.to_record() {
                Ok(config) => {
                    if self.video.is_some() {
                        info!("the publisher's video changed its parameters (size or profile)");
                    }
                    self.video =
                        Some(Track { id: VIDEO_TRACK, codec: Codec::H264(config), timebase: Timebase::HZ_90K });
                    self.sets = sets;
                    self.info_changed = true;
                }
                Err(e) => warn!(error = %e, "unusable H.264 parameter sets from the publisher; frame dropped"),
            }
        }
        if !d.contiguous {
            // a frame lost on the way: nothing decodes until the next keyframe
            self.need_keyframe = true;
        }
        if avcc.is_empty() {
            return;
        }
        let keyframe = avcc_nal_units(&avcc, 4).any(|n| n.ok().and_then(|n| n.first()).is_some_and(|b| b & 0x1F == 5));
        if keyframe && self.video.is_some() {
            self.need_keyframe = false;
        } else if self.need_keyframe || self.video.is_none() {
            self.need_keyframe = true;
            self.dropped_video += 1;
            return;
        }
        let at = self.since_start(d.network_time);
        let rtp = d.time.numer();
        let clock = *self.video_clock.get_or_insert_with(|| Clock::new(rtp, d.time.denom(), at));
        let origin = *self.origin_us.get_or_insert_with(|| clock.micros(rtp));
        let mut ts = clock.ticks_after(rtp, origin).max(0);
        if let Some(last) = self.last_video {
            ts = ts.max(last + 1);
        }
        self.last_video = Some(ts);
        self.info(out);
        let at = Timestamp::new(ts, Timebase::HZ_90K);
        out.push(MediaItem::Packet(Packet {
            track: VIDEO_TRACK,
            kind: TrackKind::Video,
            dts: at,
            pts: at,
            keyframe,
            payload: Bytes::from(avcc),
        }));
    }

    /// One Opus packet: AAC frames out as they fill.
    fn audio(&mut self, d: &MediaData, out: &mut Vec<MediaItem>) {
        if self.aac.is_none() {
            return;
        }
        let at = self.since_start(d.network_time);
        let rtp = d.time.numer();
        let clock = *self.audio_clock.get_or_insert_with(|| Clock::new(rtp, d.time.denom(), at));
        let origin = match self.origin_us {
            Some(o) => o,
            None if !self.summary.video => *self.origin_us.insert(clock.micros(rtp)),
            // before the first video keyframe
            None => return,
        };
        let ts = clock.ticks_after(rtp, origin);
        if ts < 0 {
            return;
        }
        self.info(out);
        let Some(aac) = self.aac.as_mut() else { return };
        let timebase = Timebase::new(1, d.time.denom()).unwrap_or(aac.output_track().timebase);
        let at = Timestamp::new(ts, timebase);
        let opus = Packet {
            track: AUDIO_TRACK,
            kind: TrackKind::Audio,
            dts: at,
            pts: at,
            keyframe: true,
            payload: Bytes::copy_from_slice(&d.data),
        };
        match aac.push(&opus) {
            Ok(packets) => out.extend(packets.into_iter().map(MediaItem::Packet)),
            Err(e) if !self.audio_failed => {
                self.audio_failed = true;
                warn!(error = %e, "the publisher's Opus could not be decoded; audio skipped where it fails");
            }
            Err(_) => {}
        }
    }

    /// The stream's description, before the first packet and again when the video changes.
    fn info(&mut self, out: &mut Vec<MediaItem>) {
        if !self.info_changed {
            return;
        }
        self.info_changed = false;
        let mut tracks: Vec<Track> = self.video.iter().cloned().collect();
        tracks.extend(self.aac.as_ref().map(|a| a.output_track().clone()));
        let metadata = StreamMetadata { encoder: Some("WebRTC (WHIP)".into()), ..StreamMetadata::default() };
        out.push(MediaItem::Info(Arc::new(MediaInfo { tracks, metadata })));
    }

    /// What is left once the publisher is gone.
    fn finish(&mut self, out: &mut Vec<MediaItem>) {
        if self.origin_us.is_none() {
            return;
        }
        if let Some(aac) = self.aac.as_mut() {
            out.extend(aac.flush().into_iter().map(MediaItem::Packet));
        }
    }
}
