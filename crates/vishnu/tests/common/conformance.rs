//! One conformance suite for every store, written once.
//!
//! A store's test file calls
//! `conformance_suite!(module, make, native_ttl = bool, byte_limit = bool)` where `make` is
//! an `async fn() -> Option<Arc<dyn SessionStore>>` returning a store (tests use random ids,
//! so a shared server or table is fine), or `None` when its server is not configured outside
//! CI (under CI, `CI=true` or `CI=1`, it must panic instead); `native_ttl` says whether the
//! store expires records itself (Redis, memcached) instead of through `delete_expired`, and
//! `byte_limit` whether it encodes records and so refuses one over
//! [`MAX_RECORD_BYTES`](vishnu::record::MAX_RECORD_BYTES) (every store but memory).
//!
//! The store-level tests (load, create, save, touch, delete, expiry, cleanup, compare-and-set)
//! and the HTTP-level ones live here; [`super::identity`] adds the id-change races. A store's
//! own test file keeps only what is about that store (native TTLs, prefixes, outages, …),
//! and may reuse [`round_trip`] and [`concurrent_cas_increments`] there.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde_json::{json, Map, Value};
use vishnu::codec::Codec;
use vishnu::id::{SessionId, StoreKey};
use vishnu::record::{Millis, Record, MAX_RECORD_BYTES};
use vishnu::{
    Cleanup, Clock, Config, Engine, SaveOutcome, SessionError, SessionStore, StoreError,
    SystemClock,
};

use super::{app, Client, SECRET};

/// Generates one `#[tokio::test]` per behaviour for the store made by `$make`.
#[macro_export]
macro_rules! conformance_suite {
    ($module:ident, $make:path, native_ttl = $native:expr, byte_limit = $limit:expr) => {
        mod $module {
            use super::*;

            $crate::conformance_suite!(@tests $make;
                conformance::load_create_save_touch_delete_round_trip(),
                conformance::store_expires_records_without_cleanup(),
                conformance::create_never_overwrites(),
                conformance::create_replaces_an_expired_record(),
                conformance::stale_version_save_is_rejected(),
                conformance::save_on_missing_or_expired_record_is_missing(),
                conformance::touch_extends_without_rewriting_or_creating(),
                conformance::touch_never_moves_the_expiry_earlier(),
                conformance::delete_expired_honours_limit_and_dormant_for($native),
                conformance::concurrent_cas_increments_lose_nothing(),
                conformance::oversized_record_is_refused($limit),
                conformance::terminate_is_not_undone_by_a_slower_request(),
                conformance::concurrent_updates_are_never_lost(),
                conformance::concurrent_requests_setting_distinct_keys_keep_all(),
                conformance::login_read_logout_over_http(),
                conformance::save_without_read_keeps_stored_data(),
                conformance::unknown_signed_id_is_never_adopted(),
                identity::terminate_between_an_id_changes_steps_ends_both_ids(),
                identity::terminate_that_loaded_before_an_id_change_follows_it(),
                identity::save_racing_a_cycle_is_refused_not_lost(),
                identity::update_racing_a_renewal_lands_once_under_the_new_id(),
                identity::renewals_racing_converge_on_one_id(),
                identity::cycle_grace_sends_no_cookie_and_refuses_writes(),
                identity::the_store_holds_no_usable_id(),
                identity::a_users_sessions_are_listed_and_revoked(),
                identity::revoke_all_racing_a_renewal_leaves_nothing(),
            );
        }
    };
    // One test per `module::name(extra args)`: it calls `common::module::name(store, args…)`.
    (@tests $make:path; $($group:ident :: $test:ident ($($arg:expr)?)),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() {
                let Some(store) = $make().await else { return };
                $crate::common::$group::$test(store $(, $arg)?).await
            }
        )*
    };
}

const HOUR: Millis = 3_600_000;

fn config(store: Arc<dyn SessionStore>) -> Config {
    Config::builder()
        .secret(SECRET)
        .shared_store(store)
        .auto_save(true)
        .build()
        .expect("config")
}

pub fn now() -> Millis {
    SystemClock.now_millis()
}

/// A record holding `{"n": n}`, created now, expiring `expires_in` from now.
pub fn record(n: u64, expires_in: Duration) -> Record {
    let mut data = Map::new();
    data.insert("n".into(), json!(n));
    Record::new(data, now(), now() + expires_in.as_millis() as u64)
}

/// A record holding `data` (an object), last accessed at `last_access`.
fn record_at(data: Value, last_access: Millis, expires_at: Millis) -> Record {
    let Value::Object(map) = data else {
        panic!("record data must be an object")
    };
    Record::new(map, last_access, expires_at)
}

pub fn fresh_key() -> StoreKey {
    SessionId::generate().expect("rng").store_key()
}

// ---------------------------------------------------------------------------------------------
// The store contract, against the trait.

/// [`round_trip`] on many keys, so that a store spreading keys over nodes (Redis Cluster
/// slots, memcached servers) uses every node.
pub async fn load_create_save_touch_delete_round_trip(store: Arc<dyn SessionStore>) {
    for _ in 0..12 {
        round_trip(&*store).await;
    }
}

/// load / create / save / touch / delete on one key, each checked against what the trait promises.
pub async fn round_trip(store: &dyn SessionStore) {
    let key = fresh_key();
    let t = now();
    assert_eq!(store.load(&key).await.expect("load"), None);

    let created = record_at(json!({"user": "ada", "n": 1}), t, t + HOUR);
    assert!(store.create(&key, &created).await.expect("create"));
    assert_eq!(store.load(&key).await.expect("load"), Some(created.clone()));

    // A save replaces data, times and version, and keeps every JSON value as it was.
    let mut saved = created.clone();
    saved.data.insert("n".into(), json!(2));
    saved
        .data
        .insert("cart".into(), json!([1, 2.5, {"sku": "x"}, null, []]));
    saved
        .data
        .insert("unicode".into(), json!("ünïcødé ✓ \u{0} \"quotes\""));
    saved.last_access = t + 10;
    saved.expires_at = t + 2 * HOUR;
    saved.version = 2;
    assert_eq!(
        store.save(&key, &saved, 1).await.expect("save"),
        SaveOutcome::Saved
    );
    assert_eq!(store.load(&key).await.expect("load"), Some(saved.clone()));

    // touch moves the times and nothing else, and never moves either back.
    let later = t + 5_000;
    assert!(store
        .touch(&key, later, later + 3 * HOUR)
        .await
        .expect("touch"));
    let touched = store.load(&key).await.expect("load").expect("present");
    assert_eq!(
        (touched.last_access, touched.expires_at),
        (later, later + 3 * HOUR)
    );
    assert_eq!((&touched.data, touched.version), (&saved.data, 2));
    assert!(store
        .touch(&key, later - 1_000, later + HOUR)
        .await
        .expect("touch"));
    let touched = store.load(&key).await.expect("load").expect("present");
    assert_eq!(
        (touched.last_access, touched.expires_at),
        (later, later + 3 * HOUR)
    );

    // A save after a touch still compares versions only.
    let mut after_touch = touched.clone();
    after_touch.version = 3;
    assert_eq!(
        store.save(&key, &after_touch, 2).await.expect("save"),
        SaveOutcome::Saved
    );
    assert_eq!(store.load(&key).await.expect("load"), Some(after_touch));

    store.delete(&key).await.expect("delete");
    assert_eq!(store.load(&key).await.expect("load"), None);
    store
        .delete(&key)
        .await
        .expect("deleting a missing record is not an error");
    assert!(
        !store
            .touch(&key, now(), now() + 60_000)
            .await
            .expect("touch"),
        "touch never creates"
    );
    assert_eq!(store.load(&key).await.expect("load"), None);
}

/// A record is gone at its `expires_at` without any cleanup call: it loads as `None`, a touch
/// cannot revive it, and it no longer holds its key (for Redis and memcached: the server
/// itself forgot it).
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
    assert!(
        !store.touch(&key, now(), now() + HOUR).await.expect("touch"),
        "an expired record cannot be revived by a touch"
    );
    assert_eq!(store.load(&key).await.expect("load"), None);
    let next = record(2, Duration::from_secs(3600));
    assert!(
        store.create(&key, &next).await.expect("create"),
        "the store still holds the expired record"
    );
    assert_eq!(store.load(&key).await.expect("load"), Some(next));
}

pub async fn create_never_overwrites(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let hour = Duration::from_secs(3600);
    let original = record(1, hour);
    assert!(store.create(&key, &original).await.expect("create"));
    assert!(!store
        .create(&key, &record(2, hour))
        .await
        .expect("second create"));
    assert_eq!(store.load(&key).await.expect("load"), Some(original));
}

pub async fn create_replaces_an_expired_record(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let t = now();
    let old = record_at(json!({"owner": "expired"}), t - 2 * HOUR, t - HOUR);
    assert!(store.create(&key, &old).await.expect("create expired"));
    assert_eq!(store.load(&key).await.expect("load"), None);
    let new = record_at(json!({"owner": "new"}), t, t + HOUR);
    assert!(
        store.create(&key, &new).await.expect("create"),
        "an expired record does not hold its key"
    );
    assert_eq!(store.load(&key).await.expect("load"), Some(new));
}

pub async fn stale_version_save_is_rejected(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let hour = Duration::from_secs(3600);
    assert!(store.create(&key, &record(1, hour)).await.expect("create"));
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
        SaveOutcome::Conflict,
        "the save read version 1, which is gone"
    );
    let mut ahead = record(4, hour);
    ahead.version = 4;
    assert_eq!(
        store.save(&key, &ahead, 3).await.expect("save"),
        SaveOutcome::Conflict,
        "a version from the future is no match either"
    );
    assert_eq!(store.load(&key).await.expect("load"), Some(second.clone()));
    assert_eq!(
        store.save(&fresh_key(), &second, 1).await.expect("save"),
        SaveOutcome::Missing
    );
}

pub async fn save_on_missing_or_expired_record_is_missing(store: Arc<dyn SessionStore>) {
    let t = now();
    let key = fresh_key();
    let mut r = record_at(json!({"n": 1}), t, t + HOUR);
    r.version = 2;
    assert_eq!(
        store.save(&key, &r, 1).await.expect("save"),
        SaveOutcome::Missing
    );
    assert_eq!(
        store.load(&key).await.expect("load"),
        None,
        "a failed save writes nothing: a save never creates"
    );

    let expired_key = fresh_key();
    let expired = record_at(json!({"n": 1}), t - 2 * HOUR, t - HOUR);
    assert!(store.create(&expired_key, &expired).await.expect("create"));
    assert_eq!(
        store.save(&expired_key, &r, 1).await.expect("save"),
        SaveOutcome::Missing
    );
    assert_eq!(store.load(&expired_key).await.expect("load"), None);
}

/// A touch extends a record's life past its original expiry (for Redis and memcached: the
/// server's TTL), without rewriting its data or changing its version, never moves
/// `last_access` back, and never creates a record.
/// A stale read-only refresh must not undo a timeout another request just raised.
pub async fn touch_never_moves_the_expiry_earlier(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let t = now();
    // Another request raised this session's timeout to a day.
    let rec = record_at(json!({"n": 1}), t, t + 24 * HOUR);
    assert!(store.create(&key, &rec).await.expect("create"));
    // A request that read the old 30-minute timeout refreshes late.
    assert!(store
        .touch(&key, t + 10, t + HOUR / 2)
        .await
        .expect("touch"));
    let loaded = store.load(&key).await.expect("load").expect("record");
    assert_eq!(loaded.expires_at, t + 24 * HOUR, "the raised expiry stays");
    assert_eq!(loaded.last_access, t + 10, "the access still counts");
    // A later expiry still moves it forward.
    assert!(store
        .touch(&key, t + 20, t + 25 * HOUR)
        .await
        .expect("touch"));
    let loaded = store.load(&key).await.expect("load").expect("record");
    assert_eq!(loaded.expires_at, t + 25 * HOUR);
}

pub async fn touch_extends_without_rewriting_or_creating(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let t = now();
    let rec = record_at(json!({"n": 7, "keep": [1, 2, 3]}), t, t + 2_000);
    assert!(store.create(&key, &rec).await.expect("create"));
    assert!(store.touch(&key, t + 100, t + HOUR).await.expect("touch"));
    // A late touch from an older request never moves last_access backwards.
    assert!(store
        .touch(&key, t + 50, t + HOUR)
        .await
        .expect("touch again"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let loaded = store
        .load(&key)
        .await
        .expect("load")
        .expect("touch extended the record");
    assert_eq!((&loaded.data, loaded.version), (&rec.data, 1));
    assert_eq!((loaded.last_access, loaded.expires_at), (t + 100, t + HOUR));

    // The version is unchanged, so a save that read version 1 still goes through.
    let mut next = loaded.clone();
    next.version = 2;
    assert_eq!(
        store.save(&key, &next, 1).await.expect("save"),
        SaveOutcome::Saved
    );

    let absent = fresh_key();
    assert!(
        !store
            .touch(&absent, now(), now() + HOUR)
            .await
            .expect("touch"),
        "touch created a record"
    );
    assert_eq!(
        store.load(&absent).await.expect("load"),
        None,
        "a touch never creates"
    );
}

pub async fn delete_expired_honours_limit_and_dormant_for(
    store: Arc<dyn SessionStore>,
    native_ttl: bool,
) {
    let t = now();
    let mut live = Vec::new();
    for _ in 0..3 {
        let key = fresh_key();
        let r = record_at(json!({"kind": "live"}), t, t + HOUR);
        assert!(store.create(&key, &r).await.expect("create"));
        live.push(key);
    }
    if native_ttl {
        // The server expires records; delete_expired has nothing to do and says so.
        let cleanup = store
            .delete_expired(t, Duration::from_secs(86_400), 10)
            .await
            .expect("delete_expired");
        assert_eq!(cleanup, Cleanup::default(), "native TTLs: nothing to clean");
        for key in &live {
            assert!(store.load(key).await.expect("load").is_some());
        }
        return;
    }
    // Cleanup runs at `at`, long ago: only the records made for it below qualify, so the
    // counts are exact even in a table that other tests fill at the same time.
    let at: Millis = 100 * 24 * HOUR;
    let mut expired = Vec::new();
    let mut dormant = Vec::new();
    for _ in 0..5 {
        let key = fresh_key();
        let r = record_at(json!({"kind": "expired"}), at - 3 * HOUR, at - HOUR);
        assert!(store.create(&key, &r).await.expect("create"));
        expired.push(key);
    }
    for _ in 0..2 {
        let key = fresh_key();
        // Not expired, but unused for two hours before `at`.
        let r = record_at(json!({"kind": "dormant"}), at - 2 * HOUR, t + HOUR);
        assert!(store.create(&key, &r).await.expect("create"));
        assert!(store.load(&key).await.expect("load").is_some());
        dormant.push(key);
    }

    let dormant_for = Duration::from_millis(HOUR);
    let mut batches = Vec::new();
    loop {
        let cleanup = store
            .delete_expired(at, dormant_for, 3)
            .await
            .expect("delete_expired");
        batches.push((cleanup.removed, cleanup.more));
        assert!(
            batches.len() <= 10,
            "`more` never became false: {batches:?}"
        );
        if !cleanup.more {
            break;
        }
    }
    assert_eq!(batches, [(3, true), (3, true), (1, false)]);
    let again = store
        .delete_expired(at, dormant_for, 3)
        .await
        .expect("again");
    assert_eq!(again, Cleanup::default());

    for key in expired.iter().chain(&dormant) {
        assert_eq!(store.load(key).await.expect("load"), None);
    }
    for key in &live {
        assert!(
            store.load(key).await.expect("load").is_some(),
            "a live record was removed"
        );
    }
}

pub async fn concurrent_cas_increments_lose_nothing(store: Arc<dyn SessionStore>) {
    concurrent_cas_increments(store, 64).await;
}

/// `tasks` concurrent read-modify-write loops on one record (load, add one, save with the
/// loaded version, retry on conflict) end at exactly `tasks`, version `tasks + 1`.
pub async fn concurrent_cas_increments(store: Arc<dyn SessionStore>, tasks: u64) {
    let key = fresh_key();
    let t = now();
    let start = record_at(json!({"n": 0}), t, t + HOUR);
    assert!(store.create(&key, &start).await.expect("create"));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (store, key) = (store.clone(), key.clone());
        handles.push(tokio::spawn(async move {
            for conflicts in 0..10_000u64 {
                let mut rec = store.load(&key).await.expect("load").expect("present");
                let read = rec.version;
                let n = rec.data["n"].as_u64().expect("n is a number");
                rec.data.insert("n".into(), json!(n + 1));
                rec.version = read + 1;
                match store.save(&key, &rec, read).await.expect("save") {
                    SaveOutcome::Saved => return conflicts,
                    SaveOutcome::Conflict => continue,
                    SaveOutcome::Missing => panic!("the record vanished"),
                }
            }
            panic!("no save went through in 10,000 attempts");
        }));
    }
    let mut conflicts = 0;
    for handle in handles {
        conflicts += handle.await.expect("task");
    }
    let last = store.load(&key).await.expect("load").expect("present");
    assert_eq!(
        last.data["n"],
        json!(tasks),
        "lost updates ({conflicts} conflicts retried)"
    );
    assert_eq!(last.version, tasks + 1);
}

/// A store that encodes records (`byte_limit`) refuses one whose JSON exceeds
/// `MAX_RECORD_BYTES` and writes nothing; the memory store, which keeps records as they are,
/// keeps it whole.
pub async fn oversized_record_is_refused(store: Arc<dyn SessionStore>, byte_limit: bool) {
    let key = fresh_key();
    let t = now();
    let big = record_at(json!({"blob": "x".repeat(MAX_RECORD_BYTES)}), t, t + HOUR);
    if !byte_limit {
        assert!(store.create(&key, &big).await.expect("create"));
        assert_eq!(store.load(&key).await.expect("load"), Some(big));
        return;
    }
    let result = store.create(&key, &big).await;
    assert!(matches!(result, Err(StoreError::TooLarge(_))), "{result:?}");
    assert_eq!(store.load(&key).await.expect("load"), None);
}

// ---------------------------------------------------------------------------------------------
// Through the engine and over HTTP.

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
