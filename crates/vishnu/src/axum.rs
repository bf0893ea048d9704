//! The axum extractor: `Session` as a handler argument.

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::error::SessionError;
use crate::Session;

/// The rejection when a handler asks for a [`Session`] on a route without
/// [`SessionLayer`](crate::SessionLayer).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("vishnu::Session was requested but is missing from the request: is vishnu::SessionLayer installed on this route (Router::layer after the route is added)?")]
pub struct SessionMissing;

impl IntoResponse for SessionMissing {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionMissing;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(SessionMissing)
    }
}

/// A session error in a handler becomes a 500 that reveals nothing internal;
/// the error itself is logged. [`SessionError::Superseded`] (a write with an
/// id that a login just cycled away) becomes a 409, without any cookie.
impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        if matches!(self, SessionError::Superseded) {
            tracing::debug!(error = %self, "session write refused");
            return (StatusCode::CONFLICT, "Conflict: the session changed; retry").into_response();
        }
        tracing::error!(error = %self, "session error");
        (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
    }
}
