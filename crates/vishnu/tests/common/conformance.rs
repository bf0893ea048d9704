//! One conformance suite for every store, written once.
//!
//! A store's test file calls `conformance_suite!(module, make, native_ttl = bool)`
//! where `make` is an `async fn() -> Option<Arc<dyn SessionStore>>` returning a
//! store (tests use random ids, so a shared server is fine), or `None` when its
//! server is not configured outside CI (under CI, `CI=true` or `CI=1`, it must panic instead),
//! and `native_ttl` says whether the store expires records itself (Redis,
//! memcached) instead of through `delete_expired`.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde_json::{json, Map};
use vishnu::codec::Codec;
use vishnu::id::SessionId;
use vishnu::record::Record;
use vishnu::{Clock, Config, Engine, SaveOutcome, SessionError, SessionStore, SystemClock};

use super::{app, Client, SECRET};

/// Generates one `#[tokio::test]` per behaviour for the store made by `$make`.
#[macro_export]
macro_rules! conformance_suite {
    ($module:ident, $make:path, native_ttl = $native:expr) => {
        mod $module {
            use super::*;
            use $crate::common::conformance as c;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn store_expires_records_without_cleanup() {
                let Some(store) = $make().await else { return };
                c::store_expires_records_without_cleanup(store).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn create_never_overwrites() {
                let Some(store) = $make().await else { return };
                c::create_never_overwrites(store).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn stale_version_save_is_rejected() {
                let Some(store) = $make().await else { return };
                c::stale_version_save_is_rejected(store).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn touch_extends_without_rewriting_or_creating() {
                let Some(store) = $make().await else { return };
                c::touch_extends_without_rewriting_or_creating(store).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn terminate_is_not_undone_by_a_slower_request() {
                let Some(store) = $make().await else { return };
                c::terminate_is_not_undone_by_a_slower_request(store).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn delete_expired_honours_limit_and_dormant_for() {
                let Some(store) = $make().await else { return };
                c::delete_expired_honours_limit_and_dormant_for(store, $native).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_updates_are_never_lost() {
                let Some(store) = $make().await else { return };
                c::concurrent_updates_are_never_lost(store).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_requests_setting_distinct_keys_keep_all() {
                let Some(store) = $make().await else { return };
                c::concurrent_requests_setting_distinct_keys_keep_all(store).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn login_read_logout_over_http() {
                let Some(store) = $make().await else { return };
                c::login_read_logout_over_http(store).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn save_without_read_keeps_stored_data() {
                let Some(store) = $make().await else { return };
                c::save_without_read_keeps_stored_data(store).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn unknown_signed_id_is_never_adopted() {
                let Some(store) = $make().await else { return };
                c::unknown_signed_id_is_never_adopted(store).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn terminate_between_an_id_changes_steps_ends_both_ids() {
                let Some(store) = $make().await else { return };
                $crate::common::identity::terminate_between_an_id_changes_steps_ends_both_ids(store)
                    .await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn terminate_that_loaded_before_an_id_change_follows_it() {
                let Some(store) = $make().await else { return };
                $crate::common::identity::terminate_that_loaded_before_an_id_change_follows_it(
                    store,
                )
                .await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn save_racing_a_cycle_is_refused_not_lost() {
                let Some(store) = $make().await else { return };
                $crate::common::identity::save_racing_a_cycle_is_refused_not_lost(store).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn update_racing_a_renewal_lands_once_under_the_new_id() {
                let Some(store) = $make().await else { return };
                $crate::common::identity::update_racing_a_renewal_lands_once_under_the_new_id(store)
                    .await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn renewals_racing_converge_on_one_id() {
                let Some(store) = $make().await else { return };
                $crate::common::identity::renewals_racing_converge_on_one_id(store).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn cycle_grace_sends_no_cookie_and_refuses_writes() {
                let Some(store) = $make().await else { return };
                $crate::common::identity::cycle_grace_sends_no_cookie_and_refuses_writes(store)
                    .await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn the_store_holds_no_usable_id() {
                let Some(store) = $make().await else { return };
                $crate::common::identity::the_store_holds_no_usable_id(store).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_users_sessions_are_listed_and_revoked() {
                let Some(store) = $make().await else { return };
                $crate::common::identity::a_users_sessions_are_listed_and_revoked(store).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn revoke_all_racing_a_renewal_leaves_nothing() {
                let Some(store) = $make().await else { return };
                $crate::common::identity::revoke_all_racing_a_renewal_leaves_nothing(store).await
            }
        }
    };
}

fn config(store: Arc<dyn SessionStore>) -> Config {
    Config::builder()
        .secret(SECRET)
        .shared_store(store)
        .auto_save(true)
        .build()
        .expect("config")
}

fn now() -> u64 {
    SystemClock.now_millis()
}

fn record(n: u64, expires_in: Duration) -> Record {
    let mut data = Map::new();
    data.insert("n".into(), json!(n));
    Record::new(data, now(), now() + expires_in.as_millis() as u64)
}

fn fresh_key() -> vishnu::id::StoreKey {
    SessionId::generate().expect("rng").store_key()
}

pub async fn store_expires_records_without_cleanup(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    assert!(store
        .create(&key, &record(1, Duration::from_millis(1200)))
        .await
        .expect("create"));
    assert!(store.load(&key).await.expect("load").is_some());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        store.load(&key).await.expect("load"),
        None,
        "the record outlived its TTL"
    );
}

pub async fn create_never_overwrites(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let hour = Duration::from_secs(3600);
    assert!(store.create(&key, &record(1, hour)).await.expect("create"));
    assert!(!store
        .create(&key, &record(2, hour))
        .await
        .expect("second create"));
    let loaded = store.load(&key).await.expect("load").expect("present");
    assert_eq!(loaded.data["n"], json!(1));
}

pub async fn stale_version_save_is_rejected(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let hour = Duration::from_secs(3600);
    let first = record(1, hour);
    assert!(store.create(&key, &first).await.expect("create"));
    let mut second = record(2, hour);
    second.version = 2;
    assert_eq!(
        store.save(&key, &second, 1).await.expect("save"),
        SaveOutcome::Saved
    );
    let mut stale = record(3, hour);
    stale.version = 2;
    assert_eq!(
        store.save(&key, &stale, 1).await.expect("save"),
        SaveOutcome::Conflict
    );
    let loaded = store.load(&key).await.expect("load").expect("present");
    assert_eq!((loaded.data["n"].clone(), loaded.version), (json!(2), 2));
    assert_eq!(
        store.save(&fresh_key(), &second, 1).await.expect("save"),
        SaveOutcome::Missing
    );
}

pub async fn touch_extends_without_rewriting_or_creating(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let rec = record(7, Duration::from_secs(2));
    assert!(store.create(&key, &rec).await.expect("create"));
    let later = now() + 3_600_000;
    assert!(store.touch(&key, now(), later).await.expect("touch"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let loaded = store
        .load(&key)
        .await
        .expect("load")
        .expect("touch extended the record");
    assert_eq!((loaded.data["n"].clone(), loaded.version), (json!(7), 1));
    assert!(
        !store
            .touch(&fresh_key(), now(), later)
            .await
            .expect("touch"),
        "touch created a record"
    );
}

pub async fn terminate_is_not_undone_by_a_slower_request(store: Arc<dyn SessionStore>) {
    let engine = Engine::new(config(store.clone()));
    // Log in.
    let first = engine.begin(vec![]);
    first.set("user", "ada").expect("set");
    first.save().await.expect("save");
    let set_cookie = engine
        .finish(&first, 200)
        .await
        .expect("finish")
        .expect("cookie");
    let pair = set_cookie.split(';').next().expect("pair").to_owned();
    let header = || vec![HeaderValue::from_str(&pair).expect("header")];

    // A slow request loads the session, then a logout completes, then the slow one saves.
    let slow = engine.begin(header());
    assert_eq!(
        slow.get::<String>("user").await.expect("get").as_deref(),
        Some("ada")
    );
    let logout = engine.begin(header());
    logout.terminate().await.expect("terminate");
    let removal = engine
        .finish(&logout, 303)
        .await
        .expect("finish")
        .expect("removal");
    assert!(removal.contains("Max-Age=0"));
    slow.set("cart", "full").expect("set");
    assert!(matches!(slow.save().await, Err(SessionError::Terminated)));
    let slow_cookie = engine.finish(&slow, 200).await.expect("finish");
    assert!(
        slow_cookie.is_some_and(|c| c.contains("Max-Age=0")),
        "the slow request must not re-issue the session"
    );

    // The old cookie is worthless now.
    let replay = engine.begin(header());
    assert_eq!(replay.get::<String>("user").await.expect("get"), None);
    assert_eq!(replay.get::<String>("cart").await.expect("get"), None);
}

pub async fn delete_expired_honours_limit_and_dormant_for(
    store: Arc<dyn SessionStore>,
    native_ttl: bool,
) {
    let hour = Duration::from_secs(3600);
    let day = Duration::from_secs(86_400);
    let t = now();
    let mut live = Vec::new();
    for i in 0..3 {
        let key = fresh_key();
        assert!(store.create(&key, &record(i, hour)).await.expect("create"));
        live.push(key);
    }
    if native_ttl {
        // The server expires records; delete_expired has nothing to do and says so.
        let c = store
            .delete_expired(t, day, 10)
            .await
            .expect("delete_expired");
        assert!(!c.more);
        for key in &live {
            assert!(store.load(key).await.expect("load").is_some());
        }
        return;
    }
    // 4 expired and 2 dormant (not accessed for over a day) records.
    for i in 0..4 {
        let mut r = record(i, hour);
        r.expires_at = t - 1;
        assert!(store.create(&fresh_key(), &r).await.expect("create"));
    }
    for i in 0..2 {
        let mut r = record(i, hour);
        r.last_access = t - 2 * 86_400_000;
        assert!(store.create(&fresh_key(), &r).await.expect("create"));
    }
    let mut removed = 0;
    let mut calls = 0;
    loop {
        let c = store
            .delete_expired(t, day, 4)
            .await
            .expect("delete_expired");
        assert!(c.removed <= 4, "limit exceeded: {c:?}");
        removed += c.removed;
        calls += 1;
        if !c.more {
            break;
        }
        assert!(calls < 10, "delete_expired keeps saying more remain");
    }
    assert!(
        removed >= 6,
        "removed {removed} of 6 (shared stores may hold others' leftovers)"
    );
    assert!(calls >= 2, "6 records with limit 4 need two calls");
    for key in &live {
        assert!(
            store.load(key).await.expect("load").is_some(),
            "a live record was removed"
        );
    }
}

pub async fn concurrent_updates_are_never_lost(store: Arc<dyn SessionStore>) {
    let app = app(config(store));
    let mut client = Client::new(app.clone());
    assert_eq!(client.get("/incr").await.body, "1");
    let pair = client.pair().expect("cookie");
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let app = app.clone();
            let pair = pair.clone();
            tokio::spawn(async move { super::send(&app, "/incr", &[&pair]).await })
        })
        .collect();
    for t in tasks {
        let a = t.await.expect("task");
        assert_eq!(a.status, 200, "{}", a.body);
    }
    assert_eq!(client.get("/get/n").await.body, "65");
}

pub async fn concurrent_requests_setting_distinct_keys_keep_all(store: Arc<dyn SessionStore>) {
    let app = app(config(store));
    let mut client = Client::new(app.clone());
    client.get("/set/start/yes").await;
    let pair = client.pair().expect("cookie");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let app = app.clone();
            let pair = pair.clone();
            tokio::spawn(
                async move { super::send(&app, &format!("/put/k{i:02}/v{i}"), &[&pair]).await },
            )
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task").status, 200);
    }
    let keys = client.get("/keys").await.body;
    let expected: Vec<String> = (0..16)
        .map(|i| format!("k{i:02}"))
        .chain(["start".into()])
        .collect();
    assert_eq!(keys, expected.join(","));
}

pub async fn login_read_logout_over_http(store: Arc<dyn SessionStore>) {
    let mut client = Client::new(app(config(store)));
    assert_eq!(client.get("/get/user").await.body, "none");
    client.get("/login/ada").await;
    assert_eq!(client.get("/get/user").await.body, "ada");
    let old = client.pair().expect("cookie");
    let bye = client.get("/terminate").await;
    assert!(bye.set_cookie().expect("removal").contains("Max-Age=0"));
    assert_eq!(client.cookie, None);
    let replay = super::send(&client.app, "/get/user", &[&old]).await;
    assert_eq!(replay.body, "none");
}

pub async fn save_without_read_keeps_stored_data(store: Arc<dyn SessionStore>) {
    let mut client = Client::new(app(config(store)));
    client.get("/set/user/ada").await;
    client.get("/save").await;
    client.get("/put/other/x").await;
    assert_eq!(client.get("/get/user").await.body, "ada");
    assert_eq!(client.get("/get/other").await.body, "x");
}

pub async fn unknown_signed_id_is_never_adopted(store: Arc<dyn SessionStore>) {
    let planted = SessionId::generate().expect("rng");
    let value = Codec::new("vishnu", &[SECRET.as_bytes()], &[])
        .encode(planted.as_bytes())
        .expect("encode");
    let app = app(config(store.clone()));
    let a = super::send(&app, "/set/user/mallory", &[&format!("vishnu={value}")]).await;
    let issued = super::value(a.set_cookie().expect("a new cookie")).to_owned();
    assert_ne!(issued, value, "the planted id was adopted");
    assert_eq!(store.load(&planted.store_key()).await.expect("load"), None);
}
