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
/// | `redis://host:port/db` | `RedisStore` | `redis` |
/// | `redis+cluster://host:port,host:port,…` | `RedisStore` on Redis Cluster | `redis` |
/// | `memcache://host:port[,host:port…]` | `MemcachedStore` | `memcached` |
/// | `sqlite://path`, `sqlite::memory:` | `SqlStore` (table created by `migrate()`) | `sqlite` |
/// | `postgres://user:pass@host:port/db` | `SqlStore` | `postgres` |
/// | `mysql://user:pass@host:port/db` | `SqlStore` (MySQL, MariaDB) | `mysql` |
///
/// # Errors
/// [`StoreError::InvalidUrl`] for an unknown scheme or a store whose cargo
/// feature is not compiled in; a connection error for a server store.
pub async fn open(url: &str) -> Result<Arc<dyn SessionStore>, StoreError> {
    let scheme = url.split_once("://").map_or(url, |(s, _)| s);
    match scheme {
        "memory" => Ok(Arc::new(MemoryStore::new().with_capacity(1_000_000))),
        "cookie" => Ok(Arc::new(CookieStore)),
        #[cfg(feature = "redis")]
        "redis" | "rediss" | "redis+cluster" => Ok(Arc::new(
            crate::store::redis::RedisStore::from_url(url).await?,
        )),
        #[cfg(feature = "memcached")]
        "memcache" | "memcached" => Ok(Arc::new(
            crate::store::memcached::MemcachedStore::from_url(url).await?,
        )),
        #[cfg(feature = "sqlite")]
        "sqlite" | "sqlite::memory:" => sql(url).await,
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => sql(url).await,
        #[cfg(feature = "mysql")]
        "mysql" | "mariadb" => sql(url).await,
        other => Err(StoreError::InvalidUrl(format!(
            "unknown store {other:?} (this build supports: {})",
            supported().join(", ")
        ))),
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
async fn sql(url: &str) -> Result<Arc<dyn SessionStore>, StoreError> {
    let store = crate::store::sql::SqlStore::connect(url).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

/// The store URL schemes this build supports.
pub fn supported() -> Vec<&'static str> {
    let mut schemes = vec!["memory", "cookie"];
    if cfg!(feature = "redis") {
        schemes.extend(["redis", "redis+cluster"]);
    }
    if cfg!(feature = "memcached") {
        schemes.push("memcache");
    }
    if cfg!(feature = "sqlite") {
        schemes.push("sqlite");
    }
    if cfg!(feature = "postgres") {
        schemes.push("postgres");
    }
    if cfg!(feature = "mysql") {
        schemes.push("mysql");
    }
    schemes
}
