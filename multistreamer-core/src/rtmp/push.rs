//! RTMP/RTMPS push: publishing a hub stream to a destination (YouTube, webinar.ru, …).
//!
//! Connection setup (handshake, `connect` with `tcUrl`, `createStream`, `publish`) and the
//! inbound side (acknowledgements, pings, status) go through `rml_rtmp`'s
//! `ClientSession`. Media and metadata are written by our own chunker on chunk streams the
//! session never uses, straight from the shared payload buffers.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use rml_amf0::Amf0Value;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::RtmpError;
use super::chunk_reader::{ChunkError, ChunkLimits, ChunkReader, Message};
use super::enhanced::{Capabilities, EnhancedRtmp, add_fourcc_list, command_values, host_is_known_enhanced};
use super::guard::guarded;
use super::time::to_wire;
use super::tls::TlsOptions;
use super::url::{RtmpScheme, RtmpUrl};
use super::writer::{
    CSID_AUDIO, CSID_DATA, CSID_VIDEO, MediaChunker, OutBuf, TYPE_AUDIO, TYPE_COMMAND_AMF0, TYPE_DATA_AMF0, TYPE_VIDEO,
};
use crate::error::{Error, ErrorKind, Result};
use crate::flv::{self, VideoFourCc};
use crate::media::{Codec, MediaInfo, MediaItem, TrackId, TrackKind};
use crate::sink::{BoxFuture, Connector, Sink};

/// Settings of RTMP/RTMPS destinations.
#[derive(Clone, Debug)]
pub struct RtmpPushOptions {
    /// Limit for TCP connect + TLS + handshake + connect + publish.
    pub connect_timeout: Duration,
    /// Outbound chunk size (announced with SetChunkSize).
    pub chunk_size: u32,
    pub tls: TlsOptions,
    /// How long a graceful close waits for the peer to close its side.
    pub close_timeout: Duration,
    /// Whether HEVC/AV1 are sent to a destination that did not list them in its connect
    /// reply (see [`super::enhanced`]).
    pub enhanced: EnhancedRtmp,
}

impl Default for RtmpPushOptions {
    fn default() -> RtmpPushOptions {
        RtmpPushOptions {
            connect_timeout: Duration::from_secs(10),
            chunk_size: 4096,
            tls: TlsOptions::default(),
            close_timeout: Duration::from_secs(3),
            enhanced: EnhancedRtmp::Negotiate,
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Avc,
    /// Video with an Enhanced RTMP header.
    Ex(VideoFourCc),
    Aac,
    FlvOpaque,
}

/// A live RTMP publishing connection.
pub struct RtmpSink {
    url: RtmpUrl,
    io: Box<dyn Io>,
    session: ClientSession,
    chunker: MediaChunker,
    read_buf: Vec<u8>,
    /// Control responses produced while reading, written before the next media.
    pending: Vec<u8>,
    out: OutBuf,
    sent_info: Option<Arc<MediaInfo>>,
    forms: HashMap<TrackId, (Form, TrackKind)>,
    last_ts: u32,
    close_timeout: Duration,
    /// What the destination said it takes (Enhanced RTMP).
    capabilities: Capabilities,
}

impl std::fmt::Debug for RtmpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmpSink").field("url", &self.url).finish_non_exhaustive()
    }
}

impl RtmpSink {
    /// Connects, handshakes and starts publishing to `url`.
    pub async fn connect(url: &RtmpUrl, options: &RtmpPushOptions) -> Result<RtmpSink> {
        match tokio::time::timeout(options.connect_timeout, Self::connect_inner(url, options)).await {
            Ok(r) => r.map_err(|e| e.context(format!("connecting to {url}"))),
            Err(_) => Err(Error::from(RtmpError::Timeout("connect/publish")).context(format!("connecting to {url}"))),
        }
    }

    async fn connect_inner(url: &RtmpUrl, options: &RtmpPushOptions) -> Result<RtmpSink> {
        let tcp = TcpStream::connect(url.authority()).await?;
        tcp.set_nodelay(true)?;
        let mut io: Box<dyn Io> = match url.scheme {
            RtmpScheme::Rtmp => Box::new(tcp),
            RtmpScheme::Rtmps => {
                let connector = options.tls.connector()?;
                let name = rustls_pki_types::ServerName::try_from(url.host.clone())
                    .map_err(|e| RtmpError::Tls(format!("bad server name {:?}: {e}", url.host)))?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| RtmpError::Tls(format!("handshake with {}: {e}", url.host)))?;
                Box::new(tls)
            }
        };

        // RTMP handshake
        let mut hs = Handshake::new(PeerType::Client);
        let p0p1 = guarded("handshake", || hs.generate_outbound_p0_and_p1()).map_err(handshake_err)?;
        io.write_all(&p0p1).await?;
        let mut buf = vec![0u8; 16 * 1024];
        let remaining = loop {
            let n = io.read(&mut buf).await?;
            if n == 0 {
                return Err(RtmpError::Closed("handshake").into());
            }
            match guarded("handshake", || hs.process_bytes(&buf[..n])).map_err(handshake_err)? {
                HandshakeProcessResult::InProgress { response_bytes } => io.write_all(&response_bytes).await?,
                HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                    io.write_all(&response_bytes).await?;
                    break remaining_bytes;
                }
            }
        };

        let mut config = ClientSessionConfig::new();
        config.tc_url = Some(url.tc_url());
        config.chunk_size = options.chunk_size;
        config.flash_version = "FMLE/3.0 (compatible; Multistreamer)".to_string();
        let (mut session, initial) = guarded("session", || ClientSession::new(config))?;
        let mut out = Vec::new();
        collect(initial, &mut out)?;
        let r = guarded("connect", || session.request_connection(url.app.clone()))?;
        match r {
            // offer Enhanced RTMP: the connect command object gets our fourCcList
            ClientSessionResult::OutboundResponse(p) => match add_fourcc_list(&p.bytes, "connect", 2, 128) {
                Some(patched) => out.extend_from_slice(&patched),
                None => {
                    debug!("connect command not in the expected shape; sent without fourCcList");
                    out.extend_from_slice(&p.bytes);
                }
            },
            other => {
                collect(vec![other], &mut out)?;
            }
        }
        io.write_all(&out).await?;
        out.clear();
        // The session reads the replies; this reader only looks for what it hides: the
        // properties of the connect `_result` (transaction 1).
        let mut replies = Some(ChunkReader::new(ChunkLimits::default()));
        let mut capabilities = Capabilities::default();

        let mut connected = false;
        let mut input: Vec<u8> = remaining;
        loop {
            if !input.is_empty() {
                if let Some(reader) = &mut replies {
                    let fed = reader.feed(&input, |m: Message| -> Result<(), ChunkError> {
                        if m.type_id == TYPE_COMMAND_AMF0
                            && let Some(values) = command_values(&m.payload, "_result", 1.0)
                        {
                            capabilities = Capabilities::from_connect_result(&values);
                        }
                        Ok(())
                    });
                    if fed.is_err() || connected {
                        replies = None;
                    }
                }
                let results = guarded("input", || session.handle_input(&input))?;
                input.clear();
                for ev in collect(results, &mut out)? {
                    match ev {
                        ClientSessionEvent::ConnectionRequestAccepted => {
                            connected = true;
                            capabilities.assumed =
                                options.enhanced == EnhancedRtmp::Assume || host_is_known_enhanced(&url.host);
                            debug!(url = %url, fourccs = ?capabilities.listed, assumed = capabilities.assumed, "connected");
                            let r = guarded("publish", || {
                                session.request_publishing(url.key.clone(), PublishRequestType::Live)
                            })?;
                            collect(vec![r], &mut out)?;
                        }
                        ClientSessionEvent::ConnectionRequestRejected { description } => {
                            return Err(RtmpError::Rejected {
                                code: "NetConnection.Connect.Rejected".into(),
                                description,
                            }
                            .into());
                        }
                        ClientSessionEvent::PublishRequestAccepted => {
                            io.write_all(&out).await?;
                            out.clear();
                            let stream_id = probe_stream_id(&mut session)?;
                            debug!(url = %url, stream_id, "publishing");
                            return Ok(RtmpSink {
                                url: url.clone(),
                                io,
                                session,
                                chunker: MediaChunker { chunk_size: options.chunk_size, stream_id },
                                // only acknowledgements and status messages come back
                                read_buf: vec![0u8; 4096],
                                pending: Vec::new(),
                                out: OutBuf::default(),
                                sent_info: None,
                                forms: HashMap::new(),
                                last_ts: 0,
                                close_timeout: options.close_timeout,
                                capabilities,
                            });
                        }
                        ClientSessionEvent::UnhandleableOnStatusCode { code } if is_error_status(&code) => {
                            return Err(RtmpError::Rejected { code, description: String::new() }.into());
                        }
                        // `_error` to `publish` (sent without a transaction to track): some
                        // servers refuse a key this way instead of an onStatus
                        ClientSessionEvent::UnknownTransactionResultReceived { additional_values, .. } => {
                            if let Some((code, description)) = error_status(&additional_values) {
                                return Err(RtmpError::Rejected { code, description }.into());
                            }
                            debug!("ignored result of an unknown transaction during setup");
                        }
                        other => debug!(?other, "ignored event during setup"),
                    }
                }
                if !out.is_empty() {
                    io.write_all(&out).await?;
                    out.clear();
                }
            }
            let n = io.read(&mut buf).await?;
            if n == 0 {
                let stage = if connected { "publish" } else { "connect" };
                return Err(RtmpError::Closed(stage).into());
            }
            input.extend_from_slice(&buf[..n]);
        }
    }

    fn on_info(&mut self, info: &Arc<MediaInfo>) -> Result<()> {
        let previous = self.sent_info.clone();
        let ts = self.last_ts;
        let changed_video = previous.as_ref().and_then(|p| p.video().cloned()) != info.video().cloned();
        let changed_audio = previous.as_ref().and_then(|p| p.audio().cloned()) != info.audio().cloned();
        if changed_video || changed_audio {
            let meta = metadata_message(info)?;
            self.chunker.message(&mut self.out, CSID_DATA, TYPE_DATA_AMF0, ts, &[], &Bytes::from(meta));
        }
        self.forms.clear();
        for track in &info.tracks {
            let unchanged = previous.as_ref().and_then(|p| p.track(track.id)) == Some(track);
            let kind = track.kind();
            let (csid, type_id) = match kind {
                TrackKind::Video => (CSID_VIDEO, TYPE_VIDEO),
                TrackKind::Audio => (CSID_AUDIO, TYPE_AUDIO),
            };
            let form = match &track.codec {
                Codec::H264(cfg) => {
                    if !unchanged {
                        let h = flv::avc_header(true, true, 0);
                        self.chunker.message(&mut self.out, csid, type_id, ts, &h, &cfg.record);
                    }
                    Form::Avc
                }
                Codec::Hevc(_) | Codec::Av1(_) => {
                    let (fourcc, record) = match &track.codec {
                        Codec::Hevc(c) => (VideoFourCc::Hevc, &c.record),
                        Codec::Av1(c) => (VideoFourCc::Av1, &c.record),
                        _ => unreachable!("matched above"),
                    };
                    self.capabilities
                        .check(fourcc)
                        .map_err(|reason| RtmpError::CodecNotAccepted { codec: fourcc.as_str(), reason })?;
                    if !unchanged {
                        let h = flv::ex_sequence_start_header(fourcc);
                        self.chunker.message(&mut self.out, csid, type_id, ts, &h, record);
                    }
                    Form::Ex(fourcc)
                }
                Codec::Aac(asc) => {
                    if !unchanged {
                        self.chunker.message(&mut self.out, csid, type_id, ts, &flv::aac_header(true), &asc.raw);
                    }
                    Form::Aac
                }
                Codec::FlvVideo { sequence_header, .. } | Codec::FlvAudio { sequence_header, .. } => {
                    if let (false, Some(sh)) = (unchanged, sequence_header) {
                        self.chunker.message(&mut self.out, csid, type_id, ts, &[], sh);
                    }
                    Form::FlvOpaque
                }
            };
            self.forms.insert(track.id, (form, kind));
        }
        self.sent_info = Some(info.clone());
        Ok(())
    }
}

fn handshake_err(e: RtmpError) -> Error {
    match e {
        RtmpError::Session(m) => RtmpError::Handshake(m).into(),
        other => other.into(),
    }
}

fn is_error_status(code: &str) -> bool {
    ["Failed", "BadName", "Rejected", "Error", "Unauthorized", "Denied"].iter().any(|w| code.contains(w))
}

/// The code and description of a status object that reports an error (`level` `error`,
/// or an error code), among a command's arguments.
fn error_status(values: &[Amf0Value]) -> Option<(String, String)> {
    values.iter().find_map(|v| {
        let Amf0Value::Object(props) = v else { return None };
        let text = |k: &str| match props.get(k) {
            Some(Amf0Value::Utf8String(s)) => s.clone(),
            _ => String::new(),
        };
        let (level, code) = (text("level"), text("code"));
        let failed = matches!(level.as_str(), "error" | "_error") || (!code.is_empty() && is_error_status(&code));
        failed.then(|| (if code.is_empty() { "_error".into() } else { code }, text("description")))
    })
}

/// Splits session results into bytes to send and events.
fn collect(results: Vec<ClientSessionResult>, out: &mut Vec<u8>) -> Result<Vec<ClientSessionEvent>> {
    let mut events = Vec::new();
    for r in results {
        match r {
            ClientSessionResult::OutboundResponse(p) => out.extend_from_slice(&p.bytes),
            ClientSessionResult::RaisedEvent(e) => events.push(e),
            ClientSessionResult::UnhandleableMessageReceived(m) => {
                debug!(type_id = m.type_id, "unhandled message from destination")
            }
        }
    }
    Ok(events)
}

/// Learns the message stream id the server gave us: the session serializes a media
/// message with it (type-0 header, bytes 8..12 little-endian). The probe is never sent;
/// the session is not used for media afterwards, so its header state is irrelevant.
fn probe_stream_id(session: &mut ClientSession) -> Result<u32> {
    let r = guarded("probe", || {
        session.publish_audio_data(Bytes::from_static(&[0xAF, 0x01]), RtmpTimestamp::new(0), true)
    })?;
    let bytes = match r {
        ClientSessionResult::OutboundResponse(p) => p.bytes,
        _ => Vec::new(),
    };
    match bytes.get(..12) {
        Some(b) if b[0] >> 6 == 0 && b[0] & 0x3F >= 2 => Ok(u32::from_le_bytes([b[8], b[9], b[10], b[11]])),
        _ => Err(RtmpError::Session(format!("could not determine the publish stream id from {bytes:02x?}")).into()),
    }
}

fn metadata_message(info: &MediaInfo) -> Result<Vec<u8>> {
    let mut props: HashMap<String, Amf0Value> = HashMap::new();
    if let Some(v) = info.video() {
        match &v.codec {
            Codec::H264(c) => {
                props.insert("width".into(), Amf0Value::Number(f64::from(c.width)));
                props.insert("height".into(), Amf0Value::Number(f64::from(c.height)));
                props.insert("videocodecid".into(), Amf0Value::Number(7.0));
            }
            Codec::Hevc(_) | Codec::Av1(_) => {
                let (w, h, cc) = match &v.codec {
                    Codec::Hevc(c) => (c.width, c.height, b"hvc1"),
                    Codec::Av1(c) => (c.width, c.height, b"av01"),
                    _ => unreachable!("matched above"),
                };
                props.insert("width".into(), Amf0Value::Number(f64::from(w)));
                props.insert("height".into(), Amf0Value::Number(f64::from(h)));
                // Enhanced RTMP: the codec id is the FourCC as a number
                props.insert("videocodecid".into(), Amf0Value::Number(f64::from(u32::from_be_bytes(*cc))));
            }
            Codec::FlvVideo { codec: crate::media::FlvCodecTag::Id(id), .. } => {
                props.insert("videocodecid".into(), Amf0Value::Number(f64::from(*id)));
            }
            _ => {}
        }
    }
    if let Some(fps) = info.metadata.frame_rate {
        props.insert("framerate".into(), Amf0Value::Number(fps));
    }
    if let Some(kbps) = info.metadata.video_bitrate_kbps {
        props.insert("videodatarate".into(), Amf0Value::Number(f64::from(kbps)));
    }
    if let Some(Codec::Aac(c)) = info.audio().map(|a| &a.codec) {
        props.insert("audiocodecid".into(), Amf0Value::Number(10.0));
        props.insert("audiosamplerate".into(), Amf0Value::Number(f64::from(c.sample_rate)));
        props.insert("audiochannels".into(), Amf0Value::Number(f64::from(c.channels)));
        props.insert("stereo".into(), Amf0Value::Boolean(c.channels >= 2));
    }
    if let Some(kbps) = info.metadata.audio_bitrate_kbps {
        props.insert("audiodatarate".into(), Amf0Value::Number(f64::from(kbps)));
    }
    props.insert("encoder".into(), Amf0Value::Utf8String("Multistreamer".into()));
    let values = vec![
        Amf0Value::Utf8String("@setDataFrame".into()),
        Amf0Value::Utf8String("onMetaData".into()),
        Amf0Value::Object(props),
    ];
    rml_amf0::serialize(&values).map_err(|e| RtmpError::Session(format!("metadata: {e:?}")).into())
}

impl Sink for RtmpSink {
    fn enqueue(&mut self, items: &[MediaItem]) -> Result<()> {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            self.out.push_own(&pending);
        }
        for item in items {
            match item {
                MediaItem::Info(info) => self.on_info(info)?,
                MediaItem::Packet(p) => {
                    let Some(&(form, kind)) = self.forms.get(&p.track) else {
                        continue;
                    };
                    let ts = to_wire(p.dts.as_millis());
                    self.last_ts = ts;
                    match (form, kind) {
                        (Form::Avc, _) => {
                            let cts = i32::try_from(p.cts_millis()).unwrap_or(0);
                            let h = flv::avc_header(p.keyframe, false, cts);
                            self.chunker.message(&mut self.out, CSID_VIDEO, TYPE_VIDEO, ts, &h, &p.payload);
                        }
                        (Form::Ex(fourcc), _) => {
                            let cts = i32::try_from(p.cts_millis()).unwrap_or(0);
                            let (h, n) = flv::ex_frames_header(fourcc, p.keyframe, cts);
                            self.chunker.message(&mut self.out, CSID_VIDEO, TYPE_VIDEO, ts, &h[..n], &p.payload);
                        }
                        (Form::Aac, _) => {
                            let h = flv::aac_header(false);
                            self.chunker.message(&mut self.out, CSID_AUDIO, TYPE_AUDIO, ts, &h, &p.payload);
                        }
                        (Form::FlvOpaque, TrackKind::Video) => {
                            self.chunker.message(&mut self.out, CSID_VIDEO, TYPE_VIDEO, ts, &[], &p.payload);
                        }
                        (Form::FlvOpaque, TrackKind::Audio) => {
                            self.chunker.message(&mut self.out, CSID_AUDIO, TYPE_AUDIO, ts, &[], &p.payload);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<u64>> {
        if !self.pending.is_empty() && self.out.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            self.out.push_own(&pending);
        }
        let io = &mut self.io;
        self.out.poll_write_to(io, cx).map_err(Error::from)
    }

    fn poll_peer(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut rb = ReadBuf::new(&mut self.read_buf);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        if n == 0 {
            return Poll::Ready(Err(RtmpError::Closed("publishing").into()));
        }
        let input = &self.read_buf[..n];
        let session = &mut self.session;
        let results = guarded("input", || session.handle_input(input))?;
        for ev in collect(results, &mut self.pending)? {
            match ev {
                ClientSessionEvent::UnhandleableOnStatusCode { code } if is_error_status(&code) => {
                    return Poll::Ready(Err(RtmpError::Rejected { code, description: String::new() }.into()));
                }
                other => debug!(?other, "destination event"),
            }
        }
        Poll::Ready(Ok(()))
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            // whatever is still buffered goes first
            std::future::poll_fn(|cx| self.poll_flush(cx)).await?;
            let mut out = std::mem::take(&mut self.pending);
            let session = &mut self.session;
            if let Ok(results) = guarded("unpublish", || session.stop_publishing()) {
                collect(results, &mut out)?;
            }
            if !out.is_empty() {
                self.io.write_all(&out).await?;
            }
            self.io.flush().await?;
            // Close our side, then read until the peer closes: dropping a socket with
            // unread data makes the kernel send RST and the peer may discard the tail.
            let _ = self.io.shutdown().await;
            let drain = async {
                loop {
                    match self.io.read(&mut self.read_buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            };
            let _ = tokio::time::timeout(self.close_timeout, drain).await;
            info!(url = %self.url, "stream finished");
            Ok(())
        })
    }
}

/// Opens [`RtmpSink`]s to one URL.
#[derive(Clone, Debug)]
pub struct RtmpConnector {
    pub url: RtmpUrl,
    pub options: RtmpPushOptions,
}

impl RtmpConnector {
    pub fn new(url: RtmpUrl, options: RtmpPushOptions) -> RtmpConnector {
        RtmpConnector { url, options }
    }
}

impl Connector for RtmpConnector {
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Sink>>> {
        Box::pin(async move {
            if self.url.key.is_empty() {
                return Err(Error::new(ErrorKind::Config, format!("destination {} has no stream key", self.url)));
            }
            let sink = RtmpSink::connect(&self.url, &self.options).await?;
            Ok(Box::new(sink) as Box<dyn Sink>)
        })
    }

    fn describe(&self) -> String {
        self.url.to_string()
    }
}
