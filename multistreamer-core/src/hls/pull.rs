//! Pulling an HLS playlist into the hub.
//!
//! Live playlists are reloaded as RFC 8216 §6.3.4 asks (after a target duration when the
//! playlist changed, half of it when it did not); playback starts three segments from the
//! live edge; segments are fetched in order with retries and published paced by their
//! timestamps, so a destination sees real time even when segments arrive in bursts (or a
//! VOD playlist is read at disk speed). Timestamps stay monotonic in the hub across
//! `#EXT-X-DISCONTINUITY`, media-sequence gaps, VOD loops and 33-bit PTS wrap.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
use bytes::Bytes;
use m3u8_rs::{KeyMethod, MasterPlaylist, MediaPlaylist, Playlist};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::HlsError;
use super::demux::{AUDIO_TRACK, Frame, SegmentDemuxer, VIDEO_TRACK};
use crate::error::{Error, ErrorKind, Result};
use crate::hub::Hub;
use crate::media::{MediaInfo, MediaItem, Packet, Timebase, Timestamp, TrackKind};
use crate::source::{ItemReader, PullEnd, PullHandle, PullStatus, from_reader, spawn_pull};
use crate::sync::lock;

/// Which variant of a master playlist to pull.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum VariantChoice {
    /// The highest BANDWIDTH (the default).
    #[default]
    Highest,
    /// The lowest BANDWIDTH.
    Lowest,
    /// The variant whose height is closest to this (`720p`).
    Height(u64),
    /// The highest BANDWIDTH not above this many bit/s (`3000k`, `2.5M`); the lowest if none fits.
    MaxBandwidth(u64),
    /// The first variant whose URI (or NAME attribute) contains this text.
    Name(String),
}

impl FromStr for VariantChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<VariantChoice> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        let parsed = match lower.as_str() {
            "" | "highest" | "best" => VariantChoice::Highest,
            "lowest" | "worst" => VariantChoice::Lowest,
            _ => {
                if let Some(h) = lower.strip_suffix('p').and_then(|n| n.parse().ok()) {
                    VariantChoice::Height(h)
                } else if let Some((_, h)) =
                    lower.split_once('x').and_then(|(w, h)| Some((w.parse::<u64>().ok()?, h.parse().ok()?)))
                {
                    VariantChoice::Height(h)
                } else if let Some(k) = lower.strip_suffix('k').and_then(|n| n.parse::<f64>().ok()) {
                    VariantChoice::MaxBandwidth((k * 1000.0) as u64)
                } else if let Some(m) = lower.strip_suffix('m').and_then(|n| n.parse::<f64>().ok()) {
                    VariantChoice::MaxBandwidth((m * 1_000_000.0) as u64)
                } else {
                    VariantChoice::Name(t.to_string())
                }
            }
        };
        Ok(parsed)
    }
}

impl VariantChoice {
    /// Picks a variant (I-frame-only variants excluded); `None` when there is none.
    pub fn pick<'a>(&self, master: &'a MasterPlaylist) -> Option<&'a m3u8_rs::VariantStream> {
        let all: Vec<_> = master.variants.iter().filter(|v| !v.is_i_frame).collect();
        let by_bw = |v: &&m3u8_rs::VariantStream| v.bandwidth;
        match self {
            VariantChoice::Highest => all.into_iter().max_by_key(by_bw),
            VariantChoice::Lowest => all.into_iter().min_by_key(by_bw),
            VariantChoice::Height(h) => all.into_iter().min_by_key(|v| {
                let height = v.resolution.map_or(u64::MAX / 2, |r| r.height);
                (height.abs_diff(*h), u64::MAX - v.bandwidth)
            }),
            VariantChoice::MaxBandwidth(max) => {
                let fitting = all.iter().filter(|v| v.bandwidth <= *max).max_by_key(|v| v.bandwidth).copied();
                fitting.or_else(|| all.into_iter().min_by_key(by_bw))
            }
            VariantChoice::Name(n) => all.into_iter().find(|v| {
                v.uri.contains(n.as_str())
                    || v.other_attributes
                        .as_ref()
                        .and_then(|a| a.get("NAME"))
                        .is_some_and(|name| name.as_str() == n.as_str())
            }),
        }
    }
}

/// What to do at the end of a VOD playlist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum VodMode {
    /// Play it once, then the stream ends.
    #[default]
    Once,
    /// Start again from the first segment (timestamps continue).
    Loop,
}

/// How an HLS pull behaves.
#[derive(Clone, Debug)]
pub struct HlsPullOptions {
    pub variant: VariantChoice,
    pub vod: VodMode,
    /// Segments from the live edge playback starts at (RFC 8216 asks for at least 3
    /// target durations).
    pub live_start_segments: usize,
    /// A playlist larger than this is refused.
    pub max_playlist_bytes: usize,
    /// A segment (or key, or init section) larger than this is refused.
    pub max_segment_bytes: usize,
    /// Per request (connect, headers and body).
    pub request_timeout: Duration,
    /// Attempts per segment before it is skipped (live) or the pull fails (VOD).
    pub segment_attempts: u32,
    /// Publish paced by the timestamps (real time). Off only for tests and benchmarks.
    pub paced: bool,
}

impl Default for HlsPullOptions {
    fn default() -> HlsPullOptions {
        HlsPullOptions {
            variant: VariantChoice::Highest,
            vod: VodMode::Once,
            live_start_segments: 3,
            max_playlist_bytes: 4 << 20,
            max_segment_bytes: 64 << 20,
            request_timeout: Duration::from_secs(10),
            segment_attempts: 3,
            paced: true,
        }
    }
}

/// The URL as shown in logs and status: without credentials or query (tokens live there).
fn shown_url(u: &url::Url) -> String {
    let mut c = u.clone();
    let _ = c.set_username("");
    let _ = c.set_password(None);
    c.set_query(None);
    c.set_fragment(None);
    c.to_string()
}

/// Pulls the playlist at `url` (http:// or https://) into hub stream `stream` until
/// `cancel`, reconnecting with backoff on errors. A VOD playlist played once ends the pull.
pub fn spawn_hls_pull(
    hub: Hub,
    stream: String,
    url: &str,
    options: HlsPullOptions,
    cancel: CancellationToken,
) -> Result<PullHandle> {
    let (parsed, client) = prepare(url, &options)?;
    let shown = shown_url(&parsed);
    let span = info_span!("hls_pull", stream = %stream, url = %shown);
    // Kept across reconnects: the timeline (monotonic timestamps) and the last sequence.
    let state = Arc::new(tokio::sync::Mutex::new(PullState::default()));
    Ok(spawn_pull(hub, stream, shown, "HLS", PullEnd::Finished, span, cancel, move |status| {
        let ctx = Ctx { url: parsed.clone(), client: client.clone(), options: options.clone(), status };
        let source = HlsSource::start(ctx, Arc::clone(&state));
        std::future::ready(Ok(from_reader(source)))
    }))
}

/// The URL checked and the HTTP client for it.
fn prepare(url: &str, options: &HlsPullOptions) -> Result<(url::Url, reqwest::Client)> {
    let parsed = url::Url::parse(url).map_err(|e| HlsError::BadUrl(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(HlsError::BadUrl("the URL must be http:// or https://".into()).into());
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(10))
        .connect_timeout(options.request_timeout)
        .timeout(options.request_timeout)
        .user_agent(concat!("multistreamer/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| HlsError::Client(e.to_string()))?;
    Ok((parsed, client))
}

/// An HLS playlist read as a source: an [`ItemReader`] (a [`crate::Source`] through
/// [`from_reader`]). Playlists and segments are fetched by a task of its own, a few items
/// ahead of the consumer; dropping the source stops it. It ends when a VOD playlist was
/// played (once, or never with [`VodMode::Loop`]) and fails when the playlist cannot be
/// read (no reconnect: [`spawn_hls_pull`] does that).
pub struct HlsSource {
    items: tokio::sync::mpsc::Receiver<MediaItem>,
    task: Option<tokio::task::JoinHandle<Result<()>>>,
}

impl std::fmt::Debug for HlsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlsSource").finish_non_exhaustive()
    }
}

impl HlsSource {
    /// Starts reading the playlist at `url` (http:// or https://). Must be called within a
    /// tokio runtime.
    pub fn open(url: &str, options: HlsPullOptions) -> Result<HlsSource> {
        let (url, client) = prepare(url, &options)?;
        let ctx = Ctx { url, client, options, status: Arc::default() };
        Ok(HlsSource::start(ctx, Arc::default()))
    }

    fn start(ctx: Ctx, state: Arc<tokio::sync::Mutex<PullState>>) -> HlsSource {
        // A few items ahead: the reader waits on the consumer (and paces by timestamps).
        let (tx, items) = tokio::sync::mpsc::channel(16);
        let task = tokio::spawn(
            async move {
                let mut state = state.lock().await;
                ctx.run(&mut state, &tx).await
            }
            .in_current_span(),
        );
        HlsSource { items, task: Some(task) }
    }
}

impl ItemReader for HlsSource {
    async fn next_item(&mut self) -> Result<Option<MediaItem>> {
        if let Some(item) = self.items.recv().await {
            return Ok(Some(item));
        }
        match self.task.take() {
            None => Ok(None),
            Some(task) => match task.await {
                Ok(r) => r.map(|()| None),
                Err(e) => Err(HlsError::Reader(e.to_string()).into()),
            },
        }
    }
}

impl Drop for HlsSource {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// What the reader task needs (the status is the pull's, for skipped segments).
struct Ctx {
    url: url::Url,
    client: reqwest::Client,
    options: HlsPullOptions,
    status: Arc<Mutex<PullStatus>>,
}

/// Maps segment timestamps onto one monotonic timeline.
#[derive(Debug, Default)]
struct Timeline {
    /// Added to every timestamp, in 90 kHz ticks.
    offset: i64,
    /// The end of what was published so far (90 kHz, after the offset).
    end: Option<i64>,
}

impl Timeline {
    /// Called with a segment's frames before they are published: re-anchors the offset on
    /// a discontinuity, on the first segment, or when the timestamps jumped (a skipped
    /// segment, a restarted encoder) so the output continues one frame after the last.
    fn anchor(&mut self, frames: &[Frame], discontinuity: bool) {
        let Some(first) =
            frames.iter().map(|f| Timestamp::new(f.dts, f.timebase).rescale(Timebase::HZ_90K).ticks()).min()
        else {
            return;
        };
        match self.end {
            None => self.offset = -first,
            Some(end) => {
                let at = first + self.offset;
                if discontinuity || at < end - 90_000 || at > end + 270_000 {
                    debug!(jump_ms = (at - end) / 90, "HLS timeline re-anchored");
                    self.offset = end + 3000 - first;
                }
            }
        }
    }

    fn shift(&mut self, f: &Frame) -> (Timestamp, Timestamp) {
        let off = Timestamp::new(self.offset, Timebase::HZ_90K).rescale(f.timebase).ticks();
        let dts = Timestamp::new(f.dts + off, f.timebase);
        let pts = Timestamp::new(f.pts + off, f.timebase);
        let end = dts.rescale(Timebase::HZ_90K).ticks();
        self.end = Some(self.end.map_or(end, |e| e.max(end)));
        (dts, pts)
    }
}

/// Wall-clock pacing of publication by timestamps.
#[derive(Debug, Default)]
struct Pacer {
    origin: Option<(tokio::time::Instant, i64)>,
    last_ms: Option<i64>,
}

impl Pacer {
    /// Waits until `dts_ms` is due (up to half a second early); re-anchors after a stall
    /// and at a jump of more than 5 s inside a segment (never sleeps for the gap).
    async fn wait(&mut self, dts_ms: i64) {
        let now = tokio::time::Instant::now();
        if self.last_ms.is_some_and(|last| dts_ms > last + 5000) {
            self.origin = None;
        }
        self.last_ms = Some(dts_ms);
        let (t0, d0) = *self.origin.get_or_insert((now, dts_ms));
        let due_ms = dts_ms - d0 - 500;
        let elapsed_ms = now.duration_since(t0).as_millis() as i64;
        if due_ms > elapsed_ms {
            tokio::time::sleep(Duration::from_millis((due_ms - elapsed_ms) as u64)).await;
        } else if elapsed_ms - due_ms > 5000 {
            // fell far behind (a slow server): continue from here rather than burst
            self.origin = Some((now, dts_ms));
        }
    }
}

#[derive(Debug, Default)]
struct PullState {
    timeline: Timeline,
    pacer: Pacer,
    /// The next media sequence number to fetch; `None` before the first playlist.
    next_seq: Option<u64>,
    discontinuity: bool,
}

/// Cached decryption keys and init sections of one pull attempt, by URL.
#[derive(Debug, Default)]
struct Cache {
    keys: HashMap<String, [u8; 16]>,
    init: Option<String>,
}

fn playlist_err(msg: impl Into<String>) -> Error {
    HlsError::Playlist(msg.into()).into()
}

fn decryption_err(msg: impl Into<String>) -> Error {
    HlsError::Decryption(msg.into()).into()
}

fn http_err(what: &'static str, url: &str, e: reqwest::Error) -> Error {
    let detail = if e.is_redirect() { "too many redirects".to_string() } else { e.to_string() };
    HlsError::Request { what, url: url.to_string(), detail, timed_out: e.is_timeout() }.into()
}

impl Ctx {
    /// GETs `url` (bytes `range` = (offset, length) of it), refusing more than `limit` bytes.
    /// A server that ignores `Range` and answers the whole file is read only up to the end
    /// of the range, which is then cut out.
    async fn fetch(
        &self,
        url: &url::Url,
        range: Option<(u64, u64)>,
        limit: usize,
        what: &'static str,
    ) -> Result<Bytes> {
        let shown = shown_url(url);
        let too_large = || Error::from(HlsError::TooLarge { what, url: shown.clone(), limit_kib: limit >> 10 });
        let mut req = self.client.get(url.clone());
        if let Some((offset, length)) = range {
            if length > limit as u64 {
                return Err(too_large());
            }
            req = req.header("Range", format!("bytes={}-{}", offset, offset + length.saturating_sub(1)));
        }
        let mut resp = req.send().await.map_err(|e| http_err(what, &shown, e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(HlsError::Status { what, url: shown, status: status.as_u16() }.into());
        }
        let whole_file = status != reqwest::StatusCode::PARTIAL_CONTENT;
        // (bytes to skip, bytes wanted) when a range was asked for
        let window = range.map(|(o, l)| if whole_file { (o as usize, l as usize) } else { (0, l as usize) });
        let cap = match window {
            Some((skip, want)) => skip.saturating_add(want),
            None => limit,
        };
        if cap > limit.saturating_mul(16) {
            let detail = "the server ignores Range requests and the range is far into the file".into();
            return Err(HlsError::Range { what, url: shown, detail }.into());
        }
        if window.is_none() && resp.content_length().is_some_and(|l| l > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| http_err(what, &shown, e))? {
            body.extend_from_slice(&chunk);
            if window.is_some() && body.len() >= cap {
                break;
            }
            if body.len() > cap {
                return Err(too_large());
            }
        }
        match window {
            Some((skip, want)) => {
                let part = body.get(skip..skip + want).ok_or_else(|| {
                    let detail = format!("{} bytes received, the range ends at {}", body.len(), skip + want);
                    Error::from(HlsError::Range { what, url: shown.clone(), detail })
                })?;
                Ok(Bytes::copy_from_slice(part))
            }
            None => Ok(Bytes::from(body)),
        }
    }

    async fn playlist(&self, url: &url::Url) -> Result<Playlist> {
        let text = self.fetch(url, None, self.options.max_playlist_bytes, "playlist").await?;
        parse_playlist(&text).map_err(|e| e.context(format!("playlist {}", shown_url(url))))
    }

    /// Reads the playlist and sends its items to `tx` until a VOD playlist ended (`Ok`).
    async fn run(&self, st: &mut PullState, tx: &Items) -> Result<()> {
        let mut media_url = self.url.clone();
        let mut first = match self.playlist(&self.url).await? {
            Playlist::MasterPlaylist(master) => {
                let v = self
                    .options
                    .variant
                    .pick(&master)
                    .ok_or_else(|| HlsError::NoVariant(format!("{:?}", self.options.variant)))?;
                media_url = self.url.join(&v.uri).map_err(|e| playlist_err(format!("variant URI {:?}: {e}", v.uri)))?;
                info!(
                    bandwidth = v.bandwidth,
                    resolution = %v.resolution.map_or("-".to_string(), |r| r.to_string()),
                    variants = master.variants.len(),
                    "HLS variant chosen"
                );
                if let Some(group) = &v.audio
                    && master.alternatives.iter().any(|a| &a.group_id == group && a.uri.is_some())
                {
                    warn!(group = %group, "the variant's audio is a separate rendition, which is not pulled");
                }
                None
            }
            Playlist::MediaPlaylist(p) => Some(p),
        };
        let mut demuxer = SegmentDemuxer::new();
        let mut cache = Cache::default();
        let mut published: Option<Arc<MediaInfo>> = None;
        let mut failures = 0u32;
        // the next attempt of this pull starts on a new timeline segment
        st.discontinuity = true;
        loop {
            let reload_started = Instant::now();
            let playlist = match first.take() {
                Some(p) => p,
                None => match self.playlist(&media_url).await? {
                    Playlist::MediaPlaylist(p) => p,
                    Playlist::MasterPlaylist(_) => {
                        return Err(playlist_err("the variant URI points to a master playlist"));
                    }
                },
            };
            let target = Duration::from_secs(playlist.target_duration.clamp(1, 60));
            let last_seq = playlist.media_sequence + playlist.segments.len() as u64;
            let start = match st.next_seq {
                None => {
                    if playlist.end_list {
                        playlist.media_sequence
                    } else {
                        last_seq.saturating_sub(self.options.live_start_segments as u64).max(playlist.media_sequence)
                    }
                }
                Some(n) if n < playlist.media_sequence => {
                    warn!(missed = playlist.media_sequence - n, "segments left the playlist before they were fetched");
                    st.discontinuity = true;
                    playlist.media_sequence
                }
                Some(n) if n > last_seq + 1 => {
                    warn!(expected = n, playlist_ends = last_seq, "media sequence went back (a restarted server)");
                    st.discontinuity = true;
                    last_seq.saturating_sub(self.options.live_start_segments as u64).max(playlist.media_sequence)
                }
                Some(n) => n,
            };
            let mut new_segments = 0;
            let mut key: Option<m3u8_rs::Key> = None;
            let mut map: Option<m3u8_rs::Map> = None;
            // a byte range without an offset starts where the previous one of that URI ended
            let mut range_end: Option<(&str, u64)> = None;
            for (i, seg) in playlist.segments.iter().enumerate() {
                let range = seg.byte_range.as_ref().map(|r| {
                    let after_previous = range_end.filter(|(uri, _)| *uri == seg.uri).map_or(0, |(_, end)| end);
                    (r.offset.unwrap_or(after_previous), r.length)
                });
                range_end = range.map(|(o, l)| (seg.uri.as_str(), o + l));
                if let Some(k) = &seg.key {
                    key = Some(k.clone());
                }
                if let Some(m) = &seg.map {
                    map = Some(m.clone());
                }
                let seq = playlist.media_sequence + i as u64;
                if seq < start {
                    continue;
                }
                new_segments += 1;
                if seg.discontinuity {
                    st.discontinuity = true;
                }
                match self
                    .segment(&media_url, seg, range, seq, key.as_ref(), map.as_ref(), &mut cache, &mut demuxer)
                    .await
                {
                    Ok(frames) => {
                        failures = 0;
                        self.publish(st, &demuxer, frames, tx, &mut published).await?;
                    }
                    Err(e) if e.kind() == ErrorKind::Config => return Err(e),
                    Err(e) => {
                        failures += 1;
                        if playlist.end_list || failures >= 3 {
                            return Err(e.context(format!("segment {seq}")));
                        }
                        warn!(segment = seq, error = %e, "segment skipped");
                        lock(&self.status).last_error = Some(format!("segment {seq} skipped: {e}"));
                        st.discontinuity = true;
                    }
                }
                st.next_seq = Some(seq + 1);
            }
            if playlist.end_list {
                if self.options.vod == VodMode::Loop && !playlist.segments.is_empty() {
                    debug!("VOD playlist looped");
                    st.next_seq = Some(playlist.media_sequence);
                    st.discontinuity = true;
                    first = Some(playlist);
                    continue;
                }
                st.next_seq = None;
                if playlist.playlist_type != Some(m3u8_rs::MediaPlaylistType::Vod) && published.is_none() {
                    return Err(playlist_err("the live playlist ended before a segment could be read"));
                }
                return Ok(());
            }
            let wait = if new_segments > 0 { target } else { target / 2 };
            if let Some(rest) = wait.checked_sub(reload_started.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn segment(
        &self,
        base: &url::Url,
        seg: &m3u8_rs::MediaSegment,
        range: Option<(u64, u64)>,
        seq: u64,
        key: Option<&m3u8_rs::Key>,
        map: Option<&m3u8_rs::Map>,
        cache: &mut Cache,
        demuxer: &mut SegmentDemuxer,
    ) -> Result<Vec<Frame>> {
        let limit = self.options.max_segment_bytes;
        if let Some(m) = map {
            let init_range = m.byte_range.as_ref().map(|r| (r.offset.unwrap_or(0), r.length));
            let id = format!("{}@{init_range:?}", m.uri);
            if cache.init.as_deref() != Some(id.as_str()) {
                let u = base.join(&m.uri).map_err(|e| playlist_err(format!("EXT-X-MAP URI {:?}: {e}", m.uri)))?;
                let init = self.fetch(&u, init_range, limit, "init section").await?;
                demuxer.set_init(&init).map_err(|e| e.context("init section"))?;
                cache.init = Some(id);
            }
        }
        let url = base.join(&seg.uri).map_err(|e| playlist_err(format!("segment URI {:?}: {e}", seg.uri)))?;
        let mut attempt = 0;
        let data = loop {
            attempt += 1;
            match self.fetch(&url, range, limit, "segment").await {
                Ok(d) => break d,
                Err(e) if attempt >= self.options.segment_attempts.max(1) => return Err(e),
                Err(e) => {
                    debug!(segment = seq, error = %e, "segment fetch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt))).await;
                }
            }
        };
        let data = match key {
            Some(k) if k.method == KeyMethod::AES128 => {
                let uri = k.uri.as_deref().ok_or_else(|| playlist_err("AES-128 key without a URI"))?;
                let key_url = base.join(uri).map_err(|e| playlist_err(format!("key URI {uri:?}: {e}")))?;
                let key_bytes = match cache.keys.get(key_url.as_str()) {
                    Some(k) => *k,
                    None => {
                        let raw = self.fetch(&key_url, None, 1024, "key").await?;
                        let k: [u8; 16] = raw[..]
                            .try_into()
                            .map_err(|_| decryption_err(format!("the AES-128 key is {} bytes, not 16", raw.len())))?;
                        cache.keys.insert(key_url.to_string(), k);
                        k
                    }
                };
                let iv = match &k.iv {
                    Some(iv) => parse_iv(iv)?,
                    None => u128::from(seq).to_be_bytes(),
                };
                decrypt_aes128(&key_bytes, &iv, &data)?
            }
            Some(k) if k.method == KeyMethod::None => data,
            Some(k) => {
                return Err(HlsError::UnsupportedEncryption(k.method.to_string()).into());
            }
            None => data,
        };
        demuxer.demux(&data)
    }

    async fn publish(
        &self,
        st: &mut PullState,
        demuxer: &SegmentDemuxer,
        frames: Vec<Frame>,
        tx: &Items,
        published: &mut Option<Arc<MediaInfo>>,
    ) -> Result<()> {
        if frames.is_empty() {
            return Ok(());
        }
        let info = demuxer.info();
        if published.as_deref() != Some(&info) {
            if published.is_none() {
                let tracks = info.tracks.iter().map(|t| t.codec.name()).collect::<Vec<_>>().join(", ");
                info!(%tracks, "HLS playlist readable");
            }
            let arc = Arc::new(info);
            send(tx, MediaItem::Info(Arc::clone(&arc))).await?;
            *published = Some(arc);
        }
        st.timeline.anchor(&frames, std::mem::take(&mut st.discontinuity));
        for f in frames {
            let (dts, pts) = st.timeline.shift(&f);
            if self.options.paced {
                st.pacer.wait(dts.as_millis()).await;
            }
            let packet = Packet {
                track: if f.kind == TrackKind::Video { VIDEO_TRACK } else { AUDIO_TRACK },
                kind: f.kind,
                dts,
                pts,
                keyframe: f.keyframe,
                payload: f.payload,
            };
            send(tx, MediaItem::Packet(packet)).await?;
        }
        Ok(())
    }
}

type Items = tokio::sync::mpsc::Sender<MediaItem>;

async fn send(tx: &Items, item: MediaItem) -> Result<()> {
    tx.send(item).await.map_err(|_| HlsError::Dropped.into())
}

/// Parses a playlist, refusing what is not one with a clear message.
pub fn parse_playlist(text: &[u8]) -> Result<Playlist> {
    let body = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    let trimmed = body.trim_ascii_start();
    if !trimmed.starts_with(b"#EXTM3U") {
        let head = String::from_utf8_lossy(&trimmed[..trimmed.len().min(40)]).into_owned();
        return Err(playlist_err(format!("not an M3U8 playlist (starts with {head:?})")));
    }
    let playlist = m3u8_rs::parse_playlist_res(trimmed).map_err(|e| {
        let msg = e.to_string();
        playlist_err(format!("malformed M3U8: {}", &msg[..msg.len().min(200)]))
    })?;
    if let Playlist::MediaPlaylist(MediaPlaylist { segments, .. }) = &playlist
        && segments.iter().any(|s| !s.duration.is_finite() || s.duration < 0.0)
    {
        return Err(playlist_err("malformed M3U8: a segment duration is not a number"));
    }
    Ok(playlist)
}

fn parse_iv(iv: &str) -> Result<[u8; 16]> {
    let hex = iv.strip_prefix("0x").or_else(|| iv.strip_prefix("0X")).unwrap_or(iv);
    let v = u128::from_str_radix(hex, 16).map_err(|_| decryption_err(format!("bad IV {iv:?}")))?;
    Ok(v.to_be_bytes())
}

/// AES-128-CBC with PKCS#7 padding (RFC 8216 §5.2).
pub fn decrypt_aes128(key: &[u8; 16], iv: &[u8; 16], data: &[u8]) -> Result<Bytes> {
    if data.is_empty() || !data.len().is_multiple_of(16) {
        return Err(decryption_err(format!("encrypted segment of {} bytes is not whole AES blocks", data.len())));
    }
    let dec = cbc::Decryptor::<aes::Aes128>::new(key.into(), iv.into());
    let mut buf = data.to_vec();
    let len = dec
        .decrypt_padded_mut::<Pkcs7>(&mut buf)
        .map_err(|_| decryption_err("AES-128 decryption failed (wrong key or IV: bad padding)"))?
        .len();
    buf.truncate(len);
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterPlaylist {
        let text = b"#EXTM3U\n\
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=854x480\nlow/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080\nhigh/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720\nmid/index.m3u8\n";
        match parse_playlist(text).expect("valid") {
            Playlist::MasterPlaylist(m) => m,
            Playlist::MediaPlaylist(_) => panic!("expected a master playlist"),
        }
    }

    #[test]
    fn variant_choices() {
        let m = master();
        let pick = |s: &str| s.parse::<VariantChoice>().expect("parses").pick(&m).map(|v| v.uri.clone());
        assert_eq!(pick("highest").as_deref(), Some("high/index.m3u8"));
        assert_eq!(pick("lowest").as_deref(), Some("low/index.m3u8"));
        assert_eq!(pick("720p").as_deref(), Some("mid/index.m3u8"));
        assert_eq!(pick("1280x700").as_deref(), Some("mid/index.m3u8"));
        assert_eq!(pick("3000k").as_deref(), Some("mid/index.m3u8"));
        assert_eq!(pick("100k").as_deref(), Some("low/index.m3u8"));
        assert_eq!(pick("low/").as_deref(), Some("low/index.m3u8"));
        assert_eq!(pick("nothing-like-it"), None);
    }

    #[test]
    fn refuses_what_is_not_a_playlist() {
        let e = parse_playlist(b"<html><body>404</body></html>").expect_err("not m3u8");
        assert!(e.to_string().contains("not an M3U8 playlist"), "{e}");
        assert!(matches!(e.inner().downcast_ref::<HlsError>(), Some(HlsError::Playlist(_))), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert!(parse_playlist(b"").is_err());
        assert!(parse_playlist(b"\xEF\xBB\xBF#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n").is_ok());
    }

    #[test]
    fn aes_round_trip_and_wrong_key() {
        use aes::cipher::BlockEncryptMut;
        let key = [7u8; 16];
        let iv = parse_iv("0x000102030405060708090a0b0c0d0e0f").expect("iv");
        assert_eq!(iv[15], 0x0f);
        let plain = b"transport stream bytes, not a multiple of sixteen".to_vec();
        let mut buf = plain.clone();
        buf.resize(plain.len() + 16, 0);
        let enc = cbc::Encryptor::<aes::Aes128>::new((&key).into(), (&iv).into())
            .encrypt_padded_mut::<Pkcs7>(&mut buf, plain.len())
            .expect("room for padding")
            .to_vec();
        assert_eq!(&decrypt_aes128(&key, &iv, &enc).expect("decrypts")[..], &plain[..]);
        let wrong = decrypt_aes128(&[8u8; 16], &iv, &enc);
        assert!(wrong.as_ref().map_or(true, |p| p[..] != plain[..]), "a wrong key never yields the plaintext");
        assert!(decrypt_aes128(&key, &iv, &enc[..20]).is_err());
    }

    #[test]
    fn timeline_stays_monotonic_across_discontinuities_and_jumps() {
        let f = |dts: i64| Frame {
            kind: TrackKind::Video,
            timebase: Timebase::HZ_90K,
            dts,
            pts: dts,
            keyframe: true,
            payload: Bytes::new(),
        };
        let mut t = Timeline::default();
        let mut last = i64::MIN;
        let mut check = |t: &mut Timeline, frames: Vec<Frame>, disc: bool| {
            t.anchor(&frames, disc);
            for fr in &frames {
                let (dts, _) = t.shift(fr);
                assert!(dts.ticks() > last, "{} after {last}", dts.ticks());
                last = dts.ticks();
            }
        };
        check(&mut t, vec![f(900_000), f(903_000)], false);
        check(&mut t, vec![f(906_000), f(909_000)], false);
        // a discontinuity back to zero, then a jump forward of a minute (skipped segments)
        check(&mut t, vec![f(0), f(3000)], true);
        check(&mut t, vec![f(5_400_000), f(5_403_000)], false);
        assert!(last < 40_000, "gaps collapsed to one frame: {last}");
    }

    #[tokio::test(start_paused = true)]
    async fn pacing_follows_timestamps_and_never_sleeps_through_a_jump() {
        let mut p = Pacer::default();
        let t0 = tokio::time::Instant::now();
        p.wait(0).await;
        p.wait(2000).await;
        let slept = t0.elapsed();
        assert!(slept >= Duration::from_millis(1400) && slept <= Duration::from_millis(1600), "{slept:?}");
        // a day later in media time: published at once
        p.wait(86_400_000).await;
        assert!(t0.elapsed() < Duration::from_millis(1700));
    }
}
