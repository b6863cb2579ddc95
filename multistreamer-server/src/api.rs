//! The HTTP API under `/api/`, plus `/healthz` and `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use multistreamer_core::destination::DestinationSnapshot;
use multistreamer_core::ladder::Ladder;
use multistreamer_core::monitor::SystemSample;
use multistreamer_core::rtmp::RtmpUrl;
use multistreamer_core::source::InputUrl;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{self, Auth, COOKIE, SESSION_TTL_S};
use crate::db::{self, DestinationRow, StreamRow};
use crate::engine::RecordMode;
use crate::error::{AppError, ErrorKind};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/app.js",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../assets/app.js"))
            }),
        )
        .route(
            "/app.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../assets/app.css")) }),
        )
        .route(
            "/vendor/hls.light.min.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "max-age=86400"),
                    ],
                    include_str!("../assets/vendor/hls.light.min.js"),
                )
            }),
        )
        .route("/hls/{id}/index.m3u8", get(hls_master))
        .route("/hls/{id}/{variant}/{file}", get(hls_file))
        .route("/play/{token}/index.m3u8", get(play_master))
        .route("/play/{token}/{variant}/{file}", get(play_file))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/password", post(change_password))
        .route("/api/streams", get(list_streams).post(create_stream))
        .route("/api/streams/{id}", get(get_stream).patch(update_stream).delete(delete_stream))
        .route("/api/streams/{id}/destinations", post(create_destination))
        .route(
            "/api/streams/{id}/destinations/{did}",
            axum::routing::patch(update_destination).delete(delete_destination),
        )
        .route("/api/streams/{id}/recording", post(set_recording))
        .route("/api/recordings", get(list_recordings))
        .route("/api/recordings/{id}", axum::routing::delete(delete_recording))
        .route("/api/recordings/{id}/file", get(download_recording))
        .route("/api/system", get(system))
        .route("/api/system/history", get(system_history))
        .route("/api/system/live", get(system_live))
        .with_state(state)
}

const M3U8: &str = "application/vnd.apple.mpegurl";

/// The playback token of a stream: a keyed hash of its ingest key (so a new key revokes
/// it, and the token does not reveal the key).
pub fn hls_token(ingest_key: &str) -> String {
    use blake2::{Blake2s256, Digest};
    let mut h = Blake2s256::new();
    h.update(b"multistreamer hls playback\0");
    h.update(ingest_key.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// The stream whose playback token is `token`.
async fn stream_of_token(state: &AppState, token: &str) -> Result<i64, AppError> {
    if token.len() != 32 {
        return Err(AppError::not_found("stream"));
    }
    db::list_streams(&state.db)
        .await?
        .iter()
        .find(|s| hls_token(&s.ingest_key) == token)
        .map(|s| s.id)
        .ok_or_else(|| AppError::not_found("stream"))
}

/// `/play/{token}/index.m3u8`: the master playlist for players without a session.
async fn play_master(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response, AppError> {
    let id = stream_of_token(&state, &token).await?;
    master_response(&state, id)
}

/// `/play/{token}/{variant}/{file}`: media playlists and segments for players without a session.
async fn play_file(
    State(state): State<AppState>,
    Path((token, variant, file)): Path<(String, String, String)>,
) -> Result<Response, AppError> {
    let id = stream_of_token(&state, &token).await?;
    file_response(&state, id, &variant, &file)
}

/// The master playlist of a stream: the source and each rendition with segments.
async fn hls_master(State(state): State<AppState>, _auth: Auth, Path(id): Path<i64>) -> Result<Response, AppError> {
    master_response(&state, id)
}

fn master_response(state: &AppState, id: i64) -> Result<Response, AppError> {
    let text = state
        .engine
        .hls
        .master_playlist(&crate::engine::hub_name(id))
        .ok_or_else(|| AppError::not_found("HLS stream (not live yet?)"))?;
    Ok(([(header::CONTENT_TYPE, M3U8), (header::CACHE_CONTROL, "no-cache")], text).into_response())
}

/// A variant's media playlist (`index.m3u8`) or one of its segments (`N.ts`).
async fn hls_file(
    State(state): State<AppState>,
    _auth: Auth,
    Path((id, variant, file)): Path<(i64, String, String)>,
) -> Result<Response, AppError> {
    file_response(&state, id, &variant, &file)
}

fn file_response(state: &AppState, id: i64, variant: &str, file: &str) -> Result<Response, AppError> {
    let source = crate::engine::hub_name(id);
    if file == "index.m3u8" {
        let text =
            state.engine.hls.media_playlist(&source, variant).ok_or_else(|| AppError::not_found("HLS variant"))?;
        return Ok(([(header::CONTENT_TYPE, M3U8), (header::CACHE_CONTROL, "no-cache")], text).into_response());
    }
    let data = state.engine.hls.segment(&source, variant, file).ok_or_else(|| AppError::not_found("HLS segment"))?;
    Ok(([(header::CONTENT_TYPE, "video/mp2t"), (header::CACHE_CONTROL, "max-age=60")], data).into_response())
}

async fn index() -> Html<&'static str> {
    Html(include_str!("../assets/index.html"))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("../assets/openapi.json"))
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<LoginBody>,
) -> Result<Response, AppError> {
    let ip = Some(peer.ip());
    state.login_limiter.check(ip, &body.username)?;
    let user = db::user_by_name(&state.db, &body.username).await?;
    let ok = match &user {
        Some((_, hash)) => auth::verify_password(&body.password, hash),
        None => {
            // spend the same time as a real check
            let _ = auth::verify_password(&body.password, &state.dummy_hash);
            false
        }
    };
    let Some((user_id, _)) = user.filter(|_| ok) else {
        state.login_limiter.failed(ip, &body.username);
        tracing::warn!(%peer, username = %body.username, "failed sign-in");
        return Err(AppError::new(ErrorKind::Unauthenticated, "wrong username or password"));
    };
    state.login_limiter.succeeded(&body.username);
    let sid = auth::random_hex(32)?;
    let csrf = auth::random_hex(32)?;
    db::create_session(&state.db, &sid, user_id, &csrf, db::now() + SESSION_TTL_S).await?;
    let cookie = format!("{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/; Max-Age={SESSION_TTL_S}");
    let mut resp = Json(json!({ "username": body.username, "csrf_token": csrf })).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, header_value(&cookie)?);
    Ok(resp)
}

fn header_value(s: &str) -> Result<HeaderValue, AppError> {
    HeaderValue::from_str(s).map_err(|e| AppError::internal(format!("header: {e}")))
}

async fn logout(State(state): State<AppState>, auth: Auth) -> Result<Response, AppError> {
    db::delete_session(&state.db, &auth.session_id).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, header_value(&format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"))?);
    Ok(resp)
}

async fn me(auth: Auth) -> Json<Value> {
    Json(json!({ "username": auth.username, "csrf_token": auth.csrf_token }))
}

#[derive(Deserialize)]
struct PasswordBody {
    current: String,
    new: String,
}

async fn change_password(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<PasswordBody>,
) -> Result<StatusCode, AppError> {
    let hash = db::user_hash(&state.db, auth.user_id).await?.ok_or_else(|| AppError::not_found("user"))?;
    if !auth::verify_password(&body.current, &hash) {
        return Err(AppError::invalid("current", "the current password is wrong"));
    }
    if body.new.chars().count() < 10 {
        return Err(AppError::invalid("new", "use at least 10 characters"));
    }
    db::set_password(&state.db, auth.user_id, &auth::hash_password(&body.new)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn validate_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AppError::invalid("name", "a name is required"));
    }
    if name.chars().count() > 100 {
        return Err(AppError::invalid("name", "at most 100 characters"));
    }
    Ok(name.to_string())
}

fn validate_url(url: &str) -> Result<String, AppError> {
    let parsed: RtmpUrl = url.trim().parse().map_err(|e| AppError::invalid("url", format!("{e}")))?;
    if parsed.key.is_empty() {
        return Err(AppError::invalid("url", "the URL has no stream key (expected rtmp://HOST/APP/KEY)"));
    }
    Ok(url.trim().to_string())
}

/// A ladder in its normal form (`1080p,720p,480p`), or a field error.
fn validate_ladder(spec: &str) -> Result<String, AppError> {
    let ladder: Ladder = spec.parse().map_err(|e: String| AppError::invalid("ladder", e))?;
    Ok(ladder.to_string())
}

/// "" for the source, or a rung of `stream`'s ladder.
fn validate_rendition(stream: &StreamRow, rendition: &str) -> Result<String, AppError> {
    let r = rendition.trim();
    if r.is_empty() || r == "source" {
        return Ok(String::new());
    }
    let ladder: Ladder = stream.ladder.parse().unwrap_or_default();
    if ladder.get(r).is_none() {
        let names: Vec<String> = ladder.renditions.iter().map(|x| x.name()).collect();
        let offer = if names.is_empty() { "the stream has no ladder".to_string() } else { names.join(", ") };
        return Err(AppError::invalid("rendition", format!("{r:?} is not a rendition of this stream ({offer})")));
    }
    Ok(r.to_string())
}

fn destination_json(d: &DestinationRow, stats: Option<&DestinationSnapshot>) -> Value {
    let masked = d.url.parse::<RtmpUrl>().map(|u| u.redacted()).unwrap_or_else(|_| "<invalid URL>".into());
    json!({
        "id": d.id,
        "name": d.name,
        "url": masked,
        "enabled": d.enabled,
        "rendition": if d.rendition.is_empty() { "source" } else { d.rendition.as_str() },
        "state": stats.as_ref().map_or(if d.enabled { "idle" } else { "off" }, |s| s.state.as_str()),
        "bitrate_bps": stats.as_ref().map_or(0, |s| s.bitrate_bps),
        "bytes_sent": stats.as_ref().map_or(0, |s| s.bytes_sent),
        "reconnects": stats.as_ref().map_or(0, |s| s.reconnects),
        "dropped": stats.as_ref().map_or(0, |s| s.dropped),
        "last_error": stats.and_then(|s| s.last_error.clone()),
    })
}

/// The pull URL with its password (and an HTTP query, where tokens live) hidden.
fn mask_pull_url(url: &str) -> String {
    if url.is_empty() {
        return String::new();
    }
    url.parse::<InputUrl>().map(|u| u.masked()).unwrap_or_default()
}

/// Checks a pull URL: `rtsp://` (a camera) or `http(s)://` (an HLS playlist).
fn validate_pull_url(url: &str) -> Result<(), AppError> {
    match url.parse::<InputUrl>() {
        Ok(InputUrl::Hls(_) | InputUrl::Rtsp(_)) => Ok(()),
        Ok(_) => Err(AppError::invalid("pull_url", "RTMP is pushed to the ingest (rtmp_url), not pulled")),
        Err(e) if url.starts_with("http") => Err(AppError::invalid("pull_url", e.to_string())),
        Err(_) => Err(AppError::invalid("pull_url", "expected rtsp://… (a camera) or http(s)://….m3u8 (HLS)")),
    }
}

async fn stream_json(state: &AppState, s: &StreamRow) -> Result<Value, AppError> {
    let st = state.engine.stream_state(s.id).await;
    let pull = st.pull.as_ref().map(
        |p| json!({ "state": p.state, "last_error": p.last_error, "reconnects": p.reconnects, "frames": p.frames }),
    );
    let r = &st.recording;
    let file =
        r.file.as_deref().and_then(|f| std::path::Path::new(f).file_name()).map(|n| n.to_string_lossy().to_string());
    let recording = json!({ "active": r.active, "kind": r.kind, "file": file, "bytes_written": r.bytes_written,
        "frames_dropped": r.frames_dropped, "error": r.error });
    let dests = db::destinations(&state.db, s.id).await?;
    let history = db::stream_history(&state.db, s.id).await?;
    Ok(json!({
        "id": s.id,
        "name": s.name,
        "key": s.ingest_key,
        "rtmp_url": format!("{}/{}", state.public_rtmp, s.ingest_key),
        "rtsp_url": state.public_rtsp.as_ref().as_ref().map(|u| format!("{u}/{}", s.ingest_key)),
        "pull_url": mask_pull_url(&s.pull_url),
        "hls_url": format!("/hls/{}/index.m3u8", s.id),
        "hls_play_path": format!("/play/{}/index.m3u8", hls_token(&s.ingest_key)),
        "hls_variants": state.engine.hls.variants(&crate::engine::hub_name(s.id)).iter().map(|v| json!({
            "name": v.name, "codecs": v.codecs, "width": v.resolution.map(|r| r.0), "height": v.resolution.map(|r| r.1),
            "bandwidth": v.peak_bps, "average_bandwidth": v.average_bps, "segments": v.segments, "ended": v.ended,
        })).collect::<Vec<_>>(),
        "pull": pull,
        "live": state.engine.is_live(s.id),
        "created_at": s.created_at,
        "ladder": s.ladder,
        "rendition_names": s.ladder.parse::<Ladder>().unwrap_or_default().renditions.iter().map(|r| r.name()).collect::<Vec<_>>(),
        "renditions": st.renditions.iter().map(|r| json!({
            "name": r.name, "width": r.width, "height": r.height, "bitrate_kbps": r.bitrate_kbps,
            "frames_encoded": r.frames_encoded, "frames_dropped": r.frames_dropped, "keyframes": r.keyframes,
            "bytes_out": r.bytes_out })).collect::<Vec<_>>(),
        "skipped_renditions": st.skipped_renditions,
        "ladder_error": st.ladder_error,
        "ladder_input_dropped": st.ladder_input_dropped,
        "record_mode": s.record_mode,
        "record_rendition": if s.record_rendition.is_empty() { "source" } else { s.record_rendition.as_str() },
        "recording": recording,
        "destinations": dests.iter().map(|d| destination_json(d, st.destinations.get(&d.id))).collect::<Vec<_>>(),
        "sessions": history.iter().map(|(a, b, bytes)| json!({"started_at": a, "ended_at": b, "bytes_in": bytes})).collect::<Vec<_>>(),
    }))
}

async fn list_streams(State(state): State<AppState>, _auth: Auth) -> Result<Json<Value>, AppError> {
    let mut out = Vec::new();
    for s in db::list_streams(&state.db).await? {
        out.push(stream_json(&state, &s).await?);
    }
    Ok(Json(Value::Array(out)))
}

#[derive(Deserialize)]
struct StreamBody {
    name: Option<String>,
    /// Renditions, e.g. `1080p,720p,480p`; empty for none.
    ladder: Option<String>,
    /// `off`, `original` or `raw`.
    record_mode: Option<String>,
    /// `source` or a rendition of the ladder.
    record_rendition: Option<String>,
    /// An RTSP camera or an HLS playlist (http/https) to pull the stream from; empty:
    /// publishers push.
    pull_url: Option<String>,
    #[serde(default)]
    regenerate_key: bool,
}

async fn create_stream(
    State(state): State<AppState>,
    _auth: Auth,
    Json(body): Json<StreamBody>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let name = validate_name(body.name.as_deref().unwrap_or(""))?;
    let ladder = validate_ladder(body.ladder.as_deref().unwrap_or(""))?;
    let key = auth::random_hex(16)?;
    let id = db::create_stream(&state.db, &name, &key).await?;
    if !ladder.is_empty() {
        db::set_stream_ladder(&state.db, id, &ladder).await?;
    }
    let s = db::stream(&state.db, id).await?.ok_or_else(|| AppError::not_found("stream"))?;
    Ok((StatusCode::CREATED, Json(stream_json(&state, &s).await?)))
}

async fn load_stream(state: &AppState, id: i64) -> Result<StreamRow, AppError> {
    db::stream(&state.db, id).await?.ok_or_else(|| AppError::not_found("stream"))
}

async fn get_stream(State(state): State<AppState>, _auth: Auth, Path(id): Path<i64>) -> Result<Json<Value>, AppError> {
    let s = load_stream(&state, id).await?;
    Ok(Json(stream_json(&state, &s).await?))
}

async fn update_stream(
    State(state): State<AppState>,
    _auth: Auth,
    Path(id): Path<i64>,
    Json(body): Json<StreamBody>,
) -> Result<Json<Value>, AppError> {
    let s = load_stream(&state, id).await?;
    // Every field is checked before anything is written, and all land in one transaction:
    // a refused field leaves the stream as it was.
    let name = body.name.as_deref().map(validate_name).transpose()?;
    let ladder = match &body.ladder {
        Some(spec) => {
            let ladder = validate_ladder(spec)?;
            let parsed: Ladder = ladder.parse().unwrap_or_default();
            for d in db::destinations(&state.db, s.id).await? {
                if !d.rendition.is_empty() && parsed.get(&d.rendition).is_none() {
                    return Err(AppError::invalid(
                        "ladder",
                        format!("destination {:?} receives {}; change it first", d.name, d.rendition),
                    ));
                }
            }
            Some(ladder)
        }
        None => None,
    };
    let pull_url = match &body.pull_url {
        Some(url) => {
            let url = url.trim();
            if !url.is_empty() {
                validate_pull_url(url)?;
            }
            Some(url.to_string())
        }
        None => None,
    };
    let record = if body.record_mode.is_some() || body.record_rendition.is_some() {
        let mode = body.record_mode.as_deref().unwrap_or(&s.record_mode).trim().to_string();
        mode.parse::<RecordMode>().map_err(|e| AppError::invalid("record_mode", e))?;
        // The rendition is checked against the ladder this request leaves.
        let after = StreamRow { ladder: ladder.clone().unwrap_or_else(|| s.ladder.clone()), ..s.clone() };
        let rendition = match &body.record_rendition {
            Some(r) => validate_rendition(&after, r).map_err(|e| AppError::invalid("record_rendition", e.message))?,
            None => s.record_rendition.clone(),
        };
        Some((mode, rendition))
    } else {
        None
    };
    let key = if body.regenerate_key { Some(auth::random_hex(16)?) } else { None };
    let mut tx = db::begin(&state.db).await?;
    if let Some(name) = &name {
        db::rename_stream(&mut *tx, s.id, name).await?;
    }
    if let Some(key) = &key {
        db::set_stream_key(&mut *tx, s.id, key).await?;
    }
    if let Some(ladder) = &ladder {
        db::set_stream_ladder(&mut *tx, s.id, ladder).await?;
    }
    if let Some(url) = &pull_url {
        db::set_stream_pull_url(&mut *tx, s.id, url).await?;
    }
    if let Some((mode, rendition)) = &record {
        db::set_stream_recording(&mut *tx, s.id, mode, rendition).await?;
    }
    tx.commit().await?;
    if ladder.is_some() || pull_url.is_some() || record.is_some() {
        state.engine.sync_stream(s.id).await?;
    }
    let s = load_stream(&state, id).await?;
    Ok(Json(stream_json(&state, &s).await?))
}

#[derive(Deserialize)]
struct RecordNowBody {
    active: bool,
}

/// "Record now" on a live stream (kind: the stream's setting, original when it is off).
async fn set_recording(
    State(state): State<AppState>,
    _auth: Auth,
    Path(id): Path<i64>,
    Json(body): Json<RecordNowBody>,
) -> Result<Json<Value>, AppError> {
    let s = load_stream(&state, id).await?;
    if body.active && !state.engine.is_live(s.id) {
        return Err(AppError::new(ErrorKind::FailedPrecondition, "the stream is not live"));
    }
    if !body.active && s.record_mode != "off" {
        return Err(AppError::new(
            ErrorKind::FailedPrecondition,
            "this stream records every session; set its recording to off to stop",
        ));
    }
    state.engine.set_record_now(s.id, body.active).await?;
    Ok(Json(stream_json(&state, &s).await?))
}

async fn recording_json(state: &AppState, r: &db::RecordingRow) -> Value {
    let path = std::path::Path::new(&r.path);
    let active = state.engine.is_recording_file(path).await;
    let bytes = if active { tokio::fs::metadata(path).await.map_or(r.bytes, |m| m.len() as i64) } else { r.bytes };
    json!({
        "id": r.id,
        "stream_id": r.stream_id,
        "stream": r.stream_name,
        "kind": r.kind,
        "file": path.file_name().map(|n| n.to_string_lossy()),
        "started_at": r.started_at,
        "ended_at": r.ended_at,
        "bytes": bytes,
        "duration_ms": r.duration_ms,
        "recording": active,
        "download_url": format!("/api/recordings/{}/file", r.id),
    })
}

async fn list_recordings(State(state): State<AppState>, _auth: Auth) -> Result<Json<Value>, AppError> {
    let rows = db::list_recordings(&state.db).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(recording_json(&state, r).await);
    }
    Ok(Json(Value::Array(out)))
}

async fn delete_recording(
    State(state): State<AppState>,
    _auth: Auth,
    Path(id): Path<i64>,
) -> Result<StatusCode, AppError> {
    let r = db::recording(&state.db, id).await?.ok_or_else(|| AppError::not_found("recording"))?;
    let path = std::path::PathBuf::from(&r.path);
    if state.engine.is_recording_file(&path).await {
        return Err(AppError::new(
            ErrorKind::FailedPrecondition,
            "this file is being recorded; stop the recording first",
        ));
    }
    match tokio::fs::remove_file(&path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(AppError::internal(format!("cannot delete {}: {e}", path.display()))),
    }
    db::delete_recording(&state.db, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `bytes=A-B`, `bytes=A-`, `bytes=-N` against a file of `len` bytes → (first, last).
fn parse_range(header: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // several ranges: answer with the whole file
    }
    let (a, b) = spec.split_once('-')?;
    let range = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            if n == 0 || len == 0 {
                return Some(Err(()));
            }
            (len.saturating_sub(n), len - 1)
        }
        (a, "") => (a.parse().ok()?, len.saturating_sub(1)),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(len.saturating_sub(1))),
    };
    if range.0 >= len || range.0 > range.1 { Some(Err(())) } else { Some(Ok(range)) }
}

/// The file, with HTTP range requests (players seek, downloads resume).
async fn download_recording(
    State(state): State<AppState>,
    _auth: Auth,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let r = db::recording(&state.db, id).await?.ok_or_else(|| AppError::not_found("recording"))?;
    let mut file = tokio::fs::File::open(&r.path).await.map_err(|_| AppError::not_found("recording file"))?;
    let len = file.metadata().await.map_err(|e| AppError::internal(e.to_string()))?.len();
    let name = std::path::Path::new(&r.path).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let content_type = if name.ends_with(".mp4") { "video/mp4" } else { "application/octet-stream" };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(|h| parse_range(h, len));
    let (status, first, last) = match range {
        Some(Ok((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b),
        Some(Err(())) => {
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{len}"))])
                .into_response());
        }
        None => (StatusCode::OK, 0, len.saturating_sub(1)),
    };
    let count = if len == 0 { 0 } else { last - first + 1 };
    file.seek(std::io::SeekFrom::Start(first)).await.map_err(|e| AppError::internal(e.to_string()))?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file.take(count)));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{len}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    let disposition = format!("attachment; filename=\"{}\"", name.replace('"', "_"));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

async fn delete_stream(
    State(state): State<AppState>,
    _auth: Auth,
    Path(id): Path<i64>,
) -> Result<StatusCode, AppError> {
    if !db::delete_stream(&state.db, id).await? {
        return Err(AppError::not_found("stream"));
    }
    state.engine.close_stream(id).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct DestinationBody {
    name: Option<String>,
    url: Option<String>,
    enabled: Option<bool>,
    /// `source` (default) or a rung of the stream's ladder.
    rendition: Option<String>,
}

async fn create_destination(
    State(state): State<AppState>,
    _auth: Auth,
    Path(id): Path<i64>,
    Json(body): Json<DestinationBody>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let s = load_stream(&state, id).await?;
    let name = validate_name(body.name.as_deref().unwrap_or(""))?;
    let url = validate_url(body.url.as_deref().unwrap_or(""))?;
    let enabled = body.enabled.unwrap_or(true);
    let rendition = validate_rendition(&s, body.rendition.as_deref().unwrap_or(""))?;
    let did = db::create_destination(&state.db, s.id, &name, &url, enabled, &rendition).await?;
    state.engine.sync_stream(s.id).await?;
    let d = db::destination(&state.db, s.id, did).await?.ok_or_else(|| AppError::not_found("destination"))?;
    let st = state.engine.stream_state(s.id).await;
    Ok((StatusCode::CREATED, Json(destination_json(&d, st.destinations.get(&d.id)))))
}

async fn update_destination(
    State(state): State<AppState>,
    _auth: Auth,
    Path((id, did)): Path<(i64, i64)>,
    Json(body): Json<DestinationBody>,
) -> Result<Json<Value>, AppError> {
    let mut d = db::destination(&state.db, id, did).await?.ok_or_else(|| AppError::not_found("destination"))?;
    if let Some(name) = &body.name {
        d.name = validate_name(name)?;
    }
    if let Some(url) = &body.url {
        d.url = validate_url(url)?;
    }
    if let Some(enabled) = body.enabled {
        d.enabled = enabled;
    }
    if let Some(r) = &body.rendition {
        let s = load_stream(&state, id).await?;
        d.rendition = validate_rendition(&s, r)?;
    }
    db::update_destination(&state.db, &d).await?;
    state.engine.sync_stream(id).await?;
    let st = state.engine.stream_state(id).await;
    Ok(Json(destination_json(&d, st.destinations.get(&d.id))))
}

async fn delete_destination(
    State(state): State<AppState>,
    _auth: Auth,
    Path((id, did)): Path<(i64, i64)>,
) -> Result<StatusCode, AppError> {
    if !db::delete_destination(&state.db, id, did).await? {
        return Err(AppError::not_found("destination"));
    }
    state.engine.sync_stream(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn sample_json(s: &SystemSample) -> Value {
    json!({
        "unix_ms": s.unix_ms,
        "cpu": { "total_percent": s.cpu.total_percent, "per_core_percent": s.cpu.per_core_percent, "load_average_1m": s.cpu.load_average_1m },
        "memory": { "total_bytes": s.memory.total_bytes, "used_bytes": s.memory.used_bytes, "available_bytes": s.memory.available_bytes },
        "disks": s.disks.iter().map(|d| json!({
            "name": d.name, "mount_point": d.mount_point, "read_bytes_per_s": d.read_bytes_per_s,
            "write_bytes_per_s": d.write_bytes_per_s, "total_space_bytes": d.total_space_bytes,
            "available_space_bytes": d.available_space_bytes })).collect::<Vec<_>>(),
        "networks": s.networks.iter().map(|n| json!({
            "interface": n.interface, "rx_bytes_per_s": n.rx_bytes_per_s, "tx_bytes_per_s": n.tx_bytes_per_s })).collect::<Vec<_>>(),
        "gpus": s.gpus.iter().map(|g| json!({
            "index": g.index, "name": g.name, "utilization_percent": g.utilization_percent,
            "memory_used_bytes": g.memory_used_bytes, "memory_total_bytes": g.memory_total_bytes,
            "encoder_percent": g.encoder_percent, "decoder_percent": g.decoder_percent })).collect::<Vec<_>>(),
        "gpu_status": s.gpu_status,
    })
}

async fn system(State(state): State<AppState>, _auth: Auth) -> Json<Value> {
    Json(sample_json(&state.monitor.latest()))
}

async fn system_history(State(state): State<AppState>, _auth: Auth) -> Json<Value> {
    Json(Value::Array(state.monitor.history().iter().map(|s| sample_json(s)).collect()))
}

/// A live feed of load samples (one per second) as server-sent events.
async fn system_live(
    State(state): State<AppState>,
    _auth: Auth,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    use futures_util::StreamExt;
    let rx = state.monitor.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let sample = rx.borrow_and_update().clone();
        let ev = Event::default().event("sample").data(sample_json(&sample).to_string());
        Some((Ok(ev), rx))
    })
    // The feed ends at shutdown, or the server would wait for every open dashboard.
    .take_until(state.shutdown.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let dests = state.engine.all_destination_stats().await;
    let mut out = String::new();
    let mut push = |name: &str, help: &str, kind: &str, lines: Vec<(String, String)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in lines {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    push(
        "multistreamer_streams_live",
        "Streams with a publisher or in their grace period.",
        "gauge",
        vec![(String::new(), state.engine.live_stream_count().to_string())],
    );
    let states = ["connecting", "live", "retrying", "stopped", "failed"];
    push(
        "multistreamer_destinations",
        "Running destinations by state.",
        "gauge",
        states
            .iter()
            .map(|st| {
                (format!("{{state=\"{st}\"}}"), dests.iter().filter(|d| d.state.as_str() == *st).count().to_string())
            })
            .collect(),
    );
    push(
        "multistreamer_bytes_in",
        "Bytes received from publishers of live streams.",
        "gauge",
        vec![(String::new(), state.engine.bytes_in_total().to_string())],
    );
    push(
        "multistreamer_bytes_out",
        "Bytes sent by running destinations.",
        "gauge",
        vec![(String::new(), dests.iter().map(|d| d.bytes_sent).sum::<u64>().to_string())],
    );
    push(
        "multistreamer_reconnects",
        "Reconnections of running destinations.",
        "gauge",
        vec![(String::new(), dests.iter().map(|d| d.reconnects).sum::<u64>().to_string())],
    );
    push(
        "multistreamer_dropped_packets",
        "Packets dropped for slow running destinations.",
        "gauge",
        vec![(String::new(), dests.iter().map(|d| d.dropped).sum::<u64>().to_string())],
    );
    let s = state.monitor.latest();
    push(
        "multistreamer_cpu_percent",
        "Machine CPU use.",
        "gauge",
        vec![(String::new(), format!("{:.1}", s.cpu.total_percent))],
    );
    push(
        "multistreamer_memory_used_bytes",
        "Machine memory in use.",
        "gauge",
        vec![(String::new(), s.memory.used_bytes.to_string())],
    );
    push(
        "multistreamer_network_rx_bytes_per_second",
        "Received bytes per second by interface.",
        "gauge",
        s.networks
            .iter()
            .map(|n| (format!("{{interface=\"{}\"}}", n.interface), format!("{:.0}", n.rx_bytes_per_s)))
            .collect(),
    );
    push(
        "multistreamer_network_tx_bytes_per_second",
        "Sent bytes per second by interface.",
        "gauge",
        s.networks
            .iter()
            .map(|n| (format!("{{interface=\"{}\"}}", n.interface), format!("{:.0}", n.tx_bytes_per_s)))
            .collect(),
    );
    push(
        "multistreamer_gpu_utilization_percent",
        "GPU use by device.",
        "gauge",
        s.gpus.iter().map(|g| (format!("{{gpu=\"{}\"}}", g.index), g.utilization_percent.to_string())).collect(),
    );
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    (headers, out).into_response()
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn byte_ranges_are_parsed_against_the_file_length() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some(Ok((0, 99))));
        assert_eq!(parse_range("bytes=900-", 1000), Some(Ok((900, 999))));
        assert_eq!(parse_range("bytes=-100", 1000), Some(Ok((900, 999))));
        assert_eq!(parse_range("bytes=990-2000", 1000), Some(Ok((990, 999))), "clamped to the end");
        assert_eq!(parse_range("bytes=1000-", 1000), Some(Err(())), "starts past the end");
        assert_eq!(parse_range("bytes=5-1", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=-0", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None, "several ranges: the whole file");
        assert_eq!(parse_range("items=0-1", 1000), None);
        assert_eq!(parse_range("bytes=x-y", 1000), None);
    }
}
