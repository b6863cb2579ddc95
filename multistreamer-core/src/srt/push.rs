//! SRT destinations (caller mode): the stream muxed into MPEG-TS, 7 transport packets per
//! SRT message.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Sink as _, Stream as _};
use srt_tokio::SrtSocket;
use srt_tokio::options::KeySize;
use tracing::info;

use super::ingest::passphrase;
use crate::error::{Error, ErrorKind, Result};
use crate::hls::ts::{TsMuxer, TsVideo};
use crate::media::{Codec, MediaInfo, MediaItem, Timebase};
use crate::rtmp::url::mask_secret;
use crate::sink::{BoxFuture, Connector, Sink};

/// The payload of one SRT live-mode message: 7 transport packets.
const MESSAGE: usize = 7 * 188;

/// The sender's buffer: libsrt's default (8192 packets). srt-tokio's own default holds 32
/// packets, and overflowing it (a keyframe, the GOP sent on connect) stalls the sender for
/// good: the evicted packet is never sent and the cursor waits on it.
pub(crate) const SEND_BUFFER: srt_tokio::options::ByteCount = srt_tokio::options::ByteCount(8192 * 1456);

/// `srt://HOST:PORT?streamid=…&passphrase=…&latency=MS&pbkeylen=16` (the parameters ffmpeg
/// and OBS take; others are refused rather than ignored).
#[derive(Clone, PartialEq, Eq)]
pub struct SrtUrl {
    pub host: String,
    pub port: u16,
    pub stream_id: Option<String>,
    pub passphrase: Option<String>,
    /// Key length in bytes: 16, 24 or 32 (AES-128/192/256); 16 when only a passphrase is given.
    pub key_length: Option<u16>,
    pub latency: Option<Duration>,
}

impl fmt::Debug for SrtUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl SrtUrl {
    pub fn parse(s: &str) -> Result<SrtUrl> {
        let bad = |m: String| Error::new(ErrorKind::Config, format!("SRT URL: {m}"));
        // the query is read by hand: stream ids hold `#` (`#!::r=…`), which a URL parser
        // takes for the start of a fragment
        let (base, query) = s.split_once('?').unwrap_or((s, ""));
        let url = url::Url::parse(base).map_err(|e| bad(e.to_string()))?;
        if url.scheme() != "srt" {
            return Err(bad("the scheme must be srt://".into()));
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host".into()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        // a name or an address, nothing else (a URL whose `?` is missing would otherwise
        // carry its parameters, passphrase included, in the host)
        if !host.chars().all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c)) {
            return Err(bad(format!("{:?} is not a host name or address", mask_secret(&host))));
        }
        let port = url.port().filter(|&p| p != 0).ok_or_else(|| bad("no port (srt://HOST:PORT)".into()))?;
        let mut out = SrtUrl { host, port, stream_id: None, passphrase: None, key_length: None, latency: None };
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "streamid" => out.stream_id = Some(v.into_owned()),
                "passphrase" => {
                    passphrase(&v)?;
                    out.passphrase = Some(v.into_owned());
                }
                "pbkeylen" => match v.parse::<u16>() {
                    Ok(n @ (16 | 24 | 32)) => out.key_length = Some(n),
                    _ => return Err(bad(format!("pbkeylen={v}: 16, 24 or 32"))),
                },
                // microseconds in ffmpeg's URL, milliseconds in libsrt's; ffmpeg's form
                // (≥ 1000 taken as µs) is what operators paste
                "latency" => match v.parse::<u64>() {
                    Ok(n) if n >= 1000 * 10 => out.latency = Some(Duration::from_micros(n)),
                    Ok(n) => out.latency = Some(Duration::from_millis(n)),
                    Err(_) => return Err(bad(format!("latency={v}: not a number"))),
                },
                "mode" if v == "caller" => {}
                other => return Err(bad(format!("parameter `{other}` is not supported"))),
            }
        }
        if out.key_length.is_some() && out.passphrase.is_none() {
            return Err(bad("pbkeylen without a passphrase".into()));
        }
        Ok(out)
    }

    /// The URL with its stream id and passphrase masked (logs, status lines).
    pub fn redacted(&self) -> String {
        let mut s = format!("srt://{}:{}", self.host, self.port);
        if let Some(id) = &self.stream_id {
            s.push_str(&format!("?streamid={}", mask_secret(id)));
        }
        if self.passphrase.is_some() {
            s.push_str(if self.stream_id.is_some() { "&passphrase=***" } else { "?passphrase=***" });
        }
        s
    }
}

/// Settings of SRT destinations.
#[derive(Clone, Debug)]
pub struct SrtPushOptions {
    pub connect_timeout: Duration,
    /// Used when the URL names none.
    pub latency: Duration,
    pub peer_idle_timeout: Duration,
}

impl Default for SrtPushOptions {
    fn default() -> SrtPushOptions {
        SrtPushOptions {
            connect_timeout: Duration::from_secs(5),
            latency: Duration::from_millis(120),
            peer_idle_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens [`SrtSink`]s to one SRT destination.
#[derive(Debug)]
pub struct SrtConnector {
    url: SrtUrl,
    options: SrtPushOptions,
}

impl SrtConnector {
    pub fn new(url: SrtUrl, options: SrtPushOptions) -> SrtConnector {
        SrtConnector { url, options }
    }
}

impl Connector for SrtConnector {
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Sink>>> {
        Box::pin(async move {
            let url = &self.url;
            let latency = url.latency.unwrap_or(self.options.latency);
            let (timeout, idle) = (self.options.connect_timeout, self.options.peer_idle_timeout);
            let mut builder = SrtSocket::builder().set(|o| {
                o.sender.buffer_size = SEND_BUFFER;
                o.connect.timeout = timeout;
                o.session.peer_idle_timeout = idle;
                o.sender.peer_latency = latency;
                o.receiver.latency = latency;
            });
            if let Some(p) = &url.passphrase {
                let key_size = match url.key_length.unwrap_or(16) {
                    24 => KeySize::AES192,
                    32 => KeySize::AES256,
                    _ => KeySize::AES128,
                };
                let passphrase = passphrase(p)?;
                builder = builder.set(|o| {
                    o.encryption.key_size = key_size;
                    o.encryption.passphrase = Some(passphrase);
                });
            }
            let remote = tokio::net::lookup_host((url.host.as_str(), url.port))
                .await
                .map_err(|e| Error::new(ErrorKind::Disconnected, format!("{}: {e}", url.redacted())))?
                .next()
                .ok_or_else(|| Error::new(ErrorKind::Disconnected, format!("{} resolves to no address", url.host)))?;
            let call = builder.call(remote, url.stream_id.as_deref());
            let socket = tokio::time::timeout(timeout + Duration::from_secs(1), call)
                .await
                .map_err(|_| Error::new(ErrorKind::Timeout, format!("{}: no SRT handshake answer", url.redacted())))?
                .map_err(|e| Error::new(ErrorKind::Disconnected, format!("{}: {e}", url.redacted())))?;
            info!(target = %url.redacted(), latency_ms = socket.settings().send_tsbpd_latency.as_millis() as u64, "SRT destination connected");
            Ok(Box::new(SrtSink::new(socket)) as Box<dyn Sink>)
        })
    }

    fn describe(&self) -> String {
        self.url.redacted()
    }
}

/// A connected SRT destination.
pub struct SrtSink {
    socket: SrtSocket,
    mux: Option<TsMuxer>,
    info: Option<Arc<MediaInfo>>,
    has_video: bool,
    /// Serialised transport packets not yet cut into messages.
    buf: Vec<u8>,
    messages: VecDeque<Bytes>,
    written: u64,
    /// Packets since the PAT/PMT were last written (audio-only streams repeat them).
    since_tables: u32,
}

impl fmt::Debug for SrtSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtSink").field("queued", &self.messages.len()).finish()
    }
}

impl SrtSink {
    pub fn new(socket: SrtSocket) -> SrtSink {
        SrtSink {
            socket,
            mux: None,
            info: None,
            has_video: false,
            buf: Vec::new(),
            messages: VecDeque::new(),
            written: 0,
            since_tables: 0,
        }
    }

    fn set_info(&mut self, info: &Arc<MediaInfo>) -> Result<()> {
        if self.info.as_ref().is_some_and(|i| i == info) {
            return Ok(());
        }
        let video = match info.video().map(|t| &t.codec) {
            Some(codec) => match TsVideo::of(codec) {
                Some(v) => Some(v),
                None => {
                    return Err(Error::new(
                        ErrorKind::Media,
                        format!(
                            "SRT destinations carry H.264 or HEVC and AAC; this stream's video is {}",
                            codec.name()
                        ),
                    ));
                }
            },
            None => None,
        };
        let audio = match info.audio().map(|t| &t.codec) {
            Some(Codec::Aac(asc)) => Some(asc.clone()),
            _ => None,
        };
        self.has_video = video.is_some();
        let mut mux = TsMuxer::new(video, audio);
        mux.write_tables(&mut self.buf);
        self.since_tables = 0;
        self.mux = Some(mux);
        self.info = Some(Arc::clone(info));
        Ok(())
    }

    fn cut(&mut self) {
        let whole = self.buf.len() / MESSAGE * MESSAGE;
        for chunk in self.buf[..whole].chunks(MESSAGE) {
            self.messages.push_back(Bytes::copy_from_slice(chunk));
        }
        self.buf.drain(..whole);
    }
}

impl Sink for SrtSink {
    fn enqueue(&mut self, items: &[MediaItem]) -> Result<()> {
        for item in items {
            match item {
                MediaItem::Info(info) => self.set_info(info)?,
                MediaItem::Packet(p) => {
                    let Some(mux) = self.mux.as_mut() else { continue };
                    let dts = p.dts.rescale(Timebase::HZ_90K).ticks();
                    let pts = p.pts.rescale(Timebase::HZ_90K).ticks();
                    self.since_tables += 1;
                    let tables_due = if self.has_video {
                        p.keyframe && p.kind == crate::media::TrackKind::Video
                    } else {
                        self.since_tables >= 40
                    };
                    if tables_due {
                        mux.write_tables(&mut self.buf);
                        self.since_tables = 0;
                    }
                    let written = match p.kind {
                        crate::media::TrackKind::Video => {
                            mux.write_video(&mut self.buf, pts, dts, p.keyframe, &p.payload)
                        }
                        crate::media::TrackKind::Audio => mux.write_audio(&mut self.buf, pts, &p.payload),
                    };
                    // a packet of a track the TS does not carry (another codec) is skipped
                    if let Err(e) = written {
                        tracing::debug!(reason = %e, "packet not muxed into the SRT stream");
                    }
                }
            }
        }
        // a frame's transport packets go out at once, the last message shorter if need be
        // (still whole transport packets), not held for the next frame
        self.cut();
        if !self.buf.is_empty() {
            self.messages.push_back(Bytes::from(std::mem::take(&mut self.buf)));
        }
        Ok(())
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<u64>> {
        let closed = |e: std::io::Error| Error::new(ErrorKind::Io, format!("SRT destination closed: {e}"));
        while let Some(msg) = self.messages.front() {
            ready!(Pin::new(&mut self.socket).poll_ready(cx)).map_err(closed)?;
            let len = msg.len() as u64;
            let msg = self.messages.pop_front().unwrap_or_default();
            Pin::new(&mut self.socket).start_send((Instant::now(), msg)).map_err(closed)?;
            self.written += len;
        }
        ready!(Pin::new(&mut self.socket).poll_flush(cx)).map_err(closed)?;
        Poll::Ready(Ok(std::mem::take(&mut self.written)))
    }

    fn poll_peer(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        loop {
            match ready!(Pin::new(&mut self.socket).poll_next(cx)) {
                // a receiver sending media back: ignored
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Poll::Ready(Err(Error::new(ErrorKind::Io, format!("SRT destination: {e}")))),
                None => {
                    return Poll::Ready(Err(Error::new(ErrorKind::Io, "the SRT destination closed the connection")));
                }
            }
        }
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            std::future::poll_fn(|cx| self.poll_flush(cx)).await?;
            let _ = tokio::time::timeout(Duration::from_secs(2), self.socket.close_and_finish()).await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srt_urls() {
        let u = SrtUrl::parse("srt://127.0.0.1:9000?streamid=#!::r=live/k,m=publish&passphrase=0123456789&latency=200")
            .expect("url");
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 9000));
        assert_eq!(u.stream_id.as_deref(), Some("#!::r=live/k,m=publish"));
        assert_eq!(u.latency, Some(Duration::from_millis(200)));
        assert_eq!(SrtUrl::parse("srt://h:1?latency=2000000").expect("µs").latency, Some(Duration::from_secs(2)));
        assert!(!format!("{u:?}").contains("0123456789"), "the passphrase is never shown");
        assert!(!u.redacted().contains("live/k,"), "{}", u.redacted());
        for bad in [
            "rtmp://h:1/a/b",
            "srt://h",
            "srt://h:1?passphrase=short",
            "srt://h:1?pbkeylen=17&passphrase=0123456789",
            "srt://h:1?pbkeylen=16",
            "srt://h:1?latency=x",
            "srt://h:1?transtype=file",
            "srt://h:0",
            "srt://12,7.0.0.x&passphrase=0314847738&latency=0",
        ] {
            assert!(SrtUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
