//! The [`SessionStore`] trait that every store implements, and its errors.
//!
//! The trait is shaped for every kind of store: in-process maps, key-value
//! servers with native TTLs (Redis, memcached) and SQL databases. It works on
//! whole [`Record`]s, keyed by [`StoreKey`] (a hash of the session id), with
//! two guarantees the engine builds on:
//!
//! - [`create`](SessionStore::create) is insert-if-absent, so an id collision
//!   can never attach a request to somebody else's session;
//! - [`save`](SessionStore::save) is compare-and-set on [`Record::version`], so
//!   two requests that loaded the same version cannot both write: the second
//!   gets [`SaveOutcome::Conflict`], reloads and re-applies only its own changes.

use std::time::Duration;

use async_trait::async_trait;

use crate::id::StoreKey;
use crate::record::{Millis, Record};

pub mod cleanup;
pub mod cookie;
#[cfg(any(
    feature = "redis",
    feature = "memcached",
    feature = "sqlite",
    feature = "postgres",
    feature = "mysql"
))]
pub(crate) mod deadline;
pub mod memory;
pub(crate) mod metered;
mod open;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub mod sql;
pub use open::{open, supported};
#[cfg(feature = "memcached")]
pub mod memcached;
#[cfg(feature = "redis")]
mod pipelined;
#[cfg(feature = "redis")]
pub mod redis;

/// A store failure: the store could not be reached, timed out, or returned garbage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached or the operation failed on the server.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer in time.
    #[error("session store timed out after {0:?}")]
    Timeout(Duration),
    /// A stored record could not be decoded.
    #[error("session store returned a corrupt record: {0}")]
    Corrupt(String),
    /// A store URL that names no store this build supports.
    #[error("invalid store URL: {0}")]
    InvalidUrl(String),
    /// The record is too large for this store.
    #[error("session record too large: {0}")]
    TooLarge(String),
}

/// A record as JSON, refused when it exceeds [`MAX_RECORD_BYTES`](crate::record::MAX_RECORD_BYTES)
/// (what every store would refuse to read back).
#[cfg(feature = "memcached")]
pub(crate) fn encode_record(record: &Record) -> Result<Vec<u8>, StoreError> {
    let json = record.to_json();
    if json.len() > crate::record::MAX_RECORD_BYTES {
        return Err(StoreError::TooLarge(format!(
            "{} bytes exceed the {}-byte limit",
            json.len(),
            crate::record::MAX_RECORD_BYTES
        )));
    }
    Ok(json)
}

/// A store URL safe to log: anything that could be credentials becomes `***`.
#[cfg(any(feature = "redis", feature = "memcached"))]
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The result of a compare-and-set [`SessionStore::save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    /// The stored version matched and the record was written.
    Saved,
    /// The stored version differs: somebody else saved in between.
    Conflict,
    /// There is no record (it was deleted or expired): nothing was written.
    Missing,
}

/// The result of one [`SessionStore::delete_expired`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cleanup {
    /// How many records were removed.
    pub removed: u64,
    /// Whether more records qualify: call again until this is false.
    pub more: bool,
}

/// A place to keep session records.
///
/// All times are milliseconds since the Unix epoch, taken from the engine's
/// clock. A store that has native expiry (Redis, memcached) must give every
/// write a TTL that ends at `record.expires_at`; every store must treat a
/// record past its `expires_at` as absent.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Whether the store keeps sessions in the cookie itself ([`cookie::CookieStore`]):
    /// the engine then never calls the other methods.
    fn client_side(&self) -> bool {
        false
    }

    /// A short name for this kind of store, the `store` label of the
    /// `vishnu_store_seconds` metric (`memory`, `redis`, `postgres`, ...).
    fn kind(&self) -> &'static str {
        "custom"
    }

    /// Loads a record, or `None` if there is none (or it expired).
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError>;

    /// Inserts a record if no record exists under `key`. Returns `false`, and
    /// writes nothing, when the key is taken.
    async fn create(&self, key: &StoreKey, record: &Record) -> Result<bool, StoreError>;

    /// Writes `record` if the stored record's version is `expected_version`.
    /// `record.version` is the new version (the engine sets it to `expected_version + 1`).
    async fn save(
        &self,
        key: &StoreKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError>;

    /// Deletes a record. Deleting a missing record is not an error.
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError>;

    /// Extends a record's life without rewriting its data or changing its
    /// version. Returns `false` if there is no record: a touch never creates one.
    /// Neither `last_access` nor `expires_at` moves backwards: a late touch
    /// from a request that read an older, shorter timeout must not undo a
    /// longer one that another request saved.
    async fn touch(
        &self,
        key: &StoreKey,
        last_access: Millis,
        expires_at: Millis,
    ) -> Result<bool, StoreError>;

    /// Removes records that are expired at `now`, or not accessed for
    /// `dormant_for`, at most `limit` of them. Stores with native TTLs may
    /// return `Cleanup::default()`: the server expires records itself.
    async fn delete_expired(
        &self,
        now: Millis,
        dormant_for: Duration,
        limit: usize,
    ) -> Result<Cleanup, StoreError>;
}

#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for std::sync::Arc<S> {
    fn client_side(&self) -> bool {
        (**self).client_side()
    }
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        (**self).load(key).await
    }
    async fn create(&self, key: &StoreKey, record: &Record) -> Result<bool, StoreError> {
        (**self).create(key, record).await
    }
    async fn save(
        &self,
        key: &StoreKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        (**self).save(key, record, expected_version).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        (**self).delete(key).await
    }
    async fn touch(
        &self,
        key: &StoreKey,
        last_access: Millis,
        expires_at: Millis,
    ) -> Result<bool, StoreError> {
        (**self).touch(key, last_access, expires_at).await
    }
    async fn delete_expired(
        &self,
        now: Millis,
        dormant_for: Duration,
        limit: usize,
    ) -> Result<Cleanup, StoreError> {
        (**self).delete_expired(now, dormant_for, limit).await
    }
}
