//! `capture.json`: what a capture is (page, profile, selectors, viewport, files) and what
//! happened (start and end, gaps, counters, the presenter's rectangle over time). Rewritten
//! whole and atomically (a temporary file renamed over it), so it is always readable.
//! The format is documented in `docs/reference/capture-format.md`.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The schema version this code writes.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// An operator's label for the capture.
    #[serde(default)]
    pub name: String,
    /// The page, with the values of its query masked (guest links carry tokens there).
    pub url: String,
    /// `generic`, `mtslink` or `youtube`.
    pub profile: String,
    pub selectors: Selectors,
    /// RFC 3339 UTC with milliseconds.
    pub started_at: String,
    #[serde(default)]
    pub ended_at: Option<String>,
    /// The browser window (CSS pixels at scale 1).
    pub viewport: (u32, u32),
    pub files: Files,
    /// Platform chat sources used besides the page (`mtslink:SESSION`, `youtube:LIVECHATID`).
    #[serde(default)]
    pub chat_sources: Vec<String>,
    /// Stretches where the capture saw nothing (a reload, a browser restart).
    #[serde(default)]
    pub gaps: Vec<Gap>,
    /// The presenter element's rectangle (screen pixels) each time it changed.
    #[serde(default)]
    pub presenter_rects: Vec<RectAt>,
    /// When the presenter video's first frame was taken (ms since the start): the video's
    /// own timeline starts there.
    #[serde(default)]
    pub presenter_start_ms: Option<u64>,
    pub counters: Counters,
    /// Why the capture stopped, when it stopped on an error.
    #[serde(default)]
    pub error: Option<String>,
}

/// The CSS selectors in use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selectors {
    pub chat_container: String,
    /// Empty: the container's direct children are the messages.
    pub chat_item: String,
    pub chat_author: String,
    pub chat_text: String,
    /// The attribute holding a message's id (empty: ids are derived from author and text).
    #[serde(default)]
    pub chat_id_attribute: String,
    /// Empty: the whole viewport.
    pub presenter: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Files {
    pub chat: String,
    /// Absent when the presenter is not captured.
    #[serde(default)]
    pub presenter: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// Milliseconds since the start, like `t_ms` in the chat.
    pub from_ms: u64,
    pub to_ms: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RectAt {
    pub t_ms: u64,
    pub x: i32,
    pub y: i32,
    pub w: u32,
    pub h: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub chat_messages: u64,
    pub presenter_frames: u64,
    /// Frames per second over the capture.
    pub presenter_fps: f64,
    pub page_loads: u64,
    pub browser_restarts: u64,
    pub duration_ms: u64,
    /// From the page adding a chat item to the capture receiving it.
    #[serde(default)]
    pub chat_latency_p50_ms: Option<u64>,
    #[serde(default)]
    pub chat_latency_p95_ms: Option<u64>,
}

impl Manifest {
    /// Writes `dir/capture.json` atomically (a killed writer leaves the previous version);
    /// `durable`: synced to the disk first as well.
    pub fn save_with(&self, dir: &Path, durable: bool) -> io::Result<()> {
        let tmp = dir.join("capture.json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        std::fs::write(&tmp, text)?;
        if durable {
            std::fs::File::open(&tmp)?.sync_all()?;
        }
        std::fs::rename(&tmp, dir.join("capture.json"))
    }

    /// Writes `dir/capture.json` atomically and durably.
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        self.save_with(dir, true)
    }

    pub fn load(dir: &Path) -> io::Result<Manifest> {
        let text = std::fs::read(dir.join("capture.json"))?;
        serde_json::from_slice(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// `url` with the values of its query and its password masked.
pub fn mask_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else { return "<invalid URL>".into() };
    if u.password().is_some() {
        let _ = u.set_password(Some("****"));
    }
    let pairs: Vec<(String, String)> = u.query_pairs().map(|(k, _)| (k.into_owned(), "****".into())).collect();
    if pairs.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.set_fragment(None);
    u.into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn guest_link_tokens_are_masked() {
        assert_eq!(
            mask_url("https://my.mts-link.ru/j/123/456?token=abc&name=x#frag"),
            "https://my.mts-link.ru/j/123/456?token=****&name=****"
        );
        assert_eq!(mask_url("http://u:secret@127.0.0.1:8/room"), "http://u:****@127.0.0.1:8/room");
    }

    #[test]
    fn the_manifest_round_trips_atomically() {
        let dir = std::env::temp_dir().join(format!("ms-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let m = Manifest {
            version: VERSION,
            url: "http://x/".into(),
            profile: "generic".into(),
            viewport: (1280, 720),
            gaps: vec![Gap { from_ms: 1, to_ms: 2, reason: "page reload".into() }],
            ..Manifest::default()
        };
        m.save(&dir).unwrap();
        assert_eq!(Manifest::load(&dir).unwrap(), m);
        assert!(!dir.join("capture.json.tmp").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
