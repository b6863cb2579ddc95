//! WHIP (RFC 9725): `POST /whip/{key}` with an SDP offer answers `201 Created` with the SDP
//! answer and the session's `Location`; `DELETE` on that location ends the session.
//!
//! The stream key is the Bearer token (`POST /whip/APP`, `Authorization: Bearer KEY`, what
//! OBS sends), or the last path segment for clients that cannot set a token. These routes
//! take no session cookie, so they need no CSRF token: the key authorizes them.

#[allow(unused_imports)]
use super::prelude::*;
use multistreamer_core::whip::{WhipError, WhipRequest};

/// `POST /whip/{key}`.
pub(super) async fn offer(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiPath(segment): ApiPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    let whip = state
        .engine
        .whip
        .clone()
        .ok_or_else(|| AppError::new(ErrorKind::Unavailable, "the WHIP ingest is not running on this server"))?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.trim().to_ascii_lowercase().starts_with("application/sdp") {
        return Err(AppError::new(ErrorKind::UnsupportedMediaType, "a WHIP offer is sent as application/sdp"));
    }
    let key = stream_key(&state, &segment, &headers)?;
    let offer =
        std::str::from_utf8(&body).map_err(|_| AppError::new(ErrorKind::BadRequest, "the offer is not UTF-8 text"))?;
    let answer = whip.publish(WhipRequest { peer, key: &key, offer }).await.map_err(|e| {
        let kind = match &e {
            WhipError::BadOffer(_) => ErrorKind::BadRequest,
            WhipError::Unauthorized(_) => ErrorKind::Unauthenticated,
            WhipError::Conflict => ErrorKind::FailedPrecondition,
            WhipError::Busy(_) => ErrorKind::Unavailable,
            WhipError::Internal(_) => ErrorKind::Internal,
        };
        AppError::new(kind, e.to_string())
    })?;
    let location = format!("/whip/session/{}", answer.session);
    Ok((
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, header_value("application/sdp")?), (header::LOCATION, header_value(&location)?)],
        answer.sdp,
    )
        .into_response())
}

/// The key: the Bearer token, or the path segment when there is no token. A token beside a
/// segment that is neither the application nor the same key is refused.
fn stream_key(state: &AppState, segment: &str, headers: &HeaderMap) -> Result<String, AppError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    match bearer {
        Some(token) if segment == state.app.as_str() || segment == token => Ok(token.to_string()),
        Some(_) => Err(AppError::new(ErrorKind::Unauthenticated, "the Bearer token and the key in the URL differ")),
        None if segment == state.app.as_str() => {
            Err(AppError::new(ErrorKind::Unauthenticated, "no stream key: send it as the Bearer token"))
        }
        None => Ok(segment.to_string()),
    }
}

/// `DELETE /whip/session/{id}`: the publisher leaves.
pub(super) async fn stop(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Response, AppError> {
    let stopped = state.engine.whip.as_ref().is_some_and(|w| w.stop(&id));
    if !stopped {
        return Err(AppError::not_found("WHIP session"));
    }
    Ok(StatusCode::OK.into_response())
}

/// `PATCH /whip/session/{id}`: trickle ICE and ICE restarts are not offered (the answer
/// carries every candidate), as RFC 9725 allows.
pub(super) async fn patch() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "DELETE")]).into_response()
}
