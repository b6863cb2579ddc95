//! Connected platform accounts: YouTube over OAuth (device flow, or the authorization-code
//! flow with PKCE when the server has a public URL) and MTS Link by API token. Credentials
//! are sealed with the data directory's key before they reach the database; a client per
//! account is kept while the server runs, and a refreshed token is sealed and stored again.

pub mod broadcasts;
pub mod monitor;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use multistreamer_core::platform::google::{DEFAULT_AUTH_URL, DEFAULT_OAUTH_BASE, YOUTUBE_SCOPE};
use multistreamer_core::platform::{
    GoogleOAuth, MtsLinkClient, MtsLinkError, OAuthError, OAuthTokens, Pkce, SecretBox, Tokens, YouTubeClient,
    YouTubeError, mtslink, youtube,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::db::{self, Db, PlatformRow};
use crate::error::{AppError, ErrorKind};
use crate::sync::lock;

/// Where the platforms are and which OAuth client the server uses (flags and environment).
#[derive(Clone, Debug)]
pub struct PlatformConfig {
    pub youtube_client_id: Option<String>,
    pub youtube_client_secret: Option<String>,
    pub youtube_api_base: String,
    pub google_oauth_base: String,
    pub google_auth_url: String,
    pub mtslink_api_base: String,
    /// `https://…` the operator's browser reaches the server at: enables the
    /// authorization-code flow (redirect to `{public_url}/oauth/youtube/callback`).
    pub public_url: Option<String>,
}

impl Default for PlatformConfig {
    fn default() -> PlatformConfig {
        PlatformConfig {
            youtube_client_id: None,
            youtube_client_secret: None,
            youtube_api_base: youtube::DEFAULT_API_BASE.into(),
            google_oauth_base: DEFAULT_OAUTH_BASE.into(),
            google_auth_url: DEFAULT_AUTH_URL.into(),
            mtslink_api_base: mtslink::DEFAULT_API_BASE.into(),
            public_url: None,
        }
    }
}

/// A connected account's client.
#[derive(Clone, Debug)]
pub enum Account {
    YouTube(YouTubeClient),
    MtsLink(MtsLinkClient),
}

/// YouTube tokens as sealed in the database.
#[derive(Serialize, Deserialize)]
struct StoredTokens {
    access_token: String,
    refresh_token: Option<String>,
    /// Unix seconds.
    expires_at: u64,
    scope: String,
}

impl From<&Tokens> for StoredTokens {
    fn from(t: &Tokens) -> StoredTokens {
        StoredTokens {
            access_token: t.access_token.clone(),
            refresh_token: t.refresh_token.clone(),
            expires_at: t.expires_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            scope: t.scope.clone(),
        }
    }
}

impl From<StoredTokens> for Tokens {
    fn from(s: StoredTokens) -> Tokens {
        Tokens {
            access_token: s.access_token,
            refresh_token: s.refresh_token,
            expires_at: UNIX_EPOCH + Duration::from_secs(s.expires_at),
            scope: s.scope,
        }
    }
}

/// What an account's sealed credentials are bound to: they open only for that row.
fn account_context(id: i64, kind: &str) -> String {
    format!("platform-account:{id}:{kind}")
}

const CLIENT_SECRET: &str = "setting:youtube_client_secret";

/// A device flow the operator is going through.
#[derive(Clone, Debug)]
pub enum FlowState {
    Pending,
    Connected(i64),
    Denied,
    Expired,
    Failed(String),
}

struct DeviceFlow {
    state: FlowState,
    started: Instant,
}

/// An authorization-code flow waiting for Google's redirect.
struct CodeFlow {
    verifier: String,
    started: Instant,
}

/// What the last health poll of a broadcast's stream said.
#[derive(Clone, Debug, Serialize)]
pub struct Health {
    /// `liveStreams` `status.streamStatus` (`active`, `ready`, `inactive`…); MTS Link: the
    /// session's own status (`ACTIVE`, `START`, `STOP`).
    pub stream_status: String,
    /// `healthStatus.status` (`good`, `ok`, `bad`, `noData`); `null` when not reported.
    pub status: Option<String>,
    pub issues: Vec<HealthIssue>,
    /// Unix seconds of the poll.
    pub checked_at: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct HealthIssue {
    #[serde(rename = "type")]
    pub kind: String,
    pub severity: String,
    pub description: String,
}

/// The accounts, their clients, the OAuth flows in progress and the last health of each
/// monitored broadcast.
pub struct Platforms {
    db: Db,
    pub config: PlatformConfig,
    secrets: Arc<SecretBox>,
    clients: Mutex<HashMap<i64, Account>>,
    flows: Mutex<HashMap<String, DeviceFlow>>,
    code_flows: Mutex<HashMap<String, CodeFlow>>,
    health: Mutex<HashMap<i64, Health>>,
}

impl std::fmt::Debug for Platforms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platforms").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The API error of a YouTube failure: refused (422) or failed (502), with its reason.
pub fn youtube_error(e: &YouTubeError) -> AppError {
    let reason = match e {
        YouTubeError::Api { reason, .. } => Some(reason.as_str().to_string()),
        YouTubeError::OAuth(o) => oauth_reason(o),
        _ => None,
    };
    let failed = match e {
        YouTubeError::Api { status, .. } => *status >= 500,
        YouTubeError::OAuth(o) => matches!(o, OAuthError::Transport(_) | OAuthError::Malformed(_)),
        YouTubeError::Transport(_) | YouTubeError::Malformed(_) | YouTubeError::Timeout(_) => true,
        _ => false,
    };
    AppError::platform(failed, e.to_string(), reason)
}

fn oauth_reason(e: &OAuthError) -> Option<String> {
    Some(
        match e {
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::AccessDenied => "access_denied",
            OAuthError::ExpiredToken => "expired_token",
            OAuthError::Other { error, .. } => return Some(error.clone()),
            _ => return None,
        }
        .to_string(),
    )
}

pub fn oauth_error(e: &OAuthError) -> AppError {
    let failed = matches!(e, OAuthError::Transport(_) | OAuthError::Malformed(_) | OAuthError::Other { .. });
    AppError::platform(failed, e.to_string(), oauth_reason(e))
}

/// The API error of an MTS Link failure.
pub fn mtslink_error(e: &MtsLinkError) -> AppError {
    let (failed, reason) = match e {
        MtsLinkError::TokenRejected => (false, Some("unauthorized".to_string())),
        MtsLinkError::Refused { .. } => (false, Some("forbidden".to_string())),
        MtsLinkError::Api { status, .. } => (*status >= 500, Some(format!("http_{status}"))),
        MtsLinkError::Transport(_) | MtsLinkError::Malformed(_) => (true, None),
        _ => (false, None),
    };
    AppError::platform(failed, e.to_string(), reason)
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl Platforms {
    /// Opens (creating on first use) the sealing key in `data_dir`.
    pub fn new(db: Db, config: PlatformConfig, data_dir: &Path) -> Result<Platforms, AppError> {
        let secrets =
            SecretBox::open_or_create(data_dir).map_err(|e| AppError::internal(format!("secret key: {e}")))?;
        Ok(Platforms {
            db,
            config,
            secrets: Arc::new(secrets),
            clients: Mutex::default(),
            flows: Mutex::default(),
            code_flows: Mutex::default(),
            health: Mutex::default(),
        })
    }

    fn seal(&self, context: &str, plain: &[u8]) -> Result<String, AppError> {
        self.secrets.seal(context, plain).map_err(|e| AppError::internal(format!("sealing a secret: {e}")))
    }

    fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, AppError> {
        self.secrets.open(context, sealed).map_err(|e| AppError::internal(format!("opening a secret: {e}")))
    }

    /// The YouTube OAuth client: `(id, secret, set by the server's configuration)`.
    pub async fn oauth_client(&self) -> Result<Option<(String, Option<String>, bool)>, AppError> {
        if let Some(id) = &self.config.youtube_client_id {
            return Ok(Some((id.clone(), self.config.youtube_client_secret.clone(), true)));
        }
        let Some(id) = db::setting(&self.db, "youtube_client_id").await? else { return Ok(None) };
        let secret = match db::setting(&self.db, "youtube_client_secret").await? {
            Some(sealed) => Some(String::from_utf8_lossy(&self.open(CLIENT_SECRET, &sealed)?).into_owned()),
            None => None,
        };
        Ok(Some((id, secret, false)))
    }

    /// Stores the OAuth client entered in Settings (refused when the configuration sets it).
    pub async fn set_oauth_client(&self, id: &str, secret: &str) -> Result<(), AppError> {
        if self.config.youtube_client_id.is_some() {
            return Err(AppError::new(
                ErrorKind::FailedPrecondition,
                "the OAuth client is set by the server's configuration (--youtube-client-id)",
            ));
        }
        let id = id.trim();
        if id.is_empty() {
            return Err(AppError::invalid("client_id", "a client id is required"));
        }
        db::set_setting(&self.db, "youtube_client_id", id).await?;
        if !secret.trim().is_empty() {
            db::set_setting(&self.db, "youtube_client_secret", &self.seal(CLIENT_SECRET, secret.trim().as_bytes())?)
                .await?;
        }
        Ok(())
    }

    async fn google(&self) -> Result<GoogleOAuth, AppError> {
        let Some((id, secret, _)) = self.oauth_client().await? else {
            return Err(AppError::new(
                ErrorKind::FailedPrecondition,
                "no YouTube OAuth client yet: enter its client id and secret in Settings → Platforms",
            ));
        };
        let c = &self.config;
        GoogleOAuth::new(&c.google_oauth_base, &c.google_auth_url, &id, secret.as_deref()).map_err(|e| oauth_error(&e))
    }

    /// A YouTube client for `tokens`; refreshed tokens of account `account` are sealed and
    /// stored again.
    fn youtube_client(
        &self,
        oauth: GoogleOAuth,
        tokens: Tokens,
        account: Option<i64>,
    ) -> Result<YouTubeClient, AppError> {
        let mut t = OAuthTokens::new(oauth, tokens);
        if let Some(id) = account {
            let (db, secrets) = (self.db.clone(), Arc::clone(&self.secrets));
            t = t.on_refresh(move |fresh| {
                let Ok(json) = serde_json::to_vec(&StoredTokens::from(fresh)) else { return };
                match secrets.seal(&account_context(id, "youtube"), &json) {
                    Ok(sealed) => {
                        let db = db.clone();
                        tokio::spawn(async move {
                            if let Err(e) = db::set_platform_secret(&db, id, &sealed).await {
                                warn!(account = id, error = %e, "could not store the refreshed token");
                            }
                        });
                    }
                    Err(e) => warn!(account = id, error = %e, "could not seal the refreshed token"),
                }
            });
        }
        YouTubeClient::new(&self.config.youtube_api_base, Arc::new(t)).map_err(|e| youtube_error(&e))
    }

    /// The client of account `id` (built from its sealed credentials on first use).
    pub async fn account(&self, id: i64) -> Result<(PlatformRow, Account), AppError> {
        let row = db::platform(&self.db, id).await?.ok_or_else(|| AppError::not_found("platform account"))?;
        if let Some(a) = lock(&self.clients).get(&id) {
            return Ok((row, a.clone()));
        }
        let account = match row.kind.as_str() {
            "youtube" => {
                let plain = self.open(&account_context(id, "youtube"), &row.sealed_secret)?;
                let stored: StoredTokens =
                    serde_json::from_slice(&plain).map_err(|e| AppError::internal(format!("stored tokens: {e}")))?;
                Account::YouTube(self.youtube_client(self.google().await?, stored.into(), Some(id))?)
            }
            "mtslink" => {
                let token = self.open(&account_context(id, "mtslink"), &row.sealed_secret)?;
                let token = String::from_utf8_lossy(&token);
                Account::MtsLink(
                    MtsLinkClient::new(&self.config.mtslink_api_base, &token).map_err(|e| mtslink_error(&e))?,
                )
            }
            other => return Err(AppError::internal(format!("unknown platform kind {other:?}"))),
        };
        lock(&self.clients).insert(id, account.clone());
        Ok((row, account))
    }

    /// Records what a call on account `id` showed: a credential that no longer works puts
    /// the account in "reconnect needed"; a call that worked clears an earlier error.
    pub async fn note(&self, id: i64, reconnect: Option<&str>) {
        let r = match reconnect {
            Some(why) => {
                lock(&self.clients).remove(&id);
                warn!(account = id, error = why, "platform account needs to be connected again");
                db::set_platform_state(&self.db, id, "reconnect_needed", Some(why)).await
            }
            None => match db::platform(&self.db, id).await {
                Ok(Some(row)) if row.state != "connected" => {
                    db::set_platform_state(&self.db, id, "connected", None).await
                }
                _ => Ok(()),
            },
        };
        if let Err(e) = r {
            warn!(account = id, error = %e, "could not record the account's state");
        }
    }

    /// Records the outcome of a YouTube call on account `id` and maps its error.
    pub async fn youtube_outcome<T>(&self, id: i64, r: Result<T, YouTubeError>) -> Result<T, AppError> {
        match r {
            Ok(v) => {
                self.note(id, None).await;
                Ok(v)
            }
            Err(e) => {
                if e.needs_reconnect() {
                    self.note(id, Some(&e.to_string())).await;
                }
                Err(youtube_error(&e))
            }
        }
    }

    /// Records the outcome of an MTS Link call on account `id` and maps its error.
    pub async fn mtslink_outcome<T>(&self, id: i64, r: Result<T, MtsLinkError>) -> Result<T, AppError> {
        match r {
            Ok(v) => {
                self.note(id, None).await;
                Ok(v)
            }
            Err(e) => {
                if matches!(e, MtsLinkError::TokenRejected) {
                    self.note(id, Some(&e.to_string())).await;
                }
                Err(mtslink_error(&e))
            }
        }
    }

    /// Checks an MTS Link token with a cheap read, then stores it sealed.
    pub async fn connect_mtslink(&self, name: &str, token: &str) -> Result<i64, AppError> {
        let client = MtsLinkClient::new(&self.config.mtslink_api_base, token).map_err(|e| match e {
            MtsLinkError::Config(m) if m.contains("token") => AppError::invalid("token", "an API token is required"),
            e => mtslink_error(&e),
        })?;
        match client.check_token().await {
            Ok(()) => {}
            Err(MtsLinkError::TokenRejected) => {
                return Err(AppError {
                    field: Some("token"),
                    ..AppError::platform(
                        false,
                        "MTS Link rejected this token (token rejected)",
                        Some("unauthorized".into()),
                    )
                });
            }
            Err(e) => return Err(mtslink_error(&e)),
        }
        let token = token.trim().as_bytes();
        let seal = |id| self.seal(&account_context(id, "mtslink"), token);
        let id = db::upsert_platform(&self.db, "mtslink", name, "", seal).await?;
        lock(&self.clients).insert(id, Account::MtsLink(client));
        info!(account = id, "MTS Link account connected");
        Ok(id)
    }

    /// Stores a YouTube account from fresh tokens, named after its channel.
    async fn store_youtube(&self, oauth: GoogleOAuth, tokens: Tokens) -> Result<i64, AppError> {
        let client = self.youtube_client(oauth.clone(), tokens.clone(), None)?;
        let channel = client.channel().await.map_err(|e| youtube_error(&e))?;
        let (name, remote) = match channel {
            Some(c) => (c.title, c.id),
            None => ("YouTube account".to_string(), String::new()),
        };
        let current = client.tokens().current().await;
        let json = serde_json::to_vec(&StoredTokens::from(&current)).map_err(|e| AppError::internal(e.to_string()))?;
        let seal = |id| self.seal(&account_context(id, "youtube"), &json);
        let id = db::upsert_platform(&self.db, "youtube", &name, &remote, seal).await?;
        // the cached client stores its refreshed tokens from now on
        let client = self.youtube_client(oauth, current, Some(id))?;
        lock(&self.clients).insert(id, Account::YouTube(client));
        info!(account = id, channel = %name, "YouTube account connected");
        Ok(id)
    }

    /// Starts the device flow: `(flow id, user code, verification URL, expires in)`. The
    /// server polls Google in the background (honouring `interval` and `slow_down`).
    pub async fn start_device_flow(self: &Arc<Self>) -> Result<(String, String, String, u64), AppError> {
        let oauth = self.google().await?;
        let code = oauth.start_device_flow(YOUTUBE_SCOPE).await.map_err(|e| oauth_error(&e))?;
        let flow_id = crate::auth::random_hex(16)?;
        {
            let mut flows = lock(&self.flows);
            flows.retain(|_, f| f.started.elapsed() < Duration::from_secs(3600));
            flows.insert(flow_id.clone(), DeviceFlow { state: FlowState::Pending, started: Instant::now() });
        }
        let (me, id) = (Arc::clone(self), flow_id.clone());
        let answer = (flow_id, code.user_code.clone(), code.verification_url.clone(), code.expires_in.as_secs());
        tokio::spawn(async move {
            let state = match oauth.wait_device_flow(&code).await {
                Ok(tokens) => match me.store_youtube(oauth, tokens).await {
                    Ok(account) => FlowState::Connected(account),
                    Err(e) => FlowState::Failed(e.message),
                },
                Err(OAuthError::AccessDenied) => FlowState::Denied,
                Err(OAuthError::ExpiredToken) => FlowState::Expired,
                Err(e) => FlowState::Failed(e.to_string()),
            };
            if let Some(f) = lock(&me.flows).get_mut(&id) {
                f.state = state;
            }
        });
        Ok(answer)
    }

    pub fn device_flow(&self, flow_id: &str) -> Option<FlowState> {
        lock(&self.flows).get(flow_id).map(|f| f.state.clone())
    }

    fn redirect_uri(&self) -> Option<String> {
        let base = self.config.public_url.as_deref()?;
        Some(format!("{}/oauth/youtube/callback", base.trim_end_matches('/')))
    }

    /// The consent page URL of the authorization-code flow (PKCE S256, `state`); only with
    /// a public URL configured.
    pub async fn authorization_url(&self) -> Result<String, AppError> {
        let Some(redirect) = self.redirect_uri() else {
            return Err(AppError::new(
                ErrorKind::FailedPrecondition,
                "the server has no public URL (--public-url): connect with the device flow",
            ));
        };
        let oauth = self.google().await?;
        let pkce = Pkce::new().map_err(|e| oauth_error(&e))?;
        let state = crate::auth::random_hex(16)?;
        let url = oauth.authorization_url(&redirect, &state, &pkce, YOUTUBE_SCOPE);
        let mut flows = lock(&self.code_flows);
        flows.retain(|_, f| f.started.elapsed() < Duration::from_secs(600));
        flows.insert(state, CodeFlow { verifier: pkce.verifier, started: Instant::now() });
        Ok(url)
    }

    /// Google's redirect: the `state` must be one this server issued (once, within 10
    /// minutes); the code is exchanged with the PKCE verifier.
    pub async fn finish_code_flow(&self, code: &str, state: &str) -> Result<i64, AppError> {
        let flow = lock(&self.code_flows).remove(state);
        let Some(flow) = flow.filter(|f| f.started.elapsed() < Duration::from_secs(600)) else {
            return Err(AppError::invalid("state", "unknown or expired sign-in attempt; start again"));
        };
        let redirect = self.redirect_uri().unwrap_or_default();
        let oauth = self.google().await?;
        let tokens = oauth.exchange_code(code, &flow.verifier, &redirect).await.map_err(|e| oauth_error(&e))?;
        self.store_youtube(oauth, tokens).await
    }

    /// Forgets an account; a YouTube grant is revoked at Google first (best effort).
    pub async fn disconnect(&self, id: i64) -> Result<(), AppError> {
        let row = db::platform(&self.db, id).await?.ok_or_else(|| AppError::not_found("platform account"))?;
        if row.kind == "youtube"
            && let Ok(plain) = self.open(&account_context(id, "youtube"), &row.sealed_secret)
            && let Ok(stored) = serde_json::from_slice::<StoredTokens>(&plain)
            && let Ok(oauth) = self.google().await
        {
            let token = stored.refresh_token.unwrap_or(stored.access_token);
            if let Err(e) = oauth.revoke(&token).await {
                warn!(account = id, error = %e, "could not revoke the grant at Google");
            }
        }
        lock(&self.clients).remove(&id);
        db::delete_platform(&self.db, id).await?;
        info!(account = id, "platform account disconnected");
        Ok(())
    }

    /// A capture's page URL sealed for its row (guest links carry tokens).
    pub fn seal_capture_url(&self, id: i64, url: &str) -> Result<String, AppError> {
        self.seal(&format!("capture-url:{id}"), url.as_bytes())
    }

    pub fn open_capture_url(&self, id: i64, sealed: &str) -> Result<String, AppError> {
        Ok(String::from_utf8_lossy(&self.open(&format!("capture-url:{id}"), sealed)?).into_owned())
    }

    pub fn health(&self, broadcast_id: i64) -> Option<Health> {
        lock(&self.health).get(&broadcast_id).cloned()
    }

    pub fn set_health(&self, broadcast_id: i64, health: Health) {
        lock(&self.health).insert(broadcast_id, health);
    }

    pub fn forget_health(&self, broadcast_id: i64) {
        lock(&self.health).remove(&broadcast_id);
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// Health from a YouTube stream's status.
pub fn youtube_health(s: &multistreamer_core::platform::LiveStream) -> Health {
    Health {
        stream_status: s.stream_status.clone(),
        status: s.health.clone(),
        issues: s
            .configuration_issues
            .iter()
            .map(|i| HealthIssue {
                kind: i.kind.clone(),
                severity: i.severity.clone(),
                description: i.description.clone(),
            })
            .collect(),
        checked_at: unix_now(),
    }
}

/// An MTS Link session status as a broadcast state.
pub fn mtslink_state(status: &str) -> &'static str {
    match status {
        "START" => "live",
        "STOP" => "complete",
        _ => "ready",
    }
}

pub fn mtslink_health(status: &str) -> Health {
    Health { stream_status: status.to_string(), status: None, issues: Vec::new(), checked_at: unix_now() }
}
