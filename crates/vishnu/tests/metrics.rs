//! The metrics count exactly what happened: known traffic, compared.
#![cfg(all(feature = "axum", feature = "metrics"))]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{identity::*, MockClock, SECRET};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use vishnu::{Config, Engine, MemoryStore, SessionError};

type Counts = HashMap<String, u64>;
type Samples = HashMap<String, Vec<f64>>;

/// Runs `traffic` with a fresh recorder on this thread; the counters by
/// `name{label=value}`, and the store-latency samples (seconds) by `op/store`.
fn record(traffic: impl std::future::Future<Output = ()>) -> (Counts, Samples) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(traffic)
    });
    let (mut counters, mut samples) = (Counts::new(), Samples::new());
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        match value {
            DebugValue::Counter(n) => {
                let name = if labels.is_empty() {
                    key.name().to_owned()
                } else {
                    format!("{}{{{}}}", key.name(), labels.join(","))
                };
                counters.insert(name, n);
            }
            DebugValue::Histogram(v) => {
                samples.insert(labels.join(","), v.iter().map(|s| s.into_inner()).collect());
            }
            DebugValue::Gauge(_) => {}
        }
    }
    (counters, samples)
}

fn engine(store: Arc<MemoryStore>, clock: Arc<MockClock>, renew: bool) -> Engine {
    let mut b = Config::builder()
        .secret(SECRET)
        .shared_store(store)
        .clock(clock)
        .timeout(Duration::from_secs(600))
        .auto_save(true);
    if renew {
        b = b.renew_every(Duration::from_secs(60));
    }
    Engine::new(b.build().expect("config"))
}

#[test]
fn every_counter_counts_exactly_the_traffic() {
    let (counters, _) = record(async {
        let store = Arc::new(MemoryStore::new());
        let clock = MockClock::new();
        let plain = engine(store.clone(), clock.clone(), false);
        let renewing = engine(store.clone(), clock.clone(), true);

        // Two new sessions.
        let a = start(&plain, None).await;
        let b = start(&plain, None).await;
        // A tampered cookie, a garbage one, and an unknown (validly signed) id.
        // A character inside the tag: the last one may carry padding bits,
        // and a change there is malformed base64, not a bad signature.
        let mut tampered = a.clone().into_bytes();
        let inside = tampered.len() - 5;
        tampered[inside] = if tampered[inside] == b'A' { b'B' } else { b'A' };
        peek(&plain, &String::from_utf8(tampered).expect("ascii")).await;
        peek(&plain, "vishnu=%%%not-a-cookie%%%").await;
        let elsewhere = engine(Arc::new(MemoryStore::new()), clock.clone(), false);
        let stranger = start(&elsewhere, None).await; // a third created session
        peek(&plain, &stranger).await;
        // A login (cycle), then a write with the pre-login id: superseded.
        let s = plain.begin(header(&a));
        s.login("ada").await.expect("login");
        let a2 = pair(
            &plain
                .finish(&s, 200)
                .await
                .expect("finish")
                .expect("cookie"),
        );
        let late = plain.begin(header(&a));
        assert!(matches!(
            late.update("n", |n: Option<u64>| n.unwrap_or(0) + 1).await,
            Err(SessionError::Superseded)
        ));
        // A conflict: two requests read b, both write.
        let one = plain.begin(header(&b));
        let two = plain.begin(header(&b));
        one.get::<u64>("n").await.expect("get");
        two.get::<u64>("n").await.expect("get");
        one.set("x", &1).expect("set");
        one.save().await.expect("save");
        two.set("y", &2).expect("set");
        two.save().await.expect("save after one conflict");
        // A renewal of a2 after a minute.
        clock.advance(Duration::from_secs(61));
        let (v, cookie) = peek(&renewing, &a2).await;
        assert_eq!(v, Some(1));
        assert!(cookie.is_some());
        // Logout of b, and b's session expiring is not needed: expire another.
        let t = plain.begin(header(&b));
        t.terminate().await.expect("terminate");
        let c = start(&plain, None).await; // a fourth
        clock.advance(Duration::from_secs(601));
        peek(&plain, &c).await;
    });
    let expected: Counts = [
        ("vishnu_sessions_created_total", 4),
        ("vishnu_sessions_terminated_total", 1),
        ("vishnu_session_ids_changed_total{reason=cycle}", 1),
        ("vishnu_session_ids_changed_total{reason=renew}", 1),
        ("vishnu_cookies_rejected_total{reason=signature}", 1),
        ("vishnu_cookies_rejected_total{reason=malformed}", 1),
        ("vishnu_cookies_rejected_total{reason=unknown_id}", 1),
        ("vishnu_cookies_rejected_total{reason=superseded}", 1),
        ("vishnu_cookies_rejected_total{reason=expired}", 1),
        ("vishnu_save_conflicts_total", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(counters, expected);
}

#[test]
fn the_store_histogram_has_one_sample_per_store_call() {
    let (_, samples) = record(async {
        let store = Arc::new(MemoryStore::new());
        let clock = MockClock::new();
        let e = engine(store.clone(), clock.clone(), false);
        let p = start(&e, None).await; // one create, no load (no cookie)
        peek(&e, &p).await; // one load
        peek(&e, &p).await; // one load
                            // The engine's cleanup task, once the session has expired: one
                            // delete_expired, which removes it (and says there is no more).
        clock.advance(Duration::from_secs(601));
        let task = e.spawn_cleanup(Duration::from_secs(3600), Duration::from_secs(86_400), 10);
        while !store.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        task.abort();
    });
    let count = |op: &str| samples.get(op).map(Vec::len);
    assert_eq!(count("op=create,store=memory"), Some(1), "{samples:?}");
    assert_eq!(count("op=load,store=memory"), Some(2), "{samples:?}");
    assert_eq!(
        count("op=delete_expired,store=memory"),
        Some(1),
        "{samples:?}"
    );
    assert_eq!(samples.len(), 3, "{samples:?}");
}

#[test]
fn the_store_histogram_records_how_long_each_call_took() {
    const HELD: Duration = Duration::from_millis(80);
    let (_, samples) = record(async {
        let store = ScriptedStore::new(Arc::new(MemoryStore::new()));
        let e = Engine::new(
            Config::builder()
                .secret(SECRET)
                .shared_store(store.clone())
                .build()
                .expect("config"),
        );
        let pair = start(&e, None).await;
        // The first load is held for HELD, the second runs at once.
        let mut pause = store.pause(Op::Load, &key_of(&pair));
        let held = async {
            pause.reached().await;
            tokio::time::sleep(HELD).await;
            pause.release();
        };
        let (_, (value, _)) = tokio::join!(held, peek(&e, &pair));
        assert_eq!(value, Some(1));
        assert_eq!(peek(&e, &pair).await.0, Some(1));
    });
    let loads = &samples["op=load,store=custom"];
    assert_eq!(loads.len(), 2, "{samples:?}");
    assert!(
        loads[0] >= HELD.as_secs_f64() && loads[0] < 10.0,
        "the held load took {}s",
        loads[0]
    );
    assert!(
        loads[1] >= 0.0 && loads[1] < HELD.as_secs_f64(),
        "the prompt load took {}s",
        loads[1]
    );
}
