//! Webinar captures of a stream: start (a room's URL and selectors, optionally a broadcast
//! whose platform chat is read too), live counters, stop, files, delete.

#[allow(unused_imports)]
use super::prelude::*;
use crate::db::CaptureRow;
use crate::engine::CaptureSettings;

/// The files of a capture a client may fetch.
const FILES: [(&str, &str); 3] =
    [("capture.json", "application/json"), ("chat.jsonl", "application/x-ndjson"), ("presenter.mp4", "video/mp4")];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewCapture {
    url: Option<String>,
    name: Option<String>,
    /// `generic`, `mtslink`, `youtube`.
    profile: Option<String>,
    chat_selector: Option<String>,
    chat_item_selector: Option<String>,
    chat_author_selector: Option<String>,
    chat_text_selector: Option<String>,
    chat_id_attribute: Option<String>,
    presenter_selector: Option<String>,
    /// Record the presenter window (default true).
    presenter: Option<bool>,
    fps: Option<u32>,
    /// `WIDTHxHEIGHT` (default 1920x1080).
    window: Option<String>,
    guest_name: Option<String>,
    /// A broadcast of this stream whose platform chat is read too.
    broadcast_id: Option<i64>,
}

fn parse_window(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.split_once(['x', 'X'])?;
    Some((w.trim().parse().ok()?, h.trim().parse().ok()?))
}

pub(super) async fn capture_view(state: &AppState, c: &CaptureRow) -> CaptureView {
    let live = state.engine.capture_stats(c.id);
    let dir = std::path::Path::new(&c.dir);
    let mut files = Vec::new();
    for (name, _) in FILES {
        if let Ok(m) = tokio::fs::metadata(dir.join(name)).await {
            files.push(CaptureFileView {
                name: name.to_string(),
                bytes: m.len(),
                url: format!("/api/captures/{}/files/{name}", c.id),
            });
        }
    }
    let (chat, frames) = live
        .as_ref()
        .map_or((c.chat_messages as u64, c.presenter_frames as u64), |s| (s.chat_messages, s.presenter_frames));
    CaptureView {
        id: c.id,
        stream_id: c.stream_id,
        name: c.name.clone(),
        url: c.url_masked.clone(),
        profile: c.profile.clone(),
        state: c.state.clone(),
        error: c.error.clone(),
        last_error: live.as_ref().and_then(|s| s.last_error.clone()),
        started_at: c.started_at,
        ended_at: c.ended_at,
        chat_messages: chat,
        presenter_frames: frames,
        presenter_fps: live.as_ref().map_or(0.0, |s| s.presenter_fps),
        render: crate::sync::lock(&state.renders).get(&c.id).cloned(),
        fetch: crate::sync::lock(&state.fetches).get(&c.id).map(|f| f.status.clone()),
        duration_ms: live.as_ref().map_or_else(
            || (c.ended_at.unwrap_or(c.started_at) - c.started_at).max(0) as u64 * 1000,
            |s| s.duration_ms,
        ),
        files,
    }
}

/// Still writing its files: live, closing them, or waiting for a platform's video.
fn is_working(c: &CaptureRow) -> bool {
    matches!(c.state.as_str(), "running" | "stopping" | "converting")
}

async fn load(state: &AppState, id: i64) -> Result<CaptureRow, AppError> {
    db::capture(&state.db, id).await?.ok_or_else(|| AppError::not_found("capture"))
}

pub(super) async fn list_captures(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<CaptureView>>, AppError> {
    super::streams::load_stream(&state, id).await?;
    let mut out = Vec::new();
    for c in db::captures_of(&state.db, id).await? {
        out.push(capture_view(&state, &c).await);
    }
    Ok(Json(out))
}

pub(super) async fn start_capture(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<NewCapture>,
) -> Result<(StatusCode, Json<CaptureView>), AppError> {
    let stream = super::streams::load_stream(&state, id).await?;
    let url = body.url.as_deref().map(str::trim).unwrap_or_default().to_string();
    match url::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => return Err(AppError::invalid("url", "the page's http(s) address")),
    }
    let profile: multistreamer_core::capture::Profile =
        body.profile.as_deref().unwrap_or("generic").parse().map_err(|e: String| AppError::invalid("profile", e))?;
    let mut selectors = profile.selectors();
    for (value, field) in [
        (&body.chat_selector, &mut selectors.chat_container),
        (&body.chat_item_selector, &mut selectors.chat_item),
        (&body.chat_author_selector, &mut selectors.chat_author),
        (&body.chat_text_selector, &mut selectors.chat_text),
        (&body.chat_id_attribute, &mut selectors.chat_id_attribute),
        (&body.presenter_selector, &mut selectors.presenter),
    ] {
        if let Some(v) = value {
            *field = v.trim().to_string();
        }
    }
    let presenter = body.presenter.unwrap_or(true);
    if selectors.chat_container.is_empty() && body.broadcast_id.is_none() && !presenter {
        return Err(AppError::invalid("chat_selector", "nothing to capture: give the chat's selector"));
    }
    let fps = body.fps.unwrap_or(30);
    if !(1..=60).contains(&fps) {
        return Err(AppError::invalid("fps", "1 to 60"));
    }
    let window = match body.window.as_deref() {
        None | Some("") => (1920, 1080),
        Some(w) => parse_window(w)
            .filter(|(w, h)| (320..=3840).contains(w) && (240..=2160).contains(h))
            .ok_or_else(|| AppError::invalid("window", "WIDTHxHEIGHT, from 320x240 to 3840x2160"))?,
    };
    if let Some(b) = body.broadcast_id
        && db::broadcast(&state.db, b).await?.is_none_or(|b| b.stream_id != stream.id)
    {
        return Err(AppError::invalid("broadcast_id", "not a broadcast of this stream"));
    }
    let settings = CaptureSettings { selectors, presenter, fps, window, guest_name: body.guest_name.clone() };
    let name = body.name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or(&stream.name).to_string();
    let row = CaptureRow {
        id: 0,
        stream_id: stream.id,
        name,
        url_masked: multistreamer_core::capture::manifest::mask_url(&url),
        sealed_url: String::new(),
        profile: profile.as_str().into(),
        options: serde_json::to_string(&settings).map_err(|e| AppError::internal(e.to_string()))?,
        broadcast_id: body.broadcast_id,
        dir: String::new(),
        state: "running".into(),
        error: None,
        chat_messages: 0,
        presenter_frames: 0,
        started_at: 0,
        ended_at: None,
        node_id: db::node_id().to_string(),
    };
    let dirs = state.engine.captures_dir().to_path_buf();
    let cid = db::insert_capture(
        &state.db,
        &row,
        |id| state.platforms.seal_capture_url(id, &url),
        |id| dirs.join(format!("capture-{id}")).display().to_string(),
    )
    .await?;
    state.engine.sync_stream(stream.id).await?;
    let c = load(&state, cid).await?;
    Ok((StatusCode::CREATED, Json(capture_view(&state, &c).await)))
}

pub(super) async fn get_capture(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<CaptureView>, AppError> {
    let c = load(&state, id).await?;
    Ok(Json(capture_view(&state, &c).await))
}

pub(super) async fn stop_capture(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<CaptureView>, AppError> {
    let c = load(&state, id).await?;
    let fetching = crate::sync::lock(&state.fetches).get(&id).map(|f| f.cancel.clone());
    if let Some(cancel) = fetching {
        // after the fact: stop waiting for the platform's video (the chat is kept)
        cancel.cancel();
        return Ok(Json(capture_view(&state, &c).await));
    }
    db::stop_capture(&state.db, id).await?;
    // returns once the job is stopping; its files close in the background
    state.engine.sync_stream(c.stream_id).await?;
    let c = load(&state, id).await?;
    Ok(Json(capture_view(&state, &c).await))
}

pub(super) async fn delete_capture(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, AppError> {
    let c = load(&state, id).await?;
    if is_working(&c) || state.engine.capture_stats(id).is_some() {
        return Err(AppError::new(ErrorKind::FailedPrecondition, "the capture is running; stop it first"));
    }
    match tokio::fs::remove_dir_all(&c.dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(AppError::internal(format!("cannot delete {}: {e}", c.dir))),
    }
    db::delete_capture(&state.db, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One of the capture's files, with ranges (ServeFile).
pub(super) async fn capture_file(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath((id, name)): ApiPath<(i64, String)>,
    request: axum::extract::Request,
) -> Result<Response, AppError> {
    use tower::ServiceExt;
    let c = load(&state, id).await?;
    let Some((file, mime)) = FILES.iter().find(|(f, _)| *f == name) else {
        return Err(AppError::not_found("capture file"));
    };
    if !super::forward::was_forwarded(request.headers())
        && let Some(base) = super::recordings::elsewhere(&state, &c.node_id).await?
    {
        let method = request.method().clone();
        return super::forward::forward(&base, method, request.uri(), request.headers()).await;
    }
    let path = std::path::Path::new(&c.dir).join(file);
    if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return Err(AppError::not_found("capture file"));
    }
    let mime = mime.parse().map_err(|_| AppError::internal("content type"))?;
    let served = tower_http::services::ServeFile::new_with_mime(&path, &mime)
        .oneshot(request)
        .await
        .map_err(|e| AppError::internal(format!("serving {}: {e}", path.display())))?;
    let mut response = served.map(axum::body::Body::new);
    let disposition = format!("attachment; filename=\"capture-{id}-{file}\"");
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// Where fetching an after-the-fact capture's presenter video from the platform stands.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FetchStatus {
    /// `waiting_for_account` (the account converts another record), `converting`,
    /// `downloading`.
    pub state: String,
    pub conversion_id: Option<u64>,
    pub percent: Option<f64>,
    pub bytes: u64,
}

/// A presenter video being fetched from the platform, and how to stop waiting for it.
#[derive(Debug)]
pub struct Fetch {
    pub status: FetchStatus,
    cancel: tokio_util::sync::CancellationToken,
}

/// Presenter videos being fetched, by capture id.
pub type Fetches = std::sync::Mutex<std::collections::HashMap<i64, Fetch>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct AfterBody {
    /// Order the presenter's video from the session's recording (default true).
    presenter: Option<bool>,
    /// Its quality: `720` (default) or `1080`.
    quality: Option<String>,
}

/// The notes of an after-the-fact capture, and one more, as its `error` text.
fn joined(notes: &[String], extra: Option<String>) -> Option<String> {
    let all: Vec<String> = notes.iter().cloned().chain(extra).collect();
    (!all.is_empty()).then(|| all.join("; "))
}

/// The capture's span in the database: the webinar's, from the manifest (seconds).
async fn store_span(state: &AppState, id: i64, m: &multistreamer_core::capture::manifest::Manifest) {
    use multistreamer_core::clock::parse_rfc3339_millis;
    let Some(started) = parse_rfc3339_millis(&m.started_at) else { return };
    let ended = m.ended_at.as_deref().and_then(parse_rfc3339_millis).unwrap_or(started);
    let span = (started.div_euclid(1000), (ended + 999).div_euclid(1000));
    if let Err(e) = db::set_capture_span(&state.db, id, span.0, span.1).await {
        tracing::warn!(capture = id, error = %e, "storing the capture's span");
    }
}

/// After the webinar: a capture of an MTS Link broadcast built through the API — its whole
/// chat at once, then (unless `presenter: false`) the presenter's video, converted by the
/// platform from the session's recording, in the background (state `converting`).
/// YouTube's chat can only be captured live.
pub(super) async fn capture_chat_after(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(bid): ApiPath<i64>,
    ApiJson(body): ApiJson<AfterBody>,
) -> Result<(StatusCode, Json<CaptureView>), AppError> {
    use multistreamer_core::capture::CaptureError;
    use multistreamer_core::capture::after::{AfterOptions, FetchProgress, from_mtslink_session};
    let quality = body.quality.as_deref().unwrap_or("720").trim().to_string();
    if !["360", "480", "720", "1080"].contains(&quality.as_str()) {
        return Err(AppError::invalid("quality", "360, 480, 720 or 1080"));
    }
    let b = db::broadcast(&state.db, bid).await?.ok_or_else(|| AppError::not_found("broadcast"))?;
    let (_, account) = state.platforms.account(b.platform_id).await?;
    let crate::platforms::Account::MtsLink(client) = account else {
        return Err(AppError::new(
            ErrorKind::FailedPrecondition,
            "YouTube's chat is only complete when read live: capture it while the broadcast runs",
        ));
    };
    let session: u64 = b.remote_id.parse().map_err(|_| AppError::internal("stored session id"))?;
    let row = CaptureRow {
        id: 0,
        stream_id: b.stream_id,
        name: format!("{} (after the webinar)", b.title),
        url_masked: format!("mtslink:session/{session}"),
        sealed_url: String::new(),
        profile: "mtslink".into(),
        options: "{}".into(),
        broadcast_id: Some(b.id),
        dir: String::new(),
        state: "converting".into(),
        error: None,
        chat_messages: 0,
        presenter_frames: 0,
        started_at: 0,
        ended_at: None,
        node_id: db::node_id().to_string(),
    };
    let dirs = state.engine.captures_dir().to_path_buf();
    let url = row.url_masked.clone();
    let cid = db::insert_capture(
        &state.db,
        &row,
        |id| state.platforms.seal_capture_url(id, &url),
        |id| dirs.join(format!("capture-{id}")).display().to_string(),
    )
    .await?;
    let c = load(&state, cid).await?;
    let o = AfterOptions {
        name: c.name.clone(),
        presenter: body.presenter.unwrap_or(true),
        quality,
        ..AfterOptions::default()
    };
    let mut built = match from_mtslink_session(&client, session, std::path::Path::new(&c.dir), &o).await {
        Ok(built) => built,
        Err(e) => {
            db::finish_capture(&state.db, cid, "failed", Some(&e.to_string()), 0, 0).await?;
            let refused =
                matches!(&e, CaptureError::MtsLink(m) if m.kind() == multistreamer_core::error::ErrorKind::Rejected);
            return Err(AppError::platform(!refused, e.to_string(), None));
        }
    };
    store_span(&state, cid, &built.manifest).await;
    let chat = built.manifest.counters.chat_messages;
    if built.record.is_none() {
        db::finish_capture(&state.db, cid, "finished", joined(&built.notes, None).as_deref(), chat, 0).await?;
        let c = load(&state, cid).await?;
        return Ok((StatusCode::CREATED, Json(capture_view(&state, &c).await)));
    }
    db::finish_capture(&state.db, cid, "converting", joined(&built.notes, None).as_deref(), chat, 0).await?;
    // a server that shuts down stops waiting (the capture is closed at the next start)
    let cancel = state.shutdown.child_token();
    let status = FetchStatus { state: "converting".into(), conversion_id: None, percent: None, bytes: 0 };
    crate::sync::lock(&state.fetches).insert(cid, Fetch { status, cancel: cancel.clone() });
    let st = state.clone();
    tokio::spawn(async move {
        let fetched = built
            .fetch_presenter(&client, &o, &cancel, |p| {
                if let Some(f) = crate::sync::lock(&st.fetches).get_mut(&cid) {
                    f.status = match p {
                        FetchProgress::WaitingForAccount { current } => FetchStatus {
                            state: "waiting_for_account".into(),
                            conversion_id: *current,
                            percent: None,
                            bytes: 0,
                        },
                        FetchProgress::Converting { id, percent, .. } => FetchStatus {
                            state: "converting".into(),
                            conversion_id: Some(*id),
                            percent: *percent,
                            bytes: 0,
                        },
                        FetchProgress::Downloading { bytes } => {
                            FetchStatus { state: "downloading".into(), bytes: *bytes, ..f.status.clone() }
                        }
                    };
                }
            })
            .await;
        crate::sync::lock(&st.fetches).remove(&cid);
        if st.shutdown.is_cancelled() {
            return;
        }
        let chat = built.manifest.counters.chat_messages;
        let (frames, note) = match fetched {
            Ok(()) => {
                store_span(&st, cid, &built.manifest).await;
                (built.manifest.counters.presenter_frames, None)
            }
            Err(CaptureError::Stopped) => {
                (0, Some("no presenter video: stopped before the platform had it ready".into()))
            }
            Err(e) => {
                tracing::warn!(capture = cid, error = %e, "presenter video from the platform");
                (0, Some(format!("no presenter video: {e}")))
            }
        };
        let error = joined(&built.notes, note);
        if let Err(e) = db::finish_capture(&st.db, cid, "finished", error.as_deref(), chat, frames).await {
            tracing::warn!(capture = cid, error = %e, "closing the capture");
        }
    });
    let c = load(&state, cid).await?;
    Ok((StatusCode::CREATED, Json(capture_view(&state, &c).await)))
}

/// How a render of a capture is doing.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RenderStatus {
    /// `running`, `finished` or `failed`.
    pub state: String,
    pub percent: f64,
    pub fps: f64,
    pub speed: f64,
    pub eta_s: u64,
    pub error: Option<String>,
    /// The recording rendered with the capture.
    pub source_recording_id: i64,
    /// The result, among the recordings (kind `rendered`).
    pub recording_id: Option<i64>,
}

/// Renders in progress and done, by capture id (while the server runs).
pub type Renders = std::sync::Mutex<std::collections::HashMap<i64, RenderStatus>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RenderBody {
    /// `side` (default) or `overlay`.
    layout: Option<String>,
    /// `WIDTHxHEIGHT` (default 1920x1080).
    size: Option<String>,
    /// Seconds added to the chat's and the presenter's times.
    offset: Option<f64>,
    /// The recording to render with (default: the stream's original recording that
    /// overlaps the capture most).
    recording_id: Option<i64>,
}

fn overlap(a: (i64, i64), b: (i64, i64)) -> i64 {
    (a.1.min(b.1) - a.0.max(b.0)).max(0)
}

/// Renders a finished capture with the stream's recording of the same time, in the
/// background; the result joins the recordings.
pub(super) async fn render_capture(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<RenderBody>,
) -> Result<(StatusCode, Json<CaptureView>), AppError> {
    use multistreamer_core::render::{LayoutKind, RenderOptions, render};
    let c = load(&state, id).await?;
    if is_working(&c) {
        return Err(AppError::new(ErrorKind::FailedPrecondition, "the capture is still running; stop it first"));
    }
    if crate::sync::lock(&state.renders).get(&id).is_some_and(|r| r.state == "running") {
        return Err(AppError::new(ErrorKind::FailedPrecondition, "a render of this capture is running"));
    }
    let layout: LayoutKind =
        body.layout.as_deref().unwrap_or("side").parse().map_err(|e: String| AppError::invalid("layout", e))?;
    let size = match body.size.as_deref() {
        None | Some("") => (1920, 1080),
        Some(s) => parse_window(s)
            .filter(|(w, h)| (320..=3840).contains(w) && (240..=2160).contains(h) && w % 2 == 0 && h % 2 == 0)
            .ok_or_else(|| AppError::invalid("size", "WIDTHxHEIGHT, even, from 320x240 to 3840x2160"))?,
    };
    let offset = body.offset.unwrap_or(0.0);
    if !offset.is_finite() || offset.abs() > 3600.0 {
        return Err(AppError::invalid("offset", "seconds, within an hour"));
    }
    let recordings = db::list_recordings(&state.db).await?;
    let span = (c.started_at, c.ended_at.unwrap_or(c.started_at));
    let source = match body.recording_id {
        Some(rid) => recordings
            .into_iter()
            .find(|r| r.id == rid && r.stream_id == Some(c.stream_id))
            .ok_or_else(|| AppError::invalid("recording_id", "not a recording of this stream"))?,
        None => recordings
            .into_iter()
            .filter(|r| r.stream_id == Some(c.stream_id) && r.kind == "original" && r.ended_at.is_some())
            .max_by_key(|r| overlap(span, (r.started_at, r.ended_at.unwrap_or(r.started_at))))
            .filter(|r| overlap(span, (r.started_at, r.ended_at.unwrap_or(r.started_at))) > 0)
            .ok_or_else(|| {
                AppError::invalid(
                    "recording_id",
                    "no recording of this stream overlaps the capture (record the stream while capturing)",
                )
            })?,
    };
    let stem =
        std::path::Path::new(&source.path).file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    let out = state.engine.recordings_dir().join(format!("{stem}-capture-{id}-rendered.mp4"));
    let mut o = RenderOptions::new(&c.dir, &source.path, &out);
    o.layout = layout;
    o.size = size;
    o.offset_ms = (offset * 1000.0).round() as i64;
    // a server that shuts down stops the render (and removes its partial output)
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    o.cancel = Some(std::sync::Arc::clone(&stop));
    let shutdown = state.shutdown.clone();
    let on_shutdown = tokio::spawn(async move {
        shutdown.cancelled().await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let status = RenderStatus {
        state: "running".into(),
        percent: 0.0,
        fps: 0.0,
        speed: 0.0,
        eta_s: 0,
        error: None,
        source_recording_id: source.id,
        recording_id: None,
    };
    crate::sync::lock(&state.renders).insert(id, status);
    let (st, stream_id, stream_name) = (state.clone(), c.stream_id, source.stream_name.clone());
    tokio::spawn(async move {
        let progress_state = st.clone();
        let result = tokio::task::spawn_blocking(move || {
            render(&o, |p| {
                if let Some(r) = crate::sync::lock(&progress_state.renders).get_mut(&id) {
                    (r.percent, r.fps, r.speed, r.eta_s) = (p.percent, p.fps, p.speed, p.eta.as_secs());
                }
            })
        })
        .await;
        on_shutdown.abort();
        let outcome = match result {
            Ok(Ok(report)) => {
                let path = out.display().to_string();
                let bytes = tokio::fs::metadata(&out).await.map_or(0, |m| m.len());
                let row = db::recording_started(&st.db, stream_id, &stream_name, "rendered", &path, db::now()).await;
                let ms = report.duration.as_millis() as u64;
                match row {
                    Ok(rid) => db::recording_progress(&st.db, &path, bytes, ms, Some(db::now())).await.map(|()| rid),
                    Err(e) => Err(e),
                }
                .map_err(|e| e.to_string())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Some(r) = crate::sync::lock(&st.renders).get_mut(&id) {
            match outcome {
                Ok(rid) => {
                    r.state = "finished".into();
                    r.percent = 100.0;
                    r.recording_id = Some(rid);
                }
                Err(e) => {
                    tracing::warn!(capture = id, error = %e, "render failed");
                    r.state = "failed".into();
                    r.error = Some(e);
                }
            }
        }
    });
    Ok((StatusCode::ACCEPTED, Json(capture_view(&state, &c).await)))
}
