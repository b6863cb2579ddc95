//! webinar.ru / MTS Link UserAPI v3: check a token, create an event and its session, start
//! and stop it, read its status and its chat; after it, find its recording, order an MP4
//! conversion of it and download the result. Requests are form-encoded with PHP-style
//! bracket keys (`startsAt[date][year]=2026`) except the conversion order (JSON), the key
//! travels in `x-auth-token`; updates answer 204, creations 201. The RTMP ingest of a room
//! is not in the API: the operator pastes it (the room's "stream via RTMP" settings).

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use serde::Deserialize;

use super::http;
use crate::error::ErrorKind;

pub const DEFAULT_API_BASE: &str = "https://userapi.mts-link.ru/v3";

/// Why an MTS Link call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MtsLinkError {
    /// 401: the API token is wrong, revoked, or the plan has no API access.
    #[error("MTS Link rejected the API token (check it, and that the plan includes the API)")]
    TokenRejected,
    /// 403: the token lacks a permission, or a business rule refused the request.
    #[error("MTS Link refused: {message}")]
    Refused { message: String, field_errors: Vec<(String, String)> },
    #[error("MTS Link error (HTTP {status}): {message}")]
    Api { status: u16, message: String, field_errors: Vec<(String, String)> },
    #[error("cannot reach MTS Link: {0}")]
    Transport(String),
    #[error("unreadable answer from MTS Link: {0}")]
    Malformed(String),
    #[error("MTS Link configuration: {0}")]
    Config(String),
    /// 403 on a conversion order: the account converts one record at a time.
    #[error("MTS Link is converting another record (conversion {current:?}); one at a time per account")]
    ConversionBusy { current: Option<u64> },
    /// The platform ended a conversion without a file.
    #[error("MTS Link conversion {id} ended as {state:?}")]
    ConversionFailed { id: u64, state: String },
}

impl MtsLinkError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            MtsLinkError::TokenRejected | MtsLinkError::Refused { .. } | MtsLinkError::ConversionBusy { .. } => {
                ErrorKind::Rejected
            }
            MtsLinkError::Api { .. } | MtsLinkError::Malformed(_) | MtsLinkError::ConversionFailed { .. } => {
                ErrorKind::Protocol
            }
            MtsLinkError::Transport(_) => ErrorKind::Disconnected,
            MtsLinkError::Config(_) => ErrorKind::Config,
        }
    }
}

/// Who may enter a webinar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EventAccess {
    #[default]
    Free,
    Password(String),
    Registration,
}

/// A webinar to create: an event with one session.
#[derive(Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub name: String,
    pub description: String,
    /// Local date and time in `timezone`: (year, month, day, hour, minute).
    pub starts_at: (u16, u8, u8, u8, u8),
    /// A timezone id from `GET /timezones`; the account's own when `None`.
    pub timezone: Option<String>,
    pub access: EventAccess,
    /// `webinar` or `meeting`.
    pub kind: String,
}

impl fmt::Debug for NewEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewEvent").field("name", &self.name).field("starts_at", &self.starts_at).finish_non_exhaustive()
    }
}

impl NewEvent {
    /// The form fields, bracket keys as the API expects them.
    pub fn form(&self) -> Vec<(String, String)> {
        let (year, month, day, hour, minute) = self.starts_at;
        let mut f: Vec<(String, String)> = vec![
            ("name".into(), self.name.clone()),
            ("description".into(), self.description.clone()),
            ("type".into(), self.kind.clone()),
            ("startsAt[date][year]".into(), year.to_string()),
            ("startsAt[date][month]".into(), month.to_string()),
            ("startsAt[date][day]".into(), day.to_string()),
            ("startsAt[time][hour]".into(), hour.to_string()),
            ("startsAt[time][minute]".into(), minute.to_string()),
        ];
        if let Some(tz) = &self.timezone {
            f.push(("timezone".into(), tz.clone()));
        }
        let (password, registration) = match &self.access {
            EventAccess::Free => (false, false),
            EventAccess::Password(p) => {
                f.push(("password".into(), p.clone()));
                (true, false)
            }
            EventAccess::Registration => (false, true),
        };
        f.push(("accessSettings[isPasswordRequired]".into(), u8::from(password).to_string()));
        f.push(("accessSettings[isRegistrationRequired]".into(), u8::from(registration).to_string()));
        f.push(("accessSettings[isModerationRequired]".into(), "0".into()));
        f
    }
}

/// What `POST /events` (and `/events/{id}/sessions`) answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: u64,
    /// The public page (for an event) or the session's link.
    pub link: String,
}

/// A session as `GET /eventsessions/{id}` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventSession {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    /// `ACTIVE` (scheduled), `START` (running), `STOP` (finished).
    pub status: String,
    /// The scheduled start, ISO 8601 with an offset.
    #[serde(default, rename = "startsAt")]
    pub starts_at: Option<String>,
}

/// A file of the account's file system as `GET /records` lists it: an online recording
/// (`typeFile` `record`) or a conversion of one (`ConvertedRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordFile {
    #[serde(deserialize_with = "id_number")]
    pub id: u64,
    #[serde(default)]
    pub name: String,
    /// ISO 8601 with an offset: taken as the start of the recording.
    #[serde(default)]
    pub create_at: String,
    #[serde(default)]
    pub type_file: String,
    #[serde(default)]
    pub event_session: Option<SessionRef>,
}

/// The session a record belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SessionRef {
    #[serde(deserialize_with = "id_number")]
    pub id: u64,
}

/// An id the API writes as a number or as a string of digits.
fn id_of(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn id_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    id_of(&serde_json::Value::deserialize(d)?).ok_or_else(|| serde::de::Error::custom("not an id"))
}

/// Where a conversion job stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    pub id: u64,
    /// `waiting`, `processing`, `loaded`, `completed`, `failed`, `canceled`.
    pub state: String,
    /// Percent, when the platform says.
    pub progress: Option<f64>,
    pub record_id: Option<u64>,
    /// Only once the job is finished; it expires, so read the job again before downloading.
    pub download_url: Option<String>,
}

impl Conversion {
    /// Finished with a file to download.
    pub fn is_done(&self) -> bool {
        self.download_url.is_some() && !self.has_failed()
    }

    /// Ended without a file.
    pub fn has_failed(&self) -> bool {
        matches!(self.state.as_str(), "failed" | "canceled" | "cancelled" | "error")
    }

    /// From the job object, optionally wrapped in `data`; `state` or `status`; `progress`
    /// a number or a string with `%`; the record as `recordFile.id` or `recordFileId`.
    fn parse(body: &[u8]) -> Result<Conversion, MtsLinkError> {
        let v: serde_json::Value = parse(body)?;
        let job = v.get("data").filter(|d| d.is_object()).unwrap_or(&v);
        let number = |v: Option<&serde_json::Value>| v.and_then(id_of);
        let id = number(job.get("id")).ok_or_else(|| MtsLinkError::Malformed("a conversion without an id".into()))?;
        let text = |k: &str| job.get(k).and_then(|s| s.as_str()).map(str::to_string);
        let state = text("state").or_else(|| text("status")).unwrap_or_default().to_ascii_lowercase();
        let progress = match job.get("progress") {
            Some(serde_json::Value::Number(n)) => n.as_f64(),
            Some(serde_json::Value::String(s)) => s.trim().trim_end_matches('%').trim().parse().ok(),
            _ => None,
        }
        .filter(|p: &f64| p.is_finite());
        let record_id =
            number(job.get("recordFile").and_then(|r| r.get("id"))).or_else(|| number(job.get("recordFileId")));
        let download_url = text("downloadUrl").filter(|u| !u.is_empty());
        Ok(Conversion { id, state, progress, record_id, download_url })
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MtsChatMessage {
    pub id: u64,
    #[serde(default)]
    pub author_name: String,
    #[serde(default)]
    pub text: String,
    /// Server time with offset; one-second precision.
    #[serde(default)]
    pub create_at: String,
    #[serde(default)]
    pub is_deleted: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatedEvent {
    event_id: u64,
    #[serde(default)]
    link: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatedSession {
    event_session_id: u64,
    #[serde(default)]
    link: String,
}

/// The error of a non-2xx answer: `{"error":{"code","message","fieldErrors"}}`, with
/// `fieldErrors` sometimes at the top level.
fn error_of(status: u16, body: &[u8]) -> MtsLinkError {
    if status == 401 {
        return MtsLinkError::TokenRejected;
    }
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return MtsLinkError::Malformed(format!("HTTP {status}: {}", http::excerpt(body))),
    };
    let err = value.get("error").unwrap_or(&value);
    let message = err.get("message").and_then(|m| m.as_str()).unwrap_or("").to_string();
    let fields = err.get("fieldErrors").or_else(|| value.get("fieldErrors"));
    let field_errors = fields
        .and_then(|f| f.as_object())
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect())
        .unwrap_or_default();
    if status == 403 {
        MtsLinkError::Refused { message, field_errors }
    } else {
        MtsLinkError::Api { status, message, field_errors }
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, MtsLinkError> {
    serde_json::from_slice(body).map_err(|e| MtsLinkError::Malformed(e.to_string()))
}

enum Body<'a> {
    Empty,
    Form(&'a [(String, String)]),
    Json(&'a serde_json::Value),
}

/// A UserAPI client for one API token. `Debug` hides the token.
#[derive(Clone)]
pub struct MtsLinkClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl fmt::Debug for MtsLinkClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtsLinkClient").field("base", &self.base).finish_non_exhaustive()
    }
}

impl MtsLinkClient {
    /// `base`: [`DEFAULT_API_BASE`], the legacy `https://userapi.webinar.ru/v3`, or a stand-in.
    pub fn new(base: &str, token: &str) -> Result<MtsLinkClient, MtsLinkError> {
        let parsed = url::Url::parse(base).map_err(|e| MtsLinkError::Config(format!("{base}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(MtsLinkError::Config(format!("{base}: not an http(s) URL")));
        }
        if token.trim().is_empty() {
            return Err(MtsLinkError::Config("no API token".into()));
        }
        if !token.trim().bytes().all(|b| b.is_ascii_graphic()) {
            return Err(MtsLinkError::Config("the API token has characters a header cannot carry".into()));
        }
        let http = http::client(Duration::from_secs(20)).map_err(|e| MtsLinkError::Config(e.to_string()))?;
        Ok(MtsLinkClient { http, base: base.trim_end_matches('/').to_string(), token: token.trim().to_string() })
    }

    async fn call(
        &self,
        verb: Method,
        path: &str,
        query: &[(&str, &str)],
        form: Option<&[(String, String)]>,
    ) -> Result<Bytes, MtsLinkError> {
        self.call_with(verb, path, query, form.map_or(Body::Empty, Body::Form)).await
    }

    async fn call_with(
        &self,
        verb: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Bytes, MtsLinkError> {
        let url = format!("{}{path}", self.base);
        let req = self.http.request(verb, url);
        let mut req = req.query(query).header("x-auth-token", &self.token);
        req = match body {
            Body::Form(f) => req.form(f),
            Body::Json(j) => req.header(reqwest::header::CONTENT_TYPE, "application/json").body(j.to_string()),
            Body::Empty => req.header("Content-Length", "0"),
        };
        let resp = req.send().await.map_err(|e| MtsLinkError::Transport(e.without_url().to_string()))?;
        let (status, body) = http::read(resp).await.map_err(MtsLinkError::Transport)?;
        if (200..300).contains(&status) { Ok(body) } else { Err(error_of(status, &body)) }
    }

    /// Checks the token with a cheap read (one member of the organisation).
    pub async fn check_token(&self) -> Result<(), MtsLinkError> {
        self.call(Method::GET, "/organization/members", &[("perPage", "1"), ("page", "1")], None).await.map(drop)
    }

    /// `POST /events`.
    pub async fn create_event(&self, e: &NewEvent) -> Result<Created, MtsLinkError> {
        let body = self.call(Method::POST, "/events", &[], Some(&e.form())).await?;
        let c: CreatedEvent = parse(&body)?;
        Ok(Created { id: c.event_id, link: c.link })
    }

    /// `POST /events/{id}/sessions`, started by hand (`startType=manual`).
    pub async fn create_session(&self, event_id: u64, name: &str) -> Result<Created, MtsLinkError> {
        let form = vec![("name".to_string(), name.to_string()), ("startType".to_string(), "manual".to_string())];
        let body = self.call(Method::POST, &format!("/events/{event_id}/sessions"), &[], Some(&form)).await?;
        let c: CreatedSession = parse(&body)?;
        Ok(Created { id: c.event_session_id, link: c.link })
    }

    /// Creates the event and its session (the event is the series, the session the webinar).
    pub async fn create_webinar(&self, e: &NewEvent) -> Result<(Created, Created), MtsLinkError> {
        let event = self.create_event(e).await?;
        let session = self.create_session(event.id, &e.name).await?;
        Ok((event, session))
    }

    /// `PUT /eventsessions/{id}/start` (204): participants are let in.
    pub async fn start(&self, session_id: u64) -> Result<(), MtsLinkError> {
        self.call(Method::PUT, &format!("/eventsessions/{session_id}/start"), &[], None).await.map(drop)
    }

    /// `PUT /eventsessions/{id}/stop` (204).
    pub async fn stop(&self, session_id: u64) -> Result<(), MtsLinkError> {
        self.call(Method::PUT, &format!("/eventsessions/{session_id}/stop"), &[], None).await.map(drop)
    }

    /// `DELETE /eventsessions/{id}` (204): the session, its statistics and chat are gone,
    /// with no email to the participants.
    pub async fn delete_session(&self, session_id: u64) -> Result<(), MtsLinkError> {
        let path = format!("/eventsessions/{session_id}");
        self.call(Method::DELETE, &path, &[("sendEmail", "false")], None).await.map(drop)
    }

    /// `GET /eventsessions/{id}`.
    pub async fn session(&self, session_id: u64) -> Result<EventSession, MtsLinkError> {
        parse(&self.call(Method::GET, &format!("/eventsessions/{session_id}"), &[], None).await?)
    }

    /// `GET /eventsessions/{id}/chat`: the last `limit` messages (no cursor in the API).
    pub async fn chat(&self, session_id: u64, limit: u32) -> Result<Vec<MtsChatMessage>, MtsLinkError> {
        let limit = limit.to_string();
        parse(&self.call(Method::GET, &format!("/eventsessions/{session_id}/chat"), &[("limit", &limit)], None).await?)
    }

    /// `GET /records` between two dates (`YYYY-MM-DD`), every page.
    pub async fn records(&self, from: &str, to: &str) -> Result<Vec<RecordFile>, MtsLinkError> {
        const PAGE: usize = 100;
        let mut all = Vec::new();
        // bounded: 50 pages of 100 files
        for page in 0..50 {
            let offset = (page * PAGE).to_string();
            let limit = PAGE.to_string();
            let query = [("from", from), ("to", to), ("offset", offset.as_str()), ("limit", limit.as_str())];
            let body = self.call(Method::GET, "/records", &query, None).await?;
            let batch: Vec<RecordFile> = parse(&body)?;
            let n = batch.len();
            all.extend(batch);
            if n < PAGE {
                break;
            }
        }
        Ok(all)
    }

    /// The online recordings of a session, oldest first. The search runs from the day
    /// before the session's scheduled start (or 90 days back) to tomorrow.
    pub async fn session_records(&self, session: &EventSession) -> Result<Vec<RecordFile>, MtsLinkError> {
        let today = crate::clock::unix_millis(std::time::SystemTime::now()).div_euclid(86_400_000);
        let start = session
            .starts_at
            .as_deref()
            .and_then(crate::clock::parse_rfc3339_millis)
            .map_or(today - 90, |ms| ms.div_euclid(86_400_000).min(today));
        let day = |d: i64| {
            let (y, m, d) = crate::clock::civil_from_days(d);
            format!("{y:04}-{m:02}-{d:02}")
        };
        let mut records: Vec<RecordFile> = self
            .records(&day(start - 1), &day(today + 1))
            .await?
            .into_iter()
            .filter(|r| r.type_file.eq_ignore_ascii_case("record"))
            .filter(|r| r.event_session.as_ref().is_some_and(|s| s.id == session.id))
            .collect();
        records.sort_by_key(|r| (crate::clock::parse_rfc3339_millis(&r.create_at).unwrap_or(i64::MAX), r.id));
        Ok(records)
    }

    /// `POST /records/{id}/conversions` with `{"quality", "view"}` (`view: "none"`: the
    /// presenter's video only). One conversion at a time per account:
    /// [`MtsLinkError::ConversionBusy`] names the one running.
    pub async fn order_conversion(
        &self,
        record_id: u64,
        quality: &str,
        view: &str,
    ) -> Result<Conversion, MtsLinkError> {
        let body = serde_json::json!({ "quality": quality, "view": view });
        let path = format!("/records/{record_id}/conversions");
        match self.call_with(Method::POST, &path, &[], Body::Json(&body)).await {
            Ok(b) => Conversion::parse(&b),
            Err(MtsLinkError::Refused { message, field_errors }) => {
                let current = field_errors.iter().find(|(k, _)| k.eq_ignore_ascii_case("currentConversionID"));
                if current.is_some() || message.to_ascii_lowercase().contains("simultaneous") {
                    Err(MtsLinkError::ConversionBusy {
                        current: current.and_then(|(_, v)| v.trim_matches('"').parse().ok()),
                    })
                } else {
                    Err(MtsLinkError::Refused { message, field_errors })
                }
            }
            Err(e) => Err(e),
        }
    }

    /// `GET /records/conversions/{id}`.
    pub async fn conversion(&self, id: u64) -> Result<Conversion, MtsLinkError> {
        Conversion::parse(&self.call(Method::GET, &format!("/records/conversions/{id}"), &[], None).await?)
    }

    /// Downloads a finished conversion to `path` (written to `path.part`, then renamed).
    /// The API key goes with the request only when the link is under the API's own base (a
    /// storage or CDN link is never given the key). `progress` gets the bytes written so far.
    pub async fn download(
        &self,
        url: &str,
        path: &std::path::Path,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, MtsLinkError> {
        use tokio::io::AsyncWriteExt;
        let target = url::Url::parse(url).map_err(|e| MtsLinkError::Malformed(format!("download link: {e}")))?;
        if !matches!(target.scheme(), "http" | "https") {
            return Err(MtsLinkError::Malformed("download link: not an http(s) URL".into()));
        }
        let base = url::Url::parse(&self.base).map_err(|e| MtsLinkError::Config(e.to_string()))?;
        let client = http::download_client(Duration::from_secs(20), Duration::from_secs(60))
            .map_err(|e| MtsLinkError::Config(e.to_string()))?;
        let mut req = client.get(target.clone());
        if target.origin() == base.origin() && target.path().starts_with(base.path()) {
            req = req.header("x-auth-token", &self.token);
        }
        let mut resp = req.send().await.map_err(|e| MtsLinkError::Transport(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let (_, body) = http::read(resp).await.map_err(MtsLinkError::Transport)?;
            return Err(MtsLinkError::Api { status, message: http::excerpt(&body), field_errors: Vec::new() });
        }
        let part = path.with_extension("part");
        let io = |e: std::io::Error| MtsLinkError::Transport(format!("{}: {e}", part.display()));
        let mut file = tokio::fs::File::create(&part).await.map_err(io)?;
        let mut written = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(|e| MtsLinkError::Transport(e.without_url().to_string()))? {
            file.write_all(&chunk).await.map_err(io)?;
            written += chunk.len() as u64;
            progress(written);
        }
        file.sync_all().await.map_err(io)?;
        drop(file);
        tokio::fs::rename(&part, path).await.map_err(io)?;
        Ok(written)
    }

    /// A reader of a session's chat that hands out each message once.
    pub fn chat_reader(&self, session_id: u64) -> MtsChatReader {
        MtsChatReader { client: self.clone(), session_id, seen: HashSet::new() }
    }
}

/// Polls a session's chat and keeps what it has not handed out yet (by `id`): the API
/// returns the last messages with no cursor, so poll often (every 2–5 s) on busy chats.
#[derive(Debug)]
pub struct MtsChatReader {
    client: MtsLinkClient,
    session_id: u64,
    seen: HashSet<u64>,
}

impl MtsChatReader {
    /// The messages that arrived since the last call, oldest first.
    pub async fn poll(&mut self) -> Result<Vec<MtsChatMessage>, MtsLinkError> {
        let mut all = self.client.chat(self.session_id, 500).await?;
        all.sort_by_key(|m| m.id);
        Ok(all.into_iter().filter(|m| self.seen.insert(m.id)).collect())
    }
}

/// Every parser of an MTS Link answer, on any bytes; the length of what they said.
pub(super) fn fuzz_parsers(status: u16, body: &[u8]) -> usize {
    let mut said = error_of(status, body).to_string().len();
    said += parse::<Vec<MtsChatMessage>>(body).map_or(0, |m| m.len());
    said += parse::<EventSession>(body).map_or(0, |s| s.status.len());
    said += parse::<CreatedEvent>(body).map_or(0, |c| c.link.len());
    said += parse::<Vec<RecordFile>>(body).map_or(0, |r| r.len());
    said += Conversion::parse(body).map_or(0, |c| c.state.len());
    said
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn events_are_form_encoded_with_bracket_keys() {
        let e = NewEvent {
            name: "Лекция 1".into(),
            description: String::new(),
            starts_at: (2026, 12, 3, 9, 5),
            timezone: Some("Europe/Moscow".into()),
            access: EventAccess::Password("pw".into()),
            kind: "webinar".into(),
        };
        let f = e.form();
        let get = |k: &str| f.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("startsAt[date][year]"), Some("2026"));
        assert_eq!(get("startsAt[time][minute]"), Some("5"));
        assert_eq!(get("accessSettings[isPasswordRequired]"), Some("1"));
        assert_eq!(get("password"), Some("pw"));
        assert!(!format!("{e:?}").contains("pw"), "Debug shows no password");
    }

    #[test]
    fn errors_keep_the_field_errors_wherever_they_are() {
        assert_eq!(error_of(401, b""), MtsLinkError::TokenRejected);
        let nested =
            error_of(403, br#"{"error":{"code":403,"message":"No access","fieldErrors":{"name":"required"}}}"#);
        assert!(
            matches!(&nested, MtsLinkError::Refused { field_errors, .. } if field_errors == &[("name".to_string(), "required".to_string())])
        );
        let top = error_of(400, br#"{"error":{"code":400,"message":"Bad"},"fieldErrors":{"startsAt":"invalid"}}"#);
        assert!(matches!(&top, MtsLinkError::Api { field_errors, .. } if field_errors[0].0 == "startsAt"));
        assert!(matches!(error_of(502, b"<html>"), MtsLinkError::Malformed(_)));
    }

    #[test]
    fn conversion_jobs_are_read_in_every_documented_shape() {
        let wrapped =
            Conversion::parse(br#"{"data":{"id":"77","state":"processing","progress":"40%","recordFile":{"id":9}}}"#)
                .unwrap();
        assert_eq!(
            (wrapped.id, wrapped.state.as_str(), wrapped.progress, wrapped.record_id),
            (77, "processing", Some(40.0), Some(9))
        );
        assert!(!wrapped.is_done() && !wrapped.has_failed());
        let bare = Conversion::parse(
            br#"{"id":78,"status":"COMPLETED","progress":100,"recordFileId":9,"downloadUrl":"https://cdn/x.mp4"}"#,
        )
        .unwrap();
        assert_eq!((bare.state.as_str(), bare.record_id), ("completed", Some(9)));
        assert!(bare.is_done());
        assert!(Conversion::parse(br#"{"id":79,"state":"canceled"}"#).unwrap().has_failed());
        assert!(matches!(Conversion::parse(br#"{"state":"waiting"}"#), Err(MtsLinkError::Malformed(_))));
        let records: Vec<RecordFile> = serde_json::from_slice(
            br#"[{"id":"5","name":"r","createAt":"2026-10-30T19:00:00+03:00","typeFile":"record","eventSession":{"id":1200}},
                 {"id":6,"typeFile":"ConvertedRecord","eventSession":null}]"#,
        )
        .unwrap();
        assert_eq!((records[0].id, records[0].event_session.as_ref().map(|s| s.id)), (5, Some(1200)));
        assert_eq!(records[1].event_session, None);
    }
}
