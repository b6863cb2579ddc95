//! A destination under supervision: connect, stream, and on any error back off and
//! reconnect, starting again on a keyframe from the hub's GOP cache.
//!
//! Each destination is its own task with its own hub subscription, so a failing or slow
//! destination never touches the ingest or the other destinations. Its state, bytes,
//! bitrate, drops and reconnects are readable at any time through [`DestinationStats`].

use std::fmt;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::error::{Error, ErrorKind, Result};
use crate::hub::{Hub, SubscribeOptions, SubscriberStats, Subscription, SubscriptionEnd};
use crate::media::MediaItem;
use crate::sink::{Connector, Sink};
use crate::sync::{CancelWatch, lock};

/// Exponential backoff with jitter, capped.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub factor: f64,
    /// Fraction of random spread, e.g. 0.25 = ±25 %.
    pub jitter: f64,
}

impl Default for Backoff {
    /// 0.5 s, 1 s, then every 1.5 s (±25 %): a destination that comes back is fed again
    /// within about two seconds (the GOP cache gives it a keyframe at once), and a TCP
    /// connect every 1.5 s costs a down platform nothing. Refusals of the stream itself
    /// wait longer ([`DestinationOptions::rejected_retry`]).
    fn default() -> Backoff {
        Backoff { initial: Duration::from_millis(500), max: Duration::from_millis(1500), factor: 2.0, jitter: 0.25 }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based), with `rand01` in `[0, 1)`.
    pub fn delay(&self, attempt: u32, rand01: f64) -> Duration {
        let base = self.initial.as_secs_f64() * self.factor.powi(attempt.min(62) as i32);
        let capped = base.min(self.max.as_secs_f64());
        let spread = 1.0 + self.jitter * (2.0 * rand01 - 1.0);
        Duration::from_secs_f64((capped * spread).max(0.0))
    }
}

/// Where a destination is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DestinationState {
    Connecting,
    Live,
    Retrying,
    /// Stopped for good: the stream ended, shutdown, or a configuration error.
    Stopped,
    /// A configuration error that retrying cannot fix.
    Failed,
}

impl DestinationState {
    fn code(self) -> u8 {
        match self {
            DestinationState::Connecting => 0,
            DestinationState::Live => 1,
            DestinationState::Retrying => 2,
            DestinationState::Stopped => 3,
            DestinationState::Failed => 4,
        }
    }

    fn from_code(c: u8) -> DestinationState {
        match c {
            1 => DestinationState::Live,
            2 => DestinationState::Retrying,
            3 => DestinationState::Stopped,
            4 => DestinationState::Failed,
            _ => DestinationState::Connecting,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DestinationState::Connecting => "connecting",
            DestinationState::Live => "live",
            DestinationState::Retrying => "retrying",
            DestinationState::Stopped => "stopped",
            DestinationState::Failed => "failed",
        }
    }
}

impl fmt::Display for DestinationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reader's last sample, for computing the bitrate on read (writers only add).
#[derive(Debug)]
struct RateWindow {
    at: Instant,
    bytes: u64,
    bps: u64,
}

/// Counters over every destination that shares them (a process's destinations, for
/// monitoring): they only grow, across reconnections and restarts, unlike the counters of
/// one running destination.
#[derive(Debug, Default)]
pub struct DestinationTotals {
    pub bytes_sent: AtomicU64,
    pub connects: AtomicU64,
    pub reconnects: AtomicU64,
    pub failed_connects: AtomicU64,
    /// Packets dropped on connections that have ended (see [`DestinationTotals::dropped`]).
    dropped_closed: AtomicU64,
}

impl DestinationTotals {
    /// Packets dropped so far: those of ended connections plus `live`, the drops of the
    /// connections still open (each running destination's [`DestinationStats::live_dropped`]).
    pub fn dropped(&self, live: u64) -> u64 {
        self.dropped_closed.load(Ordering::Relaxed) + live
    }
}

/// Live counters of one destination.
#[derive(Debug)]
pub struct DestinationStats {
    state: AtomicU8,
    pub bytes_sent: AtomicU64,
    pub items_sent: AtomicU64,
    /// Successful connections after the first.
    pub reconnects: AtomicU64,
    pub connects: AtomicU64,
    /// Connection attempts that failed (refused, unreachable, timed out).
    pub failed_connects: AtomicU64,
    dropped_before: AtomicU64,
    current: Mutex<Option<Arc<SubscriberStats>>>,
    last_error: Mutex<Option<String>>,
    rate: Mutex<RateWindow>,
    totals: Option<Arc<DestinationTotals>>,
}

impl Default for DestinationStats {
    fn default() -> DestinationStats {
        let now = Instant::now();
        DestinationStats {
            state: AtomicU8::new(DestinationState::Connecting.code()),
            bytes_sent: AtomicU64::new(0),
            items_sent: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            failed_connects: AtomicU64::new(0),
            dropped_before: AtomicU64::new(0),
            current: Mutex::new(None),
            last_error: Mutex::new(None),
            rate: Mutex::new(RateWindow { at: now, bytes: 0, bps: 0 }),
            totals: None,
        }
    }
}

impl DestinationStats {
    pub fn state(&self) -> DestinationState {
        DestinationState::from_code(self.state.load(Ordering::Acquire))
    }

    fn set_state(&self, s: DestinationState) {
        self.state.store(s.code(), Ordering::Release);
    }

    /// Packets the hub did not deliver to this destination (all connections).
    pub fn dropped(&self) -> u64 {
        self.dropped_before.load(Ordering::Relaxed) + self.live_dropped()
    }

    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    /// Outgoing bitrate in bits per second, averaged since the previous call that was at
    /// least half a second earlier (status displays call it about once a second).
    pub fn bitrate_bps(&self) -> u64 {
        let mut r = lock(&self.rate);
        let now = Instant::now();
        let bytes = self.bytes_sent.load(Ordering::Relaxed);
        let elapsed = now.duration_since(r.at);
        if elapsed >= Duration::from_millis(500) {
            r.bps = ((bytes.saturating_sub(r.bytes)) as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
            r.at = now;
            r.bytes = bytes;
        }
        r.bps
    }

    fn attach(&self, sub: &Subscription) {
        *lock(&self.current) = Some(sub.stats().clone());
    }

    fn detach(&self) {
        if let Some(s) = lock(&self.current).take() {
            let dropped = s.dropped.load(Ordering::Relaxed);
            self.dropped_before.fetch_add(dropped, Ordering::Relaxed);
            self.total(|t| &t.dropped_closed, dropped);
        }
    }

    /// Packets dropped on the connection open now.
    pub fn live_dropped(&self) -> u64 {
        lock(&self.current).as_ref().map_or(0, |s| s.dropped.load(Ordering::Relaxed))
    }

    fn total(&self, which: impl Fn(&DestinationTotals) -> &AtomicU64, n: u64) {
        if let Some(t) = &self.totals {
            which(t).fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A point-in-time copy for display.
    pub fn snapshot(&self) -> DestinationSnapshot {
        DestinationSnapshot {
            state: self.state(),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bitrate_bps: self.bitrate_bps(),
            dropped: self.dropped(),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            failed_connects: self.failed_connects.load(Ordering::Relaxed),
            last_error: self.last_error(),
        }
    }
}

/// A copy of [`DestinationStats`] at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationSnapshot {
    pub state: DestinationState,
    pub bytes_sent: u64,
    pub bitrate_bps: u64,
    pub dropped: u64,
    pub reconnects: u64,
    /// Connection attempts that failed: a destination that never gets through shows
    /// a growing count here while `reconnects` stays 0.
    pub failed_connects: u64,
    pub last_error: Option<String>,
}

/// Settings of a supervised destination.
#[derive(Clone, Debug)]
pub struct DestinationOptions {
    pub backoff: Backoff,
    pub subscribe: SubscribeOptions,
    /// A write that makes no progress for this long counts as a dead connection.
    pub stall_timeout: Duration,
    /// A connection that stayed up this long resets the backoff.
    pub healthy_after: Duration,
    /// Items taken from the queue per write at most.
    pub max_batch: usize,
    /// After this many refusals in a row (a wrong stream key, a platform that does not
    /// accept the stream), retries wait `rejected_retry` instead of the short backoff.
    pub rejected_limit: u32,
    pub rejected_retry: Duration,
    /// Counters shared by several destinations (monitoring); `None`: none.
    pub totals: Option<Arc<DestinationTotals>>,
}

impl Default for DestinationOptions {
    fn default() -> DestinationOptions {
        DestinationOptions {
            backoff: Backoff::default(),
            subscribe: SubscribeOptions::default(),
            stall_timeout: Duration::from_secs(15),
            healthy_after: Duration::from_secs(10),
            max_batch: 64,
            rejected_limit: 3,
            rejected_retry: Duration::from_secs(60),
            totals: None,
        }
    }
}

/// A running destination task.
#[derive(Debug)]
pub struct DestinationHandle {
    pub name: String,
    pub stream: String,
    pub stats: Arc<DestinationStats>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl DestinationHandle {
    /// Stops the destination: finishes the current connection gracefully and waits.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }

    /// Waits until the destination stops by itself (the stream ended).
    pub async fn join(self) {
        let _ = self.task.await;
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl crate::engine::Job for DestinationHandle {
    fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    fn error(&self) -> Option<String> {
        self.stats.last_error()
    }

    /// It ends when its stream ends; its last error is the peer's, shown, not a reason
    /// to stay down when the stream is back.
    fn restart_when_finished(&self) -> bool {
        true
    }

    fn stop(self) -> crate::sink::BoxFuture<'static, ()> {
        Box::pin(DestinationHandle::stop(self))
    }

    fn join(self) -> crate::sink::BoxFuture<'static, ()> {
        Box::pin(DestinationHandle::join(self))
    }
}

/// Starts a supervised destination for `stream`.
pub fn spawn_destination(
    hub: Hub,
    stream: String,
    name: String,
    connector: Arc<dyn Connector>,
    options: DestinationOptions,
    cancel: CancellationToken,
) -> DestinationHandle {
    let stats = Arc::new(DestinationStats { totals: options.totals.clone(), ..DestinationStats::default() });
    let span = info_span!("destination", name = %name, stream = %stream);
    let sup =
        Supervisor { hub, stream: stream.clone(), connector, options, stats: stats.clone(), cancel: cancel.clone() };
    let task = tokio::spawn(sup.run().instrument(span));
    DestinationHandle { name, stream, stats, cancel, task }
}

struct Supervisor {
    hub: Hub,
    stream: String,
    connector: Arc<dyn Connector>,
    options: DestinationOptions,
    stats: Arc<DestinationStats>,
    cancel: CancellationToken,
}

enum Exit {
    /// The stream ended; the destination was closed gracefully.
    StreamEnded,
    Shutdown,
}

impl Supervisor {
    async fn run(self) {
        let mut attempt: u32 = 0;
        let mut refused_in_a_row: u32 = 0;
        let target = self.connector.describe();
        if self.hub.get(&self.stream).is_none() {
            // Not a silent no-op: say why nothing will be sent.
            warn!(target = %target, "the stream is not live; the destination ends (start it once the stream has started, or use a Pipeline)");
            self.stats.set_state(DestinationState::Stopped);
            return;
        }
        // Watched once for the destination's life: the pump polls it per packet.
        let watch = CancelWatch::new(self.cancel.clone());
        loop {
            if self.cancel.is_cancelled() || self.hub.get(&self.stream).is_none() {
                break;
            }
            self.stats.set_state(DestinationState::Connecting);
            let connected = tokio::select! {
                _ = self.cancel.cancelled() => break,
                r = self.connector.connect() => r,
            };
            let result: Result<()> = match connected {
                Ok(mut sink) => {
                    let n = self.stats.connects.fetch_add(1, Ordering::Relaxed);
                    self.stats.total(|t| &t.connects, 1);
                    if n > 0 {
                        self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        self.stats.total(|t| &t.reconnects, 1);
                    }
                    let Some(sub) = self.hub.subscribe(&self.stream, self.options.subscribe) else {
                        let _ = sink.finish().await;
                        break;
                    };
                    info!(target = %target, "live");
                    self.stats.set_state(DestinationState::Live);
                    self.stats.attach(&sub);
                    let since = Instant::now();
                    let r = self.pump(sink.as_mut(), sub, &watch).await;
                    self.stats.detach();
                    // Backoff counts consecutive failures: a connection that worked resets it,
                    // to a short delay if it did not last long (a flapping destination).
                    attempt = if since.elapsed() >= self.options.healthy_after { 0 } else { 1 };
                    match r {
                        Ok(exit) => {
                            if let Err(e) = sink.finish().await {
                                warn!(reason = %e, "closing the destination failed");
                            }
                            match exit {
                                Exit::StreamEnded => info!("stream ended; destination closed"),
                                Exit::Shutdown => info!("destination closed (shutdown)"),
                            }
                            break;
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => {
                    self.stats.failed_connects.fetch_add(1, Ordering::Relaxed);
                    self.stats.total(|t| &t.failed_connects, 1);
                    Err(e)
                }
            };
            if let Err(e) = result {
                if !e.is_retryable() {
                    *lock(&self.stats.last_error) = Some(e.to_string());
                    warn!(reason = %e, "destination failed; not retrying");
                    self.stats.set_state(DestinationState::Failed);
                    return;
                }
                refused_in_a_row = if e.kind() == ErrorKind::Rejected { refused_in_a_row + 1 } else { 0 };
                let mut delay = self.options.backoff.delay(attempt, fastrand::f64());
                attempt = attempt.saturating_add(1);
                let mut shown = e.to_string();
                if refused_in_a_row >= self.options.rejected_limit.max(1) {
                    // Retrying a refusal fast only hammers the platform: say why and wait.
                    delay = delay.max(self.options.rejected_retry);
                    shown = format!(
                        "{e} (refused {refused_in_a_row} times in a row: check the URL and stream key; \
                         next try in {} s)",
                        delay.as_secs()
                    );
                }
                *lock(&self.stats.last_error) = Some(shown);
                warn!(reason = %e, retry_in_ms = delay.as_millis() as u64, "destination error; will reconnect");
                self.stats.set_state(DestinationState::Retrying);
                tokio::select! {
                    _ = self.cancel.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
        self.stats.set_state(DestinationState::Stopped);
    }

    async fn pump(&self, sink: &mut dyn Sink, mut sub: Subscription, cancel: &CancelWatch) -> Result<Exit> {
        enum Event {
            Cancel,
            Peer(Result<()>),
            Item(Option<MediaItem>),
        }
        let mut batch: Vec<MediaItem> = Vec::with_capacity(self.options.max_batch);
        loop {
            let ev = tokio::select! {
                biased;
                _ = cancel.fired() => Event::Cancel,
                r = poll_fn(|cx| sink.poll_peer(cx)) => Event::Peer(r),
                item = sub.recv() => Event::Item(item),
            };
            match ev {
                Event::Cancel => {
                    // Deliver what is already queued, then close.
                    while let Some(item) = sub.try_recv() {
                        batch.push(item);
                        if batch.len() == self.options.max_batch {
                            self.write(sink, &mut batch).await?;
                        }
                    }
                    self.write(sink, &mut batch).await?;
                    // The stream may have ended just as the destination was stopped (a
                    // relay stops the destinations of a stream that left the hub): what
                    // happened first is the end of the stream.
                    if sub.end_reason() == Some(SubscriptionEnd::StreamEnded) {
                        return Ok(Exit::StreamEnded);
                    }
                    return Ok(Exit::Shutdown);
                }
                Event::Peer(r) => r?,
                Event::Item(None) => {
                    return match sub.end_reason() {
                        Some(SubscriptionEnd::TooSlow) => {
                            Err(Error::new(ErrorKind::Timeout, "destination could not keep up (detached by policy)"))
                        }
                        _ => Ok(Exit::StreamEnded),
                    };
                }
                Event::Item(Some(item)) => {
                    batch.push(item);
                    while batch.len() < self.options.max_batch {
                        match sub.try_recv() {
                            Some(i) => batch.push(i),
                            None => break,
                        }
                    }
                    self.write(sink, &mut batch).await?;
                }
            }
        }
    }

    /// Serializes and writes a batch. The common case (the socket takes it at once)
    /// arms no timer; a write that has to wait is bounded by the stall timeout.
    async fn write(&self, sink: &mut dyn Sink, batch: &mut Vec<MediaItem>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        sink.enqueue(batch)?;
        let first = poll_fn(|cx| Poll::Ready(sink.poll_flush(cx))).await;
        let n = match first {
            Poll::Ready(r) => r?,
            Poll::Pending => {
                match tokio::time::timeout(self.options.stall_timeout, poll_fn(|cx| sink.poll_flush(cx))).await {
                    Ok(r) => r?,
                    Err(_) => {
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            format!("write stalled for {} s", self.options.stall_timeout.as_secs()),
                        ));
                    }
                }
            }
        };
        self.stats.items_sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.stats.bytes_sent.fetch_add(n, Ordering::Relaxed);
        self.stats.total(|t| &t.bytes_sent, n);
        batch.clear();
        Ok(())
    }
}

/// Where a destination sends: an RTMP(S) push or (with the `srt` feature) an SRT caller.
/// Parsed from `rtmp://`, `rtmps://` or `srt://`; shown with its secrets masked.
#[derive(Clone, PartialEq, Eq)]
pub enum DestinationUrl {
    Rtmp(crate::rtmp::RtmpUrl),
    #[cfg(feature = "srt")]
    Srt(crate::srt::SrtUrl),
}

impl DestinationUrl {
    /// The connector that opens this destination.
    pub fn connector(&self, push: crate::rtmp::RtmpPushOptions) -> Arc<dyn Connector> {
        match self {
            DestinationUrl::Rtmp(u) => Arc::new(crate::rtmp::RtmpConnector::new(u.clone(), push)),
            #[cfg(feature = "srt")]
            DestinationUrl::Srt(u) => {
                Arc::new(crate::srt::SrtConnector::new(u.clone(), crate::srt::SrtPushOptions::default()))
            }
        }
    }

    /// The URL with `{key}` in its stream key (or SRT stream id) replaced by `key`.
    pub fn with_key_template(&self, key: &str) -> DestinationUrl {
        match self {
            DestinationUrl::Rtmp(u) => DestinationUrl::Rtmp(u.with_key_template(key)),
            #[cfg(feature = "srt")]
            DestinationUrl::Srt(u) => {
                let mut u = u.clone();
                u.stream_id = u.stream_id.map(|id| id.replace("{key}", key));
                DestinationUrl::Srt(u)
            }
        }
    }

    /// Whether the URL depends on the publisher's key (`{key}` in it).
    pub fn is_per_key(&self) -> bool {
        match self {
            DestinationUrl::Rtmp(u) => u.key.contains("{key}"),
            #[cfg(feature = "srt")]
            DestinationUrl::Srt(u) => u.stream_id.as_deref().is_some_and(|id| id.contains("{key}")),
        }
    }

    /// The URL with its stream key (or SRT stream id and passphrase) masked.
    pub fn redacted(&self) -> String {
        match self {
            DestinationUrl::Rtmp(u) => u.redacted(),
            #[cfg(feature = "srt")]
            DestinationUrl::Srt(u) => u.redacted(),
        }
    }
}

impl std::str::FromStr for DestinationUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<DestinationUrl> {
        let s = s.trim();
        if s.starts_with("srt://") {
            #[cfg(feature = "srt")]
            return Ok(DestinationUrl::Srt(crate::srt::SrtUrl::parse(s)?));
            #[cfg(not(feature = "srt"))]
            return Err(Error::new(ErrorKind::Config, "SRT destinations: built without the `srt` feature"));
        }
        let u: crate::rtmp::RtmpUrl = s.parse().map_err(|e| Error::new(ErrorKind::Config, format!("{e}")))?;
        if u.key.is_empty() {
            return Err(Error::new(ErrorKind::Config, "the URL has no stream key (expected rtmp://HOST/APP/KEY)"));
        }
        Ok(DestinationUrl::Rtmp(u))
    }
}

impl fmt::Display for DestinationUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DestinationUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DestinationUrl({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps_with_bounded_jitter() {
        let b = Backoff { max: Duration::from_secs(15), ..Backoff::default() };
        assert_eq!(b.delay(0, 0.5), Duration::from_millis(500));
        assert_eq!(b.delay(1, 0.5), Duration::from_secs(1));
        assert_eq!(b.delay(3, 0.5), Duration::from_secs(4));
        assert_eq!(b.delay(30, 0.5), Duration::from_secs(15));
        assert_eq!(b.delay(u32::MAX, 0.5), Duration::from_secs(15));
        let d = Backoff::default();
        assert_eq!(d.delay(5, 0.5), Duration::from_millis(1500));
        assert!(d.delay(9, 0.999_999) < Duration::from_millis(1900));
        let lo = b.delay(2, 0.0);
        let hi = b.delay(2, 0.999_999);
        assert!(lo >= Duration::from_millis(1500) && hi <= Duration::from_millis(2500), "{lo:?} {hi:?}");
    }

    #[test]
    fn state_codes_round_trip() {
        for s in [
            DestinationState::Connecting,
            DestinationState::Live,
            DestinationState::Retrying,
            DestinationState::Stopped,
            DestinationState::Failed,
        ] {
            assert_eq!(DestinationState::from_code(s.code()), s);
        }
    }
}

#[cfg(test)]
mod supervisor_tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Context;

    use super::*;
    use crate::hub::HubOptions;
    use crate::media::{Codec, FlvCodecTag, MediaInfo, Timebase, Track, TrackId};
    use crate::sink::BoxFuture;

    /// Per connection: (is info, dts ms, keyframe) of every item received.
    type CallLog = Arc<Mutex<Vec<Vec<(bool, i64, bool)>>>>;

    /// Records what it receives; the first connection fails after `fail_after` items.
    struct FakeSink {
        log: CallLog,
        conn: usize,
        fail_after: Option<usize>,
        seen: usize,
    }

    impl Sink for FakeSink {
        fn enqueue(&mut self, items: &[MediaItem]) -> Result<()> {
            for item in items {
                if self.fail_after.is_some_and(|n| self.seen >= n) {
                    return Err(Error::new(ErrorKind::Disconnected, "peer went away"));
                }
                self.seen += 1;
                let entry = match item {
                    MediaItem::Info(_) => (true, 0, false),
                    MediaItem::Packet(p) => (false, p.dts.as_millis(), p.keyframe),
                };
                lock(&self.log)[self.conn].push(entry);
            }
            Ok(())
        }

        fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<Result<u64>> {
            Poll::Ready(Ok(100))
        }

        fn poll_peer(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
            Poll::Pending
        }

        fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
            Box::pin(async { Ok(()) })
        }
    }

    struct FakeConnector {
        log: CallLog,
        connects: AtomicUsize,
    }

    impl Connector for FakeConnector {
        fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Sink>>> {
            Box::pin(async move {
                let conn = self.connects.fetch_add(1, Ordering::SeqCst);
                lock(&self.log).push(Vec::new());
                let fail_after = (conn == 0).then_some(12);
                Ok(Box::new(FakeSink { log: self.log.clone(), conn, fail_after, seen: 0 }) as Box<dyn Sink>)
            })
        }

        fn describe(&self) -> String {
            "fake".into()
        }
    }

    use crate::hub::tests::video as packet;

    /// Refuses every publish, as a platform does with a wrong stream key.
    struct Refusing(AtomicUsize);

    impl Connector for Refusing {
        fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Sink>>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Err(Error::new(ErrorKind::Rejected, "publish refused: bad key")) })
        }

        fn describe(&self) -> String {
            "refusing".into()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_destination_that_keeps_refusing_is_retried_slowly_and_says_why() {
        let hub = Hub::new(HubOptions::default());
        let _publisher = hub.publish("s").expect("publish");
        let connector = Arc::new(Refusing(AtomicUsize::new(0)));
        let handle = spawn_destination(
            hub.clone(),
            "s".into(),
            "yt".into(),
            connector.clone(),
            DestinationOptions::default(),
            CancellationToken::new(),
        );
        tokio::time::sleep(Duration::from_secs(300)).await;
        let attempts = connector.0.load(Ordering::SeqCst);
        // 3 quick tries, then one a minute: 3 + 5 in five minutes (the short backoff
        // alone would have made about 23).
        assert!((7..=9).contains(&attempts), "{attempts} attempts in 5 minutes");
        let snap = handle.stats.snapshot();
        assert_eq!((snap.state, snap.reconnects), (DestinationState::Retrying, 0));
        assert_eq!(snap.failed_connects, attempts as u64, "every failed attempt is counted");
        let error = snap.last_error.unwrap_or_default();
        assert!(
            error.contains("bad key") && error.contains("refused") && error.contains("next try in 60 s"),
            "{error}"
        );
        handle.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn reconnects_after_an_error_and_resumes_on_a_keyframe() {
        let hub = Hub::new(HubOptions { grace_period: Duration::ZERO, ..Default::default() });
        let publisher = hub.publish("s").expect("publish");
        let mut info = MediaInfo::default();
        info.set_track(Track {
            id: TrackId(0),
            codec: Codec::FlvVideo { codec: FlvCodecTag::Id(7), sequence_header: None },
            timebase: Timebase::MILLIS,
        });
        publisher.set_info(Arc::new(info));
        let log: CallLog = Arc::default();
        let connector = Arc::new(FakeConnector { log: log.clone(), connects: AtomicUsize::new(0) });
        let cancel = CancellationToken::new();
        let handle = spawn_destination(
            hub.clone(),
            "s".into(),
            "fake".into(),
            connector.clone(),
            DestinationOptions::default(),
            cancel.clone(),
        );
        // 10 frames per GOP, one frame every 100 ms of (paused) time
        for i in 0..40 {
            publisher.send(packet(i * 100, i % 10 == 0));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(publisher);
        tokio::time::timeout(Duration::from_secs(30), handle.join()).await.expect("destination stopped");
        let log = lock(&log).clone();
        assert_eq!(connector.connects.load(Ordering::SeqCst), 2);
        // first connection: info, then packets from 0 until it failed
        assert!(log[0][0].0);
        assert_eq!(log[0].len(), 12);
        // second connection: info first, then a keyframe, then contiguous packets to the end
        assert!(log[1][0].0, "reconnection starts with the stream info");
        let (_, first_ts, first_key) = log[1][1];
        assert!(first_key, "reconnection starts on a keyframe");
        let times: Vec<i64> = log[1][1..].iter().map(|e| e.1).collect();
        assert!(times.windows(2).all(|w| w[1] == w[0] + 100), "{times:?}");
        assert_eq!(*times.last().expect("packets"), 3900);
        assert!(first_ts >= 1000 && first_ts % 1000 == 0);
    }

    #[tokio::test(start_paused = true)]
    async fn stats_report_reconnects_and_final_state() {
        let hub = Hub::new(HubOptions { grace_period: Duration::ZERO, ..Default::default() });
        let publisher = hub.publish("s").expect("publish");
        let log: CallLog = Arc::default();
        let connector = Arc::new(FakeConnector { log, connects: AtomicUsize::new(0) });
        let totals = Arc::new(DestinationTotals::default());
        let options = DestinationOptions { totals: Some(Arc::clone(&totals)), ..DestinationOptions::default() };
        let handle =
            spawn_destination(hub.clone(), "s".into(), "fake".into(), connector, options, CancellationToken::new());
        for i in 0..30 {
            publisher.send(packet(i * 100, true));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stats = handle.stats.clone();
        assert_eq!(stats.state(), DestinationState::Live);
        drop(publisher);
        handle.join().await;
        let snap = stats.snapshot();
        assert_eq!(snap.state, DestinationState::Stopped);
        assert_eq!(snap.reconnects, 1);
        assert!(snap.bytes_sent > 0);
        assert_eq!(snap.last_error.as_deref(), Some("peer went away"));
        // The shared totals saw the same, and keep it once the destination is gone.
        assert_eq!(totals.bytes_sent.load(Ordering::Relaxed), snap.bytes_sent);
        assert_eq!((totals.connects.load(Ordering::Relaxed), totals.reconnects.load(Ordering::Relaxed)), (2, 1));
        assert_eq!(totals.dropped(0), snap.dropped);
    }
}
