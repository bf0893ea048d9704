//! A store wrapper that times every call into `vishnu_store_seconds`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::id::StoreKey;
use crate::record::{Millis, Record};
use crate::store::{Cleanup, SaveOutcome, SessionStore, StoreError};
use crate::telemetry;

/// Times each call of the store it wraps (see `crate::telemetry`). It calls
/// the wrapped store through `*self.0`, not the `Arc`'s own impl, so that a
/// call boxes one future less.
pub(crate) struct Metered(pub(crate) Arc<dyn SessionStore>);

async fn timed<T>(
    op: &'static str,
    store: &'static str,
    call: impl std::future::Future<Output = T>,
) -> T {
    let started = Instant::now();
    let out = call.await;
    telemetry::store_call(op, store, started.elapsed().as_secs_f64());
    out
}

#[async_trait]
impl SessionStore for Metered {
    fn kind(&self) -> &'static str {
        (*self.0).kind()
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        timed("load", (*self.0).kind(), (*self.0).load(key)).await
    }
    async fn create(&self, key: &StoreKey, record: &Record) -> Result<bool, StoreError> {
        timed("create", (*self.0).kind(), (*self.0).create(key, record)).await
    }
    async fn save(
        &self,
        key: &StoreKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        timed(
            "save",
            (*self.0).kind(),
            (*self.0).save(key, record, expected_version),
        )
        .await
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        timed("delete", (*self.0).kind(), (*self.0).delete(key)).await
    }
    async fn touch(
        &self,
        key: &StoreKey,
        last_access: Millis,
        expires_at: Millis,
    ) -> Result<bool, StoreError> {
        timed(
            "touch",
            (*self.0).kind(),
            (*self.0).touch(key, last_access, expires_at),
        )
        .await
    }
    async fn delete_expired(
        &self,
        now: Millis,
        dormant_for: Duration,
        limit: usize,
    ) -> Result<Cleanup, StoreError> {
        timed(
            "delete_expired",
            (*self.0).kind(),
            (*self.0).delete_expired(now, dormant_for, limit),
        )
        .await
    }
}
