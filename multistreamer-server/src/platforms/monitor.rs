//! The broadcast monitor, a job of the engine: while a broadcast's stream is live (or the
//! broadcast is on air) it polls the platform for the stream's health and the broadcast's
//! state, goes live by itself when asked to once the platform receives the data, and
//! stops the broadcast's destinations when the platform ended it.
//!
//! Quota: one `liveStreams.list` per 20 s (1 unit), the broadcast's state every third poll
//! or while it is changing — about 240 units an hour per broadcast. `quotaExceeded` pauses
//! the monitor until the daily reset (midnight Pacific Time); `rateLimitExceeded` doubles
//! the wait, up to five minutes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use multistreamer_core::platform::{MtsLinkError, YouTubeClient, YouTubeError, YouTubeReason};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Account, Platforms, mtslink_health, mtslink_state, youtube_health};
use crate::db;
use crate::engine::TaskJob;
use crate::sync::lock;

/// What a monitor watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorSpec {
    pub platform_id: i64,
    pub stream_id: i64,
    pub remote_id: String,
    pub remote_stream_id: String,
    pub auto_live: bool,
    /// The broadcast's destinations (switched off when the platform ends the broadcast).
    pub destinations: Vec<i64>,
}

/// The poll interval of a live broadcast.
pub const EVERY: Duration = Duration::from_secs(20);

/// Starts the monitor of broadcast `id`; `wake` asks the engine to sync (its destinations
/// were switched off).
pub fn spawn(
    platforms: Arc<Platforms>,
    id: i64,
    spec: MonitorSpec,
    wake: Arc<dyn Fn() + Send + Sync>,
    cancel: CancellationToken,
) -> TaskJob {
    let error: Arc<Mutex<Option<String>>> = Arc::default();
    let m = Monitor { platforms, id, spec, wake, error: Arc::clone(&error), shown_error: false };
    let c = cancel.clone();
    let task = tokio::spawn(async move {
        tokio::select! {
            () = m.run() => {}
            () = c.cancelled() => {}
        }
    });
    TaskJob::new(task, cancel, error, true)
}

struct Monitor {
    platforms: Arc<Platforms>,
    id: i64,
    spec: MonitorSpec,
    wake: Arc<dyn Fn() + Send + Sync>,
    error: Arc<Mutex<Option<String>>>,
    /// Whether the broadcast row shows an error the monitor put there.
    shown_error: bool,
}

/// What one poll decided.
enum Next {
    /// Poll again after this long.
    After(Duration),
    /// The broadcast ended (or cannot be watched any more): the job ends.
    Done,
}

/// Time until the next daily quota reset (midnight Pacific Time, taken as 08:00 UTC, which
/// is at most an hour late in summer).
fn until_quota_reset() -> Duration {
    let now = db::now().rem_euclid(86_400);
    let reset = 8 * 3600;
    let left = if now < reset { reset - now } else { 86_400 - now + reset };
    Duration::from_secs(left as u64 + 60)
}

impl Monitor {
    async fn run(mut self) {
        let mut wait = Duration::from_secs(3);
        let mut tick: u64 = 0;
        loop {
            tokio::time::sleep(wait).await;
            let next = match self.platforms.account(self.spec.platform_id).await {
                Ok((_, Account::YouTube(yt))) => self.youtube(&yt, tick, wait).await,
                Ok((_, Account::MtsLink(m))) => self.mtslink(&m).await,
                Err(e) => {
                    self.fail(&e.message).await;
                    Next::Done
                }
            };
            match next {
                Next::After(d) => wait = d,
                Next::Done => return,
            }
            tick += 1;
        }
    }

    /// The job ends with an error (shown on the broadcast); it is not restarted.
    async fn fail(&mut self, why: &str) {
        warn!(broadcast = self.id, error = why, "broadcast monitor stopped");
        *lock(&self.error) = Some(why.to_string());
        let _ = db::set_broadcast_error(self.platforms.db(), self.id, Some(why)).await;
    }

    async fn show_error(&mut self, why: Option<&str>) {
        if why.is_none() && !self.shown_error {
            return;
        }
        self.shown_error = why.is_some();
        let _ = db::set_broadcast_error(self.platforms.db(), self.id, why).await;
    }

    /// Stores a new state; a broadcast the platform ended stops its destinations.
    async fn settle(&mut self, was: &str, now: &str) -> bool {
        let db = self.platforms.db();
        if was != now {
            info!(broadcast = self.id, from = was, to = now, "broadcast state changed on the platform");
            let _ = db::set_broadcast_state(db, self.id, now, None).await;
            self.shown_error = false;
        }
        if now == "complete" || now == "revoked" {
            let _ = db::set_destinations_enabled(db, &self.spec.destinations, false).await;
            (self.wake)();
            return true;
        }
        false
    }

    async fn youtube_failed(&mut self, e: YouTubeError, wait: Duration) -> Next {
        if e.needs_reconnect() {
            self.platforms.note(self.spec.platform_id, Some(&e.to_string())).await;
            self.fail(&e.to_string()).await;
            return Next::Done;
        }
        self.show_error(Some(&e.to_string())).await;
        match e.reason() {
            Some(YouTubeReason::QuotaExceeded) => Next::After(until_quota_reset()),
            Some(YouTubeReason::RateLimitExceeded) => Next::After((wait * 2).clamp(EVERY, Duration::from_secs(300))),
            Some(YouTubeReason::NotFound) => {
                self.fail("the broadcast no longer exists on YouTube").await;
                Next::Done
            }
            _ => Next::After(EVERY),
        }
    }

    async fn youtube(&mut self, yt: &YouTubeClient, tick: u64, wait: Duration) -> Next {
        let Ok(Some(row)) = db::broadcast(self.platforms.db(), self.id).await else { return Next::Done };
        let active = match yt.stream(&self.spec.remote_stream_id).await {
            Ok(Some(s)) => {
                self.platforms.set_health(self.id, youtube_health(&s));
                s.stream_status == "active"
            }
            Ok(None) => {
                self.fail("the broadcast's stream no longer exists on YouTube").await;
                return Next::Done;
            }
            Err(e) => return self.youtube_failed(e, wait).await,
        };
        let was = row.state.as_str();
        let upcoming = matches!(was, "created" | "ready" | "testing");
        let now = if self.spec.auto_live && upcoming && active {
            info!(broadcast = self.id, "YouTube receives the stream: going live");
            match yt.go_live(&self.spec.remote_id, Duration::from_secs(2), Duration::from_secs(30)).await {
                Ok(b) => b.life_cycle_status,
                Err(e) => return self.youtube_failed(e, wait).await,
            }
        } else if tick.is_multiple_of(3) || was.ends_with("Starting") {
            match yt.broadcast(&self.spec.remote_id).await {
                Ok(Some(b)) => b.life_cycle_status,
                Ok(None) => {
                    self.fail("the broadcast no longer exists on YouTube").await;
                    return Next::Done;
                }
                Err(e) => return self.youtube_failed(e, wait).await,
            }
        } else {
            was.to_string()
        };
        self.show_error(None).await;
        if self.settle(was, &now).await { Next::Done } else { Next::After(EVERY) }
    }

    async fn mtslink(&mut self, m: &multistreamer_core::platform::MtsLinkClient) -> Next {
        let Ok(Some(row)) = db::broadcast(self.platforms.db(), self.id).await else { return Next::Done };
        let Ok(session) = self.spec.remote_id.parse::<u64>() else { return Next::Done };
        let mut status = match m.session(session).await {
            Ok(s) => s.status,
            Err(e) => return self.mtslink_failed(e).await,
        };
        if self.spec.auto_live && status == "ACTIVE" {
            info!(broadcast = self.id, "the stream is live: starting the webinar");
            if let Err(e) = m.start(session).await {
                return self.mtslink_failed(e).await;
            }
            status = "START".into();
        }
        self.platforms.set_health(self.id, mtslink_health(&status));
        self.show_error(None).await;
        if self.settle(&row.state, mtslink_state(&status)).await { Next::Done } else { Next::After(EVERY) }
    }

    async fn mtslink_failed(&mut self, e: MtsLinkError) -> Next {
        if matches!(e, MtsLinkError::TokenRejected) {
            self.platforms.note(self.spec.platform_id, Some(&e.to_string())).await;
            self.fail(&e.to_string()).await;
            return Next::Done;
        }
        self.show_error(Some(&e.to_string())).await;
        Next::After(EVERY)
    }
}
