//! A capture built after the fact, from a platform: an MTS Link session's whole chat, read
//! once through the API, written as the same `chat.jsonl` and `capture.json` a live capture
//! writes (no presenter video: the page was not watched). YouTube's chat cannot be read
//! whole after the fact through its API; it has to be captured live.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::chat::{ChatLine, ChatLog, ChatSource};
use super::manifest::{Counters, Files, Manifest, VERSION};
use super::run::CaptureError;
use crate::clock;
use crate::platform::MtsLinkClient;

/// Builds `dir` from MTS Link session `session_id`'s chat; the capture starts at its first
/// message. Returns the manifest written.
pub async fn from_mtslink_session(
    client: &MtsLinkClient,
    session_id: u64,
    dir: &Path,
    name: &str,
) -> Result<Manifest, CaptureError> {
    let messages =
        client.chat(session_id, 1000).await.map_err(|e| CaptureError::Page(format!("MTS Link chat: {e}")))?;
    std::fs::create_dir_all(dir)?;
    let times: Vec<Option<i64>> = messages.iter().map(|m| clock::parse_rfc3339_millis(&m.create_at)).collect();
    let start_ms = times
        .iter()
        .flatten()
        .min()
        .copied()
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64));
    let started = UNIX_EPOCH + Duration::from_millis(start_ms.max(0) as u64);
    let mut chat = ChatLog::open(&dir.join("chat.jsonl"), true, false)?;
    let now = std::time::Instant::now();
    let mut order: Vec<usize> = (0..messages.len()).collect();
    order.sort_by_key(|&i| (times[i].unwrap_or(start_ms), messages[i].id));
    for i in order {
        let m = &messages[i];
        let t_ms = (times[i].unwrap_or(start_ms) - start_ms).max(0) as u64;
        chat.push(
            ChatLine {
                t_ms,
                at: clock::rfc3339_millis(started + Duration::from_millis(t_ms)),
                id: m.id.to_string(),
                author: m.author_name.clone(),
                text: m.text.clone(),
                source: ChatSource::Mtslink,
                kind: if m.is_deleted { "deleted" } else { "message" }.into(),
                target: None,
                src_time: Some(m.create_at.clone()),
            },
            now,
        )?;
    }
    chat.finish()?;
    let manifest = Manifest {
        version: VERSION,
        name: name.to_string(),
        url: format!("mtslink:session/{session_id}"),
        profile: "mtslink".into(),
        started_at: clock::rfc3339_millis(started),
        ended_at: Some(clock::rfc3339_millis(SystemTime::now())),
        files: Files { chat: "chat.jsonl".into(), presenter: None },
        chat_sources: vec![format!("mtslink:{session_id}")],
        counters: Counters { chat_messages: chat.written(), page_loads: 0, ..Counters::default() },
        ..Manifest::default()
    };
    manifest.save(dir)?;
    Ok(manifest)
}
