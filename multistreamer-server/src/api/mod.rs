//! The HTTP API under `/api/`, plus `/healthz` and `/metrics`: one module per resource.

mod captures;
mod extract;
mod forward;
mod hls;
mod platforms;
mod recordings;
mod session;
mod streams;
mod system;
pub(crate) mod views;
mod whip;

pub use self::captures::{Fetches, Renders};
pub use self::hls::TokenMap;
pub(crate) use self::streams::validate_rendition;

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
    pub(crate) use multistreamer_core::destination::DestinationUrl;
    pub(crate) use multistreamer_core::ladder::Ladder;
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
        .route("/js/{file}", get(script))
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
        .route("/whip/{key}", post(whip::offer))
        .route("/whip/session/{id}", axum::routing::delete(whip::stop).patch(whip::patch))
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
        .route("/api/platforms", get(platforms::list_platforms))
        .route("/api/platforms/mtslink", post(platforms::connect_mtslink))
        .route("/api/platforms/youtube/client", get(platforms::get_oauth_client).put(platforms::set_oauth_client))
        .route("/api/platforms/youtube/device", post(platforms::start_device_flow))
        .route("/api/platforms/youtube/device/{flow_id}", get(platforms::device_flow_state))
        .route("/api/platforms/youtube/authorize", get(platforms::authorize))
        .route("/oauth/youtube/callback", get(platforms::oauth_callback))
        .route("/api/platforms/{id}", axum::routing::delete(platforms::disconnect))
        .route("/api/platforms/{id}/upcoming", get(platforms::upcoming))
        .route("/api/streams/{id}/broadcasts", get(platforms::list_broadcasts).post(platforms::create_broadcast))
        .route(
            "/api/broadcasts/{id}",
            get(platforms::get_broadcast).patch(platforms::update_broadcast).delete(platforms::delete_broadcast),
        )
        .route("/api/broadcasts/{id}/transition", post(platforms::transition))
        .route("/api/broadcasts/{id}/chat-capture", post(captures::capture_chat_after))
        .route("/api/streams/{id}/captures", get(captures::list_captures).post(captures::start_capture))
        .route("/api/captures/{id}", get(captures::get_capture).delete(captures::delete_capture))
        .route("/api/captures/{id}/stop", post(captures::stop_capture))
        .route("/api/captures/{id}/render", post(captures::render_capture))
        .route("/api/captures/{id}/files/{name}", get(captures::capture_file))
        .route("/api/recordings", get(recordings::list_recordings))
        .route("/api/recordings/{id}", axum::routing::delete(recordings::delete_recording))
        .route("/api/recordings/{id}/file", get(recordings::download_recording))
        .route("/api/system", get(system::system))
        .route("/api/system/history", get(system::system_history))
        .route("/api/system/live", get(system::system_live))
        .route("/api/nodes", get(system::nodes))
        .layer(axum::extract::DefaultBodyLimit::max(extract::MAX_BODY))
        .with_state(state)
}

async fn index() -> Html<&'static str> {
    Html(include_str!("../../assets/index.html"))
}

/// The web UI's modules (`assets/js/`), embedded in the binary.
const SCRIPTS: &[(&str, &str)] = &[
    ("api.js", include_str!("../../assets/js/api.js")),
    ("broadcasts.js", include_str!("../../assets/js/broadcasts.js")),
    ("captures.js", include_str!("../../assets/js/captures.js")),
    ("charts.js", include_str!("../../assets/js/charts.js")),
    ("dashboard.js", include_str!("../../assets/js/dashboard.js")),
    ("dom.js", include_str!("../../assets/js/dom.js")),
    ("golive.js", include_str!("../../assets/js/golive.js")),
    ("login.js", include_str!("../../assets/js/login.js")),
    ("main.js", include_str!("../../assets/js/main.js")),
    ("page.js", include_str!("../../assets/js/page.js")),
    ("platforms.js", include_str!("../../assets/js/platforms.js")),
    ("preview.js", include_str!("../../assets/js/preview.js")),
    ("recordings.js", include_str!("../../assets/js/recordings.js")),
    ("settings.js", include_str!("../../assets/js/settings.js")),
    ("stream.js", include_str!("../../assets/js/stream.js")),
];

async fn script(axum::extract::Path(file): axum::extract::Path<String>) -> axum::response::Response {
    match SCRIPTS.iter().find(|(name, _)| *name == file) {
        Some((_, body)) => ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], *body).into_response(),
        None => AppError::not_found("script").into_response(),
    }
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("../../assets/openapi.json"))
}

pub(crate) fn header_value(s: &str) -> Result<HeaderValue, AppError> {
    HeaderValue::from_str(s).map_err(|e| AppError::internal(format!("header: {e}")))
}

#[cfg(test)]
mod tests {
    use super::SCRIPTS;

    /// Every module under `assets/js/` is served, and every module a module imports exists.
    #[test]
    fn every_ui_module_is_served_and_every_import_resolves() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/js");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("assets/js")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".js"))
            .collect();
        on_disk.sort();
        let served: Vec<&str> = SCRIPTS.iter().map(|(n, _)| *n).collect();
        assert_eq!(on_disk, served, "SCRIPTS lists the files of assets/js, sorted");
        for (name, body) in SCRIPTS {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let target = line.rsplit("from \"./").next().and_then(|r| r.strip_suffix("\";"));
                let target = target.unwrap_or_else(|| panic!("{name}: unreadable import {line:?}"));
                assert!(served.contains(&target), "{name} imports {target}, which is not served");
            }
        }
    }
}
