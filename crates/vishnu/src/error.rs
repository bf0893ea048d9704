//! [`SessionError`]: what session operations can fail with.

use crate::store::StoreError;

/// An error from a session operation.
///
/// Its `Display` names what went wrong without revealing secrets, ids or data.
/// With the `axum` feature it converts into a 500 response whose body reveals
/// nothing internal, so handlers can use `?`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed (unreachable, timed out, corrupt data).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value could not be turned into JSON.
    #[error("session value {key:?} cannot be stored as JSON: {source}")]
    Serialize {
        /// The key that was being set.
        key: String,
        /// What serde_json reported.
        source: serde_json::Error,
    },
    /// A stored value does not have the requested type.
    #[error("session value {key:?} does not have the requested type: {source}")]
    Deserialize {
        /// The key that was being read.
        key: String,
        /// What serde_json reported.
        source: serde_json::Error,
    },
    /// Another request terminated this session while this one was using it;
    /// the changes were not saved, so that the session is not brought back.
    #[error("the session was terminated by another request; changes were not saved")]
    Terminated,
    /// A save kept conflicting with concurrent saves and gave up.
    #[error("the session was changed concurrently too many times; changes were not saved")]
    TooManyConflicts,
    /// The function given to [`Session::update_value`](crate::Session::update_value) failed;
    /// nothing was saved.
    #[error("the update function failed: {0}")]
    Callback(Box<dyn std::error::Error + Send + Sync>),
    /// With [`CookieStore`](crate::CookieStore): the session no longer fits in a cookie.
    #[error(
        "the session is too large for a cookie: {size} bytes, at most 4096 for name and value"
    )]
    CookieTooLarge {
        /// The size that name and value would have had.
        size: usize,
    },
    /// This request's session id was cycled away by another request (a login
    /// or other privilege change) within the cycle grace window: the old id
    /// grants nothing, so the write was refused. The axum front answers 409.
    #[error("the session id was changed by another request; changes were not saved")]
    Superseded,
    /// The operation needs a server-side store (the cookie store has none).
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// The operating system could not provide randomness for an id or nonce.
    #[error("no randomness available from the operating system")]
    Random,
}
