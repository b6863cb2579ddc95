//! The hub: one [`LiveStream`] per stream name, fanning packets out to subscribers.
//!
//! * The publisher never waits: [`Publisher::send`] takes a short lock and `try_send`s into
//!   each subscriber's **bounded** queue.
//! * A subscriber whose queue is full is handled by its [`SlowSinkPolicy`] (default:
//!   drop until the next keyframe and count the drops).
//! * A GOP cache holds the packets since the last video keyframe, so a subscriber that joins
//!   or reconnects starts at once on a keyframe, after the current [`MediaInfo`].
//! * A publisher that drops and comes back within the grace period resumes the same
//!   stream: subscribers stay attached and timestamps continue monotonically.

mod gop;
mod subscription;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info, warn};

use self::gop::GopCache;
pub use self::subscription::{SubscriberStats, Subscription, SubscriptionEnd};
use crate::media::{MediaInfo, MediaItem, Packet, Timestamp, TrackId, TrackKind};
use crate::sync::lock;

/// What to do with a subscriber whose queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SlowSinkPolicy {
    /// Drop packets until the next video keyframe, then resume; count the drops.
    #[default]
    DropToKeyframe,
    /// Detach the subscriber (its destination reconnects and starts on a fresh GOP).
    Disconnect,
}

impl FromStr for SlowSinkPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "drop-to-keyframe" => Ok(SlowSinkPolicy::DropToKeyframe),
            "disconnect" => Ok(SlowSinkPolicy::Disconnect),
            other => Err(format!("unknown slow-sink policy {other:?} (expected drop-to-keyframe or disconnect)")),
        }
    }
}

impl fmt::Display for SlowSinkPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlowSinkPolicy::DropToKeyframe => "drop-to-keyframe",
            SlowSinkPolicy::Disconnect => "disconnect",
        })
    }
}

/// Hub-wide settings.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// Packets a subscriber may have queued before its [`SlowSinkPolicy`] applies.
    pub queue_capacity: usize,
    /// Upper bound of the GOP cache in bytes; a longer GOP is not cached.
    pub gop_cache_max_bytes: usize,
    /// How long a stream whose publisher left waits for it to come back.
    pub grace_period: Duration,
}

impl Default for HubOptions {
    fn default() -> HubOptions {
        HubOptions {
            queue_capacity: 1024,
            gop_cache_max_bytes: 32 * 1024 * 1024,
            grace_period: Duration::from_secs(10),
        }
    }
}

/// Options of one subscription.
#[derive(Clone, Copy, Debug, Default)]
pub struct SubscribeOptions {
    pub policy: SlowSinkPolicy,
    /// Overrides [`HubOptions::queue_capacity`].
    pub queue_capacity: Option<usize>,
}

/// Lifecycle events of the hub's streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubEvent {
    /// A publisher started a stream that did not exist.
    StreamStarted(String),
    /// The publisher left; the stream waits for the grace period.
    PublisherLeft(String),
    /// A publisher came back within the grace period.
    PublisherReturned(String),
    /// The stream is over (grace period expired or the hub shut down).
    StreamEnded(String),
    /// The hub was shut down: no stream will start any more.
    Closed,
}

/// Errors from the hub.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("stream {0:?} already has a publisher")]
    AlreadyPublishing(String),
    #[error("the hub is shut down")]
    Closed,
}

/// The fan-out point for all live streams. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    options: HubOptions,
    streams: Mutex<HashMap<String, Arc<LiveStream>>>,
    events: broadcast::Sender<HubEvent>,
    closed: AtomicBool,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub").field("streams", &self.stream_names()).finish()
    }
}

impl Default for Hub {
    fn default() -> Hub {
        Hub::new(HubOptions::default())
    }
}

impl Hub {
    pub fn new(options: HubOptions) -> Hub {
        let (events, _) = broadcast::channel(256);
        Hub {
            inner: Arc::new(HubInner {
                options,
                streams: Mutex::new(HashMap::new()),
                events,
                closed: AtomicBool::new(false),
            }),
        }
    }

    pub fn options(&self) -> &HubOptions {
        &self.inner.options
    }

    /// Subscribes to stream lifecycle events.
    pub fn events(&self) -> broadcast::Receiver<HubEvent> {
        self.inner.events.subscribe()
    }

    fn emit(&self, event: HubEvent) {
        let _ = self.inner.events.send(event);
    }

    /// Starts publishing `name`, or resumes it if it is in its grace period.
    pub fn publish(&self, name: &str) -> Result<Publisher, HubError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(HubError::Closed);
        }
        let mut streams = lock(&self.inner.streams);
        if let Some(stream) = streams.get(name) {
            let mut st = lock(&stream.state);
            if st.publishing {
                return Err(HubError::AlreadyPublishing(name.to_string()));
            }
            st.publishing = true;
            st.generation += 1;
            st.rebase_pending = true;
            let generation = st.generation;
            drop(st);
            stream.stats.publisher_returns.fetch_add(1, Ordering::Relaxed);
            info!(stream = name, "publisher returned within the grace period; stream resumes");
            self.emit(HubEvent::PublisherReturned(name.to_string()));
            return Ok(Publisher { hub: self.clone(), stream: stream.clone(), generation });
        }
        let stream = Arc::new(LiveStream::new(name.to_string(), self.inner.options.gop_cache_max_bytes));
        streams.insert(name.to_string(), stream.clone());
        drop(streams);
        info!(stream = name, "stream started");
        self.emit(HubEvent::StreamStarted(name.to_string()));
        Ok(Publisher { hub: self.clone(), stream, generation: 0 })
    }

    /// Subscribes to `name`. Returns `None` if no such stream is live; to wait for one that
    /// has not started yet, use [`Hub::subscribe_when_live`].
    pub fn subscribe(&self, name: &str, options: SubscribeOptions) -> Option<Subscription> {
        let stream = self.get(name)?;
        let capacity = options.queue_capacity.unwrap_or(self.inner.options.queue_capacity).max(2);
        Some(stream.subscribe(capacity, options.policy))
    }

    /// Subscribes to `name`, waiting until it starts if it has not yet. Fails with
    /// [`HubError::Closed`] once the hub is shut down. Dropping the future stops waiting.
    pub async fn subscribe_when_live(&self, name: &str, options: SubscribeOptions) -> Result<Subscription, HubError> {
        // Listen before looking, so a start between the two is not missed.
        let mut events = self.events();
        loop {
            if let Some(sub) = self.subscribe(name, options) {
                return Ok(sub);
            }
            if self.inner.closed.load(Ordering::Acquire) {
                return Err(HubError::Closed);
            }
            match events.recv().await {
                // Something happened (or events were missed): look again.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Err(HubError::Closed),
            }
        }
    }

    /// The live stream named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LiveStream>> {
        lock(&self.inner.streams).get(name).cloned()
    }

    /// Names of the live streams.
    pub fn stream_names(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.inner.streams).keys().cloned().collect();
        names.sort();
        names
    }

    /// Ends one stream now (an operator deleted it): subscribers finish, and its publisher
    /// sees [`Publisher::is_open`] turn false and is disconnected by the ingest.
    pub fn end_stream(&self, name: &str) -> bool {
        let stream = lock(&self.inner.streams).remove(name);
        match stream {
            Some(s) => {
                s.end();
                info!(stream = name, "stream ended by request");
                self.emit(HubEvent::StreamEnded(name.to_string()));
                true
            }
            None => false,
        }
    }

    /// Ends every stream and refuses new publishers (ordered shutdown: ingest first).
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let streams: Vec<Arc<LiveStream>> = lock(&self.inner.streams).drain().map(|(_, s)| s).collect();
        for s in streams {
            s.end();
            self.emit(HubEvent::StreamEnded(s.name.clone()));
        }
        self.emit(HubEvent::Closed);
    }

    fn publisher_left(&self, stream: &Arc<LiveStream>, generation: u64) {
        {
            let mut st = lock(&stream.state);
            if st.generation != generation || !st.publishing {
                return;
            }
            st.publishing = false;
            st.left_at = Some(Instant::now());
        }
        let grace = self.inner.options.grace_period;
        if grace.is_zero() || tokio::runtime::Handle::try_current().is_err() {
            self.end_if_abandoned(stream, generation);
            return;
        }
        info!(stream = %stream.name, grace_s = grace.as_secs_f32(), "publisher left; waiting for it to return");
        self.emit(HubEvent::PublisherLeft(stream.name.clone()));
        let hub = self.clone();
        let stream = stream.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            hub.end_if_abandoned(&stream, generation);
        });
    }

    fn end_if_abandoned(&self, stream: &Arc<LiveStream>, generation: u64) {
        let mut streams = lock(&self.inner.streams);
        {
            let st = lock(&stream.state);
            if st.publishing || st.generation != generation {
                return;
            }
        }
        let ours = streams.get(&stream.name).is_some_and(|s| Arc::ptr_eq(s, stream));
        if ours {
            streams.remove(&stream.name);
        }
        drop(streams);
        stream.end();
        if ours {
            info!(stream = %stream.name, "stream ended");
            self.emit(HubEvent::StreamEnded(stream.name.clone()));
        }
    }
}

/// Counters of one live stream.
#[derive(Debug, Default)]
pub struct StreamStats {
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub keyframes_in: AtomicU64,
    /// Times the publisher came back within the grace period.
    pub publisher_returns: AtomicU64,
}

/// One live stream: current tracks, GOP cache and subscribers.
pub struct LiveStream {
    name: String,
    closed: AtomicBool,
    state: Mutex<StreamState>,
    stats: StreamStats,
    started: Instant,
}

impl fmt::Debug for LiveStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveStream").field("name", &self.name).finish_non_exhaustive()
    }
}

struct SubscriberSlot {
    tx: mpsc::Sender<MediaItem>,
    policy: SlowSinkPolicy,
    /// Dropping until the next keyframe.
    waiting_for_keyframe: bool,
    /// The info generation this subscriber has seen.
    info_seen: u64,
    stats: Arc<SubscriberStats>,
}

struct StreamState {
    info: Option<Arc<MediaInfo>>,
    info_generation: u64,
    gop: GopCache,
    subscribers: Vec<SubscriberSlot>,
    publishing: bool,
    ended: bool,
    generation: u64,
    left_at: Option<Instant>,
    /// Timestamp continuity: added to publisher timestamps (ms).
    offset_ms: i64,
    rebase_pending: bool,
    /// Last output DTS per track (ms, after offset).
    last_dts: HashMap<TrackId, i64>,
}

/// A backward DTS jump larger than this is a discontinuity, not reordering.
const DISCONTINUITY_MS: i64 = 1000;
/// Gap inserted at a discontinuity.
const REBASE_GAP_MS: i64 = 20;

impl LiveStream {
    fn new(name: String, gop_max: usize) -> LiveStream {
        LiveStream {
            name,
            closed: AtomicBool::new(false),
            state: Mutex::new(StreamState {
                info: None,
                info_generation: 0,
                gop: GopCache::new(gop_max),
                subscribers: Vec::new(),
                publishing: true,
                ended: false,
                generation: 0,
                left_at: None,
                offset_ms: 0,
                rebase_pending: false,
                last_dts: HashMap::new(),
            }),
            stats: StreamStats::default(),
            started: Instant::now(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The current tracks.
    pub fn info(&self) -> Option<Arc<MediaInfo>> {
        lock(&self.state).info.clone()
    }

    /// Whether a publisher is attached right now (false during the grace period).
    pub fn is_publishing(&self) -> bool {
        lock(&self.state).publishing
    }

    pub fn subscriber_count(&self) -> usize {
        lock(&self.state).subscribers.len()
    }

    fn subscribe(&self, capacity: usize, policy: SlowSinkPolicy) -> Subscription {
        let (tx, rx) = mpsc::channel(capacity);
        let stats = Arc::new(SubscriberStats::default());
        let mut st = lock(&self.state);
        let mut backlog = Vec::new();
        if let Some(info) = &st.info {
            backlog.push(MediaItem::Info(info.clone()));
        }
        let has_video = st.info.as_ref().is_some_and(|i| i.video().is_some());
        let gop = st.gop.packets();
        backlog.extend(gop.iter().cloned().map(MediaItem::Packet));
        // Start on a keyframe: with video and no cached GOP, wait for the next one.
        let waiting = has_video && gop.is_empty();
        let slot = SubscriberSlot {
            tx,
            policy,
            waiting_for_keyframe: waiting,
            info_seen: st.info_generation,
            stats: stats.clone(),
        };
        if st.ended {
            drop(slot);
        } else {
            st.subscribers.push(slot);
        }
        debug!(stream = %self.name, backlog = backlog.len(), "subscriber attached");
        Subscription::new(self.name.clone(), backlog, rx, stats)
    }

    fn end(&self) {
        self.closed.store(true, Ordering::Release);
        let mut st = lock(&self.state);
        st.ended = true;
        st.publishing = false;
        for slot in st.subscribers.drain(..) {
            slot.stats.mark_end(SubscriptionEnd::StreamEnded);
        }
        st.gop.clear();
    }
}

/// The publishing side of a live stream. Dropping it starts the grace period.
pub struct Publisher {
    hub: Hub,
    stream: Arc<LiveStream>,
    generation: u64,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher").field("stream", &self.stream.name).finish()
    }
}

impl Publisher {
    pub fn stream(&self) -> &Arc<LiveStream> {
        &self.stream
    }

    /// Announces new tracks. Subscribers get it before any later packet.
    pub fn set_info(&self, info: Arc<MediaInfo>) {
        let mut st = lock(&self.stream.state);
        if st.ended {
            return;
        }
        if st.info.as_deref() == Some(&*info) {
            return;
        }
        let video_changed = st.info.as_ref().and_then(|i| i.video().cloned()) != info.video().cloned();
        if video_changed {
            // Cached packets belong to the old configuration.
            st.gop.clear();
        }
        st.info = Some(info.clone());
        st.info_generation += 1;
        let generation = st.info_generation;
        let name = &self.stream.name;
        st.subscribers.retain_mut(|slot| {
            if slot.waiting_for_keyframe {
                // Delivered together with the next keyframe.
                return true;
            }
            match slot.tx.try_send(MediaItem::Info(info.clone())) {
                Ok(()) => {
                    slot.info_seen = generation;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => on_full(name, slot),
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Sends one packet to every subscriber without waiting.
    pub fn send(&self, mut packet: Packet) {
        self.stream.stats.packets_in.fetch_add(1, Ordering::Relaxed);
        self.stream.stats.bytes_in.fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
        let mut guard = lock(&self.stream.state);
        let st = &mut *guard;
        if st.ended {
            return;
        }
        apply_continuity(st, &mut packet, &self.stream.name);
        let is_video = packet.kind == TrackKind::Video;
        let has_video = st.info.as_ref().is_some_and(|i| i.video().is_some());
        // A point where a subscriber may (re)start.
        let entry_point = if has_video { is_video && packet.keyframe } else { true };
        if is_video && packet.keyframe {
            self.stream.stats.keyframes_in.fetch_add(1, Ordering::Relaxed);
        }
        if has_video {
            st.gop.push(&packet, is_video && packet.keyframe);
        }
        let info = &st.info;
        let info_generation = st.info_generation;
        let name = &self.stream.name;
        st.subscribers.retain_mut(|slot| {
            if slot.waiting_for_keyframe {
                if !entry_point {
                    slot.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                if slot.tx.is_closed() {
                    return false;
                }
                if slot.tx.capacity() * 2 < slot.tx.max_capacity() {
                    // Still mostly full: keep skipping rather than resume and drop again.
                    slot.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                // At least half the queue (and so at least one slot, capacity ≥ 2) is free
                // for the info and the keyframe.
                if slot.info_seen != info_generation
                    && let Some(info) = info
                {
                    if slot.tx.try_send(MediaItem::Info(info.clone())).is_err() {
                        return !slot.tx.is_closed();
                    }
                    slot.info_seen = info_generation;
                }
                slot.waiting_for_keyframe = false;
                debug!(stream = %name, "slow subscriber resumed on a keyframe");
            }
            match slot.tx.try_send(MediaItem::Packet(packet.clone())) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => on_full(name, slot),
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Whether the hub still accepts packets for this stream (cheap: one atomic load).
    pub fn is_open(&self) -> bool {
        !self.stream.closed.load(Ordering::Acquire)
    }
}

fn on_full(stream: &str, slot: &mut SubscriberSlot) -> bool {
    slot.stats.dropped.fetch_add(1, Ordering::Relaxed);
    match slot.policy {
        SlowSinkPolicy::DropToKeyframe => {
            if !slot.waiting_for_keyframe {
                slot.stats.drop_events.fetch_add(1, Ordering::Relaxed);
                warn!(stream, "subscriber queue full; dropping until the next keyframe");
            }
            slot.waiting_for_keyframe = true;
            true
        }
        SlowSinkPolicy::Disconnect => {
            warn!(stream, "subscriber queue full; disconnecting it (policy: disconnect)");
            slot.stats.mark_end(SubscriptionEnd::TooSlow);
            false
        }
    }
}

/// Keeps each track's DTS monotonic across publisher reconnects and timestamp resets.
fn apply_continuity(st: &mut StreamState, packet: &mut Packet, stream: &str) {
    let dts_in = packet.dts.as_millis();
    let mut dts = dts_in + st.offset_ms;
    let last_track = st.last_dts.get(&packet.track).copied();
    let jumped_back = last_track.is_some_and(|last| dts < last - DISCONTINUITY_MS);
    if (st.rebase_pending || jumped_back) && !st.last_dts.is_empty() {
        let last_any = st.last_dts.values().copied().max().unwrap_or(0);
        st.offset_ms = last_any + REBASE_GAP_MS - dts_in;
        dts = dts_in + st.offset_ms;
        debug!(stream, offset_ms = st.offset_ms, "timestamp rebase");
        // other tracks of the new session restart relative to this one
        st.last_dts.clear();
    }
    st.rebase_pending = false;
    st.last_dts.insert(packet.track, dts);
    if st.offset_ms != 0 {
        let shift = st.offset_ms;
        let tb = packet.dts.timebase();
        let shift_ticks = Timestamp::from_millis(shift).rescale(tb).ticks();
        packet.dts = packet.dts.add_ticks(shift_ticks);
        packet.pts = packet.pts.add_ticks(shift_ticks);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.hub.publisher_left(&self.stream, self.generation);
    }
}

#[cfg(test)]
pub(crate) mod tests;

/// Feeds hub stream `stream` to a worker on its own thread (a transcoder, a recorder)
/// until the stream ends, `cancel` fires or the worker hangs up: subscribes with `options`,
/// shares the subscription's counters through `stats`, then closes the channel and waits
/// for `worker` to finish.
#[cfg_attr(not(feature = "libav"), allow(dead_code))]
pub(crate) async fn forward_to_thread(
    hub: Hub,
    stream: String,
    options: SubscribeOptions,
    stats: Arc<Mutex<Option<Arc<SubscriberStats>>>>,
    cancel: tokio_util::sync::CancellationToken,
    tx: tokio::sync::mpsc::Sender<MediaItem>,
    worker: std::thread::JoinHandle<()>,
) {
    let subscription = hub.subscribe(&stream, options);
    if subscription.is_none() {
        warn!(stream = %stream, "the stream is not live; nothing to process (start stages once it has started)");
    }
    if let Some(mut sub) = subscription {
        *lock(&stats) = Some(Arc::clone(sub.stats()));
        loop {
            let item = tokio::select! {
                _ = cancel.cancelled() => break,
                item = sub.recv() => item,
            };
            let Some(item) = item else { break };
            if tx.send(item).await.is_err() {
                break; // the worker stopped (it logged why)
            }
        }
    }
    drop(tx);
    let _ = tokio::task::spawn_blocking(move || worker.join()).await;
}
