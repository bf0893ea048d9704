//! # vishnu: web sessions done right
//!
//! The browser holds a cookie with a random session id and its authentication
//! (HMAC-SHA256, optionally sealed with AES-256-GCM-SIV); the data lives in a store
//! on the server. Concurrent requests never lose each other's updates, a
//! terminated session is never brought back, and reading counts as activity.
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower::ServiceExt;
//! use vishnu::{Config, MemoryStore, Session, SessionLayer};
//!
//! async fn counter(session: Session) -> Result<String, vishnu::SessionError> {
//!     let n: u64 = session.update("counter", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
//!     Ok(n.to_string())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = Config::builder()
//!     .secret("replace with 32+ random bytes from a secret store")
//!     .store(MemoryStore::new())
//!     .build()
//!     .expect("valid configuration");
//! let app = Router::new()
//!     .route("/counter", get(counter))
//!     .layer(SessionLayer::new(config));
//!
//! let request = http::Request::get("/counter").body(axum::body::Body::empty()).unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! let cookie = response.headers()["set-cookie"].to_str().unwrap();
//! assert!(cookie.starts_with("vishnu="));
//! assert!(cookie.ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax"));
//! # }
//! ```
//!
//! ## Pieces
//! - [`Config`]: secrets, cookie attributes, timeouts, the store; validated by its builder.
//! - [`Session`]: the handle handlers use (`get`, `set`, `update`, `save`, `cycle_id`, `terminate`),
//!   and a session's identity: `login`, `set_user`, `sessions`, `revoke_others`, `revoke_all`.
//!   Id changes are atomic in every store; `cycle_grace` and `renew_grace` keep
//!   requests in flight during a login or a renewal from logging the user out.
//! - [`SessionLayer`]: the tower layer; with the `axum` feature, `Session` is an extractor.
//! - `actix::SessionMiddleware` (feature `actix`): the actix-web 4 middleware;
//!   `Session` is an extractor there too.
//! - [`SessionStore`]: the store trait; [`MemoryStore`] is built in.
//! - [`Engine`]: the framework-free core that every front calls; also a user's
//!   sessions without a request ([`Engine::sessions_of`], [`Engine::revoke_all`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "axum")]
mod axum;
mod clock;
pub mod codec;
mod config;
pub mod cookie;
mod engine;
mod error;
mod forward;
pub mod id;
pub mod record;
mod runtime;
mod session;
mod state;
pub mod store;
mod telemetry;
pub mod tower;
mod turns;
mod users;

#[cfg(feature = "axum")]
pub use crate::axum::SessionMissing;
pub use crate::config::{
    Clock, Config, ConfigBuilder, ConfigError, SameSite, SystemClock, Timeout,
    DEFAULT_BROWSER_SESSION_TTL, DEFAULT_COOKIE_NAME, DEFAULT_GRACE, DEFAULT_PATH, MIN_KEY_LEN,
};
pub use crate::engine::{CookieUpdate, Engine};
pub use crate::error::SessionError;
pub use crate::session::Session;
pub use crate::store::cleanup::spawn_cleanup;
pub use crate::store::cookie::CookieStore;
#[cfg(feature = "memcached")]
pub use crate::store::memcached::MemcachedStore;
pub use crate::store::memory::MemoryStore;
#[cfg(feature = "redis")]
pub use crate::store::redis::{RedisConnection, RedisStore};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use crate::store::sql::SqlStore;
pub use crate::store::{Cleanup, SaveOutcome, SessionStore, StoreError};
pub use crate::tower::{SessionLayer, SessionService};
pub use crate::users::SessionInfo;
