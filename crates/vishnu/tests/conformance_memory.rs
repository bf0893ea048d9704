//! The store conformance suite against the memory store.

mod common;

use std::sync::Arc;

use vishnu::{MemoryStore, SessionStore};

async fn make() -> Arc<dyn SessionStore> {
    Arc::new(MemoryStore::new())
}

conformance_suite!(make, native_ttl = false);
