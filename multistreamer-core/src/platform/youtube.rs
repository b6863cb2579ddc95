//! YouTube's Live Streaming API (Data API v3): create a broadcast and its ingest stream,
//! bind them, go live and end, read stream health and the live chat.
//!
//! Quota (default 10,000 units a day per Google Cloud project, reset at midnight Pacific
//! Time): inserts, binds, transitions and deletes cost 50 units each, lists 1, a chat poll 5
//! — one "create, bind, go live, end" cycle is about 250 units, and chat polling every 5 s
//! about 3,600 units an hour. Errors are told apart by `errors[0].reason`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::google::{OAuthError, OAuthTokens};
use super::http;
use crate::error::ErrorKind;

pub const DEFAULT_API_BASE: &str = "https://www.googleapis.com/youtube/v3";

/// `errors[0].reason` of a YouTube error, for the ones an operator acts on differently.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum YouTubeReason {
    QuotaExceeded,
    RateLimitExceeded,
    LiveStreamingNotEnabled,
    ErrorStreamInactive,
    InvalidTransition,
    RedundantTransition,
    InsufficientPermissions,
    AuthError,
    NotFound,
    BindingNotAllowed,
    /// Any other reason, as YouTube spelled it.
    Other(String),
}

impl YouTubeReason {
    pub fn parse(reason: &str) -> YouTubeReason {
        match reason {
            "quotaExceeded" | "dailyLimitExceeded" => YouTubeReason::QuotaExceeded,
            "rateLimitExceeded" | "userRateLimitExceeded" | "userRequestsExceedRateLimit" => {
                YouTubeReason::RateLimitExceeded
            }
            "liveStreamingNotEnabled" => YouTubeReason::LiveStreamingNotEnabled,
            "errorStreamInactive" => YouTubeReason::ErrorStreamInactive,
            "invalidTransition" => YouTubeReason::InvalidTransition,
            "redundantTransition" => YouTubeReason::RedundantTransition,
            "insufficientPermissions" | "insufficientLivePermissions" | "forbidden" => {
                YouTubeReason::InsufficientPermissions
            }
            "authError" => YouTubeReason::AuthError,
            "liveBroadcastNotFound" | "liveStreamNotFound" | "notFound" | "liveChatNotFound" => YouTubeReason::NotFound,
            "liveBroadcastBindingNotAllowed" => YouTubeReason::BindingNotAllowed,
            other => YouTubeReason::Other(other.to_string()),
        }
    }

    /// What an operator should know, in a sentence.
    pub fn explain(&self) -> Option<&'static str> {
        Some(match self {
            YouTubeReason::QuotaExceeded => {
                "the daily YouTube API quota of this Google Cloud project is used up; it resets at midnight Pacific Time and nothing is retried before"
            }
            YouTubeReason::RateLimitExceeded => "too many requests to YouTube in a short time; retried with a backoff",
            YouTubeReason::LiveStreamingNotEnabled => {
                "this channel is not enabled for live streaming — enable it in YouTube Studio (it can take up to 24 h)"
            }
            YouTubeReason::ErrorStreamInactive => {
                "YouTube receives no data on this broadcast's stream yet — start the stream (and check its destination) before going live"
            }
            YouTubeReason::InvalidTransition => "YouTube does not allow this change from the broadcast's current state",
            YouTubeReason::RedundantTransition => "the broadcast is already in (or moving to) that state",
            YouTubeReason::InsufficientPermissions => {
                "the connected account may not do this (a missing permission or scope); connect it again"
            }
            YouTubeReason::AuthError => "YouTube refused the account's credentials; connect the account again",
            YouTubeReason::NotFound => "the broadcast or stream no longer exists on YouTube",
            YouTubeReason::BindingNotAllowed => "the broadcast's state no longer allows binding a stream",
            YouTubeReason::Other(_) => return None,
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            YouTubeReason::QuotaExceeded => "quotaExceeded",
            YouTubeReason::RateLimitExceeded => "rateLimitExceeded",
            YouTubeReason::LiveStreamingNotEnabled => "liveStreamingNotEnabled",
            YouTubeReason::ErrorStreamInactive => "errorStreamInactive",
            YouTubeReason::InvalidTransition => "invalidTransition",
            YouTubeReason::RedundantTransition => "redundantTransition",
            YouTubeReason::InsufficientPermissions => "insufficientPermissions",
            YouTubeReason::AuthError => "authError",
            YouTubeReason::NotFound => "notFound",
            YouTubeReason::BindingNotAllowed => "liveBroadcastBindingNotAllowed",
            YouTubeReason::Other(s) => s,
        }
    }
}

/// Why a YouTube call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum YouTubeError {
    /// YouTube answered with an error (`message` is YouTube's own text).
    #[error("{}", explain(reason, message))]
    Api { status: u16, reason: YouTubeReason, message: String },
    #[error("cannot reach YouTube: {0}")]
    Transport(String),
    #[error("unreadable answer from YouTube: {0}")]
    Malformed(String),
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error("YouTube API configuration: {0}")]
    Config(String),
    #[error("timed out: {0}")]
    Timeout(String),
}

fn explain(reason: &YouTubeReason, message: &str) -> String {
    match reason.explain() {
        Some(e) => e.to_string(),
        None => format!("YouTube: {message} ({})", reason.as_str()),
    }
}

impl YouTubeError {
    pub fn reason(&self) -> Option<&YouTubeReason> {
        match self {
            YouTubeError::Api { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Whether trying again later may succeed (not before the quota resets for
    /// `quotaExceeded`).
    pub fn is_retryable(&self) -> bool {
        match self {
            YouTubeError::Api { reason, status, .. } => {
                matches!(reason, YouTubeReason::RateLimitExceeded | YouTubeReason::ErrorStreamInactive)
                    || *status >= 500
            }
            YouTubeError::Transport(_) | YouTubeError::Timeout(_) => true,
            _ => false,
        }
    }

    /// Whether the operator must connect the account again.
    pub fn needs_reconnect(&self) -> bool {
        match self {
            YouTubeError::OAuth(e) => e.needs_reconnect(),
            YouTubeError::Api { reason, .. } => matches!(reason, YouTubeReason::AuthError),
            _ => false,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            YouTubeError::Api { status, .. } if *status >= 500 => ErrorKind::Protocol,
            YouTubeError::Api { .. } => ErrorKind::Rejected,
            YouTubeError::Transport(_) => ErrorKind::Disconnected,
            YouTubeError::Timeout(_) => ErrorKind::Timeout,
            YouTubeError::Malformed(_) => ErrorKind::Protocol,
            YouTubeError::OAuth(e) => e.kind(),
            YouTubeError::Config(_) => ErrorKind::Config,
        }
    }
}

/// `status.privacyStatus` of a new broadcast.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BroadcastPrivacy {
    Public,
    #[default]
    Unlisted,
    Private,
}

impl BroadcastPrivacy {
    pub fn as_str(self) -> &'static str {
        match self {
            BroadcastPrivacy::Public => "public",
            BroadcastPrivacy::Unlisted => "unlisted",
            BroadcastPrivacy::Private => "private",
        }
    }
}

impl std::str::FromStr for BroadcastPrivacy {
    type Err = String;

    fn from_str(s: &str) -> Result<BroadcastPrivacy, String> {
        match s {
            "public" => Ok(BroadcastPrivacy::Public),
            "unlisted" => Ok(BroadcastPrivacy::Unlisted),
            "private" => Ok(BroadcastPrivacy::Private),
            _ => Err(format!("{s:?}: expected public, unlisted or private")),
        }
    }
}

/// `contentDetails.latencyPreference`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LatencyPreference {
    #[default]
    Normal,
    Low,
    UltraLow,
}

impl LatencyPreference {
    pub fn as_str(self) -> &'static str {
        match self {
            LatencyPreference::Normal => "normal",
            LatencyPreference::Low => "low",
            LatencyPreference::UltraLow => "ultraLow",
        }
    }
}

impl std::str::FromStr for LatencyPreference {
    type Err = String;

    fn from_str(s: &str) -> Result<LatencyPreference, String> {
        match s {
            "normal" => Ok(LatencyPreference::Normal),
            "low" => Ok(LatencyPreference::Low),
            "ultraLow" => Ok(LatencyPreference::UltraLow),
            _ => Err(format!("{s:?}: expected normal, low or ultraLow")),
        }
    }
}

/// A broadcast to create.
#[derive(Debug, Clone)]
pub struct NewBroadcast {
    pub title: String,
    pub description: String,
    /// RFC 3339, e.g. `2026-10-30T19:00:00Z`.
    pub scheduled_start: String,
    pub privacy: BroadcastPrivacy,
    pub latency: LatencyPreference,
    pub dvr: bool,
    pub made_for_kids: bool,
    /// YouTube goes live by itself when data arrives (a manual transition then answers
    /// `redundantTransition`, which counts as success).
    pub auto_start: bool,
    pub auto_stop: bool,
    /// Needed for the `testing` state.
    pub monitor_stream: bool,
}

/// The ingest stream to create with a broadcast (`cdn`).
#[derive(Debug, Clone)]
pub struct NewStream {
    pub title: String,
    /// `240p` … `2160p` or `variable`.
    pub resolution: String,
    /// `30fps`, `60fps` or `variable`.
    pub frame_rate: String,
}

impl NewStream {
    /// The `cdn` values for a picture of `height` lines at `fps`.
    pub fn for_picture(title: &str, height: Option<u32>, fps: Option<f64>) -> NewStream {
        let resolution = match height {
            Some(h) if h >= 2160 => "2160p",
            Some(h) if h >= 1440 => "1440p",
            Some(h) if h >= 1080 => "1080p",
            Some(h) if h >= 720 => "720p",
            Some(h) if h >= 480 => "480p",
            Some(h) if h >= 360 => "360p",
            Some(_) => "240p",
            None => "variable",
        };
        let frame_rate = match fps {
            Some(f) if f > 31.0 => "60fps",
            Some(_) => "30fps",
            None => "variable",
        };
        NewStream { title: title.to_string(), resolution: resolution.into(), frame_rate: frame_rate.into() }
    }
}

/// A YouTube channel (the account a broadcast is created on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub id: String,
    pub title: String,
}

/// A broadcast as YouTube reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBroadcast {
    pub id: String,
    pub title: String,
    pub scheduled_start_time: Option<String>,
    /// `created`, `ready`, `testStarting`, `testing`, `liveStarting`, `live`, `complete`,
    /// `revoked`.
    pub life_cycle_status: String,
    pub privacy_status: String,
    pub bound_stream_id: Option<String>,
    pub live_chat_id: Option<String>,
    pub monitor_stream: bool,
}

impl LiveBroadcast {
    pub fn watch_url(&self) -> String {
        format!("https://www.youtube.com/watch?v={}", self.id)
    }
}

/// RTMP or RTMPS ingest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IngestProtocol {
    #[default]
    Rtmps,
    Rtmp,
}

/// `cdn.ingestionInfo`. `Debug` hides the stream key.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IngestionInfo {
    pub stream_name: String,
    pub ingestion_address: String,
    pub backup_ingestion_address: String,
    pub rtmps_ingestion_address: String,
    pub rtmps_backup_ingestion_address: String,
}

impl fmt::Debug for IngestionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestionInfo")
            .field("ingestion_address", &self.ingestion_address)
            .field("rtmps_ingestion_address", &self.rtmps_ingestion_address)
            .finish_non_exhaustive()
    }
}

/// One `healthStatus.configurationIssues[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ConfigurationIssue {
    #[serde(rename = "type")]
    pub kind: String,
    /// `info`, `warning` or `error`.
    pub severity: String,
    pub reason: String,
    pub description: String,
}

/// An ingest stream as YouTube reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveStream {
    pub id: String,
    pub title: String,
    pub ingestion: IngestionInfo,
    /// `created`, `ready`, `active` (YouTube receives data), `inactive`, `error`.
    pub stream_status: String,
    /// `good`, `ok`, `bad`, `noData`, `revoked`.
    pub health: Option<String>,
    pub configuration_issues: Vec<ConfigurationIssue>,
}

impl LiveStream {
    /// The URL to publish to: the address for `protocol` (RTMPS falls back to RTMP when the
    /// platform offers no RTMPS address), `/`, the stream key. A backup address keeps its
    /// `?backup=1` before the key, as OBS builds it.
    pub fn ingest_url(&self, protocol: IngestProtocol, backup: bool) -> Option<String> {
        let i = &self.ingestion;
        let (rtmps, rtmp) = if backup {
            (&i.rtmps_backup_ingestion_address, &i.backup_ingestion_address)
        } else {
            (&i.rtmps_ingestion_address, &i.ingestion_address)
        };
        let address = match protocol {
            IngestProtocol::Rtmps if !rtmps.is_empty() => rtmps,
            _ => rtmp,
        };
        if address.is_empty() || i.stream_name.is_empty() {
            return None;
        }
        Some(format!("{}/{}", address.trim_end_matches('/'), i.stream_name))
    }
}

// What the API sends, as it spells it.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WireBroadcast {
    id: String,
    snippet: WireSnippet,
    status: WireStatus,
    content_details: WireContentDetails,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WireSnippet {
    title: String,
    scheduled_start_time: Option<String>,
    live_chat_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WireStatus {
    life_cycle_status: String,
    privacy_status: String,
    stream_status: String,
    health_status: Option<WireHealth>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WireHealth {
    status: String,
    configuration_issues: Vec<ConfigurationIssue>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WireContentDetails {
    bound_stream_id: Option<String>,
    monitor_stream: Option<WireMonitor>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WireMonitor {
    enable_monitor_stream: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WireStream {
    id: String,
    snippet: WireSnippet,
    cdn: WireCdn,
    status: WireStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WireCdn {
    ingestion_info: IngestionInfo,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireChannel {
    id: String,
    snippet: WireSnippet,
}

#[derive(Deserialize)]
struct WireList<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

#[derive(Deserialize)]
struct WireErrorEnvelope {
    error: WireError,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<WireErrorItem>,
}

#[derive(Deserialize)]
struct WireErrorItem {
    #[serde(default)]
    reason: String,
}

impl From<WireBroadcast> for LiveBroadcast {
    fn from(w: WireBroadcast) -> LiveBroadcast {
        LiveBroadcast {
            id: w.id,
            title: w.snippet.title,
            scheduled_start_time: w.snippet.scheduled_start_time,
            life_cycle_status: w.status.life_cycle_status,
            privacy_status: w.status.privacy_status,
            bound_stream_id: w.content_details.bound_stream_id,
            live_chat_id: w.snippet.live_chat_id,
            monitor_stream: w.content_details.monitor_stream.is_some_and(|m| m.enable_monitor_stream),
        }
    }
}

impl From<WireStream> for LiveStream {
    fn from(w: WireStream) -> LiveStream {
        let health = w.status.health_status.unwrap_or_default();
        LiveStream {
            id: w.id,
            title: w.snippet.title,
            ingestion: w.cdn.ingestion_info,
            stream_status: w.status.stream_status,
            health: (!health.status.is_empty()).then_some(health.status),
            configuration_issues: health.configuration_issues,
        }
    }
}

/// The error of a non-2xx answer: Google's envelope, by `errors[0].reason`.
fn error_of(status: u16, body: &[u8]) -> YouTubeError {
    match serde_json::from_slice::<WireErrorEnvelope>(body) {
        Ok(env) => {
            let reason = env.error.errors.first().map(|e| e.reason.as_str()).unwrap_or("");
            let reason = match (reason, status) {
                ("", 401) => YouTubeReason::AuthError,
                ("", 404) => YouTubeReason::NotFound,
                (r, _) => YouTubeReason::parse(r),
            };
            YouTubeError::Api { status, reason, message: env.error.message }
        }
        Err(_) => YouTubeError::Malformed(format!("HTTP {status}: {}", http::excerpt(body))),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, YouTubeError> {
    serde_json::from_slice(body).map_err(|e| YouTubeError::Malformed(e.to_string()))
}

/// A YouTube Live Streaming API client for one connected account. Cheap to clone.
#[derive(Clone)]
pub struct YouTubeClient {
    http: reqwest::Client,
    base: String,
    tokens: Arc<OAuthTokens>,
}

impl fmt::Debug for YouTubeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YouTubeClient").field("base", &self.base).finish_non_exhaustive()
    }
}

impl YouTubeClient {
    /// `base`: [`DEFAULT_API_BASE`] or a stand-in (tests).
    pub fn new(base: &str, tokens: Arc<OAuthTokens>) -> Result<YouTubeClient, YouTubeError> {
        let parsed = url::Url::parse(base).map_err(|e| YouTubeError::Config(format!("{base}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(YouTubeError::Config(format!("{base}: not an http(s) URL")));
        }
        let http = http::client(Duration::from_secs(20)).map_err(|e| YouTubeError::Config(e.to_string()))?;
        Ok(YouTubeClient { http, base: base.trim_end_matches('/').to_string(), tokens })
    }

    pub fn tokens(&self) -> &Arc<OAuthTokens> {
        &self.tokens
    }

    async fn send(
        &self,
        verb: &Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        token: &str,
    ) -> Result<(u16, Bytes), YouTubeError> {
        let url = format!("{}{path}", self.base);
        let req = self.http.request(verb.clone(), url);
        let mut req = req.query(query).bearer_auth(token);
        req = match body {
            Some(b) => req.header("Content-Type", "application/json").body(b.to_string()),
            None => req.header("Content-Length", "0"),
        };
        let resp = req.send().await.map_err(|e| YouTubeError::Transport(e.without_url().to_string()))?;
        http::read(resp).await.map_err(YouTubeError::Transport)
    }

    /// One call; a 401 refreshes the token once and tries again.
    async fn call(
        &self,
        verb: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Bytes, YouTubeError> {
        let token = self.tokens.access_token().await?;
        let (mut status, mut bytes) = self.send(&verb, path, query, body.as_ref(), &token).await?;
        if status == 401 {
            let fresh = self.tokens.refresh_after_rejection(&token).await?;
            (status, bytes) = self.send(&verb, path, query, body.as_ref(), &fresh).await?;
        }
        if (200..300).contains(&status) { Ok(bytes) } else { Err(error_of(status, &bytes)) }
    }

    /// `liveBroadcasts.insert`.
    pub async fn insert_broadcast(&self, b: &NewBroadcast) -> Result<LiveBroadcast, YouTubeError> {
        let body = json!({
            "snippet": { "title": b.title, "description": b.description, "scheduledStartTime": b.scheduled_start },
            "status": { "privacyStatus": b.privacy.as_str(), "selfDeclaredMadeForKids": b.made_for_kids },
            "contentDetails": {
                "enableAutoStart": b.auto_start, "enableAutoStop": b.auto_stop, "enableDvr": b.dvr,
                "latencyPreference": b.latency.as_str(),
                "monitorStream": { "enableMonitorStream": b.monitor_stream },
            },
        });
        let bytes = self
            .call(Method::POST, "/liveBroadcasts", &[("part", "id,snippet,status,contentDetails")], Some(body))
            .await?;
        Ok(parse::<WireBroadcast>(&bytes)?.into())
    }

    /// `liveStreams.insert` (RTMP ingestion).
    pub async fn insert_stream(&self, s: &NewStream) -> Result<LiveStream, YouTubeError> {
        let body = json!({
            "snippet": { "title": s.title },
            "cdn": { "ingestionType": "rtmp", "resolution": s.resolution, "frameRate": s.frame_rate },
            "contentDetails": { "isReusable": false },
        });
        let bytes = self
            .call(Method::POST, "/liveStreams", &[("part", "id,snippet,cdn,contentDetails,status")], Some(body))
            .await?;
        Ok(parse::<WireStream>(&bytes)?.into())
    }

    /// `liveBroadcasts.bind`.
    pub async fn bind(&self, broadcast_id: &str, stream_id: &str) -> Result<LiveBroadcast, YouTubeError> {
        let q = [("id", broadcast_id), ("streamId", stream_id), ("part", "id,snippet,status,contentDetails")];
        let bytes = self.call(Method::POST, "/liveBroadcasts/bind", &q, None).await?;
        Ok(parse::<WireBroadcast>(&bytes)?.into())
    }

    /// Creates a broadcast and its stream and binds them. When a step fails, what was
    /// already created is deleted (best effort) so nothing is left orphaned on the channel.
    pub async fn create_broadcast(
        &self,
        b: &NewBroadcast,
        s: &NewStream,
    ) -> Result<(LiveBroadcast, LiveStream), YouTubeError> {
        let broadcast = self.insert_broadcast(b).await?;
        let stream = match self.insert_stream(s).await {
            Ok(s) => s,
            Err(e) => {
                self.clean_up(Some(&broadcast.id), None).await;
                return Err(e);
            }
        };
        match self.bind(&broadcast.id, &stream.id).await {
            Ok(bound) => Ok((bound, stream)),
            Err(e) => {
                self.clean_up(Some(&broadcast.id), Some(&stream.id)).await;
                Err(e)
            }
        }
    }

    async fn clean_up(&self, broadcast: Option<&str>, stream: Option<&str>) {
        if let Some(id) = broadcast
            && let Err(e) = self.delete_broadcast(id).await
        {
            tracing::warn!(broadcast = id, error = %e, "could not delete the broadcast after a failed creation");
        }
        if let Some(id) = stream
            && let Err(e) = self.delete_stream(id).await
        {
            tracing::warn!(stream = id, error = %e, "could not delete the stream after a failed creation");
        }
    }

    /// `liveBroadcasts.transition` to `testing`, `live` or `complete`. `redundantTransition`
    /// (already there, or on its way) is a success: the broadcast is read back.
    pub async fn transition(&self, broadcast_id: &str, to: &str) -> Result<LiveBroadcast, YouTubeError> {
        let q = [("broadcastStatus", to), ("id", broadcast_id), ("part", "id,snippet,status,contentDetails")];
        match self.call(Method::POST, "/liveBroadcasts/transition", &q, None).await {
            Ok(bytes) => Ok(parse::<WireBroadcast>(&bytes)?.into()),
            Err(YouTubeError::Api { reason: YouTubeReason::RedundantTransition, .. }) => {
                self.broadcast(broadcast_id).await?.ok_or_else(|| YouTubeError::Api {
                    status: 404,
                    reason: YouTubeReason::NotFound,
                    message: "gone".into(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// `liveBroadcasts.list?id=`.
    pub async fn broadcast(&self, id: &str) -> Result<Option<LiveBroadcast>, YouTubeError> {
        let q = [("id", id), ("part", "id,snippet,status,contentDetails")];
        let bytes = self.call(Method::GET, "/liveBroadcasts", &q, None).await?;
        Ok(parse::<WireList<WireBroadcast>>(&bytes)?.items.into_iter().next().map(Into::into))
    }

    /// Upcoming broadcasts of the channel (to attach one that exists).
    pub async fn upcoming_broadcasts(&self) -> Result<Vec<LiveBroadcast>, YouTubeError> {
        let q = [("broadcastStatus", "upcoming"), ("part", "id,snippet,status,contentDetails"), ("maxResults", "50")];
        let bytes = self.call(Method::GET, "/liveBroadcasts", &q, None).await?;
        Ok(parse::<WireList<WireBroadcast>>(&bytes)?.items.into_iter().map(Into::into).collect())
    }

    /// The connected account's channel (`channels.list?mine=true`, 1 unit): its id and
    /// title, to name the account.
    pub async fn channel(&self) -> Result<Option<Channel>, YouTubeError> {
        let bytes = self.call(Method::GET, "/channels", &[("part", "snippet"), ("mine", "true")], None).await?;
        let list = parse::<WireList<WireChannel>>(&bytes)?;
        Ok(list.items.into_iter().next().map(|c| Channel { id: c.id, title: c.snippet.title }))
    }

    /// `liveStreams.list?id=`: the stream's status and health.
    pub async fn stream(&self, id: &str) -> Result<Option<LiveStream>, YouTubeError> {
        let q = [("id", id), ("part", "id,snippet,cdn,status")];
        let bytes = self.call(Method::GET, "/liveStreams", &q, None).await?;
        Ok(parse::<WireList<WireStream>>(&bytes)?.items.into_iter().next().map(Into::into))
    }

    pub async fn delete_broadcast(&self, id: &str) -> Result<(), YouTubeError> {
        self.call(Method::DELETE, "/liveBroadcasts", &[("id", id)], None).await.map(drop)
    }

    pub async fn delete_stream(&self, id: &str) -> Result<(), YouTubeError> {
        self.call(Method::DELETE, "/liveStreams", &[("id", id)], None).await.map(drop)
    }

    /// Goes live: waits (polling every `every`, within `within`) until the bound stream is
    /// `active`, transitions through `testing` when the monitor stream is on, then to `live`,
    /// and waits through the `*Starting` states.
    pub async fn go_live(
        &self,
        broadcast_id: &str,
        every: Duration,
        within: Duration,
    ) -> Result<LiveBroadcast, YouTubeError> {
        let deadline = tokio::time::Instant::now() + within;
        let not_found =
            || YouTubeError::Api { status: 404, reason: YouTubeReason::NotFound, message: broadcast_id.into() };
        let b = self.broadcast(broadcast_id).await?.ok_or_else(not_found)?;
        if b.life_cycle_status == "live" {
            return Ok(b);
        }
        let stream_id = b.bound_stream_id.clone().ok_or_else(|| YouTubeError::Api {
            status: 400,
            reason: YouTubeReason::ErrorStreamInactive,
            message: "the broadcast has no bound stream".into(),
        })?;
        loop {
            let s = self.stream(&stream_id).await?;
            if s.as_ref().is_some_and(|s| s.stream_status == "active") {
                break;
            }
            if tokio::time::Instant::now() + every > deadline {
                return Err(YouTubeError::Api {
                    status: 403,
                    reason: YouTubeReason::ErrorStreamInactive,
                    message: "the stream never became active".into(),
                });
            }
            tokio::time::sleep(every).await;
        }
        let mut steps = Vec::new();
        if b.monitor_stream && !matches!(b.life_cycle_status.as_str(), "testing" | "liveStarting") {
            steps.push(("testing", "testing"));
        }
        steps.push(("live", "live"));
        for (to, reached) in steps {
            let mut current = self.transition(broadcast_id, to).await?;
            while current.life_cycle_status != reached {
                if tokio::time::Instant::now() + every > deadline {
                    return Err(YouTubeError::Timeout(format!("the broadcast stayed {}", current.life_cycle_status)));
                }
                tokio::time::sleep(every).await;
                current = self.broadcast(broadcast_id).await?.ok_or_else(not_found)?;
            }
            if reached == "live" {
                return Ok(current);
            }
        }
        Err(not_found())
    }

    /// A reader of the broadcast's live chat (`snippet.liveChatId`).
    pub fn chat(&self, live_chat_id: &str) -> ChatReader {
        ChatReader {
            client: self.clone(),
            live_chat_id: live_chat_id.to_string(),
            page_token: None,
            wait: Duration::ZERO,
            ended: false,
        }
    }
}

/// What a chat item is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChatKind {
    /// A text message (also a Super Chat's comment).
    Message,
    /// A message was deleted: `target` is its id.
    Deleted { target: String },
    /// The chat ended.
    Ended,
    /// Another event (`newSponsorEvent`, `userBannedEvent`, …), by its type.
    Other(String),
}

/// One chat item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub id: String,
    /// RFC 3339 with milliseconds, as YouTube sends it.
    pub published_at: String,
    pub author: String,
    pub text: String,
    pub kind: ChatKind,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WireChatList {
    next_page_token: Option<String>,
    polling_interval_millis: Option<u64>,
    offline_at: Option<String>,
    items: Vec<WireChatItem>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WireChatItem {
    id: String,
    snippet: WireChatSnippet,
    author_details: WireAuthor,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WireChatSnippet {
    #[serde(rename = "type")]
    kind: String,
    published_at: String,
    display_message: String,
    message_deleted_details: Option<WireDeleted>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WireDeleted {
    deleted_message_id: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WireAuthor {
    display_name: String,
}

/// Polls `liveChatMessages.list` (5 quota units a call), waiting at least the
/// `pollingIntervalMillis` YouTube asks for between calls, and stops when the chat ended
/// (`offlineAt`, a `chatEndedEvent`, or `liveChatEnded`).
#[derive(Debug)]
pub struct ChatReader {
    client: YouTubeClient,
    live_chat_id: String,
    page_token: Option<String>,
    wait: Duration,
    ended: bool,
}

impl ChatReader {
    /// The next batch of items (possibly empty); `None` once the chat ended.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<ChatMessage>>, YouTubeError> {
        if self.ended {
            return Ok(None);
        }
        tokio::time::sleep(self.wait).await;
        let mut q = vec![("liveChatId", self.live_chat_id.as_str()), ("part", "id,snippet,authorDetails")];
        if let Some(t) = &self.page_token {
            q.push(("pageToken", t.as_str()));
        }
        let bytes = match self.client.call(Method::GET, "/liveChat/messages", &q, None).await {
            Ok(b) => b,
            Err(YouTubeError::Api { reason: YouTubeReason::Other(r), .. }) if r == "liveChatEnded" => {
                self.ended = true;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let list: WireChatList = parse(&bytes)?;
        self.wait = Duration::from_millis(list.polling_interval_millis.unwrap_or(5000).max(1000));
        if list.next_page_token.is_some() {
            self.page_token = list.next_page_token;
        }
        let messages: Vec<ChatMessage> = list
            .items
            .into_iter()
            .map(|i| {
                let kind = match i.snippet.kind.as_str() {
                    "textMessageEvent" | "superChatEvent" | "superStickerEvent" => ChatKind::Message,
                    "messageDeletedEvent" | "messageRetractedEvent" => ChatKind::Deleted {
                        target: i.snippet.message_deleted_details.map(|d| d.deleted_message_id).unwrap_or_default(),
                    },
                    "chatEndedEvent" => ChatKind::Ended,
                    other => ChatKind::Other(other.to_string()),
                };
                ChatMessage {
                    id: i.id,
                    published_at: i.snippet.published_at,
                    author: i.author_details.display_name,
                    text: i.snippet.display_message,
                    kind,
                }
            })
            .collect();
        if list.offline_at.is_some() || messages.iter().any(|m| m.kind == ChatKind::Ended) {
            self.ended = true;
        }
        Ok(Some(messages))
    }
}

/// Every parser of a YouTube answer, on any bytes; the length of what they said.
pub(super) fn fuzz_parsers(status: u16, body: &[u8]) -> usize {
    let mut said = error_of(status, body).to_string().len();
    if let Ok(b) = parse::<WireBroadcast>(body) {
        said += LiveBroadcast::from(b).watch_url().len();
    }
    if let Ok(s) = parse::<WireStream>(body) {
        let s = LiveStream::from(s);
        said += s.ingest_url(IngestProtocol::Rtmps, true).map_or(0, |u| u.len());
    }
    if let Ok(list) = parse::<WireList<WireBroadcast>>(body) {
        said += list.items.len();
    }
    if let Ok(list) = parse::<WireList<WireStream>>(body) {
        said += list.items.len();
    }
    if let Ok(chat) = parse::<WireChatList>(body) {
        said += chat.items.len();
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_told_apart_by_reason_and_explained() {
        let quota = br#"{"error":{"code":403,"message":"The request cannot be completed because you have exceeded your <a href=\"/youtube/v3/getting-started#quota\">quota</a>.","errors":[{"message":"x","domain":"youtube.quota","reason":"quotaExceeded"}]}}"#;
        let e = error_of(403, quota);
        assert_eq!(e.reason(), Some(&YouTubeReason::QuotaExceeded));
        assert!(e.to_string().contains("midnight Pacific Time"), "{e}");
        assert!(!e.is_retryable());
        let inactive = br#"{"error":{"code":403,"message":"Stream is inactive","errors":[{"domain":"youtube.liveBroadcast","reason":"errorStreamInactive","message":"Stream is inactive"}]}}"#;
        assert_eq!(error_of(403, inactive).reason(), Some(&YouTubeReason::ErrorStreamInactive));
        let auth = br#"{"error":{"code":401,"message":"Invalid Credentials","errors":[{"domain":"global","reason":"authError","location":"Authorization"}]}}"#;
        assert!(error_of(401, auth).needs_reconnect());
        let odd = error_of(
            400,
            br#"{"error":{"code":400,"message":"Title required","errors":[{"reason":"titleRequired"}]}}"#,
        );
        assert_eq!(odd.to_string(), "YouTube: Title required (titleRequired)");
        assert!(matches!(error_of(502, b"<html>Bad Gateway</html>"), YouTubeError::Malformed(_)));
        assert!(matches!(parse::<WireBroadcast>(b"{\"id\": 3"), Err(YouTubeError::Malformed(_))));
    }

    #[test]
    fn ingest_urls_follow_the_ingestion_info() {
        let s = LiveStream {
            id: "s".into(),
            title: String::new(),
            ingestion: IngestionInfo {
                stream_name: "abcd-efgh".into(),
                ingestion_address: "rtmp://a.rtmp.youtube.com/live2".into(),
                backup_ingestion_address: "rtmp://b.rtmp.youtube.com/live2?backup=1".into(),
                rtmps_ingestion_address: "rtmps://a.rtmps.youtube.com/live2".into(),
                rtmps_backup_ingestion_address: "rtmps://b.rtmps.youtube.com/live2?backup=1".into(),
            },
            stream_status: "ready".into(),
            health: None,
            configuration_issues: Vec::new(),
        };
        assert_eq!(
            s.ingest_url(IngestProtocol::Rtmps, false).as_deref(),
            Some("rtmps://a.rtmps.youtube.com/live2/abcd-efgh")
        );
        assert_eq!(
            s.ingest_url(IngestProtocol::Rtmp, true).as_deref(),
            Some("rtmp://b.rtmp.youtube.com/live2?backup=1/abcd-efgh")
        );
        let backup: crate::rtmp::RtmpUrl =
            s.ingest_url(IngestProtocol::Rtmp, true).unwrap_or_default().parse().expect("parses");
        assert_eq!((backup.app.as_str(), backup.key.as_str()), ("live2?backup=1", "abcd-efgh"));
        let mut no_rtmps = s.clone();
        no_rtmps.ingestion.rtmps_ingestion_address.clear();
        assert_eq!(
            no_rtmps.ingest_url(IngestProtocol::Rtmps, false).as_deref(),
            Some("rtmp://a.rtmp.youtube.com/live2/abcd-efgh"),
            "RTMP when no RTMPS is offered"
        );
        assert!(!format!("{:?}", s.ingestion).contains("abcd-efgh"), "Debug hides the key");
        assert_eq!(NewStream::for_picture("t", Some(1080), Some(29.97)).resolution, "1080p");
        assert_eq!(NewStream::for_picture("t", Some(720), Some(60.0)).frame_rate, "60fps");
    }
}
