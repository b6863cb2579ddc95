//! Accounts and sessions: argon2 password hashes, an HttpOnly SameSite session cookie
//! backed by the database, a CSRF token per session (header `X-CSRF-Token` on every
//! state-changing request), and a login rate limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::Method;
use axum::http::request::Parts;

use crate::error::{AppError, ErrorKind};
use crate::{AppState, db};

pub const COOKIE: &str = "ms_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const SESSION_TTL_S: i64 = 7 * 24 * 3600;

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> Result<String, AppError> {
    let mut buf = vec![0u8; n];
    getrandom::getrandom(&mut buf).map_err(|e| AppError::internal(format!("randomness: {e}")))?;
    Ok(hex::encode(buf))
}

/// A password for people to type: 20 characters from an unambiguous alphabet.
pub fn random_password() -> Result<String, AppError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut buf = [0u8; 20];
    getrandom::getrandom(&mut buf).map_err(|e| AppError::internal(format!("randomness: {e}")))?;
    Ok(buf.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect())
}

pub fn hash_password(password: &str) -> Result<String, AppError> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| AppError::internal(format!("randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AppError::internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::internal(format!("hashing: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// [`hash_password`] on a blocking thread: argon2 takes tens of milliseconds of CPU, which
/// must not stall the async workers that carry the live streams.
pub async fn hash_password_off_thread(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AppError::internal(format!("hashing: {e}")))?
}

/// [`verify_password`] on a blocking thread (see [`hash_password_off_thread`]).
pub async fn verify_password_off_thread(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.unwrap_or(false)
}

/// The signed-in user of a request. Extracting it enforces the session and, for methods
/// other than GET/HEAD, the CSRF token.
#[derive(Clone, Debug)]
pub struct Auth {
    pub user_id: i64,
    pub username: String,
    pub session_id: String,
    pub csrf_token: String,
}

pub fn session_cookie(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(sid) = session_cookie(parts) else {
            return Err(AppError::new(ErrorKind::Unauthenticated, "sign in first"));
        };
        let Some((user_id, username, csrf_token)) = db::session(&state.db, &sid).await? else {
            return Err(AppError::new(ErrorKind::Unauthenticated, "session expired; sign in again"));
        };
        if parts.method != Method::GET && parts.method != Method::HEAD {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if sent != Some(csrf_token.as_str()) {
                return Err(AppError::new(ErrorKind::PermissionDenied, "missing or wrong CSRF token"));
            }
        }
        Ok(Auth { user_id, username, session_id: sid, csrf_token })
    }
}

/// At most `max` failed logins per client address and per username within `window`.
#[derive(Debug)]
pub struct LoginLimiter {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl LoginLimiter {
    pub fn new(max: usize, window: Duration) -> LoginLimiter {
        LoginLimiter { max, window, failures: Mutex::new(HashMap::new()) }
    }

    fn keys(ip: Option<IpAddr>, username: &str) -> [String; 2] {
        [format!("ip:{}", ip.map(|i| i.to_string()).unwrap_or_default()), format!("user:{username}")]
    }

    pub fn check(&self, ip: Option<IpAddr>, username: &str) -> Result<(), AppError> {
        let mut f = crate::sync::lock(&self.failures);
        let now = Instant::now();
        for key in Self::keys(ip, username) {
            if let Some(v) = f.get_mut(&key) {
                v.retain(|t| now.duration_since(*t) < self.window);
                if v.len() >= self.max {
                    return Err(AppError::new(
                        ErrorKind::ResourceExhausted,
                        format!("too many failed sign-ins; wait {} s", self.window.as_secs()),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn failed(&self, ip: Option<IpAddr>, username: &str) {
        let mut f = crate::sync::lock(&self.failures);
        for key in Self::keys(ip, username) {
            f.entry(key).or_default().push(Instant::now());
        }
        if f.len() > 10_000 {
            let now = Instant::now();
            let window = self.window;
            f.retain(|_, v| v.iter().any(|t| now.duration_since(*t) < window));
        }
    }

    pub fn succeeded(&self, username: &str) {
        let mut f = crate::sync::lock(&self.failures);
        f.remove(&format!("user:{username}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash_password("correct horse").expect("hash");
        let b = hash_password("correct horse").expect("hash");
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2"));
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("wrong", &a));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn limiter_blocks_after_failures_and_resets_on_success() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        let ip = Some(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..3 {
            assert!(l.check(ip, "admin").is_ok());
            l.failed(ip, "admin");
        }
        assert!(l.check(ip, "admin").is_err());
        assert!(l.check(None, "admin").is_err(), "per user too");
        l.succeeded("admin");
        assert!(l.check(None, "admin").is_ok());
        assert!(l.check(ip, "someone").is_err(), "the address is still limited");
    }

    #[test]
    fn passwords_and_tokens_are_random() {
        let p = random_password().expect("password");
        assert_eq!(p.len(), 20);
        assert_ne!(p, random_password().expect("password"));
        assert_eq!(random_hex(16).expect("hex").len(), 32);
    }
}
