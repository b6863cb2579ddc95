//! webinar.ru / MTS Link UserAPI v3: check a token, create an event and its session, start
//! and stop it, read its status and its chat. Requests are form-encoded with PHP-style
//! bracket keys (`startsAt[date][year]=2026`), the key travels in `x-auth-token`; updates
//! answer 204, creations 201. The RTMP ingest of a room is not in the API: the operator
//! pastes it (the room's "stream via RTMP" settings).

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
}

impl MtsLinkError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            MtsLinkError::TokenRejected | MtsLinkError::Refused { .. } => ErrorKind::Rejected,
            MtsLinkError::Api { .. } | MtsLinkError::Malformed(_) => ErrorKind::Protocol,
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
        let url = format!("{}{path}", self.base);
        let req = self.http.request(verb, url);
        let mut req = req.query(query).header("x-auth-token", &self.token);
        req = match form {
            Some(f) => req.form(f),
            None => req.header("Content-Length", "0"),
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
    said
}

#[cfg(test)]
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
}
