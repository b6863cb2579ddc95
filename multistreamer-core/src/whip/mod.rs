//! WHIP ingest (RFC 9725, WebRTC-HTTP Ingestion Protocol): a browser tab or OBS publishes
//! H.264 and Opus over WebRTC.
//!
//! The HTTP side (the `POST` of the offer, the `DELETE` of a session) belongs to the server
//! embedding this: it hands the offer to [`WhipServer::publish`] and answers with what comes
//! back. The media arrives on UDP sockets shared by every session (one per announced
//! address, all on one port, so that a firewall opens one port): each datagram goes to the
//! session whose WebRTC state accepts it. A session is a [`Source`](crate::source::Source)
//! like any other input: H.264 access units are kept as sent (converted to AVCC), Opus is
//! encoded to AAC once, so relay, ladder, recording and HLS take it unchanged.
//!
//! ICE is "lite" (the server only answers connectivity checks), without trickle: the
//! answer carries every candidate. Behind NAT, name the public address
//! ([`WhipOptions::candidates`]).

mod session;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::error::{Error, ErrorKind, Result};
use crate::hub::Hub;
use crate::rtmp::{PublishAuthorizer, PublishRequest};
use crate::sync::lock;
pub use crate::whip_offer::{MAX_OFFER, OfferSummary, summarize as summarize_offer};

/// Settings of the WHIP ingest.
#[derive(Clone, Debug)]
pub struct WhipOptions {
    /// Where media arrives. An unspecified address (`0.0.0.0`) binds one socket per address
    /// of this machine (see [`local_addresses`]), all on this port (0: one chosen by the
    /// system).
    pub udp: SocketAddr,
    /// Addresses announced to publishers as ICE candidates (a public address behind NAT
    /// forwarding the port). Empty: the addresses bound.
    pub candidates: Vec<IpAddr>,
    /// The application a publisher's key belongs to (as in `rtmp://host/APP/KEY`).
    pub app: String,
    pub max_sessions: usize,
    /// The AAC bitrate the publisher's Opus is encoded to.
    pub audio_kbps: u32,
    /// A session whose WebRTC connection is not up this long after the answer ends.
    pub connect_timeout: Duration,
}

impl Default for WhipOptions {
    fn default() -> WhipOptions {
        WhipOptions {
            udp: SocketAddr::from(([0, 0, 0, 0], 8189)),
            candidates: Vec::new(),
            app: "live".into(),
            max_sessions: 64,
            audio_kbps: 128,
            connect_timeout: Duration::from_secs(15),
        }
    }
}

/// Why an offer was not answered; [`WhipError::status`] is the HTTP status to answer with.
#[derive(Debug, thiserror::Error)]
pub enum WhipError {
    /// The offer is not SDP, or offers nothing usable.
    #[error("{0}")]
    BadOffer(String),
    /// No key, or a key the authorizer refused.
    #[error("{0}")]
    Unauthorized(String),
    #[error("the stream already has a publisher")]
    Conflict,
    #[error("too many WHIP sessions ({0}); try again later")]
    Busy(usize),
    #[error("{0}")]
    Internal(String),
}

impl WhipError {
    pub fn status(&self) -> u16 {
        match self {
            WhipError::BadOffer(_) => 400,
            WhipError::Unauthorized(_) => 401,
            WhipError::Conflict => 409,
            WhipError::Busy(_) => 503,
            WhipError::Internal(_) => 500,
        }
    }
}

/// An offer to answer.
#[derive(Debug)]
pub struct WhipRequest<'a> {
    /// The HTTP client's address (logged, and passed to the authorizer).
    pub peer: SocketAddr,
    pub key: &'a str,
    pub offer: &'a str,
}

/// An answered offer.
#[derive(Debug)]
pub struct WhipAnswer {
    /// The session's id: `DELETE` on its resource ends it ([`WhipServer::stop`]).
    pub session: String,
    /// The hub stream the session publishes.
    pub stream: String,
    pub sdp: String,
}

/// The WHIP ingest: its UDP sockets and sessions. Cheap to clone.
#[derive(Clone)]
pub struct WhipServer {
    inner: Arc<Inner>,
}

impl fmt::Debug for WhipServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WhipServer").field("sockets", &self.local_addrs()).finish()
    }
}

struct Inner {
    sockets: Vec<Socket>,
    hub: Hub,
    auth: Arc<dyn PublishAuthorizer>,
    options: WhipOptions,
    sessions: Mutex<Registry>,
    cancel: CancellationToken,
}

/// A bound socket and the address the sessions know it by (its ICE candidate).
struct Socket {
    udp: Arc<UdpSocket>,
    candidate: SocketAddr,
}

#[derive(Default)]
struct Registry {
    by_id: HashMap<String, Entry>,
    /// (remote, local candidate) → session id, learnt from the first datagram a session took.
    routes: HashMap<(SocketAddr, SocketAddr), String>,
}

struct Entry {
    rtc: Arc<Mutex<Rtc>>,
    tx: mpsc::Sender<Datagram>,
    cancel: CancellationToken,
}

/// A received datagram on its way to its session.
struct Datagram {
    at: Instant,
    source: SocketAddr,
    destination: SocketAddr,
    data: Vec<u8>,
}

/// Datagrams queued for one session (about a second of 8 Mbit/s video).
const SESSION_QUEUE: usize = 1024;

impl WhipServer {
    /// Binds the media sockets. Run [`WhipServer::run`] to receive on them.
    pub async fn bind(hub: Hub, auth: Arc<dyn PublishAuthorizer>, options: WhipOptions) -> Result<WhipServer> {
        let ips = if options.udp.ip().is_unspecified() { local_addresses() } else { vec![options.udp.ip()] };
        let mut sockets: Vec<Socket> = Vec::new();
        let mut port = options.udp.port();
        for ip in ips {
            let udp = match UdpSocket::bind(SocketAddr::new(ip, port)).await {
                Ok(s) => s,
                // the port is taken on this address only: another port there
                Err(_) if !sockets.is_empty() => UdpSocket::bind(SocketAddr::new(ip, 0)).await?,
                Err(e) => {
                    return Err(Error::new(ErrorKind::Config, format!("WHIP media socket on {ip}:{port}: {e}")));
                }
            };
            let local = udp.local_addr()?;
            if port == 0 {
                port = local.port();
            }
            sockets.push(Socket { udp: Arc::new(udp), candidate: local });
        }
        // announced addresses in place of the bound ones (NAT): each with the first socket's port
        if !options.candidates.is_empty() {
            let first = sockets.first().map(|s| (Arc::clone(&s.udp), s.candidate.port()));
            if let Some((udp, port)) = first {
                sockets = options
                    .candidates
                    .iter()
                    .map(|ip| Socket { udp: Arc::clone(&udp), candidate: SocketAddr::new(*ip, port) })
                    .collect();
            }
        }
        if sockets.is_empty() {
            return Err(Error::new(ErrorKind::Config, "WHIP: no address to receive media on"));
        }
        Ok(WhipServer {
            inner: Arc::new(Inner {
                sockets,
                hub,
                auth,
                options,
                sessions: Mutex::default(),
                cancel: CancellationToken::new(),
            }),
        })
    }

    /// The addresses announced as ICE candidates.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.inner.sockets.iter().map(|s| s.candidate).collect()
    }

    /// The number of sessions (connecting or publishing).
    pub fn session_count(&self) -> usize {
        lock(&self.inner.sessions).by_id.len()
    }

    /// Receives media until `cancel` fires; then every session ends.
    pub async fn run(self, cancel: CancellationToken) {
        let mut receivers = tokio::task::JoinSet::new();
        // announced candidates may share one socket: one receiver per socket
        for (i, socket) in self.inner.sockets.iter().enumerate() {
            if self.inner.sockets[..i].iter().any(|s| Arc::ptr_eq(&s.udp, &socket.udp)) {
                continue;
            }
            let inner = Arc::clone(&self.inner);
            let (udp, candidate) = (Arc::clone(&socket.udp), socket.candidate);
            let cancel = cancel.clone();
            receivers.spawn(async move { receive(inner, udp, candidate, cancel).await });
        }
        cancel.cancelled().await;
        self.inner.cancel.cancel();
        receivers.shutdown().await;
    }

    /// Answers an offer: checks it, authorizes the key, takes the hub stream and starts the
    /// session, which publishes once its WebRTC connection is up.
    pub async fn publish(&self, request: WhipRequest<'_>) -> std::result::Result<WhipAnswer, WhipError> {
        let inner = &self.inner;
        let count = self.session_count();
        if count >= inner.options.max_sessions {
            warn!(peer = %request.peer, sessions = count, "WHIP offer refused: too many sessions");
            return Err(WhipError::Busy(count));
        }
        let summary = summarize_offer(request.offer).map_err(WhipError::BadOffer)?;
        if request.key.is_empty() {
            return Err(WhipError::Unauthorized("no stream key (send it as the Bearer token)".into()));
        }
        let publish_request =
            PublishRequest { peer: request.peer, app: inner.options.app.clone(), key: request.key.to_string() };
        let stream = inner.auth.authorize(&publish_request).await.map_err(|r| {
            warn!(peer = %request.peer, reason = %r.reason, "WHIP publish refused");
            WhipError::Unauthorized(r.reason)
        })?;
        if inner.hub.get(&stream).is_some_and(|s| s.is_publishing()) {
            warn!(%stream, "WHIP publish refused: the stream already has a publisher");
            return Err(WhipError::Conflict);
        }
        let parsed = SdpOffer::from_sdp_string(request.offer)
            .map_err(|e| WhipError::BadOffer(format!("the offer's SDP is not valid: {}", readable(&e.to_string()))))?;
        let now = Instant::now();
        let mut rtc =
            Rtc::builder().set_ice_lite(true).clear_codecs().enable_h264(true).enable_opus(true, false).build(now);
        for socket in &inner.sockets {
            match Candidate::host(socket.candidate, "udp") {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => warn!(address = %socket.candidate, error = %e, "WHIP: address not usable as a candidate"),
            }
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(parsed)
            .map_err(|e| WhipError::BadOffer(format!("the offer cannot be answered: {e}")))?;
        let publisher = inner.hub.publish(&stream).map_err(|_| WhipError::Conflict)?;
        let id = session_id();
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let cancel = inner.cancel.child_token();
        let rtc = Arc::new(Mutex::new(rtc));
        lock(&inner.sessions).by_id.insert(id.clone(), Entry { rtc: Arc::clone(&rtc), tx, cancel: cancel.clone() });
        info!(peer = %request.peer, %stream, session = %id, video = summary.video, audio = summary.audio, "WHIP offer answered");
        let run = session::Session::new(session::SessionParts {
            rtc,
            rx,
            sockets: inner.sockets.iter().map(|s| (Arc::clone(&s.udp), s.candidate)).collect(),
            summary,
            audio_kbps: inner.options.audio_kbps,
            connect_timeout: inner.options.connect_timeout,
            cancel,
            start: now,
        });
        let registry = Arc::clone(inner);
        let session_id = id.clone();
        tokio::spawn(
            async move {
                // a panic in the session stays inside it; the registry forgets it either way
                let result = tokio::spawn(run.publish(publisher)).await;
                forget(&registry, &session_id);
                match result {
                    Ok(Ok(())) => info!("WHIP session ended"),
                    Ok(Err(e)) if e.kind() == ErrorKind::Shutdown => info!(reason = %e, "WHIP session ended"),
                    Ok(Err(e)) => warn!(reason = %e, "WHIP publisher disconnected"),
                    Err(_) => warn!("WHIP session task failed (contained)"),
                }
            }
            .instrument(info_span!("whip", session = %id, peer = %request.peer)),
        );
        Ok(WhipAnswer { session: id, stream, sdp: answer.to_sdp_string() })
    }

    /// Ends a session (the publisher's `DELETE`). `false`: no such session.
    pub fn stop(&self, session: &str) -> bool {
        match lock(&self.inner.sessions).by_id.get(session) {
            Some(entry) => {
                entry.cancel.cancel();
                true
            }
            None => false,
        }
    }
}

/// A parser's message on one line, without the parser's internal positions.
fn readable(message: &str) -> String {
    let lines: Vec<&str> =
        message.lines().map(str::trim).filter(|l| !l.is_empty() && !l.contains("PointerOffset")).collect();
    if lines.is_empty() { "unreadable".into() } else { lines.join("; ") }
}

fn forget(inner: &Inner, id: &str) {
    let mut sessions = lock(&inner.sessions);
    sessions.by_id.remove(id);
    sessions.routes.retain(|_, s| s != id);
}

/// A random session id (128 bits, hex): it is the capability to end the session.
fn session_id() -> String {
    (0..4).map(|_| format!("{:08x}", fastrand::u32(..))).collect()
}

/// The addresses a `0.0.0.0` WHIP socket binds: the one this machine reaches other hosts
/// from (its default route, found without sending anything), and loopback.
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Ok(probe) = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
        // connecting a UDP socket only picks a route and a source address
        let local = probe.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).and_then(|()| probe.local_addr());
        if let Ok(local) = local.map(|a| a.ip())
            && !local.is_unspecified()
            && !local.is_loopback()
        {
            out.push(local);
        }
    }
    out.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    out
}

/// Receives on one socket and hands each datagram to its session.
async fn receive(inner: Arc<Inner>, udp: Arc<UdpSocket>, candidate: SocketAddr, cancel: CancellationToken) {
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, source) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = udp.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP "port unreachable" from a peer that left shows up here on Linux
                    debug!(error = %e, "WHIP socket receive error");
                    continue;
                }
            },
        };
        let data = &buf[..n];
        let Some(tx) = route(&inner, source, candidate, data) else { continue };
        let datagram = Datagram { at: Instant::now(), source, destination: candidate, data: data.to_vec() };
        if tx.try_send(datagram).is_err() {
            debug!(%source, "WHIP session queue full or closed; datagram dropped");
        }
    }
}

/// The session a datagram belongs to: the one that took datagrams from this remote address
/// before, else the first whose WebRTC state accepts it (STUN names its session).
fn route(inner: &Inner, source: SocketAddr, candidate: SocketAddr, data: &[u8]) -> Option<mpsc::Sender<Datagram>> {
    let mut sessions = lock(&inner.sessions);
    let known = sessions.routes.get(&(source, candidate)).and_then(|id| sessions.by_id.get(id));
    if let Some(entry) = known {
        return Some(entry.tx.clone());
    }
    let contents = data.try_into().ok()?;
    let input =
        Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: candidate, contents });
    let found =
        sessions.by_id.iter().find(|(_, e)| lock(&e.rtc).accepts(&input)).map(|(id, e)| (id.clone(), e.tx.clone()));
    let (id, tx) = found?;
    if sessions.routes.len() < 4 * inner.options.max_sessions.max(1) {
        sessions.routes.insert((source, candidate), id);
    }
    Some(tx)
}
