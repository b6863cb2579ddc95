//! Asking the node that has it, when several nodes share one database: a live stream's HLS
//! is made where the stream runs, a recording's or a capture's files are on the disk of the
//! node that wrote them. The request goes there with its cookie (the session is in the
//! shared database, so the same rules apply) and the answer comes back as it is.

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::Response;

use crate::error::{AppError, ErrorKind};

/// Marks a forwarded request: the node it reaches answers from what it has, and never
/// forwards it again.
const FORWARDED: &str = "x-multistreamer-forwarded";

/// Request headers that go along: the session, its CSRF token, ranges and conditions.
const REQUEST_HEADERS: &[&str] = &["cookie", "x-csrf-token", "range", "if-range", "if-none-match", "if-modified-since"];

/// Response headers that come back.
const RESPONSE_HEADERS: &[header::HeaderName] = &[
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_RANGE,
    header::ACCEPT_RANGES,
    header::CACHE_CONTROL,
    header::ETAG,
    header::LAST_MODIFIED,
    header::CONTENT_DISPOSITION,
    header::RETRY_AFTER,
];

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

/// Whether this request came from another node.
pub(super) fn was_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED)
}

/// Sends the request to the node at `base` (`http://HOST:PORT`) and answers with its answer.
pub(super) async fn forward(base: &str, method: Method, uri: &Uri, headers: &HeaderMap) -> Result<Response, AppError> {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let mut request = client().request(method, format!("{base}{path}")).header(FORWARDED, "1");
    for name in REQUEST_HEADERS {
        if let Some(v) = headers.get(*name) {
            request = request.header(*name, v);
        }
    }
    let answer = request.send().await.map_err(|e| {
        tracing::warn!(node = base, error = %e, "the node holding it did not answer");
        AppError::new(ErrorKind::Unavailable, format!("the node that has it ({base}) does not answer"))
    })?;
    let mut out = Response::builder().status(answer.status());
    for name in RESPONSE_HEADERS {
        if let Some(v) = answer.headers().get(name) {
            out = out.header(name, v);
        }
    }
    out.body(Body::from_stream(answer.bytes_stream())).map_err(|e| AppError::internal(format!("forwarded answer: {e}")))
}
