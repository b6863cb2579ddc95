//! Extractors whose rejections answer in the API's documented error shape
//! (`{"error":{"code","message","field"}}`) instead of axum's plain-text bodies.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{AppError, ErrorKind};

/// The largest request body the API reads (axum's default limit).
pub const MAX_BODY: usize = 2 << 20;

/// A JSON body.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::MissingJsonContentType(e)) => {
                Err(AppError::new(ErrorKind::UnsupportedMediaType, e.body_text()))
            }
            // A well-formed body with a field of the wrong type or missing: name the problem.
            Err(JsonRejection::JsonDataError(e)) => Err(AppError::new(ErrorKind::InvalidArgument, e.body_text())),
            // axum's default body limit: the rest of the body is never read
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => Err(AppError::new(
                ErrorKind::PayloadTooLarge,
                format!("the body is larger than the API accepts ({} MB)", MAX_BODY >> 20),
            )),
            Err(e) => Err(AppError::new(ErrorKind::BadRequest, e.body_text())),
        }
    }
}

/// Path parameters.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(e @ PathRejection::FailedToDeserializePathParams(_)) => {
                Err(AppError::new(ErrorKind::BadRequest, e.body_text()))
            }
            Err(e) => Err(AppError::internal(e.body_text())),
        }
    }
}
