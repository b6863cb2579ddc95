//! The [`Source`] trait: a pulled stream of [`MediaItem`]s, and [`spawn_source`], which
//! publishes any source into the hub.
//!
//! A user's own input is a `Source`: a type implementing `Stream<Item = Result<MediaItem>>`,
//! a [`channel`] fed from any task or thread, or a blocking iterator run on its own thread
//! by [`from_blocking_iter`]; [`paced`] releases packets in real time (for inputs that read
//! faster than live, such as files). Inputs that reconnect by themselves (RTSP cameras and
//! HLS playlists, through [`InputUrl::spawn`]) publish through the same [`publish_source`].

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_core::Stream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, info, warn};

use crate::destination::Backoff;
use crate::error::Result;
use crate::hub::Publisher;
use crate::media::MediaItem;
use crate::sync::lock;

/// A pulled source of media. Dropping it cancels it.
pub trait Source: Stream<Item = Result<MediaItem>> + Send + Unpin {}

impl<T: Stream<Item = Result<MediaItem>> + Send + Unpin> Source for T {}

/// Pulls `source` to its end, publishing every item. Returns the source's error, if any.
pub async fn publish_source<S: Source + ?Sized>(source: &mut S, publisher: &Publisher) -> Result<()> {
    loop {
        let next = poll_fn(|cx| Pin::new(&mut *source).poll_next(cx)).await;
        match next {
            None => return Ok(()),
            Some(Err(e)) => return Err(e),
            Some(Ok(MediaItem::Info(info))) => publisher.set_info(Arc::clone(&info)),
            Some(Ok(MediaItem::Packet(p))) => publisher.send(p),
        }
    }
}

/// A running [`spawn_source`].
pub struct SourceHandle {
    pub stream: String,
    error: Arc<Mutex<Option<String>>>,
    done: CancellationToken,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl fmt::Debug for SourceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceHandle").field("stream", &self.stream).finish()
    }
}

impl SourceHandle {
    /// Whether the source ended (or failed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Why the source failed, if it did.
    pub fn error(&self) -> Option<String> {
        lock(&self.error).clone()
    }

    /// Resolves once the source has ended (without consuming the handle).
    pub async fn finished(&self) {
        self.done.cancelled().await;
    }

    /// Waits until the source ended.
    pub async fn join(self) {
        let _ = self.task.await;
    }

    /// Stops the source (it is dropped, which cancels it) and waits.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

impl crate::engine::Job for SourceHandle {
    fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    fn error(&self) -> Option<String> {
        SourceHandle::error(self)
    }

    /// A source that ended is over: it is not started again (it cannot be).
    fn restart_when_finished(&self) -> bool {
        false
    }

    fn stop(self) -> crate::sink::BoxFuture<'static, ()> {
        Box::pin(SourceHandle::stop(self))
    }

    fn join(self) -> crate::sink::BoxFuture<'static, ()> {
        Box::pin(SourceHandle::join(self))
    }
}

/// Publishes `source` as hub stream `stream` until it ends or `cancel` fires. The stream
/// starts at once (subscribers may attach before the first item); when the source ends the
/// stream enters its grace period like a publisher that left.
pub fn spawn_source<S: Source + 'static>(
    hub: crate::hub::Hub,
    stream: &str,
    mut source: S,
    cancel: CancellationToken,
) -> Result<SourceHandle> {
    let publisher = hub.publish(stream)?;
    let error: Arc<Mutex<Option<String>>> = Arc::default();
    let task_error = Arc::clone(&error);
    let task_cancel = cancel.clone();
    let done = CancellationToken::new();
    let done_guard = done.clone().drop_guard();
    let span = tracing::info_span!("source", stream = %stream);
    let task = tokio::spawn(
        async move {
            let _done = done_guard;
            let result = tokio::select! {
                _ = task_cancel.cancelled() => Ok(()),
                r = publish_source(&mut source, &publisher) => r,
            };
            match result {
                Ok(()) => info!("source ended"),
                Err(e) => {
                    warn!(error = %e, "source failed");
                    *lock(&task_error) = Some(e.to_string());
                }
            }
        }
        .instrument(span),
    );
    Ok(SourceHandle { stream: stream.to_string(), error, done, cancel, task })
}

/// A [`Source`] fed through a bounded channel (from [`channel`] or
/// [`from_blocking_iter`]); it ends when every sender is gone.
#[derive(Debug)]
pub struct ChannelSource {
    rx: tokio::sync::mpsc::Receiver<Result<MediaItem>>,
}

impl Stream for ChannelSource {
    type Item = Result<MediaItem>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// A source and the sender that feeds it (`send().await` from a task,
/// `blocking_send` from a thread). `capacity` items are buffered.
pub fn channel(capacity: usize) -> (tokio::sync::mpsc::Sender<Result<MediaItem>>, ChannelSource) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
    (tx, ChannelSource { rx })
}

/// Runs a blocking iterator of items (a file demuxer, a capture device, a generator) on a
/// thread of its own and makes it a [`Source`]. The thread stops when the source is dropped.
pub fn from_blocking_iter<I>(iter: I) -> Result<ChannelSource>
where
    I: Iterator<Item = Result<MediaItem>> + Send + 'static,
{
    let (tx, source) = channel(64);
    std::thread::Builder::new()
        .name("source".into())
        .spawn(move || {
            for item in iter {
                if tx.blocking_send(item).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| crate::Error::new(crate::ErrorKind::Io, format!("cannot start the source thread: {e}")))?;
    Ok(source)
}

/// Releases the packets of `source` in real time, by their decode timestamps (the first
/// packet at once). For inputs that read faster than live (files, generators).
pub fn paced<S: Source>(source: S) -> Paced<S> {
    Paced { inner: source, origin: None, held: None, sleep: Box::pin(tokio::time::sleep(Duration::ZERO)) }
}

/// See [`paced`].
pub struct Paced<S> {
    inner: S,
    /// (wall clock, media time in ms) of the first packet.
    origin: Option<(tokio::time::Instant, i64)>,
    held: Option<MediaItem>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl<S> fmt::Debug for Paced<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Paced").field("origin", &self.origin).finish_non_exhaustive()
    }
}

impl<S: Source> Stream for Paced<S> {
    type Item = Result<MediaItem>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.held.is_none() {
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(item))) => this.held = Some(item),
                other => return other,
            }
        }
        if let Some(MediaItem::Packet(p)) = &this.held {
            let ms = p.dts.as_millis();
            let (t0, ms0) = *this.origin.get_or_insert((tokio::time::Instant::now(), ms));
            let due = t0 + Duration::from_millis(u64::try_from(ms - ms0).unwrap_or(0));
            if due > tokio::time::Instant::now() {
                this.sleep.as_mut().reset(due);
                if this.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(this.held.take().map(Ok))
    }
}

/// The state of a pulled input (an RTSP camera, an HLS playlist).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullStatus {
    /// `connecting`, `live`, `retrying` or `finished` (a VOD playlist played to its end).
    pub state: &'static str,
    pub last_error: Option<String>,
    pub reconnects: u64,
    /// Video frames (audio frames for audio-only inputs) published.
    pub frames: u64,
}

/// A running pull.
pub struct PullHandle {
    pub stream: String,
    /// The URL without credentials (and, for HTTP, without its query).
    pub url: String,
    status: Arc<Mutex<PullStatus>>,
    done: CancellationToken,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl fmt::Debug for PullHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullHandle").field("stream", &self.stream).field("url", &self.url).finish()
    }
}

impl PullHandle {
    pub fn status(&self) -> PullStatus {
        lock(&self.status).clone()
    }

    /// Whether the pull ended by itself (a VOD input played once).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Resolves once the pull has ended (a VOD input played once, or it was stopped),
    /// without consuming the handle.
    pub async fn finished(&self) {
        self.done.cancelled().await;
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

impl crate::engine::Job for PullHandle {
    fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    fn error(&self) -> Option<String> {
        lock(&self.status).last_error.clone()
    }

    /// It reconnects by itself; it ends only when a VOD input played once, and then stays
    /// finished until its URL changes.
    fn restart_when_finished(&self) -> bool {
        false
    }

    fn stop(self) -> crate::sink::BoxFuture<'static, ()> {
        Box::pin(PullHandle::stop(self))
    }

    fn join(self) -> crate::sink::BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.task.await;
        })
    }
}

/// How one attempt of a pull ended without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(any(feature = "hls", feature = "rtsp")), allow(dead_code))]
pub(crate) enum PullEnd {
    /// The server ended the stream: connect again.
    Reconnect,
    /// The input is over (a VOD playlist played once): stop.
    #[cfg_attr(not(feature = "hls"), allow(dead_code))]
    Finished,
}

#[cfg_attr(not(any(feature = "hls", feature = "rtsp")), allow(dead_code))]
/// Runs `attempt` until `cancel`, reconnecting with backoff after errors (the attempt
/// counter resets after 10 s of health). `what` names the input in logs.
pub(crate) fn spawn_pull<F, Fut>(
    stream: String,
    url: String,
    what: &'static str,
    span: Span,
    cancel: CancellationToken,
    mut attempt: F,
) -> PullHandle
where
    F: FnMut(Arc<Mutex<PullStatus>>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<PullEnd>> + Send,
{
    let status = Arc::new(Mutex::new(PullStatus { state: "connecting", ..Default::default() }));
    let task_status = Arc::clone(&status);
    let task_cancel = cancel.clone();
    let done = CancellationToken::new();
    let done_guard = done.clone().drop_guard();
    let task = tokio::spawn(
        async move {
            let _done = done_guard;
            let backoff = Backoff::default();
            let mut failures = 0u32;
            loop {
                lock(&task_status).state = "connecting";
                let started = Instant::now();
                let result = tokio::select! {
                    _ = task_cancel.cancelled() => break,
                    r = attempt(Arc::clone(&task_status)) => r,
                };
                let message = match result {
                    Ok(PullEnd::Finished) => {
                        lock(&task_status).state = "finished";
                        info!("{what} input finished");
                        return;
                    }
                    Ok(PullEnd::Reconnect) => "the server ended the stream".to_string(),
                    Err(e) => e.to_string(),
                };
                failures = if started.elapsed() > Duration::from_secs(10) { 0 } else { failures + 1 };
                let delay = backoff.delay(failures, fastrand::f64());
                {
                    let mut st = lock(&task_status);
                    st.state = "retrying";
                    st.last_error = Some(message.clone());
                    st.reconnects += 1;
                }
                warn!(error = %message, retry_in_ms = delay.as_millis() as u64, "{what} pull lost; reconnecting");
                tokio::select! {
                    _ = task_cancel.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            info!("{what} pull stopped");
        }
        .instrument(span),
    );
    PullHandle { stream, url, status, done, cancel, task }
}

/// Where a stream comes from, parsed once: every place that takes an input URL (the CLI's
/// `--input`, the server's `pull_url`) decides what it is here, not by its prefix.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputUrl {
    /// `rtmp(s)://…`: RTMP is pushed to the ingest, not pulled ([`InputUrl::spawn`]
    /// refuses it with a clear error).
    Rtmp(crate::rtmp::RtmpUrl),
    /// `rtsp://[user:password@]host/…`: a camera or RTSP server, pulled.
    Rtsp(String),
    /// `http(s)://…`: an HLS playlist, pulled.
    Hls(url::Url),
}

/// How pulled inputs are read.
#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    #[cfg(feature = "rtsp")]
    pub rtsp_transport: crate::rtsp::PullTransport,
    #[cfg(feature = "hls")]
    pub hls: crate::hls::HlsPullOptions,
}

impl std::str::FromStr for InputUrl {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<InputUrl> {
        use crate::{Error, ErrorKind};
        let scheme = s.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("http" | "https") => {
                let u = url::Url::parse(s).map_err(|e| Error::new(ErrorKind::Config, format!("HLS URL: {e}")))?;
                if u.host_str().is_none_or(str::is_empty) {
                    return Err(Error::new(ErrorKind::Config, "the HLS URL has no host"));
                }
                Ok(InputUrl::Hls(u))
            }
            Some("rtsp") => {
                #[cfg(feature = "rtsp")]
                crate::rtsp::split_credentials(s)?;
                #[cfg(not(feature = "rtsp"))]
                url::Url::parse(s).map_err(|e| Error::new(ErrorKind::Config, format!("RTSP URL: {e}")))?;
                Ok(InputUrl::Rtsp(s.to_string()))
            }
            Some("rtmp" | "rtmps") => {
                s.parse().map(InputUrl::Rtmp).map_err(|e| Error::new(ErrorKind::Config, format!("RTMP URL: {e}")))
            }
            _ => Err(Error::new(
                ErrorKind::Config,
                "expected rtsp://… (a camera), http(s)://….m3u8 (HLS) or rtmp://… (an ingest)",
            )),
        }
    }
}

impl InputUrl {
    /// The URL as it may be shown and logged: password and HTTP query masked.
    pub fn masked(&self) -> String {
        let mut u = match self {
            InputUrl::Rtmp(u) => return u.to_string(),
            InputUrl::Rtsp(s) => match url::Url::parse(s) {
                Ok(u) => u,
                Err(_) => return String::new(),
            },
            InputUrl::Hls(u) => u.clone(),
        };
        if u.password().is_some() {
            let _ = u.set_password(Some("****"));
        }
        if u.query().is_some() {
            u.set_query(Some("****"));
        }
        u.to_string()
    }

    /// The path segments, to name a stream after its input.
    pub fn path_segments(&self) -> Vec<String> {
        let parsed = match self {
            InputUrl::Rtmp(u) => return vec![u.app.clone(), u.key.clone()],
            InputUrl::Rtsp(s) => url::Url::parse(s).ok(),
            InputUrl::Hls(u) => Some(u.clone()),
        };
        parsed
            .and_then(|u| u.path_segments().map(|p| p.filter(|s| !s.is_empty()).map(str::to_string).collect()))
            .unwrap_or_default()
    }

    /// Starts pulling this input into hub stream `stream`.
    #[cfg_attr(not(any(feature = "hls", feature = "rtsp")), allow(unused_variables))]
    pub fn spawn(
        &self,
        hub: crate::hub::Hub,
        stream: String,
        options: &PullOptions,
        cancel: CancellationToken,
    ) -> Result<PullHandle> {
        match self {
            #[cfg(feature = "hls")]
            InputUrl::Hls(u) => crate::hls::spawn_hls_pull(hub, stream, u.as_str(), options.hls.clone(), cancel),
            #[cfg(feature = "rtsp")]
            InputUrl::Rtsp(s) => crate::rtsp::spawn_rtsp_pull(hub, stream, s, options.rtsp_transport, cancel),
            #[cfg(not(feature = "hls"))]
            InputUrl::Hls(_) => Err(missing_feature("hls")),
            #[cfg(not(feature = "rtsp"))]
            InputUrl::Rtsp(_) => Err(missing_feature("rtsp")),
            InputUrl::Rtmp(_) => Err(crate::Error::new(
                crate::ErrorKind::Config,
                "RTMP inputs are pushed to the ingest; pulling from an RTMP server is not supported",
            )),
        }
    }
}

#[cfg(not(all(feature = "hls", feature = "rtsp")))]
fn missing_feature(feature: &str) -> crate::Error {
    crate::Error::new(crate::ErrorKind::Config, format!("built without the `{feature}` feature"))
}

impl fmt::Debug for InputUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InputUrl({})", self.masked())
    }
}

impl fmt::Display for InputUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::InputUrl;

    #[test]
    fn input_urls_are_told_apart_once_and_shown_masked() {
        let hls: InputUrl = "HTTPS://cdn.example/live/talk/index.m3u8?token=secret".parse().expect("hls");
        assert!(matches!(hls, InputUrl::Hls(_)));
        assert_eq!(hls.to_string(), "https://cdn.example/live/talk/index.m3u8?****");
        assert_eq!(hls.path_segments(), ["live", "talk", "index.m3u8"]);
        let cam: InputUrl = "rtsp://admin:pw@10.0.0.9:554/stream1".parse().expect("rtsp");
        assert!(matches!(cam, InputUrl::Rtsp(_)));
        assert_eq!(format!("{cam:?}"), "InputUrl(rtsp://admin:****@10.0.0.9:554/stream1)");
        assert!(matches!("rtmp://host/live/key".parse::<InputUrl>(), Ok(InputUrl::Rtmp(_))));
        for bad in ["ftp://x/y", "http://", "talk.m3u8", ""] {
            assert!(bad.parse::<InputUrl>().is_err(), "{bad}");
        }
    }
}
