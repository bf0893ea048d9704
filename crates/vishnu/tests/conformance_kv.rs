//! The store conformance suite against Redis, Redis Cluster and memcached (two nodes).
#![cfg(all(feature = "axum", any(feature = "redis", feature = "memcached")))]

mod common;

use std::sync::Arc;

use vishnu::SessionStore;

#[cfg(feature = "redis")]
async fn redis() -> Option<Arc<dyn SessionStore>> {
    let url = common::server_url("VISHNU_REDIS_URL")?;
    Some(vishnu::store::open(&url).await.expect("redis"))
}

#[cfg(feature = "redis")]
async fn redis_cluster() -> Option<Arc<dyn SessionStore>> {
    let url = common::server_url("VISHNU_REDIS_CLUSTER_URL")?;
    Some(vishnu::store::open(&url).await.expect("redis cluster"))
}

#[cfg(feature = "memcached")]
async fn memcached() -> Option<Arc<dyn SessionStore>> {
    let url = common::server_url("VISHNU_MEMCACHED_URL")?;
    Some(vishnu::store::open(&url).await.expect("memcached"))
}

#[cfg(feature = "redis")]
conformance_suite!(redis_store, redis, native_ttl = true, byte_limit = true);
#[cfg(feature = "redis")]
conformance_suite!(
    redis_cluster_store,
    redis_cluster,
    native_ttl = true,
    byte_limit = true
);
#[cfg(feature = "memcached")]
conformance_suite!(
    memcached_store,
    memcached,
    native_ttl = true,
    byte_limit = true
);
