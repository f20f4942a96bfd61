//! The error contract of every API: a `{"message"}` body and a `Status` header naming the error.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::json;

/// The header that carries the error's name (`InvalidSchema`, not `400`).
pub static STATUS_HEADER: HeaderName = HeaderName::from_static("status");

/// What a handler may fail with; each variant is one row of the contract's error table.
///
/// The message of every variant but [`ApiError::Internal`] is shown to the client, so it must be
/// about the client's request. `Internal` carries the real cause for the logs only.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidSchema(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NoSuchEntity(String),
    #[error("no such endpoint")]
    UnknownEndpoint,
    #[error("this endpoint does not support that method")]
    UnsupportedMethod,
    #[error("{0}")]
    DuplicateEntity(String),
    #[error("{0}")]
    UnsupportedContentType(String),
    /// A body over what Lambda accepts ([`crate::BODY_LIMIT`]).
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("internal server error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A `500 ServerError` that stopped part way and tells the client how far it got (how many
    /// items were stored), so it can send the rest. The message is written by the handler, never
    /// taken from an error.
    #[error("{0}")]
    Unfinished(String),
}

impl ApiError {
    /// Wraps an unexpected failure; the client sees only "internal server error".
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ApiError {
        ApiError::Internal(error.into())
    }

    /// The HTTP status of this row of the contract.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidSchema(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NoSuchEntity(_) | ApiError::UnknownEndpoint => StatusCode::NOT_FOUND,
            ApiError::UnsupportedMethod => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::DuplicateEntity(_) => StatusCode::CONFLICT,
            ApiError::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) | ApiError::Unfinished(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The name that goes into the `Status` header.
    pub fn name(&self) -> &'static str {
        match self {
            ApiError::InvalidSchema(_) => "InvalidSchema",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NoSuchEntity(_) => "NoSuchEntity",
            ApiError::UnknownEndpoint => "UnknownEndpoint",
            ApiError::UnsupportedMethod => "UnsupportedMethod",
            ApiError::DuplicateEntity(_) => "DuplicateEntity",
            ApiError::UnsupportedContentType(_) => "UnsupportedContentType",
            ApiError::PayloadTooLarge(_) => "PayloadTooLarge",
            ApiError::Internal(_) | ApiError::Unfinished(_) => "ServerError",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %ErrorChain(cause.as_ref()), "request failed");
        }
        let mut response =
            (self.status(), Json(json!({ "message": self.to_string() }))).into_response();
        response
            .headers_mut()
            .insert(STATUS_HEADER.clone(), HeaderValue::from_static(self.name()));
        response
    }
}

/// Displays an error with all its sources, for the logs (SDK errors hide the useful part in a source).
pub(crate) struct ErrorChain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
