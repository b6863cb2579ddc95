//! The SRT listener: callers publish MPEG-TS (H.264 + AAC) into the hub.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use srt_protocol::settings::KeySettings;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::options::{KeySize, Passphrase};
use srt_tokio::{ConnectionRequest, SrtIncoming, SrtListener, SrtSocket};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::parse_stream_id;
use crate::error::{Error, ErrorKind, Result};
use crate::hls::demux::{AUDIO_TRACK, Frame, SegmentDemuxer, VIDEO_TRACK};
use crate::hub::{Hub, Publisher};
use crate::media::{MediaInfo, MediaItem, Packet, Timebase, Timestamp, TrackKind};
use crate::rtmp::{PublishAuthorizer, PublishRequest};
use crate::source::{ItemReader, from_reader, publish_source};

/// Settings of the SRT ingest.
#[derive(Clone, Debug)]
pub struct SrtIngestOptions {
    /// The receive latency (TSBPD): how long lost packets may take to be recovered. The
    /// larger of this and the caller's is used. libsrt's default is 120 ms; 4× the
    /// round-trip time is the usual advice for the internet.
    pub latency: Duration,
    /// A connection that receives nothing for this long is broken.
    pub peer_idle_timeout: Duration,
    pub max_connections: usize,
    /// The application of stream ids that name only a key (`KEY`, `#!::r=KEY`).
    pub app: String,
    /// The passphrase every caller must encrypt with, unless the authorizer names one for
    /// the stream ([`PublishAuthorizer::srt_passphrase`]). 10 to 79 characters.
    pub passphrase: Option<String>,
    /// A caller whose first bytes hold no MPEG-TS program with H.264 or AAC within this many
    /// bytes is disconnected.
    pub max_bytes_before_program: usize,
}

impl Default for SrtIngestOptions {
    fn default() -> SrtIngestOptions {
        SrtIngestOptions {
            latency: Duration::from_millis(120),
            peer_idle_timeout: Duration::from_secs(5),
            max_connections: 256,
            app: "live".into(),
            passphrase: None,
            max_bytes_before_program: 4 << 20,
        }
    }
}

/// Checks a passphrase's length as SRT requires (10 to 79 bytes).
pub(crate) fn passphrase(p: &str) -> Result<Passphrase> {
    Passphrase::try_from(p.to_string())
        .map_err(|_| Error::new(ErrorKind::Config, "an SRT passphrase must be 10 to 79 characters long"))
}

/// Listens for SRT callers and feeds them into the hub.
pub struct SrtIngest {
    listener: SrtListener,
    incoming: SrtIncoming,
    addr: SocketAddr,
    hub: Hub,
    auth: Arc<dyn PublishAuthorizer>,
    options: SrtIngestOptions,
}

impl std::fmt::Debug for SrtIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtIngest").field("addr", &self.addr).finish()
    }
}

impl SrtIngest {
    pub async fn bind(
        addr: SocketAddr,
        hub: Hub,
        auth: Arc<dyn PublishAuthorizer>,
        options: SrtIngestOptions,
    ) -> Result<SrtIngest> {
        if let Some(p) = &options.passphrase {
            passphrase(p)?;
        }
        let (listener, incoming, addr) = listen(addr, &options).await?;
        Ok(SrtIngest { listener, incoming, addr, hub, auth, options })
    }

    async fn rebind(&mut self) -> Result<()> {
        let mut attempt = 0;
        loop {
            match listen(self.addr, &self.options).await {
                Ok((listener, incoming, _)) => {
                    (self.listener, self.incoming) = (listener, incoming);
                    return Ok(());
                }
                // the old socket may take a moment to be released
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    debug!(reason = %e, "SRT listener not bound yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepts callers until `cancel` fires. Should the SRT stack's listener task end on its
    /// own (a handshake it cannot handle makes it panic: an encrypting caller accepted
    /// without a passphrase), the listener is bound again on the same address, with the
    /// reason logged; the sessions it carried end and their publishers reconnect.
    pub async fn run(mut self, cancel: CancellationToken) {
        let active = Arc::new(AtomicUsize::new(0));
        loop {
            let request = tokio::select! {
                _ = cancel.cancelled() => break,
                r = self.incoming.incoming().next() => match r {
                    Some(r) => r,
                    None => {
                        warn!(addr = %self.addr, "the SRT listener stopped (a caller's handshake failed inside the SRT stack); listening again");
                        match self.rebind().await {
                            Ok(()) => continue,
                            Err(e) => {
                                warn!(addr = %self.addr, reason = %e, "the SRT listener could not be bound again; SRT ingest ends");
                                break;
                            }
                        }
                    }
                },
            };
            let peer = request.remote();
            if active.load(Ordering::Relaxed) >= self.options.max_connections {
                warn!(%peer, "too many SRT connections; refused");
                let _ = request.reject(RejectReason::Server(ServerRejectReason::Overload)).await;
                continue;
            }
            active.fetch_add(1, Ordering::Relaxed);
            let conn = Caller {
                hub: self.hub.clone(),
                auth: Arc::clone(&self.auth),
                options: self.options.clone(),
                cancel: cancel.child_token(),
            };
            let active = Arc::clone(&active);
            tokio::spawn(
                async move {
                    // A panic in a parser stays inside this connection.
                    match tokio::spawn(conn.serve(request)).await {
                        Ok(Ok(())) => debug!("SRT caller closed"),
                        Ok(Err(reason)) => warn!(%reason, "SRT publisher disconnected"),
                        Err(_) => warn!("SRT connection task failed (contained)"),
                    }
                    active.fetch_sub(1, Ordering::Relaxed);
                }
                .instrument(info_span!("srt", %peer)),
            );
        }
        // closing a listener whose task failed would re-raise its panic: kept in a task
        let mut listener = self.listener;
        let _ = tokio::spawn(async move { listener.close().await }).await;
    }
}

async fn listen(addr: SocketAddr, options: &SrtIngestOptions) -> Result<(SrtListener, SrtIncoming, SocketAddr)> {
    let socket = tokio::net::UdpSocket::bind(addr).await?;
    let addr = socket.local_addr()?;
    let (latency, idle) = (options.latency, options.peer_idle_timeout);
    let (listener, incoming) = SrtListener::builder()
        .socket(socket)
        .set(|o| {
            o.sender.buffer_size = super::push::SEND_BUFFER;
            o.receiver.latency = latency;
            o.sender.peer_latency = latency;
            o.session.peer_idle_timeout = idle;
        })
        .bind(addr)
        .await
        .map_err(|e| Error::new(ErrorKind::Config, format!("SRT listener on {addr}: {e}")))?;
    Ok((listener, incoming, addr))
}

struct Caller {
    hub: Hub,
    auth: Arc<dyn PublishAuthorizer>,
    options: SrtIngestOptions,
    cancel: CancellationToken,
}

fn server_reject(reason: ServerRejectReason) -> RejectReason {
    RejectReason::Server(reason)
}

impl Caller {
    /// Decides on the connection request, then publishes what the caller sends: the
    /// connection becomes the stream's [`Source`](crate::source::Source).
    async fn serve(self, request: ConnectionRequest) -> Result<()> {
        let (publisher, socket) = match self.admit(request).await? {
            Some(x) => x,
            None => return Ok(()),
        };
        let session = Session {
            socket,
            reader: TsReader::new(self.options.max_bytes_before_program),
            queue: VecDeque::new(),
            done: false,
            cancel: self.cancel.clone(),
        };
        let mut source = from_reader(session);
        publish_source(&mut source, &publisher).await
    }

    /// Parses the stream id, authorizes the key, takes the hub stream and accepts (with the
    /// stream's passphrase). `Ok(None)`: refused, with the reason logged.
    async fn admit(&self, request: ConnectionRequest) -> Result<Option<(Publisher, SrtSocket)>> {
        let peer = request.remote();
        let raw = request.stream_id().map(|s| s.as_str().to_string()).unwrap_or_default();
        let id = match parse_stream_id(&raw) {
            Ok(id) => id,
            Err(reason) => {
                warn!(%reason, "SRT caller refused");
                let _ = request.reject(server_reject(ServerRejectReason::BadRequest)).await;
                return Ok(None);
            }
        };
        if !id.publish {
            warn!(key = %crate::rtmp::url::mask_secret(&id.key), "SRT caller refused: playback over SRT is not offered (m=request); play HLS or RTMP");
            let _ = request.reject(server_reject(ServerRejectReason::BadMode)).await;
            return Ok(None);
        }
        let app = id.app.clone().unwrap_or_else(|| self.options.app.clone());
        if !self.auth.accepts_app(&app) {
            warn!(%app, "SRT caller refused: unknown application");
            let _ = request.reject(server_reject(ServerRejectReason::Notfound)).await;
            return Ok(None);
        }
        let publish_request = PublishRequest { peer, app, key: id.key.clone() };
        let name = match self.auth.authorize(&publish_request).await {
            Ok(name) => name,
            Err(rejection) => {
                warn!(reason = %rejection.reason, "SRT publish refused");
                let _ = request.reject(server_reject(ServerRejectReason::Forbidden)).await;
                return Ok(None);
            }
        };
        let wanted = match self.auth.srt_passphrase(&name).await {
            Some(p) => Some(p),
            None => self.options.passphrase.clone(),
        };
        // libsrt callers leave the handshake's key size at 0 ("the sender decides") even when
        // they encrypt, so whether a caller encrypts is only known from its key material,
        // which the SRT stack checks once accepted: it refuses a caller without key material
        // or with a wrong passphrase (the size echoed back keeps the stack from refusing a
        // caller whose size is implied).
        let key_settings = match (wanted, request.key_size()) {
            (None, KeySize::Unspecified) => None,
            (None, _) => {
                warn!(stream = %name, "SRT publish refused: the caller encrypts but the stream has no passphrase");
                let _ = request.reject(server_reject(ServerRejectReason::Unauthorized)).await;
                return Ok(None);
            }
            (Some(p), size) => match passphrase(&p) {
                Ok(passphrase) => Some(KeySettings { key_size: size, passphrase }),
                Err(e) => {
                    warn!(stream = %name, reason = %e, "SRT publish refused: the stream's passphrase is unusable");
                    let _ = request.reject(server_reject(ServerRejectReason::InternalServerError)).await;
                    return Ok(None);
                }
            },
        };
        // the stream starts only once the handshake succeeded (a refused caller must not
        // start it, nor its destinations)
        if self.hub.get(&name).is_some_and(|s| s.is_publishing()) {
            warn!(stream = %name, "SRT publish refused: the stream already has a publisher");
            let _ = request.reject(server_reject(ServerRejectReason::Conflict)).await;
            return Ok(None);
        }
        let encrypted = key_settings.is_some();
        let socket = match request.accept(key_settings).await {
            Ok(s) => s,
            Err(e) if encrypted => {
                // no key material, or key material the passphrase does not unwrap
                warn!(stream = %name, reason = %e, "SRT publish refused: the stream requires a passphrase and the caller's is missing or wrong");
                return Ok(None);
            }
            Err(e) => {
                warn!(stream = %name, reason = %e, "SRT handshake failed");
                return Ok(None);
            }
        };
        let publisher = match self.hub.publish(&name) {
            Ok(p) => p,
            Err(e) => {
                // another publisher came first, during the handshake
                warn!(stream = %name, reason = %e, "SRT publish refused");
                return Ok(None);
            }
        };
        info!(stream = %name, encrypted, latency_ms = socket.settings().recv_tsbpd_latency.as_millis() as u64, "SRT publisher connected");
        Ok(Some((publisher, socket)))
    }
}

/// An accepted caller: SRT messages in, hub items out.
struct Session {
    socket: SrtSocket,
    reader: TsReader,
    queue: VecDeque<MediaItem>,
    done: bool,
    cancel: CancellationToken,
}

impl ItemReader for Session {
    async fn next_item(&mut self) -> Result<Option<MediaItem>> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Ok(Some(item));
            }
            if self.done {
                return Ok(None);
            }
            let next = tokio::select! {
                _ = self.cancel.cancelled() => None,
                n = self.socket.next() => n,
            };
            match next {
                Some(Ok((_, data))) => {
                    let mut items = Vec::new();
                    self.reader.push(&data, &mut items)?;
                    self.queue.extend(items);
                }
                Some(Err(e)) => return Err(Error::new(ErrorKind::Io, format!("SRT receive: {e}"))),
                None => {
                    // the caller left: what was being assembled goes out too
                    self.done = true;
                    self.queue.extend(self.reader.finish());
                }
            }
        }
    }
}

/// The fuzz target's entry point: a first line read as a caller's stream id and as an SRT
/// destination URL, the rest as what the caller sends (SRT messages of 1316 bytes).
#[doc(hidden)]
pub fn fuzz_input(data: &[u8]) {
    let line = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (first, rest) = data.split_at(line);
    if let Ok(text) = std::str::from_utf8(first) {
        if let Ok(id) = parse_stream_id(text) {
            assert!(!id.key.is_empty() && id.key.len() <= super::MAX_STREAM_ID);
        }
        if let Ok(url) = super::SrtUrl::parse(text) {
            assert!(!url.redacted().contains("passphrase=") || url.redacted().contains("passphrase=***"));
        }
    }
    let mut reader = TsReader::new(64 * 1024);
    let mut items = Vec::new();
    for chunk in rest.get(1..).unwrap_or_default().chunks(1316) {
        if reader.push(chunk, &mut items).is_err() {
            break;
        }
    }
    items.extend(reader.finish());
    for item in &items {
        if let MediaItem::Packet(p) = item {
            assert!(p.dts.ticks() >= 0 && p.pts.ticks() >= p.dts.ticks());
        }
    }
    if let Some(first) = items.first() {
        assert!(matches!(first, MediaItem::Info(_)), "media before its description");
    }
}

/// How long media is held back waiting for the configuration of every stream the PMT
/// announced, so that the stream does not start audio-only and then gain video.
const HOLD_90K: i64 = 2 * 90_000;

/// …and at most this many frames (a stream whose timestamps do not advance would otherwise
/// be held without end).
const HOLD_FRAMES: usize = 1000;

/// The stream starts this far after its first decode time, so that the other stream's
/// first packets (TS interleaves them loosely) never fall before zero.
const START_90K: i64 = 90_000;

/// A continuous MPEG-TS → hub items: the media info once every announced stream is
/// configured (or after [`HOLD_90K`]), then packets on a timeline starting near zero.
pub(crate) struct TsReader {
    demuxer: SegmentDemuxer,
    bytes: usize,
    max_bytes_before_program: usize,
    published: Option<MediaInfo>,
    /// Frames held until the info is complete.
    held: Vec<Frame>,
    /// 90 kHz time subtracted from every timestamp.
    origin: Option<i64>,
}

impl TsReader {
    pub(crate) fn new(max_bytes_before_program: usize) -> TsReader {
        TsReader {
            demuxer: SegmentDemuxer::new(),
            bytes: 0,
            max_bytes_before_program,
            published: None,
            held: Vec::new(),
            origin: None,
        }
    }

    /// Feeds received bytes (whole 188-byte packets, as SRT carries them).
    pub(crate) fn push(&mut self, data: &[u8], out: &mut Vec<MediaItem>) -> Result<()> {
        self.bytes = self.bytes.saturating_add(data.len());
        let frames = self.demuxer.push_ts(data)?;
        if self.published.is_none() && self.bytes > self.max_bytes_before_program {
            let (v, a) = self.demuxer.ts_streams();
            if !v && !a {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("no MPEG-TS program with H.264 or AAC in the first {} bytes", self.bytes),
                ));
            }
        }
        self.take(frames, false, out);
        Ok(())
    }

    /// The frames still being assembled (the caller left).
    pub(crate) fn finish(&mut self) -> Vec<MediaItem> {
        let frames = self.demuxer.finish_ts();
        let mut out = Vec::new();
        self.take(frames, true, &mut out);
        out
    }

    fn take(&mut self, frames: Vec<Frame>, end: bool, out: &mut Vec<MediaItem>) {
        if self.published.is_none() {
            self.held.extend(frames);
            let info = self.demuxer.info();
            let (want_video, want_audio) = self.demuxer.ts_streams();
            let complete = (info.video().is_some() || !want_video) && (info.audio().is_some() || !want_audio);
            let span = match (self.held.iter().map(|f| f.dts).min(), self.held.iter().map(|f| f.dts).max()) {
                (Some(a), Some(b)) => b - a,
                _ => 0,
            };
            let held_enough = span >= HOLD_90K || self.held.len() >= HOLD_FRAMES;
            if self.held.len() > HOLD_FRAMES * 2 {
                // nothing configured after all that: no usable media, drop what was held
                self.held.clear();
            }
            if info.tracks.is_empty() || !(complete || held_enough || end) {
                return;
            }
            let tracks = info.tracks.iter().map(|t| t.codec.name()).collect::<Vec<_>>().join(", ");
            info!(%tracks, "SRT stream readable");
            out.push(MediaItem::Info(Arc::new(info.clone())));
            self.published = Some(info);
            let mut held = std::mem::take(&mut self.held);
            held.sort_by_key(|f| f.dts);
            self.origin = held.first().map(|f| f.dts - START_90K);
            for f in held {
                self.packet(f, out);
            }
            return;
        }
        let info = self.demuxer.info();
        if self.published.as_ref() != Some(&info) {
            out.push(MediaItem::Info(Arc::new(info.clone())));
            self.published = Some(info);
        }
        for f in frames {
            self.packet(f, out);
        }
    }

    fn packet(&self, f: Frame, out: &mut Vec<MediaItem>) {
        let origin = self.origin.unwrap_or(0);
        // a stream whose first packets came before the origin starts at zero
        let dts = (f.dts - origin).max(0);
        let pts = (f.pts - origin).max(dts);
        let tb = Timebase::HZ_90K;
        out.push(MediaItem::Packet(Packet {
            track: if f.kind == TrackKind::Video { VIDEO_TRACK } else { AUDIO_TRACK },
            kind: f.kind,
            dts: Timestamp::new(dts, tb),
            pts: Timestamp::new(pts, tb),
            keyframe: f.keyframe,
            payload: f.payload,
        }));
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::aac::AudioSpecificConfig;
    use crate::hls::ts::{TsMuxer, TsVideo};

    #[test]
    fn a_continuous_transport_stream_becomes_info_then_packets_from_near_zero() {
        let cfg = crate::codec::avc::testing::config_240p();
        let asc = AudioSpecificConfig::parse(Bytes::from_static(&[0x11, 0x90])).expect("asc");
        let mut mux = TsMuxer::new(Some(TsVideo::H264(cfg)), Some(asc));
        let mut ts = Vec::new();
        mux.write_tables(&mut ts);
        let base = 10 * 90_000;
        for i in 0..10i64 {
            let t = base + i * 3000;
            let nal: &[u8] = if i == 0 { &[0, 0, 0, 2, 0x65, 0x88] } else { &[0, 0, 0, 2, 0x41, 0x9A] };
            mux.write_video(&mut ts, t, t, i == 0, nal).expect("video");
            mux.write_audio(&mut ts, t, &[1, 2, 3]).expect("audio");
        }
        let mut reader = TsReader::new(1 << 20);
        let mut items = Vec::new();
        // SRT carries 7 transport packets per message
        for chunk in ts.chunks(7 * 188) {
            reader.push(chunk, &mut items).expect("push");
        }
        items.extend(reader.finish());
        let MediaItem::Info(info) = &items[0] else { panic!("info first: {items:?}") };
        assert!(info.video().is_some() && info.audio().is_some(), "both tracks in the first info");
        let packets: Vec<&Packet> =
            items.iter().filter_map(|i| if let MediaItem::Packet(p) = i { Some(p) } else { None }).collect();
        assert_eq!(packets.iter().filter(|p| p.kind == TrackKind::Video).count(), 10);
        assert_eq!(packets.iter().filter(|p| p.kind == TrackKind::Audio).count(), 10);
        let first = packets.iter().map(|p| p.dts.as_millis()).min().expect("packets");
        assert_eq!(first, 1000, "the timeline starts one second in");
        assert!(packets.iter().any(|p| p.keyframe && p.kind == TrackKind::Video));
        assert_eq!(items.iter().filter(|i| matches!(i, MediaItem::Info(_))).count(), 1);
    }

    #[test]
    fn media_held_for_a_missing_stream_is_bounded() {
        // the PMT announces video, which never comes; the audio's time does not advance
        let asc = AudioSpecificConfig::parse(Bytes::from_static(&[0x11, 0x90])).expect("asc");
        let cfg = crate::codec::avc::testing::config_240p();
        let mut mux = TsMuxer::new(Some(TsVideo::H264(cfg)), Some(asc));
        let mut ts = Vec::new();
        mux.write_tables(&mut ts);
        for _ in 0..(HOLD_FRAMES + 10) {
            mux.write_audio(&mut ts, 90_000, &[1, 2, 3]).expect("audio");
        }
        let mut reader = TsReader::new(1 << 20);
        let mut items = Vec::new();
        for chunk in ts.chunks(7 * 188) {
            reader.push(chunk, &mut items).expect("push");
        }
        assert!(reader.held.len() <= HOLD_FRAMES * 2);
        assert!(matches!(items.first(), Some(MediaItem::Info(_))), "published once enough was held");
    }

    #[test]
    fn bytes_that_are_not_a_transport_stream_are_refused() {
        let mut reader = TsReader::new(1 << 20);
        let mut items = Vec::new();
        assert!(reader.push(b"\x16\x03\x01 not a transport stream", &mut items).is_err());
        // sync bytes but never a PAT/PMT
        let mut reader = TsReader::new(4 * 188);
        let mut junk = vec![0u8; 188 * 8];
        for p in junk.chunks_mut(188) {
            p[0] = 0x47;
            p[1] = 0x1F;
            p[2] = 0xFF;
            p[3] = 0x10;
        }
        assert!(reader.push(&junk, &mut items).is_err());
        assert!(items.is_empty());
    }
}
