//! Broadcasts on the platforms, tied to a stream: created with their destination, taken
//! live and ended, deleted without leaving anything behind on either side.

use std::time::Duration;

use multistreamer_core::ladder::{Ladder, RenditionSize};
use multistreamer_core::platform::youtube::NewStream;
use multistreamer_core::platform::{
    BroadcastPrivacy, EventAccess, IngestProtocol, LatencyPreference, LiveBroadcast, NewBroadcast, NewEvent,
    YouTubeClient, YouTubeError, YouTubeReason,
};
use multistreamer_core::rtmp::RtmpUrl;
use serde::Deserialize;
use tracing::{info, warn};

use super::{Account, mtslink_health, mtslink_state};
use crate::AppState;
use crate::db::{self, BroadcastRow, StreamRow};
use crate::error::{AppError, ErrorKind};

/// `POST /api/streams/{id}/broadcasts`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBroadcastBody {
    pub platform_id: Option<i64>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// RFC 3339; now when absent.
    pub starts_at: Option<String>,
    /// `public`, `unlisted` (default), `private`.
    pub privacy: Option<String>,
    /// `normal` (default), `low`, `ultraLow`.
    pub latency: Option<String>,
    pub dvr: Option<bool>,
    pub made_for_kids: Option<bool>,
    /// `source` (default) or a rendition of the stream's ladder.
    pub rendition: Option<String>,
    /// `rtmps` (default) or `rtmp`.
    pub ingest: Option<String>,
    /// Also send to the backup ingest (a second destination).
    pub backup: Option<bool>,
    /// Go live by itself once YouTube receives the stream.
    pub auto_live: Option<bool>,
    /// YouTube's monitor stream (go live through `testing`).
    pub monitor_stream: Option<bool>,
    /// Attach this upcoming YouTube broadcast instead of creating one.
    pub attach: Option<String>,
    /// MTS Link: a timezone id of the account (`GET /timezones`); the account's own when absent.
    pub timezone: Option<String>,
    /// MTS Link: `free` (default), `password`, `registration`.
    pub access: Option<String>,
    pub password: Option<String>,
    /// MTS Link: `webinar` (default) or `meeting`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// MTS Link: the room's RTMP URL with its key (the room's "stream via RTMP" settings).
    pub ingest_url: Option<String>,
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    multistreamer_core::clock::rfc3339(std::time::SystemTime::now())
}

/// The date and time written in an RFC 3339 value (`2026-12-02T10:00`, seconds and an
/// offset optional): (year, month, day, hour, minute).
pub fn parse_local(s: &str) -> Option<(u16, u8, u8, u8, u8)> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> { s.get(r)?.parse().ok() };
    if b.len() < 16 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let (y, mo, d, h, mi) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 {
        return None;
    }
    let rest = &s[16..];
    let rest = rest.strip_prefix(':').map_or(Some(rest), |r| {
        let digits = r.get(..2).filter(|x| x.bytes().all(|c| c.is_ascii_digit()))?;
        let _ = digits;
        let r = &r[2..];
        Some(r.strip_prefix('.').map_or(r, |f| f.trim_start_matches(|c: char| c.is_ascii_digit())))
    })?;
    let offset_ok = rest.is_empty()
        || rest.eq_ignore_ascii_case("z")
        || (rest.len() == 6 && matches!(rest.as_bytes()[0], b'+' | b'-') && rest.as_bytes()[3] == b':');
    offset_ok.then_some((y as u16, mo as u8, d as u8, h as u8, mi as u8))
}

/// YouTube wants seconds and an offset: a value without seconds gets `:00`, one without
/// an offset is taken as UTC.
fn youtube_time(s: &str) -> String {
    let (head, tail) = s.split_at(16.min(s.len()));
    let tail = if tail.starts_with(':') { tail.to_string() } else { format!(":00{tail}") };
    let has_offset = tail.ends_with(['Z', 'z']) || tail.contains(['+', '-']);
    if has_offset { format!("{head}{tail}") } else { format!("{head}{tail}Z") }
}

/// The picture a rendition sends, for YouTube's `cdn` resolution and frame rate.
fn picture_of(stream: &StreamRow, rendition: &str) -> (Option<u32>, Option<f64>) {
    let ladder: Ladder = stream.ladder.parse().unwrap_or_default();
    match ladder.get(rendition) {
        Some(r) => {
            let lines = match r.size {
                RenditionSize::Lines(l) => l,
                RenditionSize::Box { height, .. } => height,
            };
            (Some(lines), r.fps.map(f64::from))
        }
        None => (None, None),
    }
}

fn destination_name(title: &str, platform: &str) -> String {
    let short: String = title.chars().take(60).collect();
    format!("{short} ({platform})")
}

/// Inserts the destinations and the broadcast row together; the names get a suffix when
/// the stream already has a destination of that name.
async fn store(
    state: &AppState,
    mut row: BroadcastRow,
    name: String,
    url: Option<String>,
    backup_url: Option<String>,
    rendition: &str,
) -> Result<i64, AppError> {
    let mut tx = db::begin(&state.db).await?;
    let suffix: String = row.remote_id.chars().take(8).collect();
    let main = match &url {
        Some(u) => Some(add_named(&mut tx, row.stream_id, &name, &suffix, u, rendition).await?),
        None => None,
    };
    let backup = match &backup_url {
        Some(u) => Some(add_named(&mut tx, row.stream_id, &format!("{name} backup"), &suffix, u, rendition).await?),
        None => None,
    };
    row.destination_id = main;
    row.backup_destination_id = backup;
    let id = db::insert_broadcast(&mut *tx, &row).await?;
    tx.commit().await?;
    Ok(id)
}

/// A destination named `name`, or `name suffix` when the stream has one of that name.
async fn add_named(
    tx: &mut sqlx::AnyConnection,
    stream_id: i64,
    name: &str,
    suffix: &str,
    url: &str,
    rendition: &str,
) -> Result<i64, AppError> {
    match db::create_destination(&mut *tx, stream_id, name, url, true, rendition).await {
        Err(e) if e.kind == ErrorKind::InvalidArgument => {
            db::create_destination(&mut *tx, stream_id, &format!("{name} {suffix}"), url, true, rendition).await
        }
        r => r,
    }
}

/// Creates (or attaches) a broadcast on the account and the destination(s) that feed it.
/// A failure after the platform created something deletes it again.
pub async fn create(state: &AppState, stream: &StreamRow, body: NewBroadcastBody) -> Result<i64, AppError> {
    let platform_id = body.platform_id.ok_or_else(|| AppError::invalid("platform_id", "choose a connected account"))?;
    let (account_row, account) = match state.platforms.account(platform_id).await {
        Err(e) if e.kind == ErrorKind::NotFound => {
            return Err(AppError::invalid("platform_id", "no such connected account"));
        }
        r => r?,
    };
    if account_row.state == "reconnect_needed" {
        return Err(AppError::invalid("platform_id", "this account must be connected again (Settings → Platforms)"));
    }
    let rendition = crate::api::validate_rendition(stream, body.rendition.as_deref().unwrap_or(""))?;
    let title = body.title.as_deref().unwrap_or("").trim().to_string();
    if body.attach.is_none() && title.is_empty() {
        return Err(AppError::invalid("title", "a title is required"));
    }
    if title.chars().count() > 100 {
        return Err(AppError::invalid("title", "at most 100 characters"));
    }
    let starts_at = match body.starts_at.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => {
            parse_local(s).ok_or_else(|| AppError::invalid("starts_at", "expected a date and time (RFC 3339)"))?;
            s.to_string()
        }
        None => now_rfc3339(),
    };
    let row = |remote_id: String, remote_stream_id: String, title: String, watch_url: String, st: &str| BroadcastRow {
        id: 0,
        stream_id: stream.id,
        platform_id,
        remote_id,
        remote_stream_id,
        title,
        watch_url,
        state: st.to_string(),
        destination_id: None,
        backup_destination_id: None,
        auto_live: body.auto_live.unwrap_or(false),
        monitor_stream: body.monitor_stream.unwrap_or(false),
        last_error: None,
        created_at: 0,
    };
    match account {
        Account::YouTube(yt) => {
            let protocol = match body.ingest.as_deref().unwrap_or("rtmps") {
                "rtmps" => IngestProtocol::Rtmps,
                "rtmp" => IngestProtocol::Rtmp,
                _ => return Err(AppError::invalid("ingest", "expected rtmps or rtmp")),
            };
            let (b, s, created) = if let Some(remote) = body.attach.as_deref() {
                let (b, s, created_stream) = attach(state, platform_id, &yt, remote, stream, &rendition).await?;
                (b, s, if created_stream { Created::Stream } else { Created::Nothing })
            } else {
                let privacy: BroadcastPrivacy = body
                    .privacy
                    .as_deref()
                    .unwrap_or("unlisted")
                    .parse()
                    .map_err(|_| AppError::invalid("privacy", "expected public, unlisted or private"))?;
                let latency: LatencyPreference = body
                    .latency
                    .as_deref()
                    .unwrap_or("normal")
                    .parse()
                    .map_err(|_| AppError::invalid("latency", "expected normal, low or ultraLow"))?;
                let new = NewBroadcast {
                    title: title.clone(),
                    description: body.description.clone().unwrap_or_default(),
                    scheduled_start: youtube_time(&starts_at),
                    privacy,
                    latency,
                    dvr: body.dvr.unwrap_or(true),
                    made_for_kids: body.made_for_kids.unwrap_or(false),
                    auto_start: false,
                    auto_stop: false,
                    monitor_stream: body.monitor_stream.unwrap_or(false),
                };
                let (height, fps) = picture_of(stream, &rendition);
                let new_stream = NewStream::for_picture(&format!("{} — {}", stream.name, title), height, fps);
                let r = yt.create_broadcast(&new, &new_stream).await;
                let (b, s) = state.platforms.youtube_outcome(platform_id, r).await?;
                (b, s, Created::Both)
            };
            let Some(url) = s.ingest_url(protocol, false) else {
                created.undo(&yt, &b.id, &s.id).await;
                return Err(AppError::platform(true, "YouTube gave the stream no ingest address", None));
            };
            let backup_url = if body.backup.unwrap_or(false) { s.ingest_url(protocol, true) } else { None };
            for u in std::iter::once(&url).chain(&backup_url) {
                if let Err(e) = u.parse::<RtmpUrl>() {
                    created.undo(&yt, &b.id, &s.id).await;
                    return Err(AppError::platform(true, format!("YouTube's ingest address is unusable: {e}"), None));
                }
            }
            let name = destination_name(&b.title, "YouTube");
            let mut r = row(b.id.clone(), s.id.clone(), b.title.clone(), b.watch_url(), &b.life_cycle_status);
            r.monitor_stream = b.monitor_stream;
            match store(state, r, name, Some(url), backup_url, &rendition).await {
                Ok(id) => {
                    info!(broadcast = id, remote = %b.id, "YouTube broadcast created");
                    Ok(id)
                }
                Err(e) => {
                    created.undo(&yt, &b.id, &s.id).await;
                    Err(e)
                }
            }
        }
        Account::MtsLink(mts) => {
            let url = match body.ingest_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
                Some(u) => Some(check_ingest_url(u)?),
                None => None,
            };
            let access = match body.access.as_deref().unwrap_or("free") {
                "free" => EventAccess::Free,
                "registration" => EventAccess::Registration,
                "password" => match body.password.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
                    Some(p) => EventAccess::Password(p.to_string()),
                    None => return Err(AppError::invalid("password", "a password is required for this access")),
                },
                _ => return Err(AppError::invalid("access", "expected free, password or registration")),
            };
            let kind = body.kind.clone().unwrap_or_else(|| "webinar".into());
            if !matches!(kind.as_str(), "webinar" | "meeting") {
                return Err(AppError::invalid("type", "expected webinar or meeting"));
            }
            let starts = parse_local(&starts_at)
                .ok_or_else(|| AppError::invalid("starts_at", "expected a date and time (RFC 3339)"))?;
            let event = NewEvent {
                name: title.clone(),
                description: body.description.clone().unwrap_or_default(),
                starts_at: starts,
                timezone: body.timezone.clone().filter(|t| !t.trim().is_empty()),
                access,
                kind,
            };
            let r = mts.create_webinar(&event).await;
            let (ev, session) = state.platforms.mtslink_outcome(platform_id, r).await?;
            let link = if session.link.is_empty() { ev.link.clone() } else { session.link.clone() };
            let name = destination_name(&title, "webinar.ru");
            let r = row(session.id.to_string(), ev.id.to_string(), title, link, "ready");
            match store(state, r, name, url, None, &rendition).await {
                Ok(id) => {
                    info!(broadcast = id, session = session.id, "MTS Link webinar created");
                    Ok(id)
                }
                Err(e) => {
                    if let Err(d) = mts.delete_session(session.id).await {
                        warn!(session = session.id, error = %d, "could not delete the session after a failure");
                    }
                    Err(e)
                }
            }
        }
    }
}

/// What `create` made on YouTube, to delete when a later step fails.
#[derive(Clone, Copy)]
enum Created {
    Nothing,
    Stream,
    Both,
}

impl Created {
    async fn undo(self, yt: &YouTubeClient, broadcast: &str, stream: &str) {
        if matches!(self, Created::Both)
            && let Err(e) = yt.delete_broadcast(broadcast).await
        {
            warn!(broadcast, error = %e, "could not delete the broadcast after a failure");
        }
        if matches!(self, Created::Both | Created::Stream)
            && let Err(e) = yt.delete_stream(stream).await
        {
            warn!(stream, error = %e, "could not delete the stream after a failure");
        }
    }
}

/// An upcoming broadcast of the channel: its bound stream, or a new one bound to it.
async fn attach(
    state: &AppState,
    platform_id: i64,
    yt: &YouTubeClient,
    remote: &str,
    stream: &StreamRow,
    rendition: &str,
) -> Result<(LiveBroadcast, multistreamer_core::platform::LiveStream, bool), AppError> {
    let p = &state.platforms;
    let b = p.youtube_outcome(platform_id, yt.broadcast(remote).await).await?;
    let b = b.ok_or_else(|| AppError::invalid("attach", "no such broadcast on the channel"))?;
    if !matches!(b.life_cycle_status.as_str(), "created" | "ready") {
        return Err(AppError::invalid("attach", format!("the broadcast is {}, not upcoming", b.life_cycle_status)));
    }
    if let Some(sid) = &b.bound_stream_id
        && let Some(s) = p.youtube_outcome(platform_id, yt.stream(sid).await).await?
    {
        return Ok((b, s, false));
    }
    let (height, fps) = picture_of(stream, rendition);
    let s =
        p.youtube_outcome(platform_id, yt.insert_stream(&NewStream::for_picture(&b.title, height, fps)).await).await?;
    match yt.bind(&b.id, &s.id).await {
        Ok(bound) => Ok((bound, s, true)),
        Err(e) => {
            Created::Stream.undo(yt, &b.id, &s.id).await;
            p.youtube_outcome(platform_id, Err(e)).await
        }
    }
}

fn check_ingest_url(u: &str) -> Result<String, AppError> {
    let parsed: RtmpUrl = u.parse().map_err(|e| AppError::invalid("ingest_url", format!("{e}")))?;
    if parsed.key.is_empty() {
        return Err(AppError::invalid("ingest_url", "the URL has no stream key (rtmp://HOST/APP/KEY)"));
    }
    Ok(u.to_string())
}

/// Sets (or replaces) the RTMP URL a broadcast is fed at (an MTS Link room's, pasted once
/// the room exists).
pub async fn set_ingest_url(state: &AppState, b: &BroadcastRow, url: &str) -> Result<(), AppError> {
    let url = check_ingest_url(url.trim())?;
    match b.destination_id {
        Some(did) => match db::destination(&state.db, b.stream_id, did).await? {
            Some(mut d) => {
                d.url = url;
                db::update_destination(&state.db, &d).await?;
            }
            None => add_destination(state, b, &url).await?,
        },
        None => add_destination(state, b, &url).await?,
    }
    state.engine.sync_stream(b.stream_id).await
}

async fn add_destination(state: &AppState, b: &BroadcastRow, url: &str) -> Result<(), AppError> {
    let (row, _) = state.platforms.account(b.platform_id).await?;
    let label = if row.kind == "youtube" { "YouTube" } else { "webinar.ru" };
    let name = destination_name(&b.title, label);
    let did = match db::create_destination(&state.db, b.stream_id, &name, url, true, "").await {
        Err(e) if e.kind == ErrorKind::InvalidArgument => {
            db::create_destination(&state.db, b.stream_id, &format!("{name} {}", b.id), url, true, "").await?
        }
        r => r?,
    };
    db::set_broadcast_destination(&state.db, b.id, Some(did)).await
}

fn destinations_of(b: &BroadcastRow) -> Vec<i64> {
    b.destination_id.into_iter().chain(b.backup_destination_id).collect()
}

/// Goes live (`to: "live"`) or ends (`"complete"`). Going live on YouTube waits (up to
/// 30 s) for the stream to be `active`, passes through `testing` with the monitor stream
/// on, and waits through the `*Starting` states. Ending stops the destinations after it.
pub async fn transition(state: &AppState, b: &BroadcastRow, to: &str) -> Result<(), AppError> {
    if !matches!(to, "live" | "complete") {
        return Err(AppError::invalid("to", "expected live or complete"));
    }
    let p = &state.platforms;
    let (_, account) = p.account(b.platform_id).await?;
    let dests = destinations_of(b);
    if to == "live" {
        // the platform needs the data before it lets the broadcast go live
        db::set_destinations_enabled(&state.db, &dests, true).await?;
        state.engine.sync_stream(b.stream_id).await?;
    }
    let result = match &account {
        Account::YouTube(yt) => {
            let r = if to == "live" {
                // With the stream live here, YouTube gets a little time to see the data; without
                // it, waiting is pointless and the answer is YouTube's errorStreamInactive now.
                let within = if state.engine.is_live(b.stream_id) { 30 } else { 0 };
                yt.go_live(&b.remote_id, Duration::from_secs(2), Duration::from_secs(within)).await
            } else {
                yt.transition(&b.remote_id, "complete").await
            };
            match p.youtube_outcome(b.platform_id, r).await {
                Ok(now) => Ok(now.life_cycle_status),
                Err(e) => Err(e),
            }
        }
        Account::MtsLink(mts) => {
            let id: u64 = b.remote_id.parse().map_err(|_| AppError::internal("stored session id"))?;
            let r = if to == "live" { mts.start(id).await } else { mts.stop(id).await };
            p.mtslink_outcome(b.platform_id, r).await?;
            let s = p.mtslink_outcome(b.platform_id, mts.session(id).await).await?;
            p.set_health(b.id, mtslink_health(&s.status));
            Ok(mtslink_state(&s.status).to_string())
        }
    };
    match result {
        Ok(now) => {
            db::set_broadcast_state(&state.db, b.id, &now, None).await?;
            if now == "complete" {
                db::set_destinations_enabled(&state.db, &dests, false).await?;
            }
            info!(broadcast = b.id, state = %now, "broadcast transition");
            state.engine.sync_stream(b.stream_id).await
        }
        Err(e) => {
            db::set_broadcast_error(&state.db, b.id, Some(&e.message)).await?;
            state.engine.sync_stream(b.stream_id).await?;
            Err(e)
        }
    }
}

/// Deletes a broadcast: on the platform when it never went on air (a broadcast that did
/// keeps its recording there, and is only forgotten here), then its destinations.
pub async fn delete(state: &AppState, b: &BroadcastRow) -> Result<(), AppError> {
    let p = &state.platforms;
    let never_aired = matches!(b.state.as_str(), "created" | "ready" | "testing" | "testStarting");
    match p.account(b.platform_id).await {
        Ok((_, Account::YouTube(yt))) if never_aired => {
            for r in [yt.delete_broadcast(&b.remote_id).await, yt.delete_stream(&b.remote_stream_id).await] {
                match r {
                    Ok(()) | Err(YouTubeError::Api { reason: YouTubeReason::NotFound, .. }) => {}
                    Err(e) => return p.youtube_outcome(b.platform_id, Err(e)).await,
                }
            }
        }
        Ok((_, Account::MtsLink(mts))) if never_aired => {
            if let Ok(id) = b.remote_id.parse::<u64>() {
                match mts.delete_session(id).await {
                    Ok(()) => {}
                    Err(multistreamer_core::platform::MtsLinkError::Api { status: 404, .. }) => {}
                    Err(e) => return p.mtslink_outcome(b.platform_id, Err(e)).await,
                }
            }
        }
        Ok(_) => {}
        // An account disconnected or unusable: forget the broadcast here only.
        Err(e) => warn!(broadcast = b.id, error = %e, "deleting the broadcast here only"),
    }
    for did in destinations_of(b) {
        db::delete_destination(&state.db, b.stream_id, did).await?;
    }
    db::delete_broadcast(&state.db, b.id).await?;
    p.forget_health(b.id);
    state.engine.sync_stream(b.stream_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn youtube_is_told_the_picture_of_the_rendition_sent() {
        let stream = StreamRow {
            id: 1,
            name: "s".into(),
            ingest_key: "k".into(),
            created_at: 0,
            ladder: "1280x720@60:4500k,480p".into(),
            record_mode: "off".into(),
            record_rendition: String::new(),
            pull_url: String::new(),
            srt_passphrase: String::new(),
        };
        let cdn = |r: &str| {
            let (h, fps) = picture_of(&stream, r);
            let s = NewStream::for_picture("t", h, fps);
            (s.resolution, s.frame_rate)
        };
        assert_eq!(cdn("1280x720p60"), ("720p".to_string(), "60fps".to_string()));
        assert_eq!(cdn("480p"), ("480p".to_string(), "variable".to_string()));
        assert_eq!(cdn(""), ("variable".to_string(), "variable".to_string()), "the source: as published");
    }

    #[test]
    fn dates_are_read_as_written_and_now_is_rfc3339() {
        assert_eq!(parse_local("2026-12-02T10:05"), Some((2026, 12, 2, 10, 5)));
        assert_eq!(parse_local("2026-12-02T10:05:30.250+03:00"), Some((2026, 12, 2, 10, 5)));
        assert_eq!(parse_local("2026-12-02T10:05:30Z"), Some((2026, 12, 2, 10, 5)));
        assert_eq!(parse_local("2026-13-02T10:05"), None);
        assert_eq!(parse_local("tomorrow"), None);
        assert_eq!(parse_local("2026-12-02T10:05 and more"), None);
        let now = now_rfc3339();
        assert!(parse_local(&now).is_some() && now.ends_with('Z'), "{now}");
        assert_eq!(youtube_time("2026-12-02T10:05"), "2026-12-02T10:05:00Z");
        assert_eq!(youtube_time("2026-12-02T10:05+01:00"), "2026-12-02T10:05:00+01:00");
        assert_eq!(youtube_time("2026-12-02T10:05:00+03:00"), "2026-12-02T10:05:00+03:00");
    }
}
