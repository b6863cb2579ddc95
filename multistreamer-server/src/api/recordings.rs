//! Recordings: list, ranged download, delete.

#[allow(unused_imports)]
use super::prelude::*;

pub(super) async fn recording_view(state: &AppState, r: &db::RecordingRow) -> RecordingView {
    let path = std::path::Path::new(&r.path);
    let active = state.engine.is_recording_file(path).await;
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
pub(super) async fn download_recording(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
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
