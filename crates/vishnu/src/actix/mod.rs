//! The actix-web 4 front: [`SessionMiddleware`], and [`Session`] as an extractor.
//!
//! ```
//! use actix_web::{test, web, App};
//! use vishnu::actix::SessionMiddleware;
//! use vishnu::{Config, MemoryStore, Session, SessionError};
//!
//! async fn counter(session: Session) -> Result<String, SessionError> {
//!     let n: u64 = session.update("counter", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
//!     Ok(n.to_string())
//! }
//!
//! # actix_web::rt::System::new().block_on(async {
//! let config = Config::builder()
//!     .secret("replace with 32+ random bytes from a secret store")
//!     .store(MemoryStore::new())
//!     .build()
//!     .expect("valid configuration");
//! // One middleware per server, made outside `HttpServer::new`'s factory and
//! // cloned into every worker's App: the workers then share one engine.
//! let sessions = SessionMiddleware::new(config);
//! let app = test::init_service(
//!     App::new()
//!         .wrap(sessions.clone())
//!         .route("/counter", web::get().to(counter)),
//! )
//! .await;
//!
//! let request = test::TestRequest::get().uri("/counter").to_request();
//! let response = test::call_service(&app, request).await;
//! let cookie = response.headers().get("set-cookie").unwrap().to_str().unwrap();
//! assert!(cookie.starts_with("vishnu="));
//! assert_eq!(test::read_body(response).await, "1");
//! # });
//! ```
//!
//! Like the [tower front](crate::tower), the middleware only translates: it
//! hands the request's `Cookie` headers to the [`Engine`](crate::Engine), puts
//! the [`Session`] into the request extensions, and after the handler answers
//! asks the engine for the `Set-Cookie` header. A write refused because a
//! login cycled the id away ([`SessionError::Superseded`]) becomes a 409
//! without a cookie; any other failure to save becomes an empty 500, logged.
//! [`SessionError`] is an actix [`ResponseError`] with the same mapping, so
//! handlers can use `?`.

mod future;
mod middleware;

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};

use crate::error::SessionError;
use crate::Session;

pub use future::ResponseFuture;
pub use middleware::{SessionMiddleware, SessionService};

/// The extractor's error when a handler asks for a [`Session`] on a route
/// without [`SessionMiddleware`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("vishnu::Session was requested but is missing from the request: is vishnu::actix::SessionMiddleware installed on this route (App::wrap or Scope::wrap)?")]
pub struct SessionMissing;

impl ResponseError for SessionMissing {
    fn error_response(&self) -> HttpResponse {
        tracing::error!("{self}");
        HttpResponse::InternalServerError()
            .content_type("text/plain; charset=utf-8")
            .body(self.to_string())
    }
}

impl FromRequest for Session {
    type Error = SessionMissing;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Session>()
                .cloned()
                .ok_or(SessionMissing),
        )
    }
}

/// A session error in a handler becomes a 500 that reveals nothing internal;
/// the error itself is logged. [`SessionError::Superseded`] (a write with an
/// id that a login just cycled away) becomes a 409, without any cookie.
impl ResponseError for SessionError {
    fn status_code(&self) -> StatusCode {
        match self {
            SessionError::Superseded => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = if matches!(self, SessionError::Superseded) {
            tracing::debug!(error = %self, "session write refused");
            "Conflict: the session changed; retry"
        } else {
            tracing::error!(error = %self, "session error");
            "Internal Server Error"
        };
        HttpResponse::build(self.status_code())
            .content_type("text/plain; charset=utf-8")
            .body(body)
    }
}
