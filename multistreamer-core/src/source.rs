//! The [`Source`] trait: a pulled stream of [`MediaItem`]s, and [`publish_source`], which
//! feeds any source into the hub.
//!
//! The RTMP ingest publishes straight from its connection task (no extra queue hop);
//! pulled inputs (RTSP cameras, HLS, files) implement `Source` and use `publish_source`.

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

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// How one attempt of a pull ended without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PullEnd {
    /// The server ended the stream: connect again.
    Reconnect,
    /// The input is over (a VOD playlist played once): stop.
    Finished,
}

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
    let task = tokio::spawn(
        async move {
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
    PullHandle { stream, url, status, cancel, task }
}
