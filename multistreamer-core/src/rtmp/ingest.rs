//! RTMP ingest: accepts publishers (OBS, ffmpeg, hardware encoders) and feeds the hub.
//!
//! One task per connection. Bytes are parsed once, by the [`ChunkReader`]: audio and video
//! of the accepted publish go from there to the hub as they are; the few other messages
//! (commands, metadata, control) go on to `rml_rtmp`'s `ServerSession` (panic-guarded). A publish is accepted only if the
//! [`PublishAuthorizer`] accepts the app and key and the hub has no other publisher for
//! that stream; anything else is refused with an RTMP error status and a logged reason.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_core::Stream;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::RtmpError;
use super::chunk_reader::{ChunkLimits, ChunkReader, Message, TYPE_ABORT, TYPE_SET_CHUNK_SIZE};
use super::enhanced::add_fourcc_list;
use super::guard::guarded;
use super::time::RtmpTimeUnwrapper;
use super::url::mask_secret;
use crate::error::{Error, ErrorKind, Result};
use crate::flv::{self, AudioTag, VideoFourCc, VideoTag};
use crate::hub::{Hub, Publisher};
use crate::media::{
    Codec, MediaInfo, MediaItem, Packet, StreamMetadata, Timebase, Timestamp, Track, TrackId, TrackKind,
};
use crate::sink::BoxFuture;
use crate::source::publish_source;
use crate::sync::CancelWatch;

/// The track ids RTMP publishers get.
pub const VIDEO_TRACK: TrackId = TrackId(0);
pub const AUDIO_TRACK: TrackId = TrackId(1);

/// A publish attempt to authorize.
#[derive(Clone, Debug)]
pub struct PublishRequest {
    pub peer: SocketAddr,
    pub app: String,
    pub key: String,
}

/// Why a publish was refused; `reason` is logged, `description` goes to the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
}

impl Rejection {
    pub fn new(reason: impl Into<String>) -> Rejection {
        Rejection { reason: reason.into() }
    }
}

/// Decides which publishes are accepted and under which hub stream name.
pub trait PublishAuthorizer: Send + Sync {
    /// Whether `connect` to this application is allowed.
    fn accepts_app(&self, app: &str) -> bool;

    /// Accepts a publish, returning the hub stream name, or refuses it.
    fn authorize<'a>(&'a self, request: &'a PublishRequest) -> BoxFuture<'a, Result<String, Rejection>>;

    /// The passphrase an SRT publisher of hub stream `stream` (as `authorize` named it)
    /// must encrypt with; `None` leaves it to the ingest's own setting.
    fn srt_passphrase<'a>(&'a self, _stream: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { None })
    }
}

/// A fixed application and an optional set of keys (the CLI's authorizer).
#[derive(Clone, Debug)]
pub struct StaticKeys {
    pub app: String,
    /// `None` accepts any key (an open ingest).
    pub keys: Option<HashSet<String>>,
}

impl PublishAuthorizer for StaticKeys {
    fn accepts_app(&self, app: &str) -> bool {
        app == self.app
    }

    fn authorize<'a>(&'a self, request: &'a PublishRequest) -> BoxFuture<'a, Result<String, Rejection>> {
        Box::pin(async move {
            if request.key.is_empty() {
                return Err(Rejection::new("empty stream key"));
            }
            if request.key.contains('@') {
                // `KEY@RUNG` names the renditions a ladder publishes.
                return Err(Rejection::new("stream keys may not contain '@'"));
            }
            match &self.keys {
                Some(keys) if !keys.contains(&request.key) => Err(Rejection::new("unknown stream key")),
                _ => Ok(request.key.clone()),
            }
        })
    }
}

/// Ingest settings.
#[derive(Clone, Debug)]
pub struct RtmpIngestOptions {
    /// Limit for the RTMP handshake.
    pub handshake_timeout: Duration,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Connections beyond this many are refused at accept.
    pub max_connections: usize,
    /// Connections from one address that have not started publishing yet (handshake,
    /// connect, publish) beyond this many are refused at accept: a host that opens
    /// connections and never finishes them cannot use up `max_connections` and lock real
    /// publishers out.
    pub max_pending_per_address: usize,
    pub chunk_limits: ChunkLimits,
}

impl Default for RtmpIngestOptions {
    fn default() -> RtmpIngestOptions {
        RtmpIngestOptions {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_pending_per_address: 32,
            chunk_limits: ChunkLimits::default(),
        }
    }
}

/// A bound RTMP listener.
pub struct RtmpIngest {
    listener: TcpListener,
    hub: Hub,
    auth: Arc<dyn PublishAuthorizer>,
    options: RtmpIngestOptions,
}

impl std::fmt::Debug for RtmpIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmpIngest").field("addr", &self.listener.local_addr().ok()).finish_non_exhaustive()
    }
}

impl RtmpIngest {
    pub async fn bind(
        addr: SocketAddr,
        hub: Hub,
        auth: Arc<dyn PublishAuthorizer>,
        options: RtmpIngestOptions,
    ) -> Result<RtmpIngest> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::from(e).context(format!("cannot listen for RTMP on {addr}")))?;
        Ok(RtmpIngest { listener, hub, auth, options })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Accepts connections until `cancel` fires, then closes all of them and returns.
    pub async fn run(self, cancel: CancellationToken) {
        let mut conns = JoinSet::new();
        let pending: PendingMap = Arc::default();
        let mut refusals = Refusals::default();
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => break,
                r = self.listener.accept() => r,
                Some(res) = conns.join_next(), if !conns.is_empty() => {
                    if let Err(e) = res
                        && e.is_panic()
                    {
                        warn!("an RTMP connection task panicked; only that connection was affected");
                    }
                    continue;
                }
            };
            let (socket, peer) = match accepted {
                Ok(v) => v,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if conns.len() >= self.options.max_connections {
                refusals.note(peer, "connection limit reached");
                continue;
            }
            let Some(pending_slot) = PendingSlot::take(&pending, peer.ip(), self.options.max_pending_per_address)
            else {
                refusals.note(peer, "too many unfinished connections from this address");
                continue;
            };
            let _ = socket.set_nodelay(true);
            let conn = Connection {
                peer,
                hub: self.hub.clone(),
                auth: self.auth.clone(),
                options: self.options.clone(),
                cancel: cancel.child_token(),
                pending: Some(pending_slot),
            };
            conns.spawn(
                async move {
                    match conn.run(socket).await {
                        Ok(()) => debug!("connection closed"),
                        Err(e) if e.kind() == ErrorKind::Disconnected => info!(reason = %e, "publisher disconnected"),
                        Err(e) => warn!(reason = %e, "RTMP connection dropped"),
                    }
                }
                .instrument(info_span!("rtmp", %peer)),
            );
        }
        conns.shutdown().await;
    }
}

/// What the inbound side of a connection produced, in order.
#[derive(Debug)]
pub enum Inbound {
    /// An answer or event of the session (commands, metadata, control).
    Session(ServerSessionResult),
    /// Audio or video of the accepted publish, straight from the chunk reader.
    Media { video: bool, timestamp: u32, data: Bytes },
}

const TYPE_WINDOW_ACK_SIZE: u8 = 5;
const TYPE_AUDIO: u8 = 8;
const TYPE_VIDEO: u8 = 9;
/// The chunk stream our acknowledgements go out on (`rml_rtmp`'s serializer uses 2–6 and
/// compresses headers against its own previous ones, so it gets no stream of ours).
const CSID_ACK: u8 = 10;

/// The sans-IO inbound side of one ingest connection after the handshake: the
/// [`ChunkReader`] parses every byte once; audio and video of the accepted publish come
/// out as they are, the other messages are re-framed (one type-0 chunk each) for
/// `rml_rtmp`'s `ServerSession`, every call into which is panic-guarded. Acknowledgements
/// of the peer's window are sent from here, since the session sees only part of the bytes.
pub struct ServerProtocol {
    session: ServerSession,
    reader: ChunkReader,
    /// One message re-framed for the session.
    reframed: Vec<u8>,
    /// Publish requests the session raised: request id and message stream.
    publish_requests: Vec<(u32, u32)>,
    /// The message stream of the accepted publish: its audio and video pass.
    media_stream: Option<u32>,
    /// The peer's acknowledgement window (0: none) and the bytes acknowledged so far (of
    /// the reader's `bytes_seen`).
    ack_window: u32,
    acked: u64,
}

impl std::fmt::Debug for ServerProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProtocol")
            .field("reader", &self.reader)
            .field("media_stream", &self.media_stream)
            .finish_non_exhaustive()
    }
}

impl ServerProtocol {
    /// A new session and the messages it sends first (chunk size, window, bandwidth).
    pub fn new(limits: ChunkLimits) -> Result<(ServerProtocol, Vec<ServerSessionResult>), RtmpError> {
        let mut config = ServerSessionConfig::new();
        config.chunk_size = SERVER_CHUNK_SIZE;
        let (mut session, initial) = guarded("session", || ServerSession::new(config))?;
        // Each message the session gets is one chunk, whatever its length.
        let mut reframed = Vec::with_capacity(256);
        let set_chunk_size = Message {
            type_id: TYPE_SET_CHUNK_SIZE,
            stream_id: 0,
            timestamp: 0,
            payload: Bytes::from_static(&[0x7F, 0xFF, 0xFF, 0xFF]),
        };
        reframe(&set_chunk_size, &mut reframed);
        guarded("session", || session.handle_input(&reframed))?;
        let protocol = ServerProtocol {
            session,
            reader: ChunkReader::new(limits),
            reframed,
            publish_requests: Vec::new(),
            media_stream: None,
            ack_window: 0,
            acked: 0,
        };
        Ok((protocol, initial))
    }

    /// Parses bytes from the peer and appends what they produced to `out`.
    pub fn handle_input(&mut self, bytes: &[u8], out: &mut VecDeque<Inbound>) -> Result<(), RtmpError> {
        let ServerProtocol { session, reader, reframed, publish_requests, media_stream, ack_window, .. } = self;
        reader.feed(bytes, |m: Message| -> Result<(), RtmpError> {
            match m.type_id {
                TYPE_AUDIO | TYPE_VIDEO => {
                    // as rml_rtmp does, media outside the accepted publish is ignored
                    if *media_stream == Some(m.stream_id) {
                        out.push_back(Inbound::Media {
                            video: m.type_id == TYPE_VIDEO,
                            timestamp: m.timestamp,
                            data: m.payload,
                        });
                    }
                }
                // applied by the reader; the session's own reader takes one chunk per message
                TYPE_SET_CHUNK_SIZE | TYPE_ABORT => {}
                TYPE_WINDOW_ACK_SIZE => {
                    if let Some(b) = m.payload.get(..4) {
                        *ack_window = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                    }
                }
                _ => {
                    reframe(&m, reframed);
                    let results = guarded("input", || session.handle_input(reframed))?;
                    for r in results {
                        match &r {
                            ServerSessionResult::RaisedEvent(ServerSessionEvent::PublishStreamRequested {
                                request_id,
                                ..
                            }) => publish_requests.push((*request_id, m.stream_id)),
                            ServerSessionResult::RaisedEvent(ServerSessionEvent::PublishStreamFinished { .. }) => {
                                *media_stream = None
                            }
                            _ => {}
                        }
                        out.push_back(Inbound::Session(r));
                    }
                }
            }
            Ok(())
        })?;
        let received = self.reader.bytes_seen();
        if self.ack_window > 0 && received - self.acked >= u64::from(self.ack_window) {
            self.acked = received;
            out.push_back(Inbound::Session(ServerSessionResult::OutboundResponse(rml_rtmp::chunk_io::Packet {
                bytes: acknowledgement(received as u32),
                can_be_dropped: false,
            })));
        }
        Ok(())
    }

    pub fn accept(&mut self, request_id: u32) -> Result<Vec<ServerSessionResult>, RtmpError> {
        if let Some(i) = self.publish_requests.iter().position(|&(id, _)| id == request_id) {
            self.media_stream = Some(self.publish_requests.swap_remove(i).1);
        }
        let session = &mut self.session;
        guarded("accept", || session.accept_request(request_id))
    }

    pub fn reject(
        &mut self,
        request_id: u32,
        code: &str,
        description: &str,
    ) -> Result<Vec<ServerSessionResult>, RtmpError> {
        self.publish_requests.retain(|&(id, _)| id != request_id);
        let session = &mut self.session;
        guarded("reject", || session.reject_request(request_id, code, description))
    }
}

/// The chunk size the session writes with (announced in its first messages).
const SERVER_CHUNK_SIZE: u32 = 4096;

/// The connect `_result` with our `fourCcList`: an Enhanced RTMP client (another
/// Multistreamer, a v2 encoder) learns that HEVC and AV1 may be sent here.
fn announce_enhanced(r: ServerSessionResult) -> ServerSessionResult {
    match r {
        ServerSessionResult::OutboundResponse(p) => {
            match add_fourcc_list(&p.bytes, "_result", 2, SERVER_CHUNK_SIZE as usize) {
                Some(bytes) => ServerSessionResult::OutboundResponse(rml_rtmp::chunk_io::Packet { bytes, ..p }),
                None => ServerSessionResult::OutboundResponse(p),
            }
        }
        other => other,
    }
}

/// `m` as one type-0 chunk on chunk stream 3 (the session reads chunks of any size).
fn reframe(m: &Message, out: &mut Vec<u8>) {
    out.clear();
    let extended = m.timestamp >= 0xFF_FFFF;
    out.push(3);
    out.extend_from_slice(&m.timestamp.min(0xFF_FFFF).to_be_bytes()[1..]);
    out.extend_from_slice(&(m.payload.len() as u32).to_be_bytes()[1..]);
    out.push(m.type_id);
    out.extend_from_slice(&m.stream_id.to_le_bytes());
    if extended {
        out.extend_from_slice(&m.timestamp.to_be_bytes());
    }
    out.extend_from_slice(&m.payload);
}

/// An Acknowledgement message (type 3) with the bytes received so far (mod 2³²).
fn acknowledgement(sequence: u32) -> Vec<u8> {
    let mut v = vec![CSID_ACK, 0, 0, 0, 0, 0, 4, 3, 0, 0, 0, 0];
    v.extend_from_slice(&sequence.to_be_bytes());
    v
}

struct Connection {
    peer: SocketAddr,
    hub: Hub,
    auth: Arc<dyn PublishAuthorizer>,
    options: RtmpIngestOptions,
    cancel: CancellationToken,
    /// Held until the connection publishes (or ends).
    pending: Option<PendingSlot>,
}

/// Connections not publishing yet, by address.
type PendingMap = Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>;

/// One connection's place among its address's unfinished connections; freed on drop.
struct PendingSlot {
    map: PendingMap,
    ip: IpAddr,
}

impl PendingSlot {
    fn take(map: &PendingMap, ip: IpAddr, limit: usize) -> Option<PendingSlot> {
        let mut m = crate::sync::lock(map);
        let n = m.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(PendingSlot { map: Arc::clone(map), ip })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut m = crate::sync::lock(&self.map);
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Refused connections, logged at most once a second (a flood must not flood the log).
#[derive(Default)]
struct Refusals {
    last: Option<Instant>,
    since: u64,
}

impl Refusals {
    fn note(&mut self, peer: SocketAddr, why: &str) {
        self.since += 1;
        if self.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            warn!(%peer, refused = self.since, "refusing RTMP connections: {why}");
            self.last = Some(Instant::now());
            self.since = 0;
        }
    }
}

/// An ingest connection after the handshake: the socket and the protocol state. Until a
/// publish is accepted, [`Connection::run`] drives it; then it is the publisher's
/// [`crate::Source`] (a poll-driven `Stream`, no allocation per item) and goes through
/// [`publish_source`] like any input.
struct Session {
    socket: TcpStream,
    protocol: ServerProtocol,
    buf: Vec<u8>,
    /// What the inbound side produced and is still to handle, in order.
    pending: VecDeque<Inbound>,
    /// Bytes for the peer, written before the next read; `written` of them went out.
    out: Vec<u8>,
    written: usize,
    idle_timeout: Duration,
    /// One timer for the connection, pushed back after each read.
    idle: Pin<Box<tokio::time::Sleep>>,
    /// The connection's cancellation, watched without a lock per read.
    cancelled: CancelWatch,
    /// Set once a publish was accepted.
    media: Option<FlvMedia>,
    /// Items mapped from the publisher's messages, not yet taken.
    items: VecDeque<MediaItem>,
    /// The publisher unpublished (`deleteStream`/`FCUnpublish`).
    finished: bool,
    /// The stream ended (or failed): nothing more is read.
    done: bool,
}

/// How one read went.
enum Read {
    Data,
    /// The peer closed the connection.
    Closed,
    Cancelled,
}

impl Session {
    /// Writes what is queued for the peer.
    async fn flush(&mut self) -> Result<()> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        while self.written < self.out.len() {
            match Pin::new(&mut self.socket).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(RtmpError::Closed("writing to the publisher").into())),
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Lets the peer see a refusal before the connection closes (best effort, 1 s).
    async fn flush_before_close(&mut self) {
        let flush = async {
            self.flush().await?;
            self.socket.shutdown().await.map_err(Error::from)
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), flush).await;
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<Read>> {
        if self.cancelled.poll_fired(cx).is_ready() {
            return Poll::Ready(Ok(Read::Cancelled));
        }
        let mut buf = ReadBuf::new(&mut self.buf);
        match Pin::new(&mut self.socket).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                if n == 0 {
                    return Poll::Ready(Ok(Read::Closed));
                }
                let deadline = tokio::time::Instant::now() + self.idle_timeout;
                self.idle.as_mut().reset(deadline);
                if let Err(e) = self.protocol.handle_input(&self.buf[..n], &mut self.pending) {
                    return Poll::Ready(Err(e.into()));
                }
                Poll::Ready(Ok(Read::Data))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(RtmpError::Timeout("waiting for data from the publisher").into())),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    /// Reads once from the peer and hands the bytes to the session.
    async fn read(&mut self) -> Result<Read> {
        std::future::poll_fn(|cx| self.poll_read(cx)).await
    }

    /// Handles an event once the publish was accepted.
    fn on_media_event(&mut self, ev: ServerSessionEvent) -> Result<()> {
        let Some(media) = self.media.as_mut() else { return Ok(()) };
        match ev {
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                media.info.metadata = StreamMetadata {
                    frame_rate: metadata.video_frame_rate.map(f64::from),
                    video_bitrate_kbps: metadata.video_bitrate_kbps,
                    audio_bitrate_kbps: metadata.audio_bitrate_kbps,
                    encoder: metadata.encoder,
                };
                if !media.info.tracks.is_empty() {
                    self.items.push_back(MediaItem::Info(Arc::new(media.info.clone())));
                }
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                info!(stream = %media.stream, "publisher finished");
                self.finished = true;
            }
            ServerSessionEvent::PublishStreamRequested { .. } | ServerSessionEvent::ConnectionRequested { .. } => {
                return Err(Error::new(ErrorKind::Protocol, "second publish on one connection"));
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => return Err(self.refuse_play(request_id)),
            ServerSessionEvent::UnhandleableAmf0Command { command_name, .. } => {
                debug!(command = %command_name, "ignored command");
            }
            other => debug!(?other, "session event"),
        }
        Ok(())
    }

    fn refuse_play(&mut self, request_id: u32) -> Error {
        warn!("play request refused: this endpoint only accepts publishers");
        let rejected = self.protocol.reject(request_id, "NetStream.Play.Failed", "playback is not offered here");
        append_outbound(rejected.unwrap_or_default(), &mut self.out);
        Error::new(ErrorKind::Rejected, "playback requested")
    }

    /// Handles every pending result of the session (answers queued, media mapped).
    fn handle_pending(&mut self) -> Result<()> {
        while let Some(r) = self.pending.pop_front() {
            match r {
                Inbound::Media { video, timestamp, data } => {
                    if let Some(media) = self.media.as_mut() {
                        if video {
                            media.on_video(&data, timestamp, &mut self.items)?
                        } else {
                            media.on_audio(&data, timestamp, &mut self.items)?
                        }
                    }
                }
                Inbound::Session(ServerSessionResult::OutboundResponse(p)) => self.out.extend_from_slice(&p.bytes),
                Inbound::Session(ServerSessionResult::RaisedEvent(ev)) => self.on_media_event(ev)?,
                Inbound::Session(ServerSessionResult::UnhandleableMessageReceived(m)) => {
                    debug!(type_id = m.type_id, "ignored message")
                }
            }
        }
        Ok(())
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<MediaItem>>> {
        loop {
            if let Some(item) = self.items.pop_front() {
                return Poll::Ready(Ok(Some(item)));
            }
            self.handle_pending()?;
            if !self.items.is_empty() {
                continue;
            }
            // answers (acknowledgements) go out before the next read
            if self.poll_flush(cx)?.is_pending() {
                return Poll::Pending;
            }
            if self.finished {
                return Poll::Ready(Ok(None));
            }
            match self.poll_read(cx)? {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Read::Data) => {}
                Poll::Ready(Read::Cancelled) => return Poll::Ready(Ok(None)),
                Poll::Ready(Read::Closed) => return Poll::Ready(Err(RtmpError::Closed("publishing").into())),
            }
        }
    }
}

impl Stream for Session {
    type Item = Result<MediaItem>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match this.poll_item(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(item))) => Poll::Ready(Some(Ok(item))),
            Poll::Ready(Ok(None)) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => {
                this.done = true;
                // A refusal queued for the peer goes out if the socket takes it now.
                if this.written < this.out.len() {
                    let _ = this.socket.try_write(&this.out[this.written..]);
                }
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

impl Connection {
    async fn run(mut self, mut socket: TcpStream) -> Result<()> {
        // A video frame of a 6 Mb/s stream (~25 KB) in one read.
        let mut buf = vec![0u8; 64 * 1024];
        // Handshake
        let mut hs = Handshake::new(PeerType::Server);
        let handshake = async {
            loop {
                let n = socket.read(&mut buf).await?;
                if n == 0 {
                    return Err(Error::from(RtmpError::Closed("handshake")));
                }
                let step = guarded("handshake", || hs.process_bytes(&buf[..n])).map_err(|e| match e {
                    RtmpError::Session(m) => RtmpError::Handshake(m),
                    other => other,
                })?;
                match step {
                    HandshakeProcessResult::InProgress { response_bytes } => socket.write_all(&response_bytes).await?,
                    HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                        socket.write_all(&response_bytes).await?;
                        return Ok(remaining_bytes);
                    }
                }
            }
        };
        let remaining = tokio::select! {
            _ = self.cancel.cancelled() => return Ok(()),
            r = tokio::time::timeout(self.options.handshake_timeout, handshake) => match r {
                Ok(r) => r?,
                Err(_) => return Err(RtmpError::Timeout("handshake").into()),
            },
        };

        let (protocol, initial) = ServerProtocol::new(self.options.chunk_limits)?;
        let mut session = Session {
            socket,
            protocol,
            buf,
            pending: initial.into_iter().map(Inbound::Session).collect(),
            out: Vec::new(),
            written: 0,
            idle_timeout: self.options.idle_timeout,
            idle: Box::pin(tokio::time::sleep(self.options.idle_timeout)),
            cancelled: CancelWatch::new(self.cancel.clone()),
            media: None,
            items: VecDeque::new(),
            finished: false,
            done: false,
        };
        if !remaining.is_empty() {
            session.protocol.handle_input(&remaining, &mut session.pending)?;
        }
        // connect and publish
        let publisher = 'negotiate: loop {
            while let Some(r) = session.pending.pop_front() {
                let Inbound::Session(r) = r else {
                    continue; // no media passes before the publish is accepted
                };
                match r {
                    ServerSessionResult::OutboundResponse(p) => session.out.extend_from_slice(&p.bytes),
                    ServerSessionResult::RaisedEvent(ev) => match self.on_event(ev, &mut session).await {
                        Ok(Some(publisher)) => break 'negotiate publisher,
                        Ok(None) => {}
                        Err(e) => {
                            session.flush_before_close().await;
                            return Err(e);
                        }
                    },
                    ServerSessionResult::UnhandleableMessageReceived(m) => {
                        debug!(type_id = m.type_id, "ignored message")
                    }
                }
            }
            session.flush().await?;
            match session.read().await? {
                Read::Data => {}
                Read::Closed | Read::Cancelled => return Ok(()),
            }
        };
        // From here on the connection is the publisher's source.
        drop(self.pending.take());
        publish_source(&mut session, &publisher).await
    }

    /// Handles an event before a publish was accepted; returns the publisher once one is.
    async fn on_event(&self, ev: ServerSessionEvent, session: &mut Session) -> Result<Option<Publisher>> {
        match ev {
            ServerSessionEvent::ConnectionRequested { request_id, app_name } => {
                if !self.auth.accepts_app(&app_name) {
                    warn!(app = %app_name, "connect refused: unknown application");
                    let rejected =
                        session.protocol.reject(request_id, "NetConnection.Connect.Rejected", "unknown application");
                    append_outbound(rejected.unwrap_or_default(), &mut session.out);
                    return Err(Error::new(
                        ErrorKind::Rejected,
                        format!("connect to unknown application {app_name:?}"),
                    ));
                }
                debug!(app = %app_name, "connect accepted");
                let accepted = session.protocol.accept(request_id)?;
                session.pending.extend(accepted.into_iter().map(|r| Inbound::Session(announce_enhanced(r))));
                Ok(None)
            }
            ServerSessionEvent::PublishStreamRequested { request_id, app_name, stream_key, .. } => {
                let req = PublishRequest { peer: self.peer, app: app_name, key: stream_key };
                let name = match self.auth.authorize(&req).await {
                    Ok(name) => name,
                    Err(rej) => {
                        warn!(app = %req.app, key = %mask_secret(&req.key), reason = %rej.reason, "publish refused");
                        return Err(refuse(&mut session.protocol, request_id, &rej.reason, &mut session.out));
                    }
                };
                let publisher = match self.hub.publish(&name) {
                    Ok(p) => p,
                    Err(e) => {
                        warn!(stream = %name, reason = %e, "publish refused");
                        return Err(refuse(&mut session.protocol, request_id, &e.to_string(), &mut session.out));
                    }
                };
                info!(stream = %name, app = %req.app, "publishing");
                session.media = Some(FlvMedia::new(name));
                session.pending.extend(session.protocol.accept(request_id)?.into_iter().map(Inbound::Session));
                Ok(Some(publisher))
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => Err(session.refuse_play(request_id)),
            ServerSessionEvent::UnhandleableAmf0Command { command_name, .. } => {
                // releaseStream, FCPublish, FCUnpublish, _checkbw: nothing to answer.
                debug!(command = %command_name, "ignored command");
                Ok(None)
            }
            other => {
                debug!(?other, "session event");
                Ok(None)
            }
        }
    }
}

fn append_outbound(results: Vec<ServerSessionResult>, out: &mut Vec<u8>) {
    for r in results {
        if let ServerSessionResult::OutboundResponse(p) = r {
            out.extend_from_slice(&p.bytes);
        }
    }
}

/// Queues an RTMP error status for the request and returns the error that closes the
/// connection.
fn refuse(session: &mut ServerProtocol, request_id: u32, reason: &str, out: &mut Vec<u8>) -> Error {
    match session.reject(request_id, "NetStream.Publish.BadName", reason) {
        Ok(results) => append_outbound(results, out),
        Err(e) => return e.into(),
    }
    Error::new(ErrorKind::Rejected, format!("publish refused: {reason}"))
}

/// Maps a publisher's FLV messages to media items (sans-IO): tracks from the sequence
/// headers, timestamps unwrapped per track.
struct FlvMedia {
    stream: String,
    info: MediaInfo,
    video_time: RtmpTimeUnwrapper,
    audio_time: RtmpTimeUnwrapper,
    waiting_for_video_config: u64,
}

impl FlvMedia {
    fn new(stream: String) -> FlvMedia {
        FlvMedia {
            stream,
            info: MediaInfo::default(),
            video_time: RtmpTimeUnwrapper::new(),
            audio_time: RtmpTimeUnwrapper::new(),
            waiting_for_video_config: 0,
        }
    }

    fn on_video(&mut self, data: &Bytes, wire_ts: u32, out: &mut VecDeque<MediaItem>) -> Result<()> {
        let dts = Timestamp::from_millis(self.video_time.unwrap(wire_ts));
        match flv::parse_video(data)? {
            VideoTag::AvcSequenceHeader(cfg) => self.set_track(VIDEO_TRACK, Codec::H264(cfg), out),
            VideoTag::ExSequenceHeader(codec) => self.set_track(VIDEO_TRACK, codec, out),
            VideoTag::AvcNalus { keyframe, cts_ms, payload } => {
                self.on_frames(VideoFourCc::Avc, keyframe, dts.add_ticks(i64::from(cts_ms)), dts, payload, out)
            }
            VideoTag::ExFrames { fourcc, keyframe, cts_ms, payload } => {
                self.on_frames(fourcc, keyframe, dts.add_ticks(i64::from(cts_ms)), dts, payload, out)
            }
            VideoTag::Opaque { codec, keyframe, sequence_header, body } => {
                let current = self.info.track(VIDEO_TRACK).map(|t| t.codec.clone());
                let needs_track = !matches!(&current, Some(Codec::FlvVideo { codec: c, .. }) if *c == codec);
                if sequence_header || needs_track {
                    let sh = if sequence_header {
                        Some(body.clone())
                    } else {
                        match current {
                            Some(Codec::FlvVideo { codec: c, sequence_header }) if c == codec => sequence_header,
                            _ => None,
                        }
                    };
                    self.set_track(VIDEO_TRACK, Codec::FlvVideo { codec, sequence_header: sh }, out);
                }
                if !sequence_header {
                    out.push_back(MediaItem::Packet(Packet {
                        track: VIDEO_TRACK,
                        kind: TrackKind::Video,
                        dts,
                        pts: dts,
                        keyframe,
                        payload: body,
                    }));
                }
            }
            VideoTag::AvcEndOfSequence | VideoTag::Ignored => {}
        }
        Ok(())
    }

    /// Coded video of a parsed codec: relayed once the track's configuration has arrived.
    fn on_frames(
        &mut self,
        fourcc: VideoFourCc,
        keyframe: bool,
        pts: Timestamp,
        dts: Timestamp,
        payload: Bytes,
        out: &mut VecDeque<MediaItem>,
    ) {
        if !self.info.track(VIDEO_TRACK).is_some_and(|t| fourcc.matches(&t.codec)) {
            self.waiting_for_video_config += 1;
            if self.waiting_for_video_config == 1 {
                warn!(codec = %fourcc, "video before its sequence header; dropping until it arrives");
            }
            return;
        }
        out.push_back(MediaItem::Packet(Packet {
            track: VIDEO_TRACK,
            kind: TrackKind::Video,
            dts,
            pts,
            keyframe,
            payload,
        }));
    }

    fn on_audio(&mut self, data: &Bytes, wire_ts: u32, out: &mut VecDeque<MediaItem>) -> Result<()> {
        let dts = Timestamp::from_millis(self.audio_time.unwrap(wire_ts));
        let audio = |payload| {
            MediaItem::Packet(Packet {
                track: AUDIO_TRACK,
                kind: TrackKind::Audio,
                dts,
                pts: dts,
                keyframe: true,
                payload,
            })
        };
        match flv::parse_audio(data)? {
            AudioTag::AacSequenceHeader(asc) => self.set_track(AUDIO_TRACK, Codec::Aac(asc), out),
            AudioTag::AacRaw(payload) => {
                if matches!(self.info.track(AUDIO_TRACK).map(|t| &t.codec), Some(Codec::Aac(_))) {
                    out.push_back(audio(payload));
                }
            }
            AudioTag::Opaque { codec, sequence_header, body } => {
                let current = self.info.track(AUDIO_TRACK).map(|t| t.codec.clone());
                let needs_track = !matches!(&current, Some(Codec::FlvAudio { codec: c, .. }) if *c == codec);
                if sequence_header || needs_track {
                    let sh = if sequence_header { Some(body.clone()) } else { None };
                    self.set_track(AUDIO_TRACK, Codec::FlvAudio { codec, sequence_header: sh }, out);
                }
                if !sequence_header {
                    out.push_back(audio(body));
                }
            }
            AudioTag::Ignored => {}
        }
        Ok(())
    }

    fn set_track(&mut self, id: TrackId, codec: Codec, out: &mut VecDeque<MediaItem>) {
        if self.info.track(id).map(|t| &t.codec) == Some(&codec) {
            return;
        }
        info!(stream = %self.stream, track = %id, codec = %codec.name(), "track configured");
        self.info.set_track(Track { id, codec, timebase: Timebase::MILLIS });
        out.push_back(MediaItem::Info(Arc::new(self.info.clone())));
    }
}

/// Runs arbitrary bytes through the ingest path exactly as a connection would (handshake,
/// chunk reader, session, AMF, FLV/AVC/AAC parsing, hub publishing), accepting every
/// connect and publish. Never panics on any input; for fuzzing.
///
/// The first byte chooses whether the handshake is skipped and how input is split.
/// Returns why the connection was refused, or `None` when the input ended first.
#[doc(hidden)]
pub fn fuzz_ingest(data: &[u8]) -> Option<String> {
    let (&mode, mut data) = data.split_first()?;
    let piece = usize::from(mode >> 1).max(1) * 16;
    if mode & 1 == 0 {
        let mut hs = Handshake::new(PeerType::Server);
        loop {
            let take = piece.min(data.len());
            if take == 0 {
                return None;
            }
            let (now, rest) = data.split_at(take);
            data = rest;
            match guarded("handshake", || hs.process_bytes(now)) {
                Ok(HandshakeProcessResult::InProgress { .. }) => {}
                Ok(HandshakeProcessResult::Completed { remaining_bytes, .. }) => {
                    if !remaining_bytes.is_empty() {
                        // fed below together with the rest
                        let mut v = remaining_bytes;
                        v.extend_from_slice(data);
                        return fuzz_session(&v, piece);
                    }
                    break;
                }
                Err(e) => return Some(format!("handshake: {e}")),
            }
        }
    }
    fuzz_session(data, piece)
}

fn fuzz_session(mut data: &[u8], piece: usize) -> Option<String> {
    let hub = Hub::new(crate::hub::HubOptions { grace_period: Duration::ZERO, ..Default::default() });
    let (mut protocol, _) = match ServerProtocol::new(ChunkLimits::default()) {
        Ok(p) => p,
        Err(e) => return Some(e.to_string()),
    };
    let mut state: Option<(FlvMedia, Publisher)> = None;
    let mut items = VecDeque::new();
    let mut results = VecDeque::new();
    while !data.is_empty() {
        let take = piece.min(data.len());
        let (now, rest) = data.split_at(take);
        data = rest;
        if let Err(e) = protocol.handle_input(now, &mut results) {
            return Some(e.to_string());
        }
        while let Some(r) = results.pop_front() {
            let outcome: Result<(), String> = match r {
                Inbound::Media { video, timestamp, data } => state.as_mut().map_or(Ok(()), |(m, _)| {
                    let mapped = if video {
                        m.on_video(&data, timestamp, &mut items)
                    } else {
                        m.on_audio(&data, timestamp, &mut items)
                    };
                    mapped.map_err(|e| e.to_string())
                }),
                Inbound::Session(ServerSessionResult::RaisedEvent(ev)) => match ev {
                    ServerSessionEvent::ConnectionRequested { request_id, .. } => {
                        protocol.accept(request_id).map(drop).map_err(|e| e.to_string())
                    }
                    ServerSessionEvent::PublishStreamRequested { request_id, stream_key, .. } => {
                        match (state.is_some(), hub.publish(&stream_key)) {
                            (false, Ok(publisher)) => {
                                state = Some((FlvMedia::new(stream_key), publisher));
                                protocol.accept(request_id).map(drop).map_err(|e| e.to_string())
                            }
                            _ => Err("second publish or stream already live".into()),
                        }
                    }
                    ServerSessionEvent::PublishStreamFinished { .. } => {
                        state = None;
                        Ok(())
                    }
                    _ => Ok(()),
                },
                Inbound::Session(_) => Ok(()),
            };
            if let Err(e) = outcome {
                return Some(e);
            }
            if let Some((_, publisher)) = &state {
                for item in items.drain(..) {
                    match item {
                        MediaItem::Info(info) => publisher.set_info(info),
                        MediaItem::Packet(p) => publisher.send(p),
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod protocol_tests {
    use super::*;

    fn message(type_id: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![3, 0, 0, 0];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        v.push(type_id);
        v.extend_from_slice(&stream_id.to_le_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn outbound(out: &VecDeque<Inbound>) -> Vec<Vec<u8>> {
        out.iter()
            .filter_map(|r| match r {
                Inbound::Session(ServerSessionResult::OutboundResponse(p)) => Some(p.bytes.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_peers_window_is_acknowledged_with_the_bytes_received() {
        let (mut protocol, _) = ServerProtocol::new(ChunkLimits::default()).expect("session");
        let mut out = VecDeque::new();
        let window = message(TYPE_WINDOW_ACK_SIZE, 0, &1000u32.to_be_bytes());
        protocol.handle_input(&window, &mut out).expect("valid input");
        assert!(outbound(&out).is_empty(), "nothing to acknowledge yet");
        // 128-byte video messages outside any publish: read, not passed on, but counted
        let video = message(TYPE_VIDEO, 1, &[0x17; 116]);
        let mut received = window.len();
        while received < 1000 {
            protocol.handle_input(&video, &mut out).expect("valid input");
            received += video.len();
        }
        assert!(!out.iter().any(|r| matches!(r, Inbound::Media { .. })), "media before a publish passed");
        let acks = outbound(&out);
        assert_eq!(acks.len(), 1, "one acknowledgement per window");
        let mut expected = vec![CSID_ACK, 0, 0, 0, 0, 0, 4, 3, 0, 0, 0, 0];
        expected.extend_from_slice(&(received as u32).to_be_bytes());
        assert_eq!(acks[0], expected);
    }

    #[test]
    fn the_connect_result_announces_enhanced_rtmp() {
        let (mut protocol, initial) = ServerProtocol::new(ChunkLimits::default()).expect("session");
        let connect = rml_amf0::serialize(&vec![
            rml_amf0::Amf0Value::Utf8String("connect".into()),
            rml_amf0::Amf0Value::Number(1.0),
            rml_amf0::Amf0Value::Object(
                [("app".to_string(), rml_amf0::Amf0Value::Utf8String("live".into()))].into_iter().collect(),
            ),
        ])
        .expect("amf");
        let mut out = VecDeque::new();
        protocol.handle_input(&message(20, 0, &connect), &mut out).expect("valid input");
        let request_id = out
            .iter()
            .find_map(|r| match r {
                Inbound::Session(ServerSessionResult::RaisedEvent(ServerSessionEvent::ConnectionRequested {
                    request_id,
                    ..
                })) => Some(*request_id),
                _ => None,
            })
            .expect("connect requested");
        let accepted: VecDeque<Inbound> = protocol
            .accept(request_id)
            .expect("accepted")
            .into_iter()
            .map(|r| Inbound::Session(announce_enhanced(r)))
            .collect();
        let mut reader = ChunkReader::new(ChunkLimits::default());
        let initial: VecDeque<Inbound> = initial.into_iter().map(Inbound::Session).collect();
        let mut caps = None;
        for bytes in outbound(&initial).into_iter().chain(outbound(&accepted)) {
            reader
                .feed(&bytes, |m: Message| {
                    if let Some(v) = super::super::enhanced::command_values(&m.payload, "_result", 1.0) {
                        caps = Some(super::super::enhanced::Capabilities::from_connect_result(&v));
                    }
                    Ok::<(), super::super::chunk_reader::ChunkError>(())
                })
                .expect("valid output");
        }
        let caps = caps.expect("a connect _result");
        assert!(caps.check(VideoFourCc::Hevc).is_ok() && caps.check(VideoFourCc::Av1).is_ok(), "{caps:?}");
    }
}

#[cfg(test)]
mod fuzz_regressions {
    use std::time::Duration;

    use super::fuzz_ingest;

    /// Runs the ingest on `input` on a thread and returns why it refused the connection;
    /// fails if it has not finished within a minute (a parser that loops would hang the
    /// test instead of failing it). The bound only tells a loop from an answer: a caught
    /// panic prints its backtrace first, which on a loaded machine with `RUST_BACKTRACE`
    /// set took over 5 s.
    fn outcome(input: Vec<u8>) -> Option<String> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(fuzz_ingest(&input)));
        rx.recv_timeout(Duration::from_secs(60)).expect("the ingest finished (no endless loop)")
    }

    fn type0(csid: u8, len: u32, type_id: u8) -> Vec<u8> {
        let mut v = vec![csid, 0, 0, 0];
        v.extend_from_slice(&len.to_be_bytes()[1..]);
        v.push(type_id);
        v.extend_from_slice(&0u32.to_le_bytes());
        v
    }

    #[test]
    fn amf0_command_with_too_few_values_is_refused_without_a_panic() {
        // rml_rtmp indexes the first three values of a command unconditionally
        let payload = [0x02, 0x00, 0x07, b'c', b'o', b'n', b'n', b'e', b'c', b't'];
        let mut input = vec![1u8];
        input.extend(type0(3, payload.len() as u32, 20));
        input.extend_from_slice(&payload);
        let refused = outcome(input);
        assert!(refused.is_some(), "the malformed command is refused");
    }

    #[test]
    fn chunk_size_zero_is_refused_without_hanging() {
        let mut input = vec![1u8];
        input.extend(type0(2, 4, 1));
        input.extend_from_slice(&0u32.to_be_bytes());
        input.extend(type0(3, 10, 20));
        input.extend_from_slice(&[0u8; 10]);
        let refused = outcome(input).unwrap_or_default();
        assert!(refused.contains("chunk size"), "refused with a reason: {refused:?}");
    }

    #[test]
    fn arbitrary_bytes_with_and_without_handshake() {
        let mut x: u32 = 0x9E37_79B9;
        for len in [0usize, 1, 2, 100, 1537, 3073, 5000, 20_000] {
            for mode in [0u8, 1, 6, 255] {
                let mut input = vec![mode];
                for _ in 0..len {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    input.push(x as u8);
                }
                let refused = outcome(input);
                if mode & 1 == 0 && len > 0 {
                    assert!(refused.is_some(), "random bytes are refused at the handshake ({len} bytes)");
                }
            }
        }
    }
}

#[cfg(test)]
mod connection_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_util::sync::CancellationToken;

    use super::*;

    async fn handshaken(addr: SocketAddr) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let mut hs = Handshake::new(PeerType::Client);
        s.write_all(&hs.generate_outbound_p0_and_p1().expect("c0c1")).await.expect("write");
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed during handshake");
            match hs.process_bytes(&buf[..n]).expect("handshake") {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    s.write_all(&response_bytes).await.expect("write")
                }
                HandshakeProcessResult::Completed { response_bytes, .. } => {
                    s.write_all(&response_bytes).await.expect("write");
                    return s;
                }
            }
        }
    }

    #[tokio::test]
    async fn a_silent_peer_is_disconnected_after_the_idle_timeout() {
        let options = RtmpIngestOptions { idle_timeout: Duration::from_millis(300), ..Default::default() };
        let auth = Arc::new(StaticKeys { app: "live".into(), keys: None });
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let ingest = RtmpIngest::bind(addr, Hub::default(), auth, options).await.expect("bind");
        let addr = ingest.local_addr().expect("addr");
        let cancel = CancellationToken::new();
        let task = tokio::spawn(ingest.run(cancel.clone()));
        let mut s = handshaken(addr).await;
        let mut buf = [0u8; 4096];
        // the server's initial control messages arrive, then the connection is closed
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a silent peer must be disconnected");
        cancel.cancel();
        task.await.expect("ingest stops on cancel");
    }
}
