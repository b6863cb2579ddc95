//! A webinar capture as a job of the engine: the core capture on its own threads, a task
//! that waits for its end and records it in the `captures` table, and its live counters
//! for the API.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multistreamer_core::capture::manifest::Selectors;
use multistreamer_core::capture::{ApiChat, Capture, CaptureOptions, CaptureStats, Profile};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::task_job::TaskJob;
use crate::db::{self, Db};
use crate::platforms::{Account, Platforms};
use crate::sync::lock;

/// What a capture was asked to do (stored as JSON in its row).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaptureSettings {
    pub selectors: Selectors,
    pub presenter: bool,
    pub fps: u32,
    pub window: (u32, u32),
    pub guest_name: Option<String>,
}

/// One capture to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSpec {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub profile: String,
    pub settings: CaptureSettings,
    pub dir: PathBuf,
    pub broadcast_id: Option<i64>,
}

/// The live counters of the running captures, by id.
pub type LiveCaptures = Arc<Mutex<HashMap<i64, Arc<CaptureStats>>>>;

/// The platform chat of a broadcast, when it has one.
async fn api_chat(platforms: &Platforms, broadcast_id: i64) -> Option<ApiChat> {
    let b = db::broadcast(platforms.db(), broadcast_id).await.ok()??;
    match platforms.account(b.platform_id).await.ok()?.1 {
        Account::MtsLink(client) => Some(ApiChat::MtsLink { client, session_id: b.remote_id.parse().ok()? }),
        Account::YouTube(client) => {
            let live = client.broadcast(&b.remote_id).await.ok()??;
            Some(ApiChat::YouTube { client, live_chat_id: live.live_chat_id? })
        }
    }
}

pub fn spawn(
    spec: CaptureSpec,
    db: Db,
    platforms: Arc<Platforms>,
    live: LiveCaptures,
    wake: Arc<dyn Fn() + Send + Sync>,
    cancel: CancellationToken,
) -> TaskJob {
    let c = cancel.clone();
    let task = tokio::spawn(async move {
        let mut o = CaptureOptions::new(&spec.url, &spec.dir, spec.profile.parse().unwrap_or(Profile::Generic));
        o.name = spec.name.clone();
        o.selectors = spec.settings.selectors.clone();
        o.presenter = spec.settings.presenter;
        o.fps = spec.settings.fps;
        o.viewport = spec.settings.window;
        o.guest_name = spec.settings.guest_name.clone();
        if let Some(b) = spec.broadcast_id {
            match api_chat(&platforms, b).await {
                Some(chat) => o.api_chat.push(chat),
                None => warn!(capture = spec.id, broadcast = b, "the broadcast's chat cannot be read: page only"),
            }
        }
        let capture = match Capture::start(o) {
            Ok(c) => c,
            Err(e) => {
                warn!(capture = spec.id, error = %e, "capture not started");
                let _ = db::finish_capture(&db, spec.id, "failed", Some(&e.to_string()), 0, 0).await;
                wake();
                return;
            }
        };
        info!(capture = spec.id, "capture started");
        lock(&live).insert(spec.id, Arc::clone(&capture.stats));
        loop {
            tokio::select! {
                () = c.cancelled() => {
                    capture.stop();
                    break;
                }
                () = tokio::time::sleep(Duration::from_millis(500)) => {
                    if capture.is_finished() {
                        break;
                    }
                }
            }
        }
        let result = tokio::task::spawn_blocking(move || capture.join()).await;
        lock(&live).remove(&spec.id);
        let (state, error, chat, frames) = match result {
            Ok(Ok(m)) => {
                let state = if m.error.is_some() { "failed" } else { "finished" };
                (state, m.error.clone(), m.counters.chat_messages, m.counters.presenter_frames)
            }
            Ok(Err(e)) => ("failed", Some(e.to_string()), 0, 0),
            Err(e) => ("failed", Some(e.to_string()), 0, 0),
        };
        info!(capture = spec.id, state, "capture ended");
        if let Err(e) = db::finish_capture(&db, spec.id, state, error.as_deref(), chat, frames).await {
            warn!(capture = spec.id, error = %e, "could not record the capture's end");
        }
        wake();
    });
    // a capture that ended is recorded as such: it never starts again by itself
    TaskJob::new(task, cancel, Arc::default(), false)
}
