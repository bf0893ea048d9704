//! [`CookieStore`]: the whole session in the cookie, no server state.

use std::time::Duration;

use async_trait::async_trait;

use crate::id::StoreKey;
use crate::record::{Millis, Record};
use crate::store::{Cleanup, SaveOutcome, SessionStore, StoreError};

/// Keeps the whole session record in the cookie, sealed with AES-256-GCM-SIV
/// (under the configured `encrypt_key`, or, without one, a key derived from
/// the secret with its own HKDF label) and signed. Nothing is stored on the
/// server, so any number of processes share sessions without a database.
///
/// Limits, stated plainly:
/// - **`terminate()` cannot revoke a copied cookie** before it expires: it
///   only asks the browser to drop it. Use a server store where logout must
///   be enforced against stolen cookies, and keep timeouts short.
/// - A cookie's name and value must fit in 4096 bytes. A save whose session
///   would not fit fails with [`SessionError::CookieTooLarge`](crate::SessionError::CookieTooLarge)
///   at save time (a 500 at the end of the request with `auto_save`); a
///   cookie is never silently dropped.
/// - Concurrent requests each carry their own copy: the last response the
///   browser receives wins. `update` is atomic only within one request.
///
/// ```
/// let config = vishnu::Config::builder()
///     .secret("a secret of at least thirty-two bytes!!")
///     .store(vishnu::CookieStore)
///     .build()
///     .expect("valid config");
/// assert!(config.encrypted());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CookieStore;

fn unused() -> StoreError {
    StoreError::Unavailable("CookieStore keeps no server state; the engine never calls it".into())
}

#[async_trait]
impl SessionStore for CookieStore {
    fn kind(&self) -> &'static str {
        "cookie"
    }
    fn client_side(&self) -> bool {
        true
    }
    async fn load(&self, _key: &StoreKey) -> Result<Option<Record>, StoreError> {
        Err(unused())
    }
    async fn create(&self, _key: &StoreKey, _record: &Record) -> Result<bool, StoreError> {
        Err(unused())
    }
    async fn save(&self, _: &StoreKey, _: &Record, _: u64) -> Result<SaveOutcome, StoreError> {
        Err(unused())
    }
    async fn delete(&self, _key: &StoreKey) -> Result<(), StoreError> {
        Ok(())
    }
    async fn touch(&self, _: &StoreKey, _: Millis, _: Millis) -> Result<bool, StoreError> {
        Err(unused())
    }
    async fn delete_expired(
        &self,
        _: Millis,
        _: Duration,
        _: usize,
    ) -> Result<Cleanup, StoreError> {
        Ok(Cleanup::default())
    }
}
