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
    pub rtsp_transport: crate::rtsp::PullTransport,
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
                crate::rtsp::split_credentials(s)?;
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
    pub fn spawn(
        &self,
        hub: crate::hub::Hub,
        stream: String,
        options: &PullOptions,
        cancel: CancellationToken,
    ) -> Result<PullHandle> {
        match self {
            InputUrl::Hls(u) => crate::hls::spawn_hls_pull(hub, stream, u.as_str(), options.hls.clone(), cancel),
            InputUrl::Rtsp(s) => crate::rtsp::spawn_rtsp_pull(hub, stream, s, options.rtsp_transport, cancel),
            InputUrl::Rtmp(_) => Err(crate::Error::new(
                crate::ErrorKind::Config,
                "RTMP inputs are pushed to the ingest; pulling from an RTMP server is not supported",
            )),
        }
    }
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
