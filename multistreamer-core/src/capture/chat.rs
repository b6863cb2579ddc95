//! The chat of a capture: `chat.jsonl`, one JSON object per line, written as each message
//! arrives (one `write` per line, so a killed process loses nothing it had written; synced
//! to disk about once a second).
//!
//! Messages come from the page (a `MutationObserver` in the room) and from the platforms'
//! APIs. Each is written once per `(source, id)`. With an API source, the API wins: a
//! message seen on the page is held a few seconds and dropped when the API delivers the same
//! author and text (the page only fills what the API missed). An API message is held a
//! moment too, so that when the page shows the same one it takes the page's time (the
//! platforms' timestamps have a one-second precision).

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Where a message was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatSource {
    /// The page's DOM.
    Page,
    Mtslink,
    Youtube,
}

/// One line of `chat.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatLine {
    /// Milliseconds since the capture started (monotonic clock).
    pub t_ms: u64,
    /// Wall clock, RFC 3339 UTC with milliseconds.
    pub at: String,
    pub id: String,
    pub author: String,
    /// As text: markup in a message is never interpreted.
    pub text: String,
    pub source: ChatSource,
    /// `message`, `deleted` (`target` names the message), `superchat`, `question`, …
    pub kind: String,
    /// The message a `deleted` line removes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The platform's own timestamp, as it gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_time: Option<String>,
}

/// How long a page message waits for the API to deliver the same one.
pub const HOLD: Duration = Duration::from_secs(8);
/// How long an API message waits for the page to show the same one (its time is better).
pub const API_HOLD: Duration = Duration::from_secs(2);
/// How long an API message stays matchable against a later page message.
const API_MEMORY: Duration = Duration::from_secs(60);

/// `chat.jsonl`, de-duplicated.
pub struct ChatLog {
    file: File,
    seen: HashSet<(ChatSource, String)>,
    /// Page messages waiting for the hold (only with an API source).
    held: VecDeque<(Instant, ChatLine)>,
    /// API messages waiting for the page's time (only when the page's chat is read too).
    held_api: VecDeque<(Instant, ChatLine)>,
    page_active: bool,
    /// (when, author, text) of recent API messages.
    api_recent: VecDeque<(Instant, String, String)>,
    api_active: bool,
    written: u64,
    /// Syncs the file about once a second from its own thread (an fsync can take tens of
    /// milliseconds on a busy disk: never on the way of a message).
    syncer: Option<std::thread::JoinHandle<()>>,
    stop_sync: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for ChatLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatLog").field("written", &self.written).finish_non_exhaustive()
    }
}

impl ChatLog {
    /// Opens `path` for appending; the ids already in it are not written again (a capture
    /// that continues after a restart).
    /// `api_active`: an API source is read; `page_active`: the page's chat is read.
    pub fn open(path: &Path, api_active: bool, page_active: bool) -> io::Result<ChatLog> {
        let mut seen = HashSet::new();
        let mut written = 0;
        if let Ok(f) = File::open(path) {
            for line in io::BufReader::new(f).lines() {
                if let Ok(l) = serde_json::from_str::<ChatLine>(&line?) {
                    seen.insert((l.source, l.id));
                    written += 1;
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let stop_sync = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (clone, stop) = (file.try_clone()?, std::sync::Arc::clone(&stop_sync));
        let syncer = std::thread::Builder::new().name("chat-sync".into()).spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                let _ = clone.sync_data();
            }
        })?;
        Ok(ChatLog {
            file,
            seen,
            held: VecDeque::new(),
            held_api: VecDeque::new(),
            page_active,
            api_recent: VecDeque::new(),
            api_active,
            written,
            syncer: Some(syncer),
            stop_sync,
        })
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn write(&mut self, line: &ChatLine) -> io::Result<()> {
        let mut text = serde_json::to_string(line).map_err(io::Error::other)?;
        text.push('\n');
        // one write per line: what is written is in the file even if the process is killed
        self.file.write_all(text.as_bytes())?;
        self.written += 1;
        Ok(())
    }

    /// Takes one message seen at `now`; returns whether it was new.
    pub fn push(&mut self, mut line: ChatLine, now: Instant) -> io::Result<bool> {
        if !self.seen.insert((line.source, line.id.clone())) {
            return Ok(false);
        }
        match line.source {
            ChatSource::Page if self.api_active => {
                let same = |a: &str, t: &str| a == line.author && t == line.text;
                // the API has it, waiting: it takes the page's time
                if let Some((_, api)) = self.held_api.iter_mut().find(|(_, h)| same(&h.author, &h.text)) {
                    api.t_ms = line.t_ms;
                    api.at = line.at;
                    return Ok(false);
                }
                if self.api_recent.iter().any(|(_, a, t)| same(a, t)) {
                    return Ok(false);
                }
                self.held.push_back((now, line));
                Ok(true)
            }
            ChatSource::Page => self.write(&line).map(|()| true),
            _ => {
                // the same message from the page, still held: the API's wins, with the page's time
                if let Some(i) = self.held.iter().position(|(_, h)| h.author == line.author && h.text == line.text)
                    && let Some((_, held)) = self.held.remove(i)
                {
                    line.t_ms = held.t_ms;
                    line.at = held.at;
                    self.api_recent.push_back((now, line.author.clone(), line.text.clone()));
                    return self.write(&line).map(|()| true);
                }
                self.api_recent.push_back((now, line.author.clone(), line.text.clone()));
                if self.page_active {
                    self.held_api.push_back((now, line));
                    Ok(true)
                } else {
                    self.write(&line).map(|()| true)
                }
            }
        }
    }

    /// Writes the page messages whose hold is over and forgets old API messages. Call it
    /// regularly.
    pub fn tick(&mut self, now: Instant) -> io::Result<()> {
        while let Some((at, _)) = self.held_api.front()
            && now.duration_since(*at) >= API_HOLD
        {
            if let Some((_, line)) = self.held_api.pop_front() {
                self.write(&line)?;
            }
        }
        while let Some((at, _)) = self.held.front()
            && now.duration_since(*at) >= HOLD
        {
            if let Some((_, line)) = self.held.pop_front() {
                self.write(&line)?;
            }
        }
        while self.api_recent.front().is_some_and(|(at, _, _)| now.duration_since(*at) > API_MEMORY) {
            self.api_recent.pop_front();
        }
        Ok(())
    }

    /// Writes everything still held and syncs (the capture ends).
    pub fn finish(&mut self) -> io::Result<()> {
        while let Some((_, line)) = self.held_api.pop_front() {
            self.write(&line)?;
        }
        while let Some((_, line)) = self.held.pop_front() {
            self.write(&line)?;
        }
        self.stop_syncing();
        self.file.sync_all()
    }

    fn stop_syncing(&mut self) {
        self.stop_sync.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.syncer.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ChatLog {
    fn drop(&mut self) {
        self.stop_sync.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Reads a `chat.jsonl`; lines that do not parse (a line cut by a crash) are skipped.
pub fn read_chat(path: &Path) -> io::Result<Vec<ChatLine>> {
    let f = File::open(path)?;
    let mut out = Vec::new();
    for line in io::BufReader::new(f).lines() {
        if let Ok(l) = serde_json::from_str::<ChatLine>(&line?) {
            out.push(l);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn line(source: ChatSource, id: &str, author: &str, text: &str, t_ms: u64) -> ChatLine {
        ChatLine {
            t_ms,
            at: "2026-12-02T10:00:00.000Z".into(),
            id: id.into(),
            author: author.into(),
            text: text.into(),
            source,
            kind: "message".into(),
            target: None,
            src_time: None,
        }
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("ms-chat-{}-{name}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn each_message_once_and_a_restart_continues_the_file() {
        let path = tmp("once");
        let now = Instant::now();
        let mut log = ChatLog::open(&path, false, true).unwrap();
        assert!(log.push(line(ChatSource::Page, "1", "Анна", "Привет 👋 <b>x</b>", 10), now).unwrap());
        assert!(!log.push(line(ChatSource::Page, "1", "Анна", "Привет 👋 <b>x</b>", 20), now).unwrap());
        assert!(log.push(line(ChatSource::Page, "2", "Bob", "hi", 30), now).unwrap());
        drop(log);
        let mut again = ChatLog::open(&path, false, true).unwrap();
        assert!(!again.push(line(ChatSource::Page, "2", "Bob", "hi", 40), now).unwrap(), "seen before the restart");
        let got = read_chat(&path).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].text, "Привет 👋 <b>x</b>", "text kept exactly");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_api_wins_and_the_page_fills_gaps() {
        let path = tmp("api");
        let t0 = Instant::now();
        let mut log = ChatLog::open(&path, true, true).unwrap();
        log.push(line(ChatSource::Page, "p1", "Ann", "first", 1000), t0).unwrap();
        log.push(line(ChatSource::Page, "p2", "Bob", "only on the page", 1200), t0).unwrap();
        // the API delivers "first" 2 s later: one line, the page's time
        log.push(line(ChatSource::Mtslink, "77", "Ann", "first", 2000), t0 + Duration::from_secs(2)).unwrap();
        // a page message the API already had is dropped at once
        log.push(line(ChatSource::Page, "p3", "Ann", "first", 2100), t0 + Duration::from_secs(3)).unwrap();
        // the API first, the page a moment later: the API's line, the page's time
        log.push(line(ChatSource::Mtslink, "78", "Cy", "second", 3000), t0 + Duration::from_secs(3)).unwrap();
        log.push(line(ChatSource::Page, "p4", "Cy", "second", 3700), t0 + Duration::from_millis(3500)).unwrap();
        log.tick(t0 + Duration::from_secs(4)).unwrap();
        assert_eq!(read_chat(&path).unwrap().len(), 1, "the page's own message is still held");
        log.tick(t0 + HOLD + Duration::from_secs(1)).unwrap();
        let got = read_chat(&path).unwrap();
        let summary: Vec<(ChatSource, &str, u64)> = got.iter().map(|l| (l.source, l.text.as_str(), l.t_ms)).collect();
        assert_eq!(
            summary,
            [
                (ChatSource::Mtslink, "first", 1000),
                (ChatSource::Mtslink, "second", 3700),
                (ChatSource::Page, "only on the page", 1200)
            ]
        );
        let _ = std::fs::remove_file(&path);
    }
}
