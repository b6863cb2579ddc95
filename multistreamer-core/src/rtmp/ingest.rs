//! RTMP ingest: accepts publishers (OBS, ffmpeg, hardware encoders) and feeds the hub.
//!
//! One task per connection. Bytes go through the [`ChunkGuard`] first, then into
//! `rml_rtmp`'s `ServerSession` (panic-guarded). A publish is accepted only if the
//! [`PublishAuthorizer`] accepts the app and key and the hub has no other publisher for
//! that stream; anything else is refused with an RTMP error status and a logged reason.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::RtmpError;
use super::chunk_guard::{ChunkGuard, GuardLimits};
use super::guard::guarded;
use super::time::RtmpTimeUnwrapper;
use super::url::mask_secret;
use crate::error::{Error, ErrorKind, Result};
use crate::flv::{self, AudioTag, VideoTag};
use crate::hub::{Hub, Publisher};
use crate::media::{Codec, MediaInfo, Packet, StreamMetadata, Timebase, Timestamp, Track, TrackId, TrackKind};
use crate::sink::BoxFuture;

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
    pub guard_limits: GuardLimits,
}

impl Default for RtmpIngestOptions {
    fn default() -> RtmpIngestOptions {
        RtmpIngestOptions {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 1024,
            guard_limits: GuardLimits::default(),
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
                warn!(%peer, "refusing RTMP connection: connection limit reached");
                continue;
            }
            let _ = socket.set_nodelay(true);
            let conn = Connection {
                peer,
                hub: self.hub.clone(),
                auth: self.auth.clone(),
                options: self.options.clone(),
                cancel: cancel.child_token(),
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

/// The sans-IO inbound side of one ingest connection after the handshake: every byte
/// passes the [`ChunkGuard`] before `rml_rtmp`'s `ServerSession`, and every call into the
/// session is panic-guarded.
pub struct ServerProtocol {
    session: ServerSession,
    guard: ChunkGuard,
}

impl std::fmt::Debug for ServerProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProtocol").field("guard", &self.guard).finish_non_exhaustive()
    }
}

impl ServerProtocol {
    /// A new session and the messages it sends first (chunk size, window, bandwidth).
    pub fn new(limits: GuardLimits) -> Result<(ServerProtocol, Vec<ServerSessionResult>), RtmpError> {
        let mut config = ServerSessionConfig::new();
        config.chunk_size = 4096;
        let (session, initial) = guarded("session", || ServerSession::new(config))?;
        Ok((ServerProtocol { session, guard: ChunkGuard::new(limits) }, initial))
    }

    /// Validates and processes bytes from the peer.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<Vec<ServerSessionResult>, RtmpError> {
        self.guard.feed(bytes)?;
        let session = &mut self.session;
        guarded("input", || session.handle_input(bytes))
    }

    pub fn accept(&mut self, request_id: u32) -> Result<Vec<ServerSessionResult>, RtmpError> {
        let session = &mut self.session;
        guarded("accept", || session.accept_request(request_id))
    }

    pub fn reject(
        &mut self,
        request_id: u32,
        code: &str,
        description: &str,
    ) -> Result<Vec<ServerSessionResult>, RtmpError> {
        let session = &mut self.session;
        guarded("reject", || session.reject_request(request_id, code, description))
    }
}

struct Connection {
    peer: SocketAddr,
    hub: Hub,
    auth: Arc<dyn PublishAuthorizer>,
    options: RtmpIngestOptions,
    cancel: CancellationToken,
}

/// The publishing state of a connection.
struct Publishing {
    publisher: Publisher,
    info: MediaInfo,
    video_time: RtmpTimeUnwrapper,
    audio_time: RtmpTimeUnwrapper,
    waiting_for_video_config: u64,
}

impl Connection {
    async fn run(self, mut socket: TcpStream) -> Result<()> {
        let mut buf = vec![0u8; 16 * 1024];
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

        let (mut session, initial) = ServerProtocol::new(self.options.guard_limits)?;
        let mut out = Vec::new();
        let mut state: Option<Publishing> = None;
        let mut pending_results: Vec<ServerSessionResult> = initial;
        // Registered once, not per read: the cancellation waiter and the idle timer.
        let cancelled = self.cancel.cancelled();
        tokio::pin!(cancelled);
        let idle = tokio::time::sleep(self.options.idle_timeout);
        tokio::pin!(idle);
        if !remaining.is_empty() {
            pending_results.extend(session.handle_input(&remaining)?);
        }
        loop {
            while !pending_results.is_empty() {
                let results = std::mem::take(&mut pending_results);
                for r in results {
                    match r {
                        ServerSessionResult::OutboundResponse(p) => out.extend_from_slice(&p.bytes),
                        ServerSessionResult::RaisedEvent(ev) => {
                            match self.on_event(ev, &mut session, &mut state, &mut out).await {
                                Ok(more) => pending_results.extend(more),
                                Err(e) => {
                                    // Let the peer see the refusal before the connection closes.
                                    let flush = async {
                                        socket.write_all(&out).await?;
                                        socket.shutdown().await
                                    };
                                    let _ = tokio::time::timeout(Duration::from_secs(1), flush).await;
                                    return Err(e);
                                }
                            }
                        }
                        ServerSessionResult::UnhandleableMessageReceived(m) => {
                            debug!(type_id = m.type_id, "ignored message")
                        }
                    }
                }
            }
            if !out.is_empty() {
                socket.write_all(&out).await?;
                out.clear();
            }
            let n = tokio::select! {
                biased;
                _ = &mut cancelled => return Ok(()),
                r = socket.read(&mut buf) => r?,
                _ = &mut idle => return Err(RtmpError::Timeout("waiting for data from the publisher").into()),
            };
            idle.as_mut().reset(tokio::time::Instant::now() + self.options.idle_timeout);
            if n == 0 {
                return match state {
                    Some(_) => Err(RtmpError::Closed("publishing").into()),
                    None => Ok(()),
                };
            }
            pending_results.extend(session.handle_input(&buf[..n])?);
        }
    }

    async fn on_event(
        &self,
        ev: ServerSessionEvent,
        session: &mut ServerProtocol,
        state: &mut Option<Publishing>,
        out: &mut Vec<u8>,
    ) -> Result<Vec<ServerSessionResult>> {
        match ev {
            ServerSessionEvent::ConnectionRequested { request_id, app_name } => {
                if !self.auth.accepts_app(&app_name) {
                    warn!(app = %app_name, "connect refused: unknown application");
                    let rejected = session.reject(request_id, "NetConnection.Connect.Rejected", "unknown application");
                    append_outbound(rejected.unwrap_or_default(), out);
                    return Err(Error::new(
                        ErrorKind::Rejected,
                        format!("connect to unknown application {app_name:?}"),
                    ));
                }
                debug!(app = %app_name, "connect accepted");
                session.accept(request_id).map_err(Into::into)
            }
            ServerSessionEvent::PublishStreamRequested { request_id, app_name, stream_key, .. } => {
                if state.is_some() {
                    return Err(Error::new(ErrorKind::Protocol, "second publish on one connection"));
                }
                let req = PublishRequest { peer: self.peer, app: app_name, key: stream_key };
                let name = match self.auth.authorize(&req).await {
                    Ok(name) => name,
                    Err(rej) => {
                        warn!(app = %req.app, key = %mask_secret(&req.key), reason = %rej.reason, "publish refused");
                        return refuse(session, request_id, &rej.reason, out);
                    }
                };
                let publisher = match self.hub.publish(&name) {
                    Ok(p) => p,
                    Err(e) => {
                        warn!(stream = %name, reason = %e, "publish refused");
                        return refuse(session, request_id, &e.to_string(), out);
                    }
                };
                info!(stream = %name, app = %req.app, "publishing");
                *state = Some(Publishing {
                    publisher,
                    info: MediaInfo::default(),
                    video_time: RtmpTimeUnwrapper::new(),
                    audio_time: RtmpTimeUnwrapper::new(),
                    waiting_for_video_config: 0,
                });
                session.accept(request_id).map_err(Into::into)
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                if let Some(p) = state.take() {
                    info!(stream = %p.publisher.stream().name(), "publisher finished");
                }
                Ok(Vec::new())
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                if let Some(p) = state.as_mut() {
                    p.info.metadata = StreamMetadata {
                        frame_rate: metadata.video_frame_rate.map(f64::from),
                        video_bitrate_kbps: metadata.video_bitrate_kbps,
                        audio_bitrate_kbps: metadata.audio_bitrate_kbps,
                        encoder: metadata.encoder,
                    };
                    if !p.info.tracks.is_empty() {
                        p.publisher.set_info(Arc::new(p.info.clone()));
                    }
                }
                Ok(Vec::new())
            }
            ServerSessionEvent::VideoDataReceived { data, timestamp, .. } => {
                if let Some(p) = state.as_mut() {
                    on_video(p, &data, timestamp.value)?;
                    ensure_open(p)?;
                }
                Ok(Vec::new())
            }
            ServerSessionEvent::AudioDataReceived { data, timestamp, .. } => {
                if let Some(p) = state.as_mut() {
                    on_audio(p, &data, timestamp.value)?;
                    ensure_open(p)?;
                }
                Ok(Vec::new())
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                warn!("play request refused: this endpoint only accepts publishers");
                let rejected = session.reject(request_id, "NetStream.Play.Failed", "playback is not offered here");
                append_outbound(rejected.unwrap_or_default(), out);
                Err(Error::new(ErrorKind::Rejected, "playback requested"))
            }
            ServerSessionEvent::UnhandleableAmf0Command { command_name, .. } => {
                // releaseStream, FCPublish, FCUnpublish, _checkbw: nothing to answer.
                debug!(command = %command_name, "ignored command");
                Ok(Vec::new())
            }
            other => {
                debug!(?other, "session event");
                Ok(Vec::new())
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
fn refuse(
    session: &mut ServerProtocol,
    request_id: u32,
    reason: &str,
    out: &mut Vec<u8>,
) -> Result<Vec<ServerSessionResult>> {
    let results = session.reject(request_id, "NetStream.Publish.BadName", reason)?;
    append_outbound(results, out);
    Err(Error::new(ErrorKind::Rejected, format!("publish refused: {reason}")))
}

/// A stream ended by the operator (deleted) disconnects its publisher.
fn ensure_open(p: &Publishing) -> Result<()> {
    if p.publisher.is_open() {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Shutdown, "the stream was closed on the server"))
    }
}

fn on_video(p: &mut Publishing, data: &Bytes, wire_ts: u32) -> Result<()> {
    let dts = Timestamp::from_millis(p.video_time.unwrap(wire_ts));
    match flv::parse_video(data)? {
        VideoTag::AvcSequenceHeader(cfg) => {
            set_track(p, VIDEO_TRACK, Codec::H264(cfg));
        }
        VideoTag::AvcNalus { keyframe, cts_ms, payload } => {
            if !matches!(p.info.track(VIDEO_TRACK).map(|t| &t.codec), Some(Codec::H264(_))) {
                p.waiting_for_video_config += 1;
                if p.waiting_for_video_config == 1 {
                    warn!("AVC video before its sequence header; dropping until it arrives");
                }
                return Ok(());
            }
            p.publisher.send(Packet {
                track: VIDEO_TRACK,
                kind: TrackKind::Video,
                dts,
                pts: dts.add_ticks(i64::from(cts_ms)),
                keyframe,
                payload,
            });
        }
        VideoTag::Opaque { codec, keyframe, sequence_header, body } => {
            let current = p.info.track(VIDEO_TRACK).map(|t| t.codec.clone());
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
                set_track(p, VIDEO_TRACK, Codec::FlvVideo { codec, sequence_header: sh });
            }
            if !sequence_header {
                p.publisher.send(Packet {
                    track: VIDEO_TRACK,
                    kind: TrackKind::Video,
                    dts,
                    pts: dts,
                    keyframe,
                    payload: body,
                });
            }
        }
        VideoTag::AvcEndOfSequence | VideoTag::Ignored => {}
    }
    Ok(())
}

fn on_audio(p: &mut Publishing, data: &Bytes, wire_ts: u32) -> Result<()> {
    let dts = Timestamp::from_millis(p.audio_time.unwrap(wire_ts));
    match flv::parse_audio(data)? {
        AudioTag::AacSequenceHeader(asc) => set_track(p, AUDIO_TRACK, Codec::Aac(asc)),
        AudioTag::AacRaw(payload) => {
            if !matches!(p.info.track(AUDIO_TRACK).map(|t| &t.codec), Some(Codec::Aac(_))) {
                return Ok(());
            }
            p.publisher.send(Packet {
                track: AUDIO_TRACK,
                kind: TrackKind::Audio,
                dts,
                pts: dts,
                keyframe: true,
                payload,
            });
        }
        AudioTag::Opaque { codec, sequence_header, body } => {
            let current = p.info.track(AUDIO_TRACK).map(|t| t.codec.clone());
            let needs_track = !matches!(&current, Some(Codec::FlvAudio { codec: c, .. }) if *c == codec);
            if sequence_header || needs_track {
                let sh = if sequence_header { Some(body.clone()) } else { None };
                set_track(p, AUDIO_TRACK, Codec::FlvAudio { codec, sequence_header: sh });
            }
            if !sequence_header {
                p.publisher.send(Packet {
                    track: AUDIO_TRACK,
                    kind: TrackKind::Audio,
                    dts,
                    pts: dts,
                    keyframe: true,
                    payload: body,
                });
            }
        }
        AudioTag::Ignored => {}
    }
    Ok(())
}

fn set_track(p: &mut Publishing, id: TrackId, codec: Codec) {
    if p.info.track(id).map(|t| &t.codec) == Some(&codec) {
        return;
    }
    info!(stream = %p.publisher.stream().name(), track = %id, codec = %codec.name(), "track configured");
    p.info.set_track(Track { id, codec, timebase: Timebase::MILLIS });
    p.publisher.set_info(Arc::new(p.info.clone()));
}

/// Runs arbitrary bytes through the ingest path exactly as a connection would (handshake,
/// chunk guard, session, AMF, FLV/AVC/AAC parsing, hub publishing), accepting every
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
    let (mut protocol, _) = match ServerProtocol::new(GuardLimits::default()) {
        Ok(p) => p,
        Err(e) => return Some(e.to_string()),
    };
    let mut state: Option<Publishing> = None;
    while !data.is_empty() {
        let take = piece.min(data.len());
        let (now, rest) = data.split_at(take);
        data = rest;
        let results = match protocol.handle_input(now) {
            Ok(r) => r,
            Err(e) => return Some(e.to_string()),
        };
        for r in results {
            let ServerSessionResult::RaisedEvent(ev) = r else { continue };
            let outcome: Result<(), String> = match ev {
                ServerSessionEvent::ConnectionRequested { request_id, .. } => {
                    protocol.accept(request_id).map(drop).map_err(|e| e.to_string())
                }
                ServerSessionEvent::PublishStreamRequested { request_id, stream_key, .. } => {
                    match (state.is_some(), hub.publish(&stream_key)) {
                        (false, Ok(publisher)) => {
                            state = Some(Publishing {
                                publisher,
                                info: MediaInfo::default(),
                                video_time: RtmpTimeUnwrapper::new(),
                                audio_time: RtmpTimeUnwrapper::new(),
                                waiting_for_video_config: 0,
                            });
                            protocol.accept(request_id).map(drop).map_err(|e| e.to_string())
                        }
                        _ => Err("second publish or stream already live".into()),
                    }
                }
                ServerSessionEvent::VideoDataReceived { data, timestamp, .. } => {
                    state.as_mut().map_or(Ok(()), |p| on_video(p, &data, timestamp.value).map_err(|e| e.to_string()))
                }
                ServerSessionEvent::AudioDataReceived { data, timestamp, .. } => {
                    state.as_mut().map_or(Ok(()), |p| on_audio(p, &data, timestamp.value).map_err(|e| e.to_string()))
                }
                ServerSessionEvent::PublishStreamFinished { .. } => {
                    state = None;
                    Ok(())
                }
                _ => Ok(()),
            };
            if let Err(e) = outcome {
                return Some(e);
            }
        }
    }
    None
}

#[cfg(test)]
mod fuzz_regressions {
    use std::time::Duration;

    use super::fuzz_ingest;

    /// Runs the ingest on `input` on a thread and returns why it refused the connection;
    /// fails if it has not finished within `bound` (a parser that loops would hang the
    /// test instead of failing it).
    fn outcome_within(input: Vec<u8>, bound: Duration) -> Option<String> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(fuzz_ingest(&input)));
        rx.recv_timeout(bound).expect("the ingest finished within the bound")
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
        let refused = outcome_within(input, Duration::from_secs(5));
        assert!(refused.is_some(), "the malformed command is refused");
    }

    #[test]
    fn chunk_size_zero_is_refused_without_hanging() {
        let mut input = vec![1u8];
        input.extend(type0(2, 4, 1));
        input.extend_from_slice(&0u32.to_be_bytes());
        input.extend(type0(3, 10, 20));
        input.extend_from_slice(&[0u8; 10]);
        let refused = outcome_within(input, Duration::from_secs(5)).unwrap_or_default();
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
                let refused = outcome_within(input, Duration::from_secs(5));
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
