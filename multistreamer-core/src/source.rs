//! The [`Source`] trait: a pulled stream of [`MediaItem`]s, and [`publish_source`], the one
//! function through which every input reaches the hub.
//!
//! Every built-in input is a `Source`: an RTMP or RTSP publisher once its publish was
//! accepted (the ingest turns the connection into a source and publishes it), an RTSP camera
//! ([`crate::rtsp::RtspSource`]) and an HLS playlist ([`crate::hls::HlsSource`]), which
//! [`InputUrl::spawn`] reconnects with backoff. A user's own input is a `Source` too: a type
//! implementing `Stream<Item = Result<MediaItem>>`, a type with an async "next item" method
//! ([`ItemReader`], made a source by [`from_reader`]), a [`channel`] fed from any task or
//! thread, or a blocking iterator run on its own thread by [`from_blocking_iter`]; [`paced`]
//! releases packets in real time (for inputs that read faster than live, such as files).
//! [`spawn_source`] publishes one as a hub stream.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, info, warn};

use crate::destination::Backoff;
use crate::error::{Error, ErrorKind, Result};
use crate::hub::{Hub, Publisher};
use crate::media::{MediaItem, TrackKind};
use crate::sink::BoxFuture;
use crate::sync::lock;

/// A pulled source of media. Dropping it cancels it.
pub trait Source: Stream<Item = Result<MediaItem>> + Send + Unpin {}

impl<T: Stream<Item = Result<MediaItem>> + Send + Unpin> Source for T {}

/// A boxed [`Source`] (what [`from_reader`] and the built-in inputs return).
pub type BoxSource = Pin<Box<dyn Stream<Item = Result<MediaItem>> + Send>>;

/// Pulls `source` to its end, publishing every item. Returns the source's error, if any, and
/// a [`ErrorKind::Shutdown`] error when the hub closed the stream (the operator ended it),
/// so the input stops.
pub async fn publish_source<S: Source + ?Sized>(source: &mut S, publisher: &Publisher) -> Result<()> {
    while let Some(item) = next(source).await? {
        publish_item(publisher, item)?;
    }
    Ok(())
}

/// The next item of `source`; `Ok(None)` at its end.
pub async fn next<S: Source + ?Sized>(source: &mut S) -> Result<Option<MediaItem>> {
    poll_fn(|cx| Pin::new(&mut *source).poll_next(cx)).await.transpose()
}

fn publish_item(publisher: &Publisher, item: MediaItem) -> Result<()> {
    if !publisher.is_open() {
        return Err(Error::new(ErrorKind::Shutdown, "the stream was closed on the server"));
    }
    match item {
        MediaItem::Info(info) => publisher.set_info(info),
        MediaItem::Packet(p) => publisher.send(p),
    }
    Ok(())
}

/// An input written as an async "next item" method — the shape of the built-in protocol
/// sessions. [`from_reader`] makes it a [`Source`].
pub trait ItemReader: Send + 'static {
    /// The next item; `Ok(None)` when the input ended. Not called again after an error.
    fn next_item(&mut self) -> impl Future<Output = Result<Option<MediaItem>>> + Send;
}

/// Makes an [`ItemReader`] a [`Source`]; dropping the source drops the reader.
pub fn from_reader<R: ItemReader>(reader: R) -> BoxSource {
    Box::pin(ReaderSource { state: ReaderState::Idle(Box::new(reader)) })
}

struct ReaderSource<R> {
    state: ReaderState<R>,
}

type ReadStep<R> = (Box<R>, Result<Option<MediaItem>>);

enum ReaderState<R> {
    Idle(Box<R>),
    Reading(BoxFuture<'static, ReadStep<R>>),
    Done,
}

impl<R: ItemReader> Stream for ReaderSource<R> {
    type Item = Result<MediaItem>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match std::mem::replace(&mut this.state, ReaderState::Done) {
                ReaderState::Done => return Poll::Ready(None),
                ReaderState::Idle(mut reader) => {
                    this.state = ReaderState::Reading(Box::pin(async move {
                        let step = reader.next_item().await;
                        (reader, step)
                    }));
                }
                ReaderState::Reading(mut fut) => match fut.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.state = ReaderState::Reading(fut);
                        return Poll::Pending;
                    }
                    Poll::Ready((reader, Ok(Some(item)))) => {
                        this.state = ReaderState::Idle(reader);
                        return Poll::Ready(Some(Ok(item)));
                    }
                    Poll::Ready((_, Ok(None))) => return Poll::Ready(None),
                    Poll::Ready((_, Err(e))) => return Poll::Ready(Some(Err(e))),
                },
            }
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

    fn stop(self) -> BoxFuture<'static, ()> {
        Box::pin(SourceHandle::stop(self))
    }

    fn join(self) -> BoxFuture<'static, ()> {
        Box::pin(SourceHandle::join(self))
    }
}

/// Publishes `source` as hub stream `stream` until it ends or `cancel` fires. The stream
/// starts at once (subscribers may attach before the first item); when the source ends the
/// stream enters its grace period like a publisher that left.
pub fn spawn_source<S: Source + 'static>(
    hub: Hub,
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
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start the source thread: {e}")))?;
    Ok(source)
}

/// Plays what `open` returns `times` times over (`None`: forever) as one stream — a
/// playout loop. Each pass starts one frame after the previous one ended, so timestamps
/// keep rising; an error from `open` or from a pass ends the stream with that error.
/// Blocking, like the iterators it runs: hand it to [`from_blocking_iter`].
pub fn looped<I, F>(mut open: F, times: Option<u32>) -> impl Iterator<Item = Result<MediaItem>> + Send
where
    F: FnMut() -> Result<I> + Send,
    I: Iterator<Item = Result<MediaItem>> + Send,
{
    let mut passes_left = times;
    let mut pass: Option<I> = None;
    let (mut offset_ms, mut end_ms, mut frame_ms, mut last_dts) = (0i64, None::<i64>, 40i64, None::<i64>);
    let mut failed = false;
    std::iter::from_fn(move || {
        loop {
            if failed {
                return None;
            }
            let Some(items) = pass.as_mut() else {
                if let Some(n) = passes_left.as_mut() {
                    *n = n.checked_sub(1)?;
                }
                offset_ms = end_ms.map_or(0, |end| end + frame_ms);
                last_dts = None;
                match open() {
                    Ok(items) => pass = Some(items),
                    Err(e) => {
                        failed = true;
                        return Some(Err(e));
                    }
                }
                continue;
            };
            match items.next() {
                Some(Ok(MediaItem::Packet(mut p))) => {
                    p.shift_millis(offset_ms);
                    let dts = p.dts.as_millis();
                    if p.kind == TrackKind::Video
                        && let Some(step) = last_dts.map(|last| dts - last).filter(|s| *s > 0)
                    {
                        frame_ms = step;
                    }
                    if p.kind == TrackKind::Video {
                        last_dts = Some(dts);
                    }
                    end_ms = Some(end_ms.map_or(p.pts.as_millis(), |e| e.max(p.pts.as_millis())));
                    return Some(Ok(MediaItem::Packet(p)));
                }
                Some(Err(e)) => {
                    failed = true;
                    return Some(Err(e));
                }
                Some(info) => return Some(info),
                None => pass = None,
            }
        }
    })
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
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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

    fn stop(self) -> BoxFuture<'static, ()> {
        Box::pin(PullHandle::stop(self))
    }

    fn join(self) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.task.await;
        })
    }
}

/// What a pulled source that ends without an error means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(any(feature = "hls", feature = "rtsp")), allow(dead_code))]
pub(crate) enum PullEnd {
    /// The server ended the stream: connect again (a camera restarting).
    Reconnect,
    /// The input is over (a VOD playlist played once): stop.
    #[cfg_attr(not(feature = "hls"), allow(dead_code))]
    Finished,
}

#[cfg_attr(not(any(feature = "hls", feature = "rtsp")), allow(dead_code))]
/// Connects the source `connect` returns and publishes it as hub stream `stream` until
/// `cancel`, connecting again with backoff after errors (the attempt counter resets after
/// 10 s of health). The stream goes live with the source's first item. `what` names the
/// input in logs; `on_end` says what a source that ends cleanly means.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn_pull<F, Fut, S>(
    hub: Hub,
    stream: String,
    url: String,
    what: &'static str,
    on_end: PullEnd,
    span: Span,
    cancel: CancellationToken,
    mut connect: F,
) -> PullHandle
where
    F: FnMut(Arc<Mutex<PullStatus>>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<S>> + Send,
    S: Source,
{
    let status = Arc::new(Mutex::new(PullStatus { state: "connecting", ..Default::default() }));
    let task_status = Arc::clone(&status);
    let task_cancel = cancel.clone();
    let task_stream = stream.clone();
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
                let attempt = publish_pulled(&hub, &task_stream, what, connect(Arc::clone(&task_status)), &task_status);
                let result = tokio::select! {
                    _ = task_cancel.cancelled() => break,
                    r = attempt => r,
                };
                let message = match result {
                    Ok(()) if on_end == PullEnd::Finished => {
                        lock(&task_status).state = "finished";
                        info!("{what} input finished");
                        return;
                    }
                    Ok(()) => "the server ended the stream".to_string(),
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

/// One attempt of a pull: connect, then publish from the first item on.
async fn publish_pulled<S: Source>(
    hub: &Hub,
    stream: &str,
    what: &str,
    connecting: impl Future<Output = Result<S>>,
    status: &Mutex<PullStatus>,
) -> Result<()> {
    let mut source = Counted { inner: connecting.await?, status, has_video: false };
    let Some(first) = next(&mut source).await? else { return Ok(()) };
    let publisher = hub.publish(stream)?;
    info!("{what} pull live");
    lock(status).state = "live";
    publish_item(&publisher, first)?;
    publish_source(&mut source, &publisher).await
}

/// Counts a pulled source's frames into its status: video frames, or audio frames when the
/// input has no video.
struct Counted<'a, S> {
    inner: S,
    status: &'a Mutex<PullStatus>,
    has_video: bool,
}

impl<S: Source> Stream for Counted<'_, S> {
    type Item = Result<MediaItem>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = Pin::new(&mut this.inner).poll_next(cx);
        match &item {
            Poll::Ready(Some(Ok(MediaItem::Info(info)))) => this.has_video = info.video().is_some(),
            Poll::Ready(Some(Ok(MediaItem::Packet(p)))) if p.kind == TrackKind::Video || !this.has_video => {
                lock(this.status).frames += 1;
            }
            _ => {}
        }
        item
    }
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
        hub: Hub,
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
    use std::collections::VecDeque;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::hub::HubOptions;
    use crate::media::{MediaInfo, Packet, Timestamp, TrackId};

    fn packet(ms: i64) -> MediaItem {
        MediaItem::Packet(Packet {
            track: TrackId(1),
            kind: TrackKind::Audio,
            dts: Timestamp::from_millis(ms),
            pts: Timestamp::from_millis(ms),
            keyframe: true,
            payload: Bytes::from_static(b"au"),
        })
    }

    /// Items, then the end or an error.
    struct Script(VecDeque<Result<Option<MediaItem>>>);

    impl ItemReader for Script {
        async fn next_item(&mut self) -> Result<Option<MediaItem>> {
            tokio::task::yield_now().await;
            self.0.pop_front().unwrap_or(Ok(None))
        }
    }

    #[test]
    fn a_looped_clip_continues_its_timestamps_and_ends_after_its_passes() {
        let clip = || -> Result<std::vec::IntoIter<Result<MediaItem>>> {
            let info = MediaItem::Info(Arc::new(MediaInfo::default()));
            Ok(vec![Ok(info), Ok(packet(0)), Ok(packet(40)), Ok(packet(80))].into_iter())
        };
        let dts: Vec<i64> = looped(clip, Some(3))
            .filter_map(|item| match item.expect("item") {
                MediaItem::Packet(p) => Some(p.dts.as_millis()),
                MediaItem::Info(_) => None,
            })
            .collect();
        // audio packets here: the default 40 ms frame between passes
        assert_eq!(dts, [0, 40, 80, 120, 160, 200, 240, 280, 320]);
        let mut opened = 0;
        let failing = looped(
            || {
                opened += 1;
                Err::<std::vec::IntoIter<Result<MediaItem>>, _>(Error::new(ErrorKind::Io, "gone"))
            },
            None,
        );
        assert_eq!(failing.map(|r| r.is_err()).collect::<Vec<_>>(), [true], "one error, then the end");
        assert_eq!(opened, 1);
    }

    #[tokio::test]
    async fn a_reader_is_a_source_that_ends_after_its_error() {
        let info = MediaItem::Info(Arc::new(MediaInfo::default()));
        let failed = Err(Error::new(ErrorKind::Protocol, "broken"));
        let mut source = from_reader(Script(VecDeque::from([Ok(Some(info)), Ok(Some(packet(0))), failed])));
        assert!(matches!(next(&mut source).await, Ok(Some(MediaItem::Info(_)))));
        assert!(matches!(next(&mut source).await, Ok(Some(MediaItem::Packet(_)))));
        let e = next(&mut source).await.expect_err("the reader's error");
        assert_eq!(e.to_string(), "broken");
        assert!(matches!(next(&mut source).await, Ok(None)), "nothing after an error");
        let mut empty = from_reader(Script(VecDeque::new()));
        assert!(matches!(next(&mut empty).await, Ok(None)));
    }

    #[tokio::test]
    async fn publishing_stops_with_a_shutdown_error_once_the_stream_is_ended() {
        let hub = Hub::new(HubOptions::default());
        let publisher = hub.publish("talk").expect("publish");
        let (tx, mut source) = channel(4);
        tx.send(Ok(packet(0))).await.expect("send");
        let publishing = tokio::spawn(async move { publish_source(&mut source, &publisher).await });
        tokio::task::yield_now().await;
        assert!(hub.end_stream("talk"));
        // the next item finds the stream closed
        tx.send(Ok(packet(20))).await.expect("send");
        let e = publishing.await.expect("task").expect_err("the stream was ended");
        assert_eq!(e.kind(), ErrorKind::Shutdown);
    }

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
