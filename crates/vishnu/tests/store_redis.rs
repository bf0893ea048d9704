//! `RedisStore` against real servers: a standalone Redis and a Redis Cluster.
//!
//! ```sh
//! scripts/services/redis.sh start /tmp/kv-services && source /tmp/kv-services/redis.env
//! cargo test -p vishnu --features redis --test store_redis
//! scripts/services/redis.sh stop /tmp/kv-services
//! ```
//!
//! Without `VISHNU_REDIS_URL` the tests are skipped, except under CI (`CI=true` or `CI=1`),
//! where they fail. The outage test stops and restarts the standalone server
//! through the same script (it finds the servers via `VISHNU_SERVICES_DIR`).
//!
//! Only what is about Redis is here; the store contract (round trip, expiry, compare-and-set, …)
//! runs against standalone Redis and Redis Cluster in the conformance suite
//! (`conformance_kv`), which the outage tests below also reuse once the server is back.
#![cfg(feature = "axum")]

mod common;
mod kv_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::conformance as c;
use kv_support as kv;
use vishnu::{RedisStore, SessionStore, StoreError};

const SCRIPT: &str = "redis.sh";

async fn standalone() -> Option<Arc<RedisStore>> {
    let url = kv::env_or_skip("VISHNU_REDIS_URL", SCRIPT)?;
    Some(Arc::new(
        RedisStore::from_url(&url).await.expect("connect to Redis"),
    ))
}

mod standalone {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn every_write_carries_a_native_ttl() {
        let _servers = kv::SERVERS.read().await;
        let Some(url) = kv::env_or_skip("VISHNU_REDIS_URL", SCRIPT) else {
            return;
        };
        let store = RedisStore::from_url(&url).await.expect("connect");
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut raw = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let key = c::fresh_key();
        let redis_key = format!("vishnu:{}", key.as_str());
        let pttl = |raw: &mut redis::aio::MultiplexedConnection| {
            let mut cmd = redis::cmd("PTTL");
            cmd.arg(&redis_key);
            let mut raw = raw.clone();
            async move { cmd.query_async::<i64>(&mut raw).await.expect("PTTL") }
        };

        let rec = c::record(1, Duration::from_secs(60));
        assert!(store.create(&key, &rec).await.expect("create"));
        let ttl = pttl(&mut raw).await;
        assert!((55_000..=60_000).contains(&ttl), "create: PTTL {ttl}");

        let mut saved = rec.clone();
        saved.version = 2;
        saved.expires_at = c::now() + 120_000;
        store.save(&key, &saved, 1).await.expect("save");
        let ttl = pttl(&mut raw).await;
        assert!((115_000..=120_000).contains(&ttl), "save: PTTL {ttl}");

        assert!(store
            .touch(&key, c::now(), c::now() + 300_000)
            .await
            .expect("touch"));
        let ttl = pttl(&mut raw).await;
        assert!((295_000..=300_000).contains(&ttl), "touch: PTTL {ttl}");

        let cleanup = store
            .delete_expired(c::now(), Duration::from_secs(1), 100)
            .await
            .expect("delete_expired");
        assert_eq!(
            cleanup,
            vishnu::Cleanup::default(),
            "native TTLs: nothing to clean"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn scripts_are_loaded_again_after_a_script_flush() {
        let _servers = kv::SERVERS.read().await;
        let Some(url) = kv::env_or_skip("VISHNU_REDIS_URL", SCRIPT) else {
            return;
        };
        let store = RedisStore::from_url(&url).await.expect("connect");
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut raw = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let key = c::fresh_key();
        let rec = c::record(1, Duration::from_secs(60));
        assert!(store.create(&key, &rec).await.expect("create"));
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut raw)
            .await
            .expect("SCRIPT FLUSH");
        let mut next = rec.clone();
        next.version = 2;
        assert_eq!(
            store.save(&key, &next, 1).await.expect("save"),
            vishnu::SaveOutcome::Saved
        );
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut raw)
            .await
            .expect("SCRIPT FLUSH");
        assert!(store
            .touch(&key, c::now(), c::now() + 120_000)
            .await
            .expect("touch"));
        assert_eq!(
            store.load(&key).await.expect("load").map(|r| r.version),
            Some(2)
        );
    }

    // The layout changed from a hash (record, version, last_access, expires_at)
    // to one string: sessions stored before the upgrade keep working.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn records_of_the_earlier_hash_layout_are_read_saved_and_touched() {
        let _servers = kv::SERVERS.read().await;
        let Some(url) = kv::env_or_skip("VISHNU_REDIS_URL", SCRIPT) else {
            return;
        };
        let store = RedisStore::from_url(&url).await.expect("connect");
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut raw = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let key = c::fresh_key();
        let redis_key = format!("vishnu:{}", key.as_str());
        let mut rec = c::record(7, Duration::from_secs(60));
        rec.version = 3;
        let _: () = redis::cmd("HSET")
            .arg(&redis_key)
            .arg("record")
            .arg(rec.to_json())
            .arg("version")
            .arg(3)
            .arg("last_access")
            .arg(rec.last_access)
            .arg("expires_at")
            .arg(rec.expires_at)
            .query_async(&mut raw)
            .await
            .expect("HSET");
        let _: () = redis::cmd("PEXPIREAT")
            .arg(&redis_key)
            .arg(rec.expires_at)
            .query_async(&mut raw)
            .await
            .expect("PEXPIREAT");

        assert_eq!(store.load(&key).await.expect("load"), Some(rec.clone()));
        let later = rec.expires_at + 60_000;
        assert!(store
            .touch(&key, rec.last_access + 1, later)
            .await
            .expect("touch"));
        let touched = store.load(&key).await.expect("load").expect("present");
        assert_eq!(
            (touched.last_access, touched.expires_at, touched.version),
            (rec.last_access + 1, later, 3)
        );

        let mut next = touched.clone();
        next.version = 4;
        next.data.insert("n".into(), 8.into());
        assert_eq!(
            store.save(&key, &next, 2).await.expect("save"),
            vishnu::SaveOutcome::Conflict
        );
        assert_eq!(
            store.save(&key, &next, 3).await.expect("save"),
            vishnu::SaveOutcome::Saved
        );
        let kind: String = redis::cmd("TYPE")
            .arg(&redis_key)
            .query_async(&mut raw)
            .await
            .expect("TYPE");
        assert_eq!(
            kind, "string",
            "the first save rewrites it in the new layout"
        );
        assert_eq!(store.load(&key).await.expect("load"), Some(next));
        store.delete(&key).await.expect("delete");
        assert_eq!(store.load(&key).await.expect("load"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn prefixes_keep_applications_apart() {
        let _servers = kv::SERVERS.read().await;
        let Some(url) = kv::env_or_skip("VISHNU_REDIS_URL", SCRIPT) else {
            return;
        };
        let a = RedisStore::from_url(&url)
            .await
            .expect("connect")
            .with_prefix("app-a:");
        let b = a.clone().with_prefix("app-b:");
        let key = c::fresh_key();
        assert!(a
            .create(&key, &c::record(1, Duration::from_secs(60)))
            .await
            .expect("create"));
        assert_eq!(b.load(&key).await.expect("load"), None);
        assert!(b
            .create(&key, &c::record(2, Duration::from_secs(60)))
            .await
            .expect("create"));
        let loaded = a.load(&key).await.expect("load").expect("present");
        assert_eq!(loaded.data["n"], 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn unreachable_server_is_a_clean_error() {
        if kv::env_or_skip("VISHNU_REDIS_URL", SCRIPT).is_none() {
            return;
        }
        let port = kv::closed_port();
        let started = Instant::now();
        let err = RedisStore::from_url(&format!("redis://127.0.0.1:{port}/0"))
            .await
            .expect_err("nothing listens there");
        assert!(started.elapsed() < kv::FAIL_WITHIN);
        assert!(
            matches!(err, StoreError::Unavailable(_) | StoreError::Timeout(_)),
            "{err:?}"
        );
        for bad in [
            "http://127.0.0.1:1/",
            "redis+cluster://127.0.0.1:1,,127.0.0.1:2",
            "redis+cluster://u:secret@127.0.0.1:1/5",
        ] {
            let err = RedisStore::from_url(bad).await.expect_err(bad);
            assert!(matches!(err, StoreError::InvalidUrl(_)), "{bad}: {err:?}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_server_that_never_answers_times_out() {
        if kv::env_or_skip("VISHNU_REDIS_URL", SCRIPT).is_none() {
            return;
        }
        let (_listener, addr) = kv::silent_server();
        let started = Instant::now();
        let err = RedisStore::from_url(&format!("redis://{addr}/0"))
            .await
            .expect_err("it never answers");
        let took = started.elapsed();
        assert!(matches!(err, StoreError::Timeout(_)), "{err:?}");
        assert!(took < kv::FAIL_WITHIN, "took {took:?}");
    }

    /// Stops the server under a live store: calls fail within the timeout,
    /// then succeed again, with the same store, once the server is back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn outage_fails_fast_and_recovers_without_a_new_store() {
        let _servers = kv::SERVERS.write().await;
        let Some(store) = standalone().await else {
            return;
        };
        let key = c::fresh_key();
        assert!(store
            .create(&key, &c::record(1, Duration::from_secs(60)))
            .await
            .expect("create"));

        let Some(outage) = kv::Outage::begin(SCRIPT, "kill", "standalone").await else {
            return;
        };
        for round in 0..3 {
            let e = kv::fails_fast("load", store.load(&key)).await;
            eprintln!("round {round}, load while down: {e}");
            kv::fails_fast(
                "create",
                store.create(&c::fresh_key(), &c::record(1, Duration::from_secs(60))),
            )
            .await;
            let mut rec = c::record(2, Duration::from_secs(60));
            rec.version = 2;
            kv::fails_fast("save", store.save(&key, &rec, 1)).await;
            kv::fails_fast("touch", store.touch(&key, c::now(), c::now() + 60_000)).await;
            kv::fails_fast("delete", store.delete(&key)).await;
        }
        outage.end().await;

        // The same store works again at once; the restarted server is empty (no persistence).
        assert_eq!(
            store
                .load(&key)
                .await
                .expect("first call after the restart"),
            None
        );
        c::round_trip(&*store).await;
        c::concurrent_cas_increments(store, 16).await;
    }

    /// A server that hangs (SIGSTOP) under a live store: calls time out within the
    /// store's timeout, and the same store works again once it resumes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hung_server_times_out_and_recovers() {
        let _servers = kv::SERVERS.write().await;
        let Some(url) = kv::env_or_skip("VISHNU_REDIS_URL", SCRIPT) else {
            return;
        };
        let store = RedisStore::from_url(&url)
            .await
            .expect("connect")
            .with_timeout(Duration::from_millis(300));
        let key = c::fresh_key();
        assert!(store
            .create(&key, &c::record(1, Duration::from_secs(60)))
            .await
            .expect("create"));

        let Some(outage) = kv::Outage::begin(SCRIPT, "pause", "standalone").await else {
            return;
        };
        for _ in 0..3 {
            let started = Instant::now();
            let result = store.load(&key).await;
            let took = started.elapsed();
            assert!(matches!(result, Err(StoreError::Timeout(_))), "{result:?}");
            assert!(took < Duration::from_millis(800), "took {took:?}");
        }
        outage.end().await;
        assert!(store
            .load(&key)
            .await
            .expect("load after resuming")
            .is_some());
        c::round_trip(&store).await;
    }
}
