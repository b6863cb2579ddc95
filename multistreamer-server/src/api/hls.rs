//! HLS of every stream behind the session (`/hls/…`) and by playback token (`/play/…`).

#[allow(unused_imports)]
use super::prelude::*;

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

/// Playback token → stream id, built from the database on first use and dropped whenever
/// a stream is created, deleted or gets a new key: a segment request is one map lookup.
#[derive(Debug, Default)]
pub struct TokenMap {
    map: std::sync::Mutex<Option<std::collections::HashMap<String, i64>>>,
}

impl TokenMap {
    /// Forgets the map (a key changed); the next lookup rebuilds it.
    pub fn invalidate(&self) {
        *crate::sync::lock(&self.map) = None;
    }

    async fn lookup(&self, db: &db::Db, token: &str) -> Result<Option<i64>, AppError> {
        if let Some(map) = crate::sync::lock(&self.map).as_ref() {
            return Ok(map.get(token).copied());
        }
        let built: std::collections::HashMap<String, i64> =
            db::list_streams(db).await?.iter().map(|s| (hls_token(&s.ingest_key), s.id)).collect();
        let id = built.get(token).copied();
        *crate::sync::lock(&self.map) = Some(built);
        Ok(id)
    }
}

/// The stream whose playback token is `token`.
async fn stream_of_token(state: &AppState, token: &str) -> Result<i64, AppError> {
    if token.len() != 32 {
        return Err(AppError::not_found("stream"));
    }
    state.tokens.lookup(&state.db, token).await?.ok_or_else(|| AppError::not_found("stream"))
}

/// `/play/{token}/index.m3u8`: the master playlist for players without a session.
pub(super) async fn play_master(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let id = stream_of_token(&state, &token).await?;
    or_owner(&state, id, &uri, &headers, master_response(&state, id)).await
}

/// `/play/{token}/{variant}/{file}`: media playlists and segments for players without a session.
pub(super) async fn play_file(
    State(state): State<AppState>,
    ApiPath((token, variant, file)): ApiPath<(String, String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let id = stream_of_token(&state, &token).await?;
    or_owner(&state, id, &uri, &headers, file_response(&state, id, &variant, &file)).await
}

/// The master playlist of a stream: the source and each rendition with segments.
pub(super) async fn hls_master(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    or_owner(&state, id, &uri, &headers, master_response(&state, id)).await
}

/// `local`, unless the stream has no HLS here and another node runs it: then that node's
/// answer to the same request.
async fn or_owner(
    state: &AppState,
    id: i64,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    local: Result<Response, AppError>,
) -> Result<Response, AppError> {
    match local {
        Err(e) if e.kind == ErrorKind::NotFound && !super::forward::was_forwarded(headers) => {
            match state.engine.cluster() {
                Some(c) => match c.remote_lease(id).await? {
                    Some(lease) if !lease.http_url.is_empty() => {
                        super::forward::forward(&lease.http_url, axum::http::Method::GET, uri, headers).await
                    }
                    _ => Err(e),
                },
                None => Err(e),
            }
        }
        other => other,
    }
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
pub(super) async fn hls_file(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath((id, variant, file)): ApiPath<(i64, String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    or_owner(&state, id, &uri, &headers, file_response(&state, id, &variant, &file)).await
}

fn file_response(state: &AppState, id: i64, variant: &str, file: &str) -> Result<Response, AppError> {
    let source = crate::engine::hub_name(id);
    if file == "index.m3u8" {
        let text =
            state.engine.hls.media_playlist(&source, variant).ok_or_else(|| AppError::not_found("HLS variant"))?;
        return Ok(([(header::CONTENT_TYPE, M3U8), (header::CACHE_CONTROL, "no-cache")], text).into_response());
    }
    let data = state.engine.hls.segment(&source, variant, file).ok_or_else(|| AppError::not_found("HLS segment"))?;
    let kind = if file.ends_with(".ts") { "video/mp2t" } else { "video/mp4" };
    Ok(([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "max-age=60")], data).into_response())
}
