//! Application errors: one kind enum, mapped to HTTP in one place. Internal details are
//! logged, never sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input; `field` says which.
    InvalidArgument,
    /// A request the API cannot read at all: malformed JSON, a path parameter of the wrong
    /// type.
    BadRequest,
    /// A body that is not `application/json`.
    UnsupportedMediaType,
    /// A body larger than the API reads.
    PayloadTooLarge,
    Unauthenticated,
    /// Missing or wrong CSRF token.
    PermissionDenied,
    NotFound,
    /// Too many attempts.
    ResourceExhausted,
    /// The request conflicts with the current state (e.g. deleting a file being written).
    FailedPrecondition,
    /// A platform (YouTube, MTS Link) refused the request; `platform_reason` says why.
    PlatformRefused,
    /// A platform failed or could not be reached.
    PlatformUnavailable,
    /// The database is busy (locked by another process) or cannot be written (a read-only
    /// or full data directory); the live engine carries on. Try again.
    Unavailable,
    Internal,
}

#[derive(Debug)]
pub struct AppError {
    pub kind: ErrorKind,
    pub message: String,
    pub field: Option<&'static str>,
    /// The platform's own reason (YouTube's `errors[0].reason`, an OAuth `error`).
    pub platform_reason: Option<String>,
}

impl AppError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> AppError {
        AppError { kind, message: message.into(), field: None, platform_reason: None }
    }

    pub fn invalid(field: &'static str, message: impl Into<String>) -> AppError {
        AppError { field: Some(field), ..AppError::new(ErrorKind::InvalidArgument, message) }
    }

    /// A platform's answer: refused (422) or failed (502), with its reason.
    pub fn platform(failed: bool, message: impl Into<String>, reason: Option<String>) -> AppError {
        let kind = if failed { ErrorKind::PlatformUnavailable } else { ErrorKind::PlatformRefused };
        AppError { platform_reason: reason, ..AppError::new(kind, message) }
    }

    pub fn not_found(what: &str) -> AppError {
        AppError::new(ErrorKind::NotFound, format!("{what} not found"))
    }

    pub fn internal(message: impl Into<String>) -> AppError {
        AppError::new(ErrorKind::Internal, message)
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> AppError {
        let unavailable = |message: String| {
            tracing::warn!(error = %e, "database");
            AppError::new(ErrorKind::Unavailable, message)
        };
        let database = e.as_database_error();
        // PostgreSQL answers with a five-character SQLSTATE, SQLite with a number
        let sqlstate = database
            .filter(|d| d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some())
            .and_then(|d| d.code())
            .map(|c| c.into_owned());
        if let Some(state) = sqlstate {
            return match &state[..state.len().min(2)] {
                // connection exception, insufficient resources, operator intervention
                "08" | "53" | "57" => {
                    unavailable(format!("the database is unavailable ({state}); streams keep running"))
                }
                // serialization failure, deadlock: the other node's change won
                "40" => unavailable("the database is busy (a concurrent change); try again".into()),
                // read-only transaction (a standby)
                "25" => unavailable("the database cannot be written (a read-only server); streams keep running".into()),
                _ => AppError::internal(format!("database: {e}")),
            };
        }
        // SQLite's primary result code (the low byte of an extended one)
        let code = database.and_then(|d| d.code()).and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
        match (code, &e) {
            // SQLITE_BUSY, SQLITE_LOCKED
            (Some(5 | 6), _) | (_, sqlx::Error::PoolTimedOut) => {
                unavailable("the database is busy (another process holds a lock on it); try again".into())
            }
            // SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_READONLY
            (Some(code @ (8 | 10 | 13 | 14)), _) => {
                let why = match code {
                    8 => "it is read-only",
                    13 => "its disk is full",
                    _ => "a disk error",
                };
                unavailable(format!(
                    "the database cannot be written ({why}): check the data directory; streams keep running"
                ))
            }
            // the connection to a database server broke
            (_, sqlx::Error::Io(_) | sqlx::Error::PoolClosed) => {
                unavailable("the database is unreachable; streams keep running".into())
            }
            _ => AppError::internal(format!("database: {e}")),
        }
    }
}

fn status(kind: ErrorKind) -> (StatusCode, &'static str) {
    match kind {
        ErrorKind::InvalidArgument => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument"),
        ErrorKind::BadRequest => (StatusCode::BAD_REQUEST, "bad_request"),
        ErrorKind::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        ErrorKind::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        ErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        ErrorKind::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
        ErrorKind::FailedPrecondition => (StatusCode::CONFLICT, "failed_precondition"),
        ErrorKind::PlatformRefused => (StatusCode::UNPROCESSABLE_ENTITY, "platform_refused"),
        ErrorKind::PlatformUnavailable => (StatusCode::BAD_GATEWAY, "platform_unavailable"),
        ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (code, name) = status(self.kind);
        let message = if self.kind == ErrorKind::Internal {
            tracing::error!(error = %self.message, "internal error");
            "internal error".to_string()
        } else {
            self.message
        };
        let body = json!({
            "error": { "code": name, "message": message, "field": self.field, "platform_reason": self.platform_reason }
        });
        let mut response = (code, Json(body)).into_response();
        if self.kind == ErrorKind::Unavailable {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
        }
        response
    }
}
