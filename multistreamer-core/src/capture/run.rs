//! Running a capture: options, the capture's thread, the platform chat readers.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use super::chat::{ChatLine, ChatLog, ChatSource};
use super::events::PageEvent;
use super::manifest::{self, Counters, Files, Gap, Manifest, RectAt, Selectors};
use super::page::{self, PageConfig, PageSession};
use super::presenter::{self, PresenterOptions, PresenterShared, Rect};
use super::xvfb::Xvfb;
use crate::clock;
use crate::error::ErrorKind;
use crate::platform::youtube::ChatKind;
use crate::platform::{MtsLinkClient, YouTubeClient};
use crate::sync::lock;

/// What went wrong capturing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    #[error("capture options: {0}")]
    Config(String),
    #[error("virtual display: {0}")]
    Display(String),
    #[error("browser: {0}")]
    Browser(String),
    #[error("page: {0}")]
    Page(String),
    #[error("presenter video: {0}")]
    Presenter(String),
    #[error("{0}")]
    Io(String),
    #[error("MTS Link: {0}")]
    MtsLink(crate::platform::mtslink::MtsLinkError),
    /// Stopped before it was done.
    #[error("stopped")]
    Stopped,
}

impl CaptureError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CaptureError::Config(_) => ErrorKind::Config,
            CaptureError::Display(_) | CaptureError::Browser(_) | CaptureError::Io(_) => ErrorKind::Io,
            CaptureError::Page(_) => ErrorKind::Disconnected,
            CaptureError::Presenter(_) => ErrorKind::Media,
            CaptureError::MtsLink(e) => e.kind(),
            CaptureError::Stopped => ErrorKind::Shutdown,
        }
    }
}

impl From<std::io::Error> for CaptureError {
    fn from(e: std::io::Error) -> CaptureError {
        CaptureError::Io(e.to_string())
    }
}

/// Selector presets of the pages Multistreamer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Any page: the operator gives the selectors.
    #[default]
    Generic,
    /// An MTS Link (webinar.ru) room. Its markup is not documented and changes: the preset is
    /// a best guess to override; choose the session's API chat for a reliable chat.
    MtsLink,
    /// A YouTube watch or live-chat page.
    YouTube,
}

impl std::str::FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Profile, String> {
        match s {
            "generic" => Ok(Profile::Generic),
            "mtslink" | "webinar" => Ok(Profile::MtsLink),
            "youtube" => Ok(Profile::YouTube),
            other => Err(format!("unknown profile {other:?} (generic, mtslink, youtube)")),
        }
    }
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Generic => "generic",
            Profile::MtsLink => "mtslink",
            Profile::YouTube => "youtube",
        }
    }

    /// The preset selectors.
    pub fn selectors(self) -> Selectors {
        let s = |c: &str, i: &str, a: &str, t: &str, id: &str, p: &str| Selectors {
            chat_container: c.into(),
            chat_item: i.into(),
            chat_author: a.into(),
            chat_text: t.into(),
            chat_id_attribute: id.into(),
            presenter: p.into(),
        };
        match self {
            Profile::Generic => s("", "", "", "", "", ""),
            Profile::MtsLink => s(
                "[data-testid='chat-messages'], [class*='ChatMessages'], [class*='chat-messages']",
                "[data-testid='chat-message'], [class*='ChatMessage_'], [class*='chat-message']",
                "[class*='author'], [class*='Author'], [class*='name']",
                "[class*='text'], [class*='Text'], [class*='content']",
                "data-id",
                "[class*='SpeakerVideo'] video, [class*='speaker'] video, video",
            ),
            Profile::YouTube => s(
                "yt-live-chat-item-list-renderer #items",
                "yt-live-chat-text-message-renderer, yt-live-chat-paid-message-renderer",
                "#author-name",
                "#message",
                "id",
                "#movie_player video, video.html5-main-video",
            ),
        }
    }

    /// The name field and submit button of the room's join form.
    fn join_form(self) -> (&'static str, &'static str) {
        match self {
            Profile::MtsLink => ("input[name='name'], input[name='nickname']", "button[type='submit']"),
            Profile::Generic | Profile::YouTube => ("[data-capture-join] input", "[data-capture-join] button"),
        }
    }
}

/// A platform chat to read besides the page.
#[derive(Debug, Clone)]
pub enum ApiChat {
    /// An MTS Link event session's chat (polled every 2 s, fetched whole at the end).
    MtsLink { client: MtsLinkClient, session_id: u64 },
    /// A YouTube broadcast's live chat (`snippet.liveChatId`), at YouTube's pace. Quota: 5
    /// units a poll.
    YouTube { client: YouTubeClient, live_chat_id: String },
}

/// What to capture.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    pub url: String,
    /// Where `capture.json`, `chat.jsonl` and `presenter.mp4` are written.
    pub out_dir: PathBuf,
    pub name: String,
    pub profile: Profile,
    pub selectors: Selectors,
    /// The name a guest joins with, where the room asks for one.
    pub guest_name: Option<String>,
    /// The browser window [default: 1920×1080].
    pub viewport: (u32, u32),
    /// Record the presenter window (needs Xvfb); off: the chat only, headless.
    pub presenter: bool,
    pub fps: u32,
    /// The presenter video's largest size [default: 1280×720].
    pub max_presenter: (u32, u32),
    /// libx264 preset of the presenter video [default: veryfast].
    pub preset: String,
    /// Stop by itself after this long.
    pub duration: Option<Duration>,
    pub chromium: PathBuf,
    pub api_chat: Vec<ApiChat>,
}

impl CaptureOptions {
    pub fn new(url: &str, out_dir: impl Into<PathBuf>, profile: Profile) -> CaptureOptions {
        CaptureOptions {
            url: url.to_string(),
            out_dir: out_dir.into(),
            name: String::new(),
            profile,
            selectors: profile.selectors(),
            guest_name: None,
            viewport: (1920, 1080),
            presenter: true,
            fps: 30,
            max_presenter: (1280, 720),
            preset: "veryfast".into(),
            duration: None,
            chromium: find_chromium(),
            api_chat: Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), CaptureError> {
        let u = url::Url::parse(&self.url).map_err(|e| CaptureError::Config(format!("url: {e}")))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(CaptureError::Config("url: expected an http(s) page".into()));
        }
        let (w, h) = self.viewport;
        if !(320..=3840).contains(&w) || !(240..=2160).contains(&h) {
            return Err(CaptureError::Config("viewport: between 320×240 and 3840×2160".into()));
        }
        if !(1..=60).contains(&self.fps) {
            return Err(CaptureError::Config("fps: 1 to 60".into()));
        }
        let s = &self.selectors;
        if s.chat_container.is_empty() && !s.chat_item.is_empty() {
            return Err(CaptureError::Config("chat: an item selector needs the container's".into()));
        }
        if s.chat_container.is_empty() && self.api_chat.is_empty() && !self.presenter {
            return Err(CaptureError::Config(
                "nothing to capture: no chat selectors, no API chat, no presenter".into(),
            ));
        }
        Ok(())
    }
}

/// chromium's path: `MULTISTREAMER_CHROMIUM`, else the first of the usual names found.
pub fn find_chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("MULTISTREAMER_CHROMIUM") {
        return PathBuf::from(p);
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome", "/usr/bin/google-chrome-stable"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Live counters of a capture.
#[derive(Debug, Default)]
pub struct CaptureStats {
    pub chat_messages: AtomicU64,
    pub presenter_frames: AtomicU64,
    pub page_loads: AtomicU64,
    pub browser_restarts: AtomicU64,
    pub started: Mutex<Option<Instant>>,
    pub last_error: Mutex<Option<String>>,
}

/// A copy of the counters.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CaptureSnapshot {
    pub chat_messages: u64,
    pub presenter_frames: u64,
    pub presenter_fps: f64,
    pub page_loads: u64,
    pub browser_restarts: u64,
    pub duration_ms: u64,
    pub last_error: Option<String>,
}

impl CaptureStats {
    pub fn snapshot(&self) -> CaptureSnapshot {
        let duration_ms = lock(&self.started).map_or(0, |s| s.elapsed().as_millis() as u64);
        let frames = self.presenter_frames.load(Ordering::Relaxed);
        CaptureSnapshot {
            chat_messages: self.chat_messages.load(Ordering::Relaxed),
            presenter_frames: frames,
            presenter_fps: if duration_ms > 0 { frames as f64 * 1000.0 / duration_ms as f64 } else { 0.0 },
            page_loads: self.page_loads.load(Ordering::Relaxed),
            browser_restarts: self.browser_restarts.load(Ordering::Relaxed),
            duration_ms,
            last_error: lock(&self.last_error).clone(),
        }
    }
}

/// A running capture.
#[derive(Debug)]
pub struct Capture {
    pub stats: Arc<CaptureStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Manifest, CaptureError>>>,
}

impl Capture {
    /// Starts capturing (the browser starts on the capture's own thread). With API chat
    /// sources it must be called inside a tokio runtime.
    pub fn start(options: CaptureOptions) -> Result<Capture, CaptureError> {
        options.validate()?;
        std::fs::create_dir_all(&options.out_dir)?;
        let runtime = if options.api_chat.is_empty() {
            None
        } else {
            Some(
                tokio::runtime::Handle::try_current()
                    .map_err(|_| CaptureError::Config("reading a platform chat needs a tokio runtime".into()))?,
            )
        };
        let stats = Arc::new(CaptureStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&stats), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || Control::new(options, s, st, runtime).run())
            .map_err(|e| CaptureError::Io(format!("cannot start the capture thread: {e}")))?;
        Ok(Capture { stats, stop, thread: Some(thread) })
    }

    /// Asks the capture to stop (it closes its files); [`Capture::join`] waits for it.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the end (a duration reached, or [`Capture::stop`]): the final manifest.
    pub fn join(mut self) -> Result<Manifest, CaptureError> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(CaptureError::Io("the capture thread panicked".into())),
            None => Err(CaptureError::Io("already joined".into())),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

enum Msg {
    Page(PageEvent),
    Api(ChatLine),
    /// The browser of session N stopped answering.
    Dead(u64),
}

fn wall_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The capture's own thread: the browser, the display, the files.
struct Control {
    o: CaptureOptions,
    stats: Arc<CaptureStats>,
    stop: Arc<AtomicBool>,
    runtime: Option<tokio::runtime::Handle>,
    started: SystemTime,
    t0: Instant,
    manifest: Manifest,
    latencies: Vec<u64>,
    /// Since when the page is away (a `bye`, a dead browser), in capture ms.
    away_since: Option<(u64, &'static str)>,
    /// When the page last reported anything, in capture ms.
    last_heard: u64,
}

impl Control {
    fn new(
        o: CaptureOptions,
        stats: Arc<CaptureStats>,
        stop: Arc<AtomicBool>,
        runtime: Option<tokio::runtime::Handle>,
    ) -> Control {
        let started = SystemTime::now();
        let manifest = Manifest {
            version: manifest::VERSION,
            name: o.name.clone(),
            url: manifest::mask_url(&o.url),
            profile: o.profile.as_str().into(),
            selectors: o.selectors.clone(),
            started_at: clock::rfc3339_millis(started),
            viewport: o.viewport,
            files: Files { chat: "chat.jsonl".into(), presenter: o.presenter.then(|| "presenter.mp4".into()) },
            chat_sources: o
                .api_chat
                .iter()
                .map(|a| match a {
                    ApiChat::MtsLink { session_id, .. } => format!("mtslink:{session_id}"),
                    ApiChat::YouTube { live_chat_id, .. } => format!("youtube:{live_chat_id}"),
                })
                .collect(),
            ..Manifest::default()
        };
        Control {
            o,
            stats,
            stop,
            runtime,
            started,
            t0: Instant::now(),
            manifest,
            latencies: Vec::new(),
            away_since: None,
            last_heard: 0,
        }
    }

    fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    fn run(mut self) -> Result<Manifest, CaptureError> {
        *lock(&self.stats.started) = Some(self.t0);
        let dir = self.o.out_dir.clone();
        self.manifest.save(&dir)?;
        let page_chat = !self.o.selectors.chat_container.is_empty();
        let mut chat = ChatLog::open(&dir.join("chat.jsonl"), !self.o.api_chat.is_empty(), page_chat)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let mut display =
            if self.o.presenter { Some(Xvfb::start(self.o.viewport.0, self.o.viewport.1)?) } else { None };
        let shared = Arc::new(PresenterShared::default());
        let presenter = match &display {
            Some(d) => {
                *lock(&shared.display) = d.name();
                let po = PresenterOptions {
                    path: dir.join("presenter.mp4"),
                    screen: self.o.viewport,
                    fps: self.o.fps,
                    max_size: self.o.max_presenter,
                    preset: self.o.preset.clone(),
                    started: self.started,
                };
                let sh = Arc::clone(&shared);
                Some(
                    std::thread::Builder::new()
                        .name("capture-presenter".into())
                        .spawn(move || presenter::run(po, sh))
                        .map_err(|e| CaptureError::Io(e.to_string()))?,
                )
            }
            None => None,
        };
        let api_done = self.start_api_chat(&tx);
        let mut session: Option<(PageSession, Arc<AtomicBool>)> = None;
        let mut session_no = 0u64;
        let mut last_check = Instant::now();
        let mut last_save = Instant::now();
        let mut result = Ok(());
        loop {
            if self.stop.load(Ordering::Relaxed) || self.o.duration.is_some_and(|d| self.t0.elapsed() >= d) {
                break;
            }
            if session.is_none() {
                session_no += 1;
                session = self.open_page(&display, &tx).map(|s| {
                    let done = Arc::new(AtomicBool::new(false));
                    let (dtx, n) = (tx.clone(), session_no);
                    s.watch(Arc::clone(&done), move || _ = dtx.send(Msg::Dead(n)));
                    (s, done)
                });
                if session.is_none() {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            let mut dead = false;
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => {
                    dead |= matches!(m, Msg::Dead(n) if n == session_no);
                    self.handle(m, &mut chat, &shared)?;
                    while let Ok(m) = rx.try_recv() {
                        dead |= matches!(m, Msg::Dead(n) if n == session_no);
                        self.handle(m, &mut chat, &shared)?;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {}
            }
            if dead {
                warn!("the browser died: starting it again");
                self.stats.browser_restarts.fetch_add(1, Ordering::Relaxed);
                self.away_since.get_or_insert((self.last_heard, "browser restart"));
                if let Some((_, done)) = session.take() {
                    done.store(true, Ordering::Relaxed);
                }
            }
            chat.tick(Instant::now())?;
            if last_check.elapsed() >= Duration::from_secs(1) {
                last_check = Instant::now();
                if let Some(d) = display.as_mut()
                    && !d.is_running()
                {
                    warn!("the virtual display died: starting it again");
                    if let Some((_, done)) = session.take() {
                        done.store(true, Ordering::Relaxed);
                    }
                    match Xvfb::start(self.o.viewport.0, self.o.viewport.1) {
                        Ok(new) => {
                            *lock(&shared.display) = new.name();
                            *d = new;
                        }
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                if let Some(e) = lock(&shared.error).clone() {
                    *lock(&self.stats.last_error) = Some(e);
                }
            }
            if last_save.elapsed() >= Duration::from_secs(2) {
                last_save = Instant::now();
                self.update_counters(&chat, &shared);
                self.manifest.save_with(&dir, false)?;
            }
        }
        info!(url = %self.manifest.url, "capture stopping");
        shared.stop.store(true, Ordering::Relaxed);
        if let Some((s, done)) = session.take() {
            done.store(true, Ordering::Relaxed);
            drop(s);
        }
        // the API readers fetch once more and finish
        self.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(15);
        while api_done.load(Ordering::Relaxed) < self.o.api_chat.len() as u64 && Instant::now() < deadline {
            if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
                self.handle(m, &mut chat, &shared)?;
            }
        }
        while let Ok(m) = rx.try_recv() {
            self.handle(m, &mut chat, &shared)?;
        }
        if let Some(p) = presenter {
            let _ = p.join();
        }
        drop(display);
        chat.finish()?;
        self.update_counters(&chat, &shared);
        self.manifest.ended_at = Some(clock::rfc3339_millis(SystemTime::now()));
        if let Err(e) = &result {
            self.manifest.error = Some(e.to_string());
        } else if let Some(e) = lock(&shared.error).clone() {
            self.manifest.error = Some(e);
        }
        self.manifest.save(&dir)?;
        result.map(|()| self.manifest)
    }

    fn open_page(&mut self, display: &Option<Xvfb>, tx: &Sender<Msg>) -> Option<PageSession> {
        let (join_input, join_submit) = self.o.profile.join_form();
        let config = PageConfig {
            url: self.o.url.clone(),
            selectors: self.o.selectors.clone(),
            viewport: self.o.viewport,
            display: display.as_ref().map(Xvfb::name),
            chromium: self.o.chromium.clone(),
            guest_name: self.o.guest_name.clone(),
            join_input: join_input.into(),
            join_submit: join_submit.into(),
        };
        let (ptx, prx) = mpsc::channel::<PageEvent>();
        let forward = tx.clone();
        // the binding's events, forwarded into the capture's one queue
        std::thread::spawn(move || {
            for ev in prx {
                if forward.send(Msg::Page(ev)).is_err() {
                    break;
                }
            }
        });
        match page::open(&config, ptx) {
            Ok(s) => {
                *lock(&self.stats.last_error) = None;
                Some(s)
            }
            Err(e) => {
                warn!(error = %e, "cannot open the page");
                *lock(&self.stats.last_error) = Some(e.to_string());
                self.away_since.get_or_insert((self.now_ms(), "browser restart"));
                None
            }
        }
    }

    fn handle(&mut self, m: Msg, chat: &mut ChatLog, shared: &PresenterShared) -> Result<(), CaptureError> {
        let now = Instant::now();
        let now_ms = self.now_ms();
        let heard_before = self.last_heard;
        if matches!(m, Msg::Page(_)) {
            self.last_heard = now_ms;
        }
        match m {
            Msg::Page(PageEvent::Hello { .. }) => {
                let loads = self.stats.page_loads.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some((from, reason)) = self.away_since.take() {
                    self.manifest.gaps.push(Gap { from_ms: from, to_ms: now_ms, reason: reason.into() });
                } else if loads > 1 {
                    // a reload whose goodbye was lost: away since it was last heard
                    self.manifest.gaps.push(Gap { from_ms: heard_before, to_ms: now_ms, reason: "page reload".into() });
                }
            }
            Msg::Page(PageEvent::Beat { .. }) => {}
            Msg::Page(PageEvent::Bye { at }) => {
                let ms = (at - wall_ms(self.started)).clamp(0, now_ms as i64) as u64;
                self.away_since.get_or_insert((ms, "page reload"));
            }
            Msg::Page(PageEvent::Chat { id, author, text, at }) => {
                let latency = (wall_ms(SystemTime::now()) - at).clamp(0, 2000) as u64;
                let t_ms = now_ms.saturating_sub(latency);
                let line = ChatLine {
                    t_ms,
                    at: clock::rfc3339_millis(self.started + Duration::from_millis(t_ms)),
                    id,
                    author,
                    text,
                    source: ChatSource::Page,
                    kind: "message".into(),
                    target: None,
                    src_time: None,
                };
                if chat.push(line, now)? {
                    // from the page showing it to its line in the file
                    self.latencies.push((wall_ms(SystemTime::now()) - at).clamp(0, 60_000) as u64);
                }
            }
            Msg::Page(PageEvent::Rect { x, y, w, h, found, .. }) => {
                let rect = found.then_some(Rect { x, y, w, h });
                *lock(&shared.rect) = rect.or(Some(Rect { x: 0, y: 0, w: self.o.viewport.0, h: self.o.viewport.1 }));
                self.manifest.presenter_rects.push(RectAt { t_ms: now_ms, x, y, w, h });
            }
            Msg::Api(line) => {
                chat.push(line, now)?;
            }
            Msg::Dead(_) => {}
        }
        self.stats.chat_messages.store(chat.written(), Ordering::Relaxed);
        self.stats.presenter_frames.store(shared.frames.load(Ordering::Relaxed), Ordering::Relaxed);
        Ok(())
    }

    fn update_counters(&mut self, chat: &ChatLog, shared: &PresenterShared) {
        let duration_ms = self.now_ms();
        let frames = shared.frames.load(Ordering::Relaxed);
        // the rate since the first frame (the browser takes a moment to start)
        let first = shared.first_frame_ms.load(Ordering::Relaxed);
        let span_ms = shared.last_frame_ms.load(Ordering::Relaxed).saturating_sub(first);
        if frames > 0 {
            self.manifest.presenter_start_ms = Some(first);
        }
        self.stats.presenter_frames.store(frames, Ordering::Relaxed);
        self.stats.chat_messages.store(chat.written(), Ordering::Relaxed);
        let mut l = self.latencies.clone();
        l.sort_unstable();
        let pct = |p: f64| l.get(((l.len() as f64 - 1.0) * p).round() as usize).copied();
        self.manifest.counters = Counters {
            chat_messages: chat.written(),
            presenter_frames: frames,
            presenter_fps: if span_ms > 0 { (frames.saturating_sub(1)) as f64 * 1000.0 / span_ms as f64 } else { 0.0 },
            page_loads: self.stats.page_loads.load(Ordering::Relaxed),
            browser_restarts: self.stats.browser_restarts.load(Ordering::Relaxed),
            duration_ms,
            chat_latency_p50_ms: pct(0.5),
            chat_latency_p95_ms: pct(0.95),
        };
    }

    /// Starts a reader per platform chat; the counter says how many have finished.
    fn start_api_chat(&self, tx: &Sender<Msg>) -> Arc<AtomicU64> {
        let done = Arc::new(AtomicU64::new(0));
        let Some(rt) = &self.runtime else { return done };
        for source in self.o.api_chat.clone() {
            let (tx, stop, done) = (tx.clone(), Arc::clone(&self.stop), Arc::clone(&done));
            let (started, t0) = (self.started, self.t0);
            rt.spawn(async move {
                api_reader(source, tx, stop, started, t0).await;
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
        done
    }
}

/// The capture time of a platform message: its own timestamp on the capture's clock (the
/// arrival time when it has none).
fn api_t_ms(src_time: &str, started: SystemTime, t0: Instant) -> u64 {
    match clock::parse_rfc3339_millis(src_time) {
        Some(ms) => (ms - wall_ms(started)).max(0) as u64,
        None => t0.elapsed().as_millis() as u64,
    }
}

async fn api_reader(source: ApiChat, tx: Sender<Msg>, stop: Arc<AtomicBool>, started: SystemTime, t0: Instant) {
    let line = |id: String, author: String, text: String, src: ChatSource, kind: &str, src_time: String| {
        let t_ms = api_t_ms(&src_time, started, t0);
        ChatLine {
            t_ms,
            at: clock::rfc3339_millis(started + Duration::from_millis(t_ms)),
            id,
            author,
            text,
            source: src,
            kind: kind.into(),
            target: None,
            src_time: Some(src_time),
        }
    };
    match source {
        ApiChat::MtsLink { client, session_id } => {
            let mut reader = client.chat_reader(session_id);
            loop {
                let last = stop.load(Ordering::Relaxed);
                let batch = if last {
                    // the end: one whole fetch repairs what a poll missed
                    client.chat(session_id, 1000).await
                } else {
                    reader.poll().await
                };
                match batch {
                    Ok(msgs) => {
                        for m in msgs {
                            let kind = if m.is_deleted { "deleted" } else { "message" };
                            let l =
                                line(m.id.to_string(), m.author_name, m.text, ChatSource::Mtslink, kind, m.create_at);
                            let _ = tx.send(Msg::Api(l));
                        }
                    }
                    Err(e) => warn!(session = session_id, error = %e, "MTS Link chat poll failed"),
                }
                if last {
                    return;
                }
                for _ in 0..20 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        ApiChat::YouTube { client, live_chat_id } => {
            let mut reader = client.chat(&live_chat_id);
            while !stop.load(Ordering::Relaxed) {
                let next = tokio::select! {
                    r = reader.next_batch() => r,
                    () = wait_flag(&stop) => return,
                };
                match next {
                    Ok(Some(msgs)) => {
                        for m in msgs {
                            let (kind, target) = match &m.kind {
                                ChatKind::Message => ("message", None),
                                ChatKind::Deleted { target } => ("deleted", Some(target.clone())),
                                ChatKind::Ended => continue,
                                ChatKind::Other(_) => ("event", None),
                            };
                            let mut l = line(m.id, m.author, m.text, ChatSource::Youtube, kind, m.published_at);
                            l.target = target;
                            let _ = tx.send(Msg::Api(l));
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        warn!(error = %e, "YouTube chat poll failed");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
        }
    }
}

async fn wait_flag(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
