//! `MemcachedStore` against two real memcached servers.
//!
//! ```sh
//! scripts/services/memcached.sh start /tmp/kv-services && source /tmp/kv-services/memcached.env
//! cargo test -p vishnu --features memcached --test store_memcached
//! scripts/services/memcached.sh stop /tmp/kv-services
//! ```
//!
//! Without `VISHNU_MEMCACHED_URL` the tests are skipped, except under CI
//! (`CI=true` or `CI=1`), where they fail. The outage test stops and restarts one server
//! through the same script (it finds the servers via `VISHNU_SERVICES_DIR`).
//!
//! Only what is about memcached is here; the store contract (round trip, expiry,
//! compare-and-set, …) runs against the same two servers in the conformance suite
//! (`conformance_kv`), which the outage test below also reuses once the server is back.
#![cfg(feature = "axum")]

mod common;
mod kv_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::conformance as c;
use kv_support as kv;
use sha2::{Digest, Sha256};
use vishnu::id::StoreKey;
use vishnu::{MemcachedStore, SaveOutcome, SessionStore, StoreError};

const SCRIPT: &str = "memcached.sh";
const DAY: Duration = Duration::from_secs(86_400);

async fn store() -> Option<Arc<MemcachedStore>> {
    let url = kv::env_or_skip("VISHNU_MEMCACHED_URL", SCRIPT)?;
    Some(Arc::new(
        MemcachedStore::from_url(&url)
            .await
            .expect("connect to memcached"),
    ))
}

/// The servers in the URL, in order (`node-1`, `node-2` in the service script).
fn servers(url: &str) -> Vec<String> {
    url.trim_start_matches("memcache://")
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// Which server holds `key`: the placement the store documents (rendezvous
/// hashing on SHA-256), computed independently here.
fn server_of(servers: &[String], key: &StoreKey) -> usize {
    let score = |server: &String| {
        let digest = Sha256::new()
            .chain_update(server.as_bytes())
            .chain_update([0u8])
            .chain_update(key.as_str().as_bytes())
            .finalize();
        u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    };
    (0..servers.len())
        .max_by_key(|&i| score(&servers[i]))
        .expect("servers")
}

/// Beyond 30 days memcached reads an expiry as an absolute Unix time: sent as
/// a number of seconds, such a record would be dead on arrival.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_beyond_30_days_works() {
    let _servers = kv::SERVERS.read().await;
    let Some(store) = store().await else { return };
    for _ in 0..6 {
        let key = c::fresh_key();
        let rec = c::record(1, 31 * DAY);
        assert!(store.create(&key, &rec).await.expect("create"));
        assert_eq!(
            store.load(&key).await.expect("load"),
            Some(rec.clone()),
            "create"
        );

        let mut saved = c::record(2, 45 * DAY);
        saved.version = 2;
        assert_eq!(
            store.save(&key, &saved, 1).await.expect("save"),
            SaveOutcome::Saved
        );
        assert_eq!(
            store.load(&key).await.expect("load"),
            Some(saved.clone()),
            "save"
        );

        let far = c::now() + (400 * DAY).as_millis() as u64;
        assert!(store.touch(&key, c::now(), far).await.expect("touch"));
        let touched = store.load(&key).await.expect("load").expect("touch");
        assert_eq!(touched.expires_at, far);
    }
}

/// Saves racing with touches: a touch rewrites the record (new CAS unique,
/// same version), and the version check must stay exact: no update lost, none
/// applied twice. A save that keeps losing its `cas` to touches may answer
/// `Conflict` (safe: the engine reloads and retries), so this test retries too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn touches_do_not_break_version_checks() {
    let _servers = kv::SERVERS.read().await;
    let Some(store) = store().await else { return };
    let key = c::fresh_key();
    assert!(store
        .create(&key, &c::record(0, DAY))
        .await
        .expect("create"));
    let toucher = {
        let (store, key) = (store.clone(), key.clone());
        tokio::spawn(async move {
            for _ in 0..300 {
                assert!(store
                    .touch(&key, c::now(), c::now() + 3_600_000)
                    .await
                    .expect("touch"));
            }
        })
    };
    let mut conflicts = 0;
    for n in 1..=100u64 {
        loop {
            let mut rec = store.load(&key).await.expect("load").expect("present");
            let read = rec.version;
            assert_eq!(read, n, "only this loop changes the version");
            rec.data.insert("n".into(), n.into());
            rec.version = read + 1;
            match store.save(&key, &rec, read).await.expect("save") {
                SaveOutcome::Saved => break,
                SaveOutcome::Conflict => conflicts += 1,
                SaveOutcome::Missing => panic!("the record vanished"),
            }
        }
    }
    toucher.await.expect("toucher");
    eprintln!("{conflicts} saves answered Conflict after losing every cas to a touch");
    let last = store.load(&key).await.expect("load").expect("present");
    assert_eq!((last.version, last.data["n"].as_u64()), (101, Some(100)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_spread_over_both_servers() {
    let _servers = kv::SERVERS.read().await;
    let Some(url) = kv::env_or_skip("VISHNU_MEMCACHED_URL", SCRIPT) else {
        return;
    };
    let servers = servers(&url);
    let store = MemcachedStore::from_url(&url).await.expect("connect");
    let mut per_server = vec![0; servers.len()];
    for _ in 0..64 {
        let key = c::fresh_key();
        assert!(store
            .create(&key, &c::record(1, Duration::from_secs(60)))
            .await
            .expect("create"));
        per_server[server_of(&servers, &key)] += 1;
        // Only the computed server holds it.
        let direct = MemcachedStore::from_url(&format!(
            "memcache://{}",
            servers[server_of(&servers, &key)]
        ))
        .await
        .expect("connect");
        assert!(direct.load(&key).await.expect("load").is_some());
    }
    assert!(
        per_server.iter().all(|&n| n > 10),
        "uneven spread: {per_server:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_urls_and_unreachable_servers_are_clean_errors() {
    if kv::env_or_skip("VISHNU_MEMCACHED_URL", SCRIPT).is_none() {
        return;
    }
    let port = kv::closed_port();
    let started = Instant::now();
    let err = MemcachedStore::from_url(&format!("memcache://127.0.0.1:{port}"))
        .await
        .expect_err("nothing listens there");
    assert!(started.elapsed() < kv::FAIL_WITHIN);
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    for bad in [
        "redis://127.0.0.1:1",
        "memcache://",
        "memcache://a:1,,b:2",
        "memcache://u:secret@a:1",
    ] {
        let err = MemcachedStore::from_url(bad).await.expect_err(bad);
        assert!(matches!(err, StoreError::InvalidUrl(_)), "{bad}: {err:?}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
    let url = kv::env_or_skip("VISHNU_MEMCACHED_URL", SCRIPT).expect("set");
    let store = MemcachedStore::from_url(&url).await.expect("connect");
    assert!(store.clone().with_prefix("has space").is_err());
    assert!(store.clone().with_prefix("x".repeat(200)).is_err());
    assert!(store.with_prefix("app:").is_ok());
}

/// With `node-1` down, its sessions fail fast with a store error and the
/// sessions on `node-2` keep working; once `node-1` is back (empty), the same
/// store uses it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_server_fails_fast_and_the_other_keeps_working() {
    let _servers = kv::SERVERS.write().await;
    let Some(url) = kv::env_or_skip("VISHNU_MEMCACHED_URL", SCRIPT) else {
        return;
    };
    let servers = servers(&url);
    assert_eq!(servers.len(), 2, "the service script starts two servers");
    let store = Arc::new(MemcachedStore::from_url(&url).await.expect("connect"));

    let keys: Vec<StoreKey> = (0..24).map(|_| c::fresh_key()).collect();
    for key in &keys {
        assert!(store
            .create(key, &c::record(1, Duration::from_secs(300)))
            .await
            .expect("create"));
    }
    let (dead, alive): (Vec<&StoreKey>, Vec<&StoreKey>) =
        keys.iter().partition(|key| server_of(&servers, key) == 0);
    assert!(
        !dead.is_empty() && !alive.is_empty(),
        "24 keys all on one server"
    );

    let Some(outage) = kv::Outage::begin(SCRIPT, "kill", "node-1").await else {
        return;
    };
    for round in 0..3 {
        for key in &dead {
            let e = kv::fails_fast("load", store.load(key)).await;
            if round == 0 && std::ptr::eq(*key, dead[0]) {
                eprintln!("load on the dead server: {e}");
            }
            assert!(
                matches!(e, StoreError::Unavailable(_) | StoreError::Timeout(_)),
                "{e:?}"
            );
            let mut rec = c::record(2, Duration::from_secs(300));
            rec.version = 2;
            kv::fails_fast("save", store.save(key, &rec, 1)).await;
            kv::fails_fast("touch", store.touch(key, c::now(), c::now() + 60_000)).await;
        }
        for key in &alive {
            let mut rec = store
                .load(key)
                .await
                .expect("load on the live server")
                .expect("present");
            let read = rec.version;
            rec.version += 1;
            assert_eq!(
                store.save(key, &rec, read).await.expect("save"),
                SaveOutcome::Saved
            );
            assert!(store
                .touch(key, c::now(), c::now() + 60_000)
                .await
                .expect("touch"));
        }
        let fresh = c::fresh_key();
        let created = store
            .create(&fresh, &c::record(1, Duration::from_secs(60)))
            .await;
        match server_of(&servers, &fresh) {
            0 => assert!(created.is_err(), "create on the dead server succeeded"),
            _ => assert!(created.expect("create on the live server")),
        }
    }

    outage.end().await;
    // The same store uses it again at once. A restarted memcached is empty:
    // its sessions are gone, cleanly.
    for key in &dead {
        assert_eq!(store.load(key).await.expect("load after the restart"), None);
        assert!(store
            .create(key, &c::record(1, Duration::from_secs(60)))
            .await
            .expect("create"));
    }
    for key in &alive {
        assert_eq!(
            store
                .load(key)
                .await
                .expect("load")
                .expect("present")
                .version,
            4
        );
    }
    c::round_trip(&*store).await;
}

/// A server that accepts connections but never answers: calls for its keys
/// time out within the store's timeout; keys on the other server work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_that_never_answers_times_out() {
    let _servers = kv::SERVERS.read().await;
    let Some(url) = kv::env_or_skip("VISHNU_MEMCACHED_URL", SCRIPT) else {
        return;
    };
    let live = servers(&url).remove(0);
    let (_listener, silent) = kv::silent_server();
    let both = vec![live.clone(), silent.clone()];
    let store = MemcachedStore::from_url(&format!("memcache://{live},{silent}"))
        .await
        .expect("one server answers")
        .with_timeout(Duration::from_millis(300));
    for _ in 0..16 {
        let key = c::fresh_key();
        let rec = c::record(1, Duration::from_secs(60));
        if server_of(&both, &key) == 0 {
            assert!(store
                .create(&key, &rec)
                .await
                .expect("create on the live server"));
            assert!(store.load(&key).await.expect("load").is_some());
        } else {
            let started = Instant::now();
            let err = store
                .create(&key, &rec)
                .await
                .expect_err("the silent server");
            assert!(matches!(err, StoreError::Timeout(_)), "{err:?}");
            assert!(
                started.elapsed() < Duration::from_millis(800),
                "{:?}",
                started.elapsed()
            );
        }
    }
}

/// A server that hangs (SIGSTOP) under a live store: its calls time out within
/// the store's timeout, the other server keeps working, and the same store
/// uses the hung server again once it resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hung_server_times_out_and_recovers() {
    let _servers = kv::SERVERS.write().await;
    let Some(url) = kv::env_or_skip("VISHNU_MEMCACHED_URL", SCRIPT) else {
        return;
    };
    let servers = servers(&url);
    let store = MemcachedStore::from_url(&url)
        .await
        .expect("connect")
        .with_timeout(Duration::from_millis(300));
    let keys: Vec<StoreKey> = (0..16).map(|_| c::fresh_key()).collect();
    for key in &keys {
        assert!(store
            .create(key, &c::record(1, Duration::from_secs(60)))
            .await
            .expect("create"));
    }

    let Some(outage) = kv::Outage::begin(SCRIPT, "pause", "node-1").await else {
        return;
    };
    for key in &keys {
        let started = Instant::now();
        let result = store.load(key).await;
        let took = started.elapsed();
        match server_of(&servers, key) {
            0 => {
                assert!(matches!(result, Err(StoreError::Timeout(_))), "{result:?}");
                assert!(took < Duration::from_millis(800), "took {took:?}");
            }
            _ => assert!(result.expect("the other server works").is_some()),
        }
    }
    outage.end().await;
    for key in &keys {
        assert!(store
            .load(key)
            .await
            .expect("load after resuming")
            .is_some());
    }
}

/// The store decides expiry by the clock it is given (the engine's), not the system's.
#[tokio::test]
async fn expiry_follows_the_clock_the_store_is_given() {
    let Some(url) = kv::env_or_skip("VISHNU_MEMCACHED_URL", SCRIPT) else {
        return;
    };
    let clock = common::MockClock::new();
    let store = MemcachedStore::from_url(&url)
        .await
        .expect("connect")
        .with_clock(clock.clone());
    let key = vishnu::id::SessionId::generate().expect("rng").store_key();
    let now = vishnu::Clock::now_millis(&*clock);
    let record = vishnu::record::Record::new(serde_json::Map::new(), now, now + 60_000);
    assert!(store.create(&key, &record).await.expect("create"));
    assert!(store.load(&key).await.expect("load").is_some());
    // A minute later by the store's clock (not by the system's): expired.
    clock.advance(Duration::from_secs(61));
    assert_eq!(store.load(&key).await.expect("load"), None);
    assert!(!store
        .touch(&key, now, now + DAY.as_millis() as u64)
        .await
        .expect("touch"));
    let mut next = record.clone();
    next.version = 2;
    assert_eq!(
        store.save(&key, &next, 1).await.expect("save"),
        SaveOutcome::Missing
    );
}
