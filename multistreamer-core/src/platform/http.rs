//! The HTTP client the platform clients share: rustls, bounded bodies, timeouts.

use std::time::Duration;

use bytes::Bytes;

/// Platform answers larger than this are refused (a broadcast list is a few KB).
pub(crate) const MAX_BODY: usize = 4 << 20;

fn builder(connect_timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("multistreamer/", env!("CARGO_PKG_VERSION")))
}

pub(crate) fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    builder(timeout).timeout(timeout).build()
}

/// For large downloads: no overall timeout (a long webinar is gigabytes), only a bound on
/// each read, so a stalled transfer still ends.
pub(crate) fn download_client(connect_timeout: Duration, read_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    builder(connect_timeout).read_timeout(read_timeout).build()
}

/// A response's status and its body, read up to [`MAX_BODY`].
pub(crate) async fn read(mut resp: reqwest::Response) -> Result<(u16, Bytes), String> {
    let status = resp.status().as_u16();
    if resp.content_length().is_some_and(|l| l > MAX_BODY as u64) {
        return Err(format!("an answer of {} bytes", resp.content_length().unwrap_or(0)));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(format!("an answer larger than {} KiB", MAX_BODY >> 10));
        }
    }
    Ok((status, Bytes::from(body)))
}

/// The start of a body, for error messages (never a whole answer, which may hold tokens).
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
    text.chars().filter(|c| !c.is_control()).collect()
}
