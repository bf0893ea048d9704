//! Opening a store from a URL, as the demo's `--store` and the Python front do.

use std::sync::Arc;

use crate::store::cookie::CookieStore;
use crate::store::memory::MemoryStore;
use crate::store::{SessionStore, StoreError};

/// Opens the store a URL names.
///
/// | URL | store | feature |
/// |---|---|---|
/// | `memory` | [`MemoryStore`] (bounded to one million sessions) | always |
/// | `cookie` | [`CookieStore`] (the session in the cookie) | always |
///
/// # Errors
/// [`StoreError::InvalidUrl`] for an unknown scheme or a store whose cargo
/// feature is not compiled in; a connection error for a server store.
pub async fn open(url: &str) -> Result<Arc<dyn SessionStore>, StoreError> {
    let scheme = url.split_once("://").map_or(url, |(s, _)| s);
    match scheme {
        "memory" => Ok(Arc::new(MemoryStore::new().with_capacity(1_000_000))),
        "cookie" => Ok(Arc::new(CookieStore)),
        other => Err(StoreError::InvalidUrl(format!(
            "unknown store {other:?} (this build supports: {})",
            supported().join(", ")
        ))),
    }
}

/// The store URL schemes this build supports.
pub fn supported() -> Vec<&'static str> {
    vec!["memory", "cookie"]
}
