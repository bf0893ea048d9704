//! The store conformance suite against the memory store.
#![cfg(feature = "axum")]

mod common;

use std::sync::Arc;

use vishnu::{MemoryStore, SessionStore};

async fn make() -> Option<Arc<dyn SessionStore>> {
    Some(Arc::new(MemoryStore::new()))
}

conformance_suite!(memory, make, native_ttl = false, byte_limit = false);
