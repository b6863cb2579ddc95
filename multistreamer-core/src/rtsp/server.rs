//! RTSP push ingest: `ffmpeg -f rtsp rtsp://HOST:8554/APP/KEY` or GStreamer's
//! `rtspclientsink` publish as they would to MediaMTX (OPTIONS, ANNOUNCE with SDP, SETUP with
//! TCP-interleaved transport, RECORD, TEARDOWN, GET/SET_PARAMETER keep-alives). The path's
//! key goes through the same [`PublishAuthorizer`] as RTMP; optional Basic credentials.
//! Messages are parsed with `rtsp-types`, the SDP with `sdp-types`; RTP is depacketized by
//! [`super::depacketize`]. A malformed peer is disconnected with a logged reason.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rtsp_types::{Message, Method, Response, StatusCode, Version, headers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::{Instrument, debug, info, info_span, warn};

use super::depacketize::{
    AacRtpParams, DtsEstimator, H264Depacketizer, RtpClock, RtpPacket, depacketize_aac, depacketize_latm,
};
use super::sdp::{MediaFormat, SdpMedia, parse_announce};
use crate::error::{ErrorKind, Result};
use crate::hub::{Hub, Publisher};
use crate::media::{Codec, MediaInfo, MediaItem, Packet, Timebase, Timestamp, Track, TrackId, TrackKind};
use crate::rtmp::{PublishAuthorizer, PublishRequest};
use crate::source::{ItemReader, from_reader, publish_source};

/// Settings of the RTSP ingest.
#[derive(Clone, Debug)]
pub struct RtspIngestOptions {
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// The largest RTSP request (headers + body) accepted.
    pub max_request: usize,
    pub max_connections: usize,
    /// Require HTTP Basic credentials (user, password) on every request.
    pub credentials: Option<(String, String)>,
}

impl Default for RtspIngestOptions {
    fn default() -> RtspIngestOptions {
        RtspIngestOptions {
            idle_timeout: Duration::from_secs(30),
            max_request: 64 * 1024,
            max_connections: 256,
            credentials: None,
        }
    }
}

/// Listens for RTSP publishers and feeds them into the hub.
pub struct RtspIngest {
    listener: TcpListener,
    hub: Hub,
    auth: Arc<dyn PublishAuthorizer>,
    options: RtspIngestOptions,
}

impl std::fmt::Debug for RtspIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtspIngest").field("addr", &self.listener.local_addr().ok()).finish()
    }
}

impl RtspIngest {
    pub async fn bind(
        addr: SocketAddr,
        hub: Hub,
        auth: Arc<dyn PublishAuthorizer>,
        options: RtspIngestOptions,
    ) -> Result<RtspIngest> {
        let listener = TcpListener::bind(addr).await?;
        Ok(RtspIngest { listener, hub, auth, options })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Accepts publishers until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        loop {
            let (socket, peer) = tokio::select! {
                _ = cancel.cancelled() => break,
                r = self.listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "RTSP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            if active.load(std::sync::atomic::Ordering::Relaxed) >= self.options.max_connections {
                warn!(%peer, "too many RTSP connections; refused");
                continue;
            }
            let _ = socket.set_nodelay(true);
            let conn = Connection::new(peer, self.hub.clone(), Arc::clone(&self.auth), self.options.clone());
            let active = Arc::clone(&active);
            active.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let cancel = cancel.child_token();
            tokio::spawn(
                async move {
                    // A panic in a parser stays inside this connection.
                    let result = tokio::spawn(conn.serve(socket, cancel)).await;
                    match result {
                        Ok(Ok(())) => debug!("connection closed"),
                        Ok(Err(reason)) => warn!(%reason, "RTSP publisher disconnected"),
                        Err(_) => warn!("RTSP connection task failed (contained)"),
                    }
                    active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                }
                .instrument(info_span!("rtsp", %peer)),
            );
        }
    }
}

enum TrackState {
    H264 { depack: H264Depacketizer, clock: RtpClock, id: TrackId },
    Aac { params: AacRtpParams, clock: RtpClock, id: TrackId, rate: u32 },
    Latm { clock: RtpClock, id: TrackId, rate: u32 },
}

struct Connection {
    peer: SocketAddr,
    hub: Hub,
    auth: Arc<dyn PublishAuthorizer>,
    options: RtspIngestOptions,
    session: String,
    stream: Option<String>,
    media: Vec<SdpMedia>,
    /// interleaved RTP channel → media index
    channels: HashMap<u8, usize>,
    tracks: HashMap<usize, TrackState>,
    info: MediaInfo,
    /// Handed to [`Connection::serve`] when RECORD was accepted.
    publisher: Option<Publisher>,
    recording: bool,
    /// Media mapped from RTP, not yet taken by the source.
    items: VecDeque<MediaItem>,
    out: Vec<u8>,
    /// Video DTS is not sent over RTP; it is derived from the PTS.
    dts: DtsEstimator,
    /// RTCP sender reports per media index: (NTP seconds, unwrapped RTP ticks).
    sender_reports: HashMap<usize, (f64, i64)>,
    /// Sender reports that came before their media's first RTP packet (senders send one
    /// just before it): (NTP seconds, RTP timestamp), placed once the media has an origin.
    early_reports: HashMap<usize, (f64, u32)>,
    /// Ticks added to each media's timestamps so that they share the senders' wall clock.
    sync_offsets: HashMap<usize, i64>,
    synced: bool,
    /// Media is held back until the streams are aligned (or [`SYNC_HOLD_MS`] of it has
    /// come without sender reports), so that the alignment never shows as a jump.
    released: bool,
    /// The first and last timestamps (ms) of the media held so far.
    held_ms: Option<(i64, i64)>,
}

/// The most media held back while waiting for every stream's first sender report.
const SYNC_HOLD_MS: i64 = 1000;

/// The timeline is shifted by this much so that video DTS (PTS minus the reordering
/// allowance of [`DtsEstimator`]) never goes below zero: 200 ms.
const REORDER_ALLOWANCE_90K: i64 = 18_000;

type Reason = RtspIngestError;

impl Connection {
    fn new(peer: SocketAddr, hub: Hub, auth: Arc<dyn PublishAuthorizer>, options: RtspIngestOptions) -> Connection {
        Connection {
            peer,
            hub,
            auth,
            options,
            session: format!("{:016x}", fastrand::u64(..)),
            stream: None,
            media: Vec::new(),
            channels: HashMap::new(),
            tracks: HashMap::new(),
            info: MediaInfo::default(),
            publisher: None,
            recording: false,
            items: VecDeque::new(),
            out: Vec::new(),
            dts: DtsEstimator::new(90_000),
            sender_reports: HashMap::new(),
            early_reports: HashMap::new(),
            sync_offsets: HashMap::new(),
            synced: false,
            released: false,
            held_ms: None,
        }
    }

    /// An RTCP compound packet on the channel after `rtp_channel`: a sender report maps the
    /// stream's RTP clock to the sender's wall clock; once every stream has one, the streams
    /// are aligned on it (lip sync), once per session.
    fn on_rtcp(&mut self, rtp_channel: u8, data: &[u8]) {
        let Some(&index) = self.channels.get(&rtp_channel) else { return };
        let Some((ntp, rtp)) = parse_sender_report(data) else { return };
        self.place_report(index, ntp, rtp);
    }

    fn clock_of(&mut self, index: usize) -> Option<&mut RtpClock> {
        match self.tracks.get_mut(&index)? {
            TrackState::H264 { clock, .. } => Some(clock),
            TrackState::Aac { clock, .. } | TrackState::Latm { clock, .. } => Some(clock),
        }
    }

    fn place_report(&mut self, index: usize, ntp: f64, rtp: u32) {
        let Some(clock) = self.clock_of(index) else { return };
        if clock.origin().is_none() {
            // no RTP yet: placed on our timeline with the first packet
            self.early_reports.entry(index).or_insert((ntp, rtp));
            return;
        }
        let ticks = clock.unwrap(rtp);
        self.sender_reports.entry(index).or_insert((ntp, ticks));
        if self.synced || self.sender_reports.len() < self.tracks.len() {
            return;
        }
        self.synced = true;
        let reports: Vec<(usize, u32, f64, i64)> = self
            .sender_reports
            .iter()
            .filter_map(|(&i, &(ntp, t))| Some((i, self.media.get(i)?.clock_rate, ntp, t)))
            .collect();
        let offsets = lip_sync_offsets(&reports.iter().map(|&(_, c, n, t)| (c, n, t)).collect::<Vec<_>>());
        for ((i, clock, _, _), off) in reports.iter().zip(offsets) {
            let ms = off as f64 * 1000.0 / f64::from(*clock);
            if ms.abs() < 10.0 {
                continue;
            }
            self.sync_offsets.insert(*i, off);
            let Some(track) = self.tracks.get(i) else { continue };
            let id = match track {
                TrackState::H264 { id, .. } => {
                    self.dts.shift(off);
                    *id
                }
                TrackState::Aac { id, .. } | TrackState::Latm { id, .. } => *id,
            };
            if self.released {
                // too late to align what was already sent: the media jumps once
                warn!(stream = i, shift_ms = ms, "lip sync from RTCP sender reports after the start: timestamps jump");
                continue;
            }
            info!(stream = i, shift_ms = ms, "lip sync from RTCP sender reports");
            // the media held back so far moves with the rest
            let moved = Timestamp::new(off, Timebase::new(1, *clock).unwrap_or(Timebase::HZ_90K));
            for item in &mut self.items {
                if let MediaItem::Packet(p) = item
                    && p.track == id
                {
                    let delta = moved.rescale(p.dts.timebase()).ticks();
                    p.dts = Timestamp::new(p.dts.ticks() + delta, p.dts.timebase());
                    p.pts = Timestamp::new(p.pts.ticks() + delta, p.pts.timebase());
                }
            }
        }
    }

    /// Queues a packet for the source, noting how much media is held back.
    fn push_packet(&mut self, packet: Packet) {
        if !self.released {
            let ms = packet.dts.rescale(Timebase::MILLIS).ticks();
            let (first, last) = self.held_ms.get_or_insert((ms, ms));
            *first = (*first).min(ms);
            *last = (*last).max(ms);
        }
        self.items.push_back(MediaItem::Packet(packet));
    }

    /// Whether queued media may go to the source: once the streams are aligned, or when
    /// the sender sends no reports soon enough.
    fn may_release(&mut self) -> bool {
        if !self.released && (self.synced || self.held_ms.is_some_and(|(first, last)| last - first >= SYNC_HOLD_MS)) {
            if !self.synced {
                debug!("no RTCP sender reports for every stream within 1 s: not aligned yet");
            }
            self.released = true;
        }
        self.released
    }

    async fn serve(self, socket: TcpStream, cancel: CancellationToken) -> Result<()> {
        let idle = Box::pin(tokio::time::sleep(self.options.idle_timeout));
        let cancelled = Box::pin(cancel.cancelled_owned());
        let mut session =
            Session { conn: self, socket, buf: BytesMut::with_capacity(64 * 1024), idle, cancelled, end: None };
        // OPTIONS, ANNOUNCE, SETUP … until RECORD is accepted
        let publisher = loop {
            if let Some(p) = session.conn.publisher.take() {
                break p;
            }
            if !session.advance().await? {
                return Ok(());
            }
        };
        // From here on the connection is the publisher's source.
        let mut source = from_reader(session);
        publish_source(&mut source, &publisher).await
    }

    async fn step(&mut self, buf: &mut BytesMut) -> Result<Step, Reason> {
        if buf.is_empty() {
            return Ok(Step::NeedMore);
        }
        if buf[0] == b'$' {
            if buf.len() < 4 {
                return Ok(Step::NeedMore);
            }
            let channel = buf[1];
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            if buf.len() < 4 + len {
                return Ok(Step::NeedMore);
            }
            let frame = buf.split_to(4 + len);
            self.on_data(channel, &frame[4..])?;
            return Ok(Step::Again);
        }
        let parsed = Message::<Vec<u8>>::parse(&buf[..]);
        match parsed {
            Ok((Message::Request(req), consumed)) => {
                buf.advance(consumed);
                self.on_request(req).await
            }
            Ok((Message::Response(_), consumed)) => {
                buf.advance(consumed); // answers to our (absent) requests: ignore
                Ok(Step::Again)
            }
            Ok((Message::Data(d), consumed)) => {
                buf.advance(consumed);
                self.on_data(d.channel_id(), d.as_slice())?;
                Ok(Step::Again)
            }
            Err(rtsp_types::ParseError::Incomplete(_)) => {
                if buf.len() > self.options.max_request {
                    Err(RtspIngestError::RequestTooLarge(self.options.max_request))
                } else {
                    Ok(Step::NeedMore)
                }
            }
            Err(_) => {
                self.respond(StatusCode::BadRequest, None, &[], b"");
                Err(RtspIngestError::Malformed)
            }
        }
    }

    fn respond(
        &mut self,
        status: StatusCode,
        cseq: Option<&str>,
        extra: &[(rtsp_types::HeaderName, String)],
        body: &[u8],
    ) {
        let mut b = Response::builder(Version::V1_0, status).header(headers::SERVER, "multistreamer");
        if let Some(c) = cseq {
            b = b.header(headers::CSEQ, c);
        }
        for (k, v) in extra {
            b = b.header(k.clone(), v.as_str());
        }
        let resp = b.build(body.to_vec());
        let _ = resp.write(&mut self.out);
    }

    fn authorized(&self, req: &rtsp_types::Request<Vec<u8>>) -> bool {
        let Some((user, pass)) = &self.options.credentials else { return true };
        let Some(v) = req.header(&headers::AUTHORIZATION) else { return false };
        let Some(b64) = v.as_str().strip_prefix("Basic ").map(str::trim) else { return false };
        let expected = basic_token(user, pass);
        // compare without an early exit
        b64.len() == expected.len() && b64.bytes().zip(expected.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
    }

    async fn on_request(&mut self, req: rtsp_types::Request<Vec<u8>>) -> Result<Step, Reason> {
        let cseq = req.header(&headers::CSEQ).map(|v| v.as_str().to_string());
        let cseq = cseq.as_deref();
        if !self.authorized(&req) {
            self.respond(
                StatusCode::Unauthorized,
                cseq,
                &[(headers::WWW_AUTHENTICATE, "Basic realm=\"multistreamer\"".into())],
                b"",
            );
            // Clients retry with credentials on the same connection.
            return Ok(Step::Again);
        }
        let session_hdr = [(headers::SESSION, format!("{};timeout=60", self.session))];
        match req.method() {
            Method::Options => {
                let public = "OPTIONS, ANNOUNCE, SETUP, RECORD, TEARDOWN, GET_PARAMETER, SET_PARAMETER";
                self.respond(StatusCode::Ok, cseq, &[(headers::PUBLIC, public.into())], b"");
            }
            Method::Announce => {
                let path = req.request_uri().map(|u| u.path().to_string()).unwrap_or_default();
                let mut parts = path.trim_matches('/').splitn(2, '/');
                let (app, key) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
                if !self.auth.accepts_app(&app) {
                    self.respond(StatusCode::NotFound, cseq, &[], b"");
                    return Err(RtspIngestError::UnknownApp(app));
                }
                let request = PublishRequest { peer: self.peer, app, key };
                let name = match self.auth.authorize(&request).await {
                    Ok(n) => n,
                    Err(rej) => {
                        self.respond(StatusCode::Forbidden, cseq, &[], b"");
                        return Err(RtspIngestError::Refused(rej.reason));
                    }
                };
                let media = match parse_announce(req.body()) {
                    Ok(m) => m,
                    Err(e) => {
                        self.respond(StatusCode::BadRequest, cseq, &[], b"");
                        return Err(RtspIngestError::Announce(e.to_string()));
                    }
                };
                info!(stream = %name, media = media.len(), "RTSP publisher announced");
                self.media = media;
                self.stream = Some(name);
                self.respond(StatusCode::Ok, cseq, &[], b"");
            }
            Method::Setup => {
                if self.stream.is_none() {
                    self.respond(StatusCode::MethodNotValidInThisState, cseq, &[], b"");
                    return Ok(Step::Again);
                }
                let uri = req.request_uri().map(|u| u.to_string()).unwrap_or_default();
                let Some(index) = self.media.iter().position(|m| uri.ends_with(&m.control) || m.control == uri) else {
                    self.respond(StatusCode::NotFound, cseq, &[], b"");
                    return Err(RtspIngestError::UnknownStream(uri));
                };
                let transport = req.header(&headers::TRANSPORT).map(|v| v.as_str().to_string()).unwrap_or_default();
                let Some(channel) = interleaved_channel(&transport) else {
                    // UDP is not offered: clients fall back to TCP (ffmpeg: -rtsp_transport tcp).
                    self.respond(StatusCode::UnsupportedTransport, cseq, &session_hdr, b"");
                    return Ok(Step::Again);
                };
                self.channels.insert(channel, index);
                let reply =
                    format!("RTP/AVP/TCP;unicast;interleaved={}-{};mode=record", channel, channel.wrapping_add(1));
                let mut extra = vec![(headers::TRANSPORT, reply)];
                extra.extend(session_hdr.iter().cloned());
                self.respond(StatusCode::Ok, cseq, &extra, b"");
            }
            Method::Record => {
                let Some(name) = self.stream.clone() else {
                    self.respond(StatusCode::MethodNotValidInThisState, cseq, &[], b"");
                    return Ok(Step::Again);
                };
                if self.channels.is_empty() {
                    self.respond(StatusCode::MethodNotValidInThisState, cseq, &[], b"");
                    return Err(RtspIngestError::RecordWithoutSetup);
                }
                let publisher = match self.hub.publish(&name) {
                    Ok(p) => p,
                    Err(e) => {
                        self.respond(StatusCode::Forbidden, cseq, &[], b"");
                        return Err(RtspIngestError::Publish { stream: name, reason: e.to_string() });
                    }
                };
                self.start_tracks();
                if !self.info.tracks.is_empty() {
                    self.items.push_back(MediaItem::Info(Arc::new(self.info.clone())));
                }
                self.publisher = Some(publisher);
                self.recording = true;
                info!(stream = %name, "RTSP publisher recording");
                self.respond(StatusCode::Ok, cseq, &session_hdr, b"");
            }
            Method::Teardown => {
                self.respond(StatusCode::Ok, cseq, &session_hdr, b"");
                info!("RTSP publisher finished");
                return Ok(Step::Close);
            }
            Method::GetParameter | Method::SetParameter => self.respond(StatusCode::Ok, cseq, &session_hdr, b""),
            other => {
                self.respond(StatusCode::MethodNotAllowed, cseq, &[], b"");
                debug!(method = ?other, "method not allowed on an ingest");
            }
        }
        Ok(Step::Again)
    }

    fn start_tracks(&mut self) {
        for (&_channel, &index) in &self.channels {
            let Some(m) = self.media.get(index) else { continue };
            let id = TrackId(index as u32);
            match &m.format {
                MediaFormat::H264 { .. } | MediaFormat::H265 { .. } => {
                    let mut depack = match &m.format {
                        MediaFormat::H265 { vps, sps, pps } => {
                            H264Depacketizer::hevc(vps.clone(), sps.clone(), pps.clone())
                        }
                        MediaFormat::H264 { params } => H264Depacketizer::with_params(params.clone()),
                        _ => continue,
                    };
                    if let Some(Ok(codec)) = depack.codec() {
                        self.info.set_track(Track { id, codec, timebase: Timebase::HZ_90K });
                    }
                    let _ = depack.take_params_changed();
                    self.tracks.insert(index, TrackState::H264 { depack, clock: RtpClock::default(), id });
                }
                MediaFormat::Aac { config, rtp } => {
                    let rate = m.clock_rate;
                    if let Some(tb) = Timebase::new(1, rate) {
                        self.info.set_track(Track { id, codec: Codec::Aac(config.clone()), timebase: tb });
                        self.tracks
                            .insert(index, TrackState::Aac { params: *rtp, clock: RtpClock::default(), id, rate });
                    }
                }
                MediaFormat::AacLatm { config } => {
                    let rate = m.clock_rate;
                    if let Some(tb) = Timebase::new(1, rate) {
                        self.info.set_track(Track { id, codec: Codec::Aac(config.clone()), timebase: tb });
                        self.tracks.insert(index, TrackState::Latm { clock: RtpClock::default(), id, rate });
                    }
                }
                MediaFormat::Other { encoding } => {
                    warn!(encoding = %encoding, "this RTSP stream is not ingested (H.264, H.265 and AAC are)");
                }
            }
        }
    }

    fn on_data(&mut self, channel: u8, data: &[u8]) -> Result<(), Reason> {
        let Some(&index) = self.channels.get(&channel) else {
            if channel % 2 == 1 && self.channels.contains_key(&(channel - 1)) {
                self.on_rtcp(channel - 1, data);
                return Ok(());
            }
            return Err(RtspIngestError::UnassignedChannel(channel));
        };
        if !self.recording {
            return Err(RtspIngestError::RtpBeforeRecord);
        }
        // a sender report that came before this media's first packet, placed now
        if self.clock_of(index).is_some_and(|c| c.origin().is_some())
            && let Some((ntp, rtp)) = self.early_reports.remove(&index)
        {
            self.place_report(index, ntp, rtp);
        }
        let pkt = RtpPacket::parse(data).map_err(|e| RtspIngestError::Rtp { channel, detail: e.to_string() })?;
        let expected = self.media.get(index).map_or(0, |m| m.payload_type);
        if pkt.payload_type != expected {
            return Err(RtspIngestError::PayloadType { got: pkt.payload_type, announced: expected });
        }
        let sync = self.sync_offsets.get(&index).copied().unwrap_or(0);
        let Some(track) = self.tracks.get_mut(&index) else { return Ok(()) };
        match track {
            TrackState::H264 { depack, clock, id } => {
                let unit = depack.push(&pkt).map_err(|e| depacketize("video", e))?;
                if depack.take_params_changed() {
                    match depack.codec() {
                        Some(Ok(codec)) => {
                            self.info.set_track(Track { id: *id, codec, timebase: Timebase::HZ_90K });
                            self.items.push_back(MediaItem::Info(Arc::new(self.info.clone())));
                        }
                        Some(Err(e)) => return Err(RtspIngestError::ParameterSets(e.to_string())),
                        None => {}
                    }
                }
                let Some(unit) = unit else { return Ok(()) };
                if self.info.track(*id).is_none() {
                    return Ok(()); // no SPS/PPS yet: nothing decodable can be sent
                }
                let pts = clock.unwrap(unit.timestamp) + REORDER_ALLOWANCE_90K + sync;
                let dts = self.dts.dts(pts);
                let id = *id;
                self.push_packet(Packet {
                    track: id,
                    kind: TrackKind::Video,
                    dts: Timestamp::new(dts, Timebase::HZ_90K),
                    pts: Timestamp::new(pts, Timebase::HZ_90K),
                    keyframe: unit.keyframe,
                    payload: unit.data,
                });
            }
            TrackState::Aac { .. } | TrackState::Latm { .. } => {
                let (clock, id, rate, units) = match track {
                    TrackState::Aac { params, clock, id, rate } => {
                        (clock, id, rate, depacketize_aac(*params, &pkt).map_err(|e| depacketize("AAC", e))?)
                    }
                    TrackState::Latm { clock, id, rate } => {
                        (clock, id, rate, depacketize_latm(&pkt).map_err(|e| depacketize("AAC (LATM)", e))?)
                    }
                    TrackState::H264 { .. } => return Ok(()),
                };
                let tb = Timebase::new(1, *rate).unwrap_or(Timebase::HZ_90K);
                let shift = Timestamp::new(REORDER_ALLOWANCE_90K, Timebase::HZ_90K).rescale(tb).ticks();
                let id = *id;
                let packets: Vec<Packet> = units
                    .into_iter()
                    .map(|(ts, au)| {
                        let t = Timestamp::new(clock.unwrap(ts) + shift + sync, tb);
                        Packet { track: id, kind: TrackKind::Audio, dts: t, pts: t, keyframe: true, payload: au }
                    })
                    .collect();
                for p in packets {
                    self.push_packet(p);
                }
            }
        }
        Ok(())
    }
}

/// Why an RTSP publisher was disconnected. Joined into [`crate::Error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtspIngestError {
    #[error("ANNOUNCE to unknown application {0:?}")]
    UnknownApp(String),
    #[error("publish refused: {0}")]
    Refused(String),
    #[error("ANNOUNCE: {0}")]
    Announce(String),
    #[error("SETUP for unknown stream {0}")]
    UnknownStream(String),
    #[error("RECORD without SETUP")]
    RecordWithoutSetup,
    #[error("cannot publish {stream}: {reason}")]
    Publish { stream: String, reason: String },
    #[error("interleaved data on channel {0}, which no SETUP assigned")]
    UnassignedChannel(u8),
    #[error("RTP before RECORD")]
    RtpBeforeRecord,
    #[error("channel {channel}: {detail}")]
    Rtp { channel: u8, detail: String },
    #[error("RTP payload type {got} on a stream announced as {announced}")]
    PayloadType { got: u8, announced: u8 },
    #[error("{codec}: {detail}")]
    Depacketize { codec: &'static str, detail: String },
    #[error("unusable in-band SPS/PPS: {0}")]
    ParameterSets(String),
    #[error("request larger than {0} bytes")]
    RequestTooLarge(usize),
    #[error("malformed RTSP request")]
    Malformed,
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("read: {0}")]
    Read(String),
    #[error("write: {0}")]
    Write(String),
    #[error("publisher closed the connection")]
    Closed,
}

impl RtspIngestError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RtspIngestError::UnknownApp(_) | RtspIngestError::Refused(_) | RtspIngestError::Publish { .. } => {
                ErrorKind::Rejected
            }
            RtspIngestError::Idle(_) => ErrorKind::Timeout,
            RtspIngestError::Read(_) | RtspIngestError::Write(_) | RtspIngestError::Closed => ErrorKind::Disconnected,
            _ => ErrorKind::Protocol,
        }
    }
}

fn depacketize(codec: &'static str, e: impl std::fmt::Display) -> RtspIngestError {
    RtspIngestError::Depacketize { codec, detail: e.to_string() }
}

/// A connection and its socket: driven by [`Connection::serve`] until RECORD, then the
/// publisher's [`crate::Source`] ([`ItemReader`]).
struct Session {
    conn: Connection,
    socket: TcpStream,
    buf: BytesMut,
    /// One timer for the connection, pushed back after each read.
    idle: Pin<Box<tokio::time::Sleep>>,
    /// One cancellation waiter for the connection.
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    /// How the connection ended (`None` inside: cleanly), once it has; the media still
    /// queued goes out first.
    end: Option<Option<Reason>>,
}

impl Session {
    /// Handles one buffered message (or reads more); `false` once the connection ended
    /// cleanly (TEARDOWN, cancelled, or closed before RECORD).
    async fn advance(&mut self) -> Result<bool, Reason> {
        let step = match self.conn.step(&mut self.buf).await {
            Ok(s) => s,
            Err(reason) => {
                // the error response (if any) goes out before the connection closes
                let _ = self.socket.write_all(&self.conn.out).await;
                return Err(reason);
            }
        };
        match step {
            Step::Again => return Ok(true),
            Step::Close => {
                self.socket.write_all(&self.conn.out).await.map_err(|e| RtspIngestError::Write(e.to_string()))?;
                return Ok(false);
            }
            Step::NeedMore => {}
        }
        if !self.conn.out.is_empty() {
            self.socket.write_all(&self.conn.out).await.map_err(|e| RtspIngestError::Write(e.to_string()))?;
            self.conn.out.clear();
        }
        let idle = self.conn.options.idle_timeout;
        let n = tokio::select! {
            biased;
            _ = self.cancelled.as_mut() => return Ok(false),
            r = self.socket.read_buf(&mut self.buf) => r.map_err(|e| RtspIngestError::Read(e.to_string()))?,
            _ = self.idle.as_mut() => return Err(RtspIngestError::Idle(idle)),
        };
        self.idle.as_mut().reset(tokio::time::Instant::now() + idle);
        if n == 0 {
            return if self.conn.recording { Err(RtspIngestError::Closed) } else { Ok(false) };
        }
        Ok(true)
    }
}

impl ItemReader for Session {
    async fn next_item(&mut self) -> Result<Option<MediaItem>> {
        loop {
            // media held back for alignment goes out anyway once the connection has ended
            if (self.conn.may_release() || self.end.is_some())
                && let Some(item) = self.conn.items.pop_front()
            {
                return Ok(Some(item));
            }
            match self.end.take() {
                Some(None) => return Ok(None),
                Some(Some(reason)) => return Err(reason.into()),
                None => {}
            }
            match self.advance().await {
                Ok(true) => {}
                Ok(false) => self.end = Some(None),
                Err(reason) => self.end = Some(Some(reason)),
            }
        }
    }
}

/// (NTP time in seconds, RTP timestamp) of an RTCP sender report at the start of `data`.
fn parse_sender_report(data: &[u8]) -> Option<(f64, u32)> {
    if data.len() < 20 || data[0] >> 6 != 2 || data[1] != 200 {
        return None;
    }
    let msw = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
    let lsw = u32::from_be_bytes([data[12], data[13], data[14], data[15]]);
    let rtp = u32::from_be_bytes([data[16], data[17], data[18], data[19]]);
    Some((f64::from(msw) + f64::from(lsw) / 4_294_967_296.0, rtp))
}

/// For streams given as (clock rate, NTP seconds of a sender report, our ticks at that
/// report), the ticks to add to each so that all start at the same wall-clock instant as the
/// earliest: each stream's timeline starts at its first packet, which senders do not emit
/// at the same moment.
pub(super) fn lip_sync_offsets(reports: &[(u32, f64, i64)]) -> Vec<i64> {
    let origins: Vec<f64> = reports.iter().map(|&(clock, ntp, t)| ntp - t as f64 / f64::from(clock.max(1))).collect();
    let earliest = origins.iter().copied().fold(f64::INFINITY, f64::min);
    reports.iter().zip(&origins).map(|(&(clock, _, _), o)| ((o - earliest) * f64::from(clock)).round() as i64).collect()
}

enum Step {
    Again,
    NeedMore,
    Close,
}

/// The first channel of `interleaved=a-b` in a TCP transport, if that is what is asked.
fn interleaved_channel(transport: &str) -> Option<u8> {
    transport.split(',').find_map(|spec| {
        let spec = spec.trim();
        if !spec.to_ascii_uppercase().starts_with("RTP/AVP/TCP") {
            return None;
        }
        spec.split(';').find_map(|p| p.trim().strip_prefix("interleaved=")?.split('-').next()?.parse().ok())
    })
}

fn basic_token(user: &str, pass: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_tcp_interleaved_transports() {
        assert_eq!(interleaved_channel("RTP/AVP/TCP;unicast;interleaved=2-3;mode=record"), Some(2));
        assert_eq!(interleaved_channel("RTP/AVP;unicast;client_port=5000-5001"), None);
        assert_eq!(interleaved_channel("RTP/AVP;unicast;client_port=5000-5001,RTP/AVP/TCP;interleaved=0-1"), Some(0));
        assert_eq!(interleaved_channel("RTP/AVP/TCP;interleaved=x"), None);
    }

    #[test]
    fn sender_reports_align_streams_on_the_wall_clock() {
        let mut sr = vec![0x80, 200, 0, 6, 0, 0, 0, 1];
        sr.extend_from_slice(&1000u32.to_be_bytes());
        sr.extend_from_slice(&0x8000_0000u32.to_be_bytes());
        sr.extend_from_slice(&90_000u32.to_be_bytes());
        assert_eq!(parse_sender_report(&sr), Some((1000.5, 90_000)));
        assert_eq!(parse_sender_report(&sr[..10]), None);
        // video's first packet was at wall 100.0 s; audio's at 100.25 s
        let offsets = lip_sync_offsets(&[(90_000, 101.0, 90_000), (48_000, 101.0, 36_000)]);
        assert_eq!(offsets, vec![0, 12_000], "audio starts 250 ms later: +12000 ticks at 48 kHz");
    }

    #[test]
    fn basic_credentials_are_base64() {
        assert_eq!(basic_token("Aladdin", "open sesame"), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(basic_token("a", "b"), "YTpi");
    }
}
