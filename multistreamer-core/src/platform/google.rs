//! Google OAuth 2.0 for a self-hosted server: the device flow, the authorization-code flow
//! with PKCE, refresh and revoke (`oauth2.googleapis.com`: `/device/code`, `/token`,
//! `/revoke`). Answers are told apart by their `error` string, not their HTTP status.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use serde::Deserialize;
use sha2::Digest;

use super::http;
use crate::error::ErrorKind;

/// The one scope Multistreamer asks for: enough for every live method, and allowed in the
/// device flow (`youtube.force-ssl` is not).
pub const YOUTUBE_SCOPE: &str = "https://www.googleapis.com/auth/youtube";
pub const DEFAULT_OAUTH_BASE: &str = "https://oauth2.googleapis.com";
pub const DEFAULT_AUTH_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";

/// Why an OAuth call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// The refresh token (or code) was refused: expired, revoked, or a consent screen left in
    /// "Testing" (refresh tokens then stop after 7 days). The account must be connected again.
    #[error("Google refused the grant, connect the account again ({0})")]
    InvalidGrant(String),
    #[error("the OAuth client id or secret is wrong ({0})")]
    InvalidClient(String),
    #[error("Google refused the scope: {0}")]
    InvalidScope(String),
    #[error("access was denied on Google's consent page")]
    AccessDenied,
    #[error("the code expired before it was approved; start again")]
    ExpiredToken,
    #[error("OAuth error {error} (HTTP {status}): {description}")]
    Other { status: u16, error: String, description: String },
    #[error("cannot reach Google's OAuth server: {0}")]
    Transport(String),
    #[error("unreadable answer from Google's OAuth server: {0}")]
    Malformed(String),
    #[error("OAuth configuration: {0}")]
    Config(String),
}

impl OAuthError {
    /// Whether the operator must connect the account again (nothing else will fix it).
    pub fn needs_reconnect(&self) -> bool {
        matches!(self, OAuthError::InvalidGrant(_) | OAuthError::AccessDenied | OAuthError::ExpiredToken)
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            OAuthError::Transport(_) => ErrorKind::Disconnected,
            OAuthError::Malformed(_) | OAuthError::Other { .. } => ErrorKind::Protocol,
            OAuthError::Config(_) | OAuthError::InvalidClient(_) | OAuthError::InvalidScope(_) => ErrorKind::Config,
            OAuthError::InvalidGrant(_) | OAuthError::AccessDenied | OAuthError::ExpiredToken => ErrorKind::Rejected,
        }
    }
}

/// An account's tokens. `Debug` shows neither token.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: String,
    /// Absent when Google did not issue one (a refresh usually does not).
    pub refresh_token: Option<String>,
    pub expires_at: SystemTime,
    pub scope: String,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "****"))
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Whether the access token expires within `margin`.
    pub fn expires_within(&self, margin: Duration) -> bool {
        self.expires_at.duration_since(SystemTime::now()).map_or(true, |left| left <= margin)
    }
}

/// What `/device/code` answered: show `verification_url` and `user_code` to the operator.
#[derive(Clone)]
pub struct DeviceCode {
    pub device_code: String,
    pub user_code: String,
    /// Google spells it `verification_url` (the RFC says `verification_uri`).
    pub verification_url: String,
    pub expires_in: Duration,
    /// The least time between two polls; `slow_down` adds 5 s.
    pub interval: Duration,
    pub issued: Instant,
}

impl fmt::Debug for DeviceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCode")
            .field("user_code", &self.user_code)
            .field("verification_url", &self.verification_url)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// One poll of the device flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePoll {
    /// Not approved yet: poll again after the interval.
    Pending,
    /// Polled too fast: add 5 s to the interval.
    SlowDown,
    Granted(Tokens),
}

/// A PKCE pair (S256) for the authorization-code flow.
#[derive(Clone)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl fmt::Debug for Pkce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkce").field("challenge", &self.challenge).finish_non_exhaustive()
    }
}

impl Pkce {
    /// A random verifier (64 bytes, base64url: 86 characters) and its S256 challenge.
    pub fn new() -> Result<Pkce, OAuthError> {
        let mut raw = [0u8; 64];
        getrandom::getrandom(&mut raw).map_err(|e| OAuthError::Config(format!("no randomness: {e}")))?;
        Ok(Pkce::from_verifier(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)))
    }

    /// The challenge of a given verifier (RFC 7636 §4.2).
    pub fn from_verifier(verifier: String) -> Pkce {
        let digest = sha2::Sha256::digest(verifier.as_bytes());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
        Pkce { verifier, challenge }
    }
}

/// Google's OAuth endpoints for one OAuth client.
#[derive(Clone)]
pub struct GoogleOAuth {
    http: reqwest::Client,
    base: String,
    auth_url: String,
    client_id: String,
    client_secret: Option<String>,
}

impl fmt::Debug for GoogleOAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleOAuth")
            .field("base", &self.base)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct DeviceAnswer {
    device_code: String,
    user_code: String,
    #[serde(alias = "verification_uri")]
    verification_url: String,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
}

impl GoogleOAuth {
    /// `base` serves `/token`, `/device/code` and `/revoke` ([`DEFAULT_OAUTH_BASE`]);
    /// `auth_url` is the consent page of the authorization-code flow ([`DEFAULT_AUTH_URL`]).
    pub fn new(
        base: &str,
        auth_url: &str,
        client_id: &str,
        client_secret: Option<&str>,
    ) -> Result<GoogleOAuth, OAuthError> {
        for u in [base, auth_url] {
            let parsed = url::Url::parse(u).map_err(|e| OAuthError::Config(format!("{u}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(OAuthError::Config(format!("{u}: not an http(s) URL")));
            }
        }
        if client_id.trim().is_empty() {
            return Err(OAuthError::Config("no OAuth client id".into()));
        }
        let http = http::client(Duration::from_secs(15)).map_err(|e| OAuthError::Config(e.to_string()))?;
        Ok(GoogleOAuth {
            http,
            base: base.trim_end_matches('/').to_string(),
            auth_url: auth_url.to_string(),
            client_id: client_id.trim().to_string(),
            client_secret: client_secret.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
        })
    }

    /// POSTs a form to `{base}{path}`: (status, body).
    async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Result<(u16, bytes::Bytes), OAuthError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .map_err(|e| OAuthError::Transport(e.without_url().to_string()))?;
        http::read(resp).await.map_err(OAuthError::Transport)
    }

    fn with_client<'a>(&'a self, form: &mut Vec<(&'a str, &'a str)>) {
        form.push(("client_id", &self.client_id));
        if let Some(s) = &self.client_secret {
            form.push(("client_secret", s));
        }
    }

    /// Starts the device flow for `scope`.
    pub async fn start_device_flow(&self, scope: &str) -> Result<DeviceCode, OAuthError> {
        let mut form = vec![("scope", scope)];
        self.with_client(&mut form);
        let (status, body) = self.post_form("/device/code", &form).await?;
        if !(200..300).contains(&status) {
            return Err(error_of(status, &body));
        }
        let a: DeviceAnswer = serde_json::from_slice(&body).map_err(|e| OAuthError::Malformed(e.to_string()))?;
        Ok(DeviceCode {
            device_code: a.device_code,
            user_code: a.user_code,
            verification_url: a.verification_url,
            expires_in: Duration::from_secs(a.expires_in),
            interval: Duration::from_secs(a.interval.unwrap_or(5).max(1)),
            issued: Instant::now(),
        })
    }

    /// Polls the device flow once. Denial and expiry are errors
    /// ([`OAuthError::AccessDenied`], [`OAuthError::ExpiredToken`]).
    pub async fn poll_device_flow(&self, code: &DeviceCode) -> Result<DevicePoll, OAuthError> {
        if code.issued.elapsed() >= code.expires_in {
            return Err(OAuthError::ExpiredToken);
        }
        let mut form = vec![
            ("device_code", code.device_code.as_str()),
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ];
        self.with_client(&mut form);
        let (status, body) = self.post_form("/token", &form).await?;
        if (200..300).contains(&status) {
            return tokens_of(&body, None).map(DevicePoll::Granted);
        }
        match error_of(status, &body) {
            OAuthError::Other { error, .. } if error == "authorization_pending" => Ok(DevicePoll::Pending),
            OAuthError::Other { error, .. } if error == "slow_down" => Ok(DevicePoll::SlowDown),
            other => Err(other),
        }
    }

    /// Polls until the operator approved (or denied, or the code expired), honouring the
    /// interval and `slow_down`.
    pub async fn wait_device_flow(&self, code: &DeviceCode) -> Result<Tokens, OAuthError> {
        let mut interval = code.interval;
        loop {
            tokio::time::sleep(interval).await;
            match self.poll_device_flow(code).await? {
                DevicePoll::Granted(t) => return Ok(t),
                DevicePoll::Pending => {}
                DevicePoll::SlowDown => interval += Duration::from_secs(5),
            }
        }
    }

    /// The consent page URL of the authorization-code flow (`access_type=offline`,
    /// `prompt=consent` so a refresh token is issued, PKCE S256, `state` against CSRF).
    pub fn authorization_url(&self, redirect_uri: &str, state: &str, pkce: &Pkce, scope: &str) -> String {
        let mut u = match url::Url::parse(&self.auth_url) {
            Ok(u) => u,
            Err(_) => return String::new(), // checked in `new`
        };
        u.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("scope", scope)
            .append_pair("access_type", "offline")
            .append_pair("prompt", "consent")
            .append_pair("include_granted_scopes", "true")
            .append_pair("state", state)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256");
        u.into()
    }

    /// Exchanges the code the consent page returned.
    pub async fn exchange_code(&self, code: &str, verifier: &str, redirect_uri: &str) -> Result<Tokens, OAuthError> {
        let mut form = vec![
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", redirect_uri),
            ("grant_type", "authorization_code"),
        ];
        self.with_client(&mut form);
        let (status, body) = self.post_form("/token", &form).await?;
        if !(200..300).contains(&status) {
            return Err(error_of(status, &body));
        }
        tokens_of(&body, None)
    }

    /// New tokens from a refresh token (which is kept when Google does not send a new one).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, OAuthError> {
        let mut form = vec![("refresh_token", refresh_token), ("grant_type", "refresh_token")];
        self.with_client(&mut form);
        let (status, body) = self.post_form("/token", &form).await?;
        if !(200..300).contains(&status) {
            return Err(error_of(status, &body));
        }
        tokens_of(&body, Some(refresh_token))
    }

    /// Revokes a token (the refresh token revokes the whole grant).
    pub async fn revoke(&self, token: &str) -> Result<(), OAuthError> {
        let (status, body) = self.post_form("/revoke", &[("token", token)]).await?;
        if (200..300).contains(&status) { Ok(()) } else { Err(error_of(status, &body)) }
    }
}

fn tokens_of(body: &[u8], kept_refresh: Option<&str>) -> Result<Tokens, OAuthError> {
    let a: TokenAnswer = serde_json::from_slice(body).map_err(|e| OAuthError::Malformed(e.to_string()))?;
    if a.access_token.is_empty() {
        return Err(OAuthError::Malformed("an empty access token".into()));
    }
    Ok(Tokens {
        access_token: a.access_token,
        refresh_token: a.refresh_token.or_else(|| kept_refresh.map(str::to_string)),
        expires_at: SystemTime::now() + Duration::from_secs(a.expires_in.unwrap_or(3600)),
        scope: a.scope.unwrap_or_default(),
    })
}

/// The error of a non-2xx OAuth answer, by its `error` string.
fn error_of(status: u16, body: &[u8]) -> OAuthError {
    let Ok(a) = serde_json::from_slice::<ErrorAnswer>(body) else {
        return OAuthError::Malformed(format!("HTTP {status}: {}", http::excerpt(body)));
    };
    let description = a.error_description.unwrap_or_default();
    match a.error.as_str() {
        "invalid_grant" => OAuthError::InvalidGrant(description),
        "invalid_client" | "unauthorized_client" => OAuthError::InvalidClient(description),
        "invalid_scope" => OAuthError::InvalidScope(description),
        "access_denied" => OAuthError::AccessDenied,
        "expired_token" => OAuthError::ExpiredToken,
        _ => OAuthError::Other { status, error: a.error, description },
    }
}

type RefreshHook = Box<dyn Fn(&Tokens) + Send + Sync>;

/// One account's tokens, kept fresh: refreshed a minute before they expire, and at once
/// when the API refused the current access token. A hook sees every new set (to store it).
pub struct OAuthTokens {
    oauth: GoogleOAuth,
    tokens: tokio::sync::Mutex<Tokens>,
    on_refresh: Option<RefreshHook>,
}

impl fmt::Debug for OAuthTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthTokens").field("oauth", &self.oauth).finish_non_exhaustive()
    }
}

impl OAuthTokens {
    pub fn new(oauth: GoogleOAuth, tokens: Tokens) -> OAuthTokens {
        OAuthTokens { oauth, tokens: tokio::sync::Mutex::new(tokens), on_refresh: None }
    }

    /// Calls `hook` with every refreshed set of tokens.
    pub fn on_refresh(mut self, hook: impl Fn(&Tokens) + Send + Sync + 'static) -> OAuthTokens {
        self.on_refresh = Some(Box::new(hook));
        self
    }

    /// A current access token, refreshed first when it expires within a minute.
    pub async fn access_token(&self) -> Result<String, OAuthError> {
        let mut t = self.tokens.lock().await;
        if t.expires_within(Duration::from_secs(60)) {
            *t = self.refresh_locked(&t).await?;
        }
        Ok(t.access_token.clone())
    }

    /// Refreshes because the API refused `rejected`; a token another caller already
    /// replaced is not refreshed twice.
    pub async fn refresh_after_rejection(&self, rejected: &str) -> Result<String, OAuthError> {
        let mut t = self.tokens.lock().await;
        if t.access_token == rejected {
            *t = self.refresh_locked(&t).await?;
        }
        Ok(t.access_token.clone())
    }

    /// The tokens as they are now (to store them).
    pub async fn current(&self) -> Tokens {
        self.tokens.lock().await.clone()
    }

    async fn refresh_locked(&self, t: &Tokens) -> Result<Tokens, OAuthError> {
        let refresh = t.refresh_token.as_deref().ok_or_else(|| OAuthError::InvalidGrant("no refresh token".into()))?;
        let fresh = self.oauth.refresh(refresh).await?;
        tracing::debug!("OAuth access token refreshed");
        if let Some(hook) = &self.on_refresh {
            hook(&fresh);
        }
        Ok(fresh)
    }

    pub fn oauth(&self) -> &GoogleOAuth {
        &self.oauth
    }
}

/// Every parser of an OAuth answer, on any bytes; the length of what they said.
pub(super) fn fuzz_parsers(status: u16, body: &[u8]) -> usize {
    let mut said = error_of(status, body).to_string().len();
    if let Ok(t) = tokens_of(body, Some("kept")) {
        said += t.scope.len();
    }
    if let Ok(d) = serde_json::from_slice::<DeviceAnswer>(body) {
        said += d.user_code.len();
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_follows_rfc_7636() {
        // RFC 7636 appendix B
        let p = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert_eq!(p.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let r = Pkce::new().expect("random");
        assert_eq!(r.verifier.len(), 86);
        assert!(r.verifier.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn oauth_errors_are_told_apart_by_their_error_string() {
        let e = error_of(400, br#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#);
        assert!(matches!(&e, OAuthError::InvalidGrant(d) if d.contains("expired")));
        assert!(e.needs_reconnect());
        assert!(
            matches!(error_of(428, br#"{"error":"authorization_pending"}"#), OAuthError::Other { error, .. } if error == "authorization_pending")
        );
        assert_eq!(error_of(403, br#"{"error":"access_denied"}"#), OAuthError::AccessDenied);
        assert!(matches!(error_of(500, b"<html>oops</html>"), OAuthError::Malformed(m) if m.contains("HTTP 500")));
        assert!(matches!(tokens_of(b"{\"access_token\":", None), Err(OAuthError::Malformed(_))));
        let kept = tokens_of(br#"{"access_token":"a","expires_in":3599}"#, Some("r")).expect("tokens");
        assert_eq!(kept.refresh_token.as_deref(), Some("r"), "a refresh keeps the refresh token");
        assert!(!format!("{kept:?}").contains("\"a\""), "Debug shows no token");
    }
}
