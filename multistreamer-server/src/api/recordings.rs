//! Recordings: list, ranged download, delete.

#[allow(unused_imports)]
use super::prelude::*;

/// The node whose disk holds the file, when it is another node (several nodes on one
/// database): where it answers.
pub(super) async fn elsewhere(state: &AppState, node_id: &str) -> Result<Option<String>, AppError> {
    match state.engine.cluster() {
        Some(c) if !node_id.is_empty() && node_id != c.node_id => match c.node_url(node_id).await? {
            Some(url) => Ok(Some(url)),
            None => {
                Err(AppError::new(ErrorKind::Unavailable, format!("node {node_id}, which has the file, is unknown")))
            }
        },
        _ => Ok(None),
    }
}

pub(super) async fn recording_view(state: &AppState, r: &db::RecordingRow) -> RecordingView {
    let path = std::path::Path::new(&r.path);
    let here = r.node_id.is_empty() || r.node_id == db::node_id();
    // another node's file is being written while its row is open
    let active = if here { state.engine.is_recording_file(path).await } else { r.ended_at.is_none() };
    let bytes = if active { tokio::fs::metadata(path).await.map_or(r.bytes, |m| m.len() as i64) } else { r.bytes };
    RecordingView {
        id: r.id,
        stream_id: r.stream_id,
        stream: r.stream_name.clone(),
        kind: r.kind.clone(),
        file: path.file_name().map(|n| n.to_string_lossy().to_string()),
        started_at: r.started_at,
        ended_at: r.ended_at,
        bytes,
        duration_ms: r.duration_ms,
        recording: active,
        download_url: format!("/api/recordings/{}/file", r.id),
    }
}

pub(super) async fn list_recordings(
    State(state): State<AppState>,
    _auth: Auth,
) -> Result<Json<Vec<RecordingView>>, AppError> {
    let rows = db::list_recordings(&state.db).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(recording_view(&state, r).await);
    }
    Ok(Json(out))
}

pub(super) async fn delete_recording(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let r = db::recording(&state.db, id).await?.ok_or_else(|| AppError::not_found("recording"))?;
    if let Some(base) = elsewhere(&state, &r.node_id).await?.filter(|_| !super::forward::was_forwarded(&headers)) {
        // the file goes with its row, on the node that has it
        return super::forward::forward(&base, axum::http::Method::DELETE, &uri, &headers).await;
    }
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
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The file, with HTTP range requests (players seek, downloads resume), `If-Range`,
/// conditional GETs and `HEAD`, served by tower-http's `ServeFile`.
pub(super) async fn download_recording(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
    request: axum::extract::Request,
) -> Result<Response, AppError> {
    use tower::ServiceExt;
    let r = db::recording(&state.db, id).await?.ok_or_else(|| AppError::not_found("recording"))?;
    if !super::forward::was_forwarded(request.headers())
        && let Some(base) = elsewhere(&state, &r.node_id).await?
    {
        let method = request.method().clone();
        return super::forward::forward(&base, method, request.uri(), request.headers()).await;
    }
    let path = std::path::Path::new(&r.path);
    if !tokio::fs::try_exists(path).await.unwrap_or(false) {
        return Err(AppError::not_found("recording file"));
    }
    let mime = if r.path.ends_with(".mp4") { "video/mp4" } else { "application/octet-stream" };
    let mime = mime.parse().map_err(|_| AppError::internal("content type"))?;
    let served = tower_http::services::ServeFile::new_with_mime(path, &mime)
        .oneshot(request)
        .await
        .map_err(|e| AppError::internal(format!("serving {}: {e}", r.path)))?;
    if served.status() == StatusCode::NOT_FOUND {
        return Err(AppError::not_found("recording file"));
    }
    let mut response = served.map(axum::body::Body::new);
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let disposition = format!("attachment; filename=\"{}\"", name.replace('"', "_"));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
