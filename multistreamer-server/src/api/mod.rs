//! The HTTP API under `/api/`, plus `/healthz` and `/metrics`: one module per resource.

mod extract;
mod hls;
mod recordings;
mod session;
mod streams;
mod system;
mod views;

pub use self::hls::TokenMap;

/// What every resource module uses.
pub(crate) mod prelude {
    pub(crate) use std::convert::Infallible;
    pub(crate) use std::net::SocketAddr;
    pub(crate) use std::time::Duration;

    pub(crate) use axum::Json;
    pub(crate) use axum::extract::{ConnectInfo, State};
    pub(crate) use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
    pub(crate) use axum::response::sse::{Event, KeepAlive, Sse};
    pub(crate) use axum::response::{IntoResponse, Response};
    pub(crate) use multistreamer_core::destination::DestinationSnapshot;
    pub(crate) use multistreamer_core::ladder::Ladder;
    pub(crate) use multistreamer_core::rtmp::RtmpUrl;
    pub(crate) use multistreamer_core::source::InputUrl;
    pub(crate) use serde::Deserialize;

    pub(crate) use super::extract::{ApiJson, ApiPath};
    pub(crate) use super::header_value;
    pub(crate) use super::hls::hls_token;
    pub(crate) use super::views::*;
    pub(crate) use crate::AppState;
    pub(crate) use crate::auth::{self, Auth, COOKIE, SESSION_TTL_S};
    pub(crate) use crate::db::{self, DestinationRow, StreamRow};
    pub(crate) use crate::engine::RecordMode;
    pub(crate) use crate::error::{AppError, ErrorKind};
}

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};

use crate::AppState;
use crate::error::AppError;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/app.js",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../assets/app.js"))
            }),
        )
        .route(
            "/app.css",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../assets/app.css"))
            }),
        )
        .route(
            "/vendor/hls.light.min.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "max-age=86400"),
                    ],
                    include_str!("../../assets/vendor/hls.light.min.js"),
                )
            }),
        )
        .route("/hls/{id}/index.m3u8", get(hls::hls_master))
        .route("/hls/{id}/{variant}/{file}", get(hls::hls_file))
        .route("/play/{token}/index.m3u8", get(hls::play_master))
        .route("/play/{token}/{variant}/{file}", get(hls::play_file))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(system::metrics))
        .route("/api/openapi.json", get(openapi))
        .route("/api/login", post(session::login))
        .route("/api/logout", post(session::logout))
        .route("/api/me", get(session::me))
        .route("/api/password", post(session::change_password))
        .route("/api/streams", get(streams::list_streams).post(streams::create_stream))
        .route(
            "/api/streams/{id}",
            get(streams::get_stream).patch(streams::update_stream).delete(streams::delete_stream),
        )
        .route("/api/streams/{id}/destinations", post(streams::create_destination))
        .route(
            "/api/streams/{id}/destinations/{did}",
            axum::routing::patch(streams::update_destination).delete(streams::delete_destination),
        )
        .route("/api/streams/{id}/recording", post(streams::set_recording))
        .route("/api/streams/{id}/live", get(streams::stream_live))
        .route("/api/recordings", get(recordings::list_recordings))
        .route("/api/recordings/{id}", axum::routing::delete(recordings::delete_recording))
        .route("/api/recordings/{id}/file", get(recordings::download_recording))
        .route("/api/system", get(system::system))
        .route("/api/system/history", get(system::system_history))
        .route("/api/system/live", get(system::system_live))
        .with_state(state)
}

async fn index() -> Html<&'static str> {
    Html(include_str!("../../assets/index.html"))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("../../assets/openapi.json"))
}

pub(crate) fn header_value(s: &str) -> Result<HeaderValue, AppError> {
    HeaderValue::from_str(s).map_err(|e| AppError::internal(format!("header: {e}")))
}
