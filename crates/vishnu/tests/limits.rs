//! Operational limits: a save never holds a request past its deadline.
#![cfg(feature = "axum")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::SECRET;
use vishnu::id::StoreKey;
use vishnu::record::{Millis, Record};
use vishnu::{
    Cleanup, Config, Engine, MemoryStore, SaveOutcome, SessionError, SessionStore, StoreError,
};

/// A store where every other writer always wins: each compare-and-set loses.
struct AlwaysContended(MemoryStore);

#[async_trait]
impl SessionStore for AlwaysContended {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        self.0.load(key).await
    }
    async fn create(&self, key: &StoreKey, record: &Record) -> Result<bool, StoreError> {
        self.0.create(key, record).await
    }
    async fn save(&self, _: &StoreKey, _: &Record, _: u64) -> Result<SaveOutcome, StoreError> {
        // Slow, and always too late.
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(SaveOutcome::Conflict)
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.0.delete(key).await
    }
    async fn touch(&self, key: &StoreKey, a: Millis, e: Millis) -> Result<bool, StoreError> {
        self.0.touch(key, a, e).await
    }
    async fn delete_expired(
        &self,
        now: Millis,
        dormant_for: Duration,
        limit: usize,
    ) -> Result<Cleanup, StoreError> {
        self.0.delete_expired(now, dormant_for, limit).await
    }
}

fn engine(deadline: Option<Duration>) -> Engine {
    let mut b = Config::builder()
        .secret(SECRET)
        .store(AlwaysContended(MemoryStore::new()));
    if let Some(d) = deadline {
        b = b.save_deadline(d);
    }
    Engine::new(b.build().expect("config"))
}

async fn contended_update(engine: &Engine) -> (Result<u64, SessionError>, Duration) {
    // A session exists (create is not contended), then every save conflicts.
    let s = engine.begin(vec![]);
    s.set("n", &0).expect("set");
    s.save().await.expect("create");
    let pair = engine
        .finish(&s, 200)
        .await
        .expect("finish")
        .expect("cookie");
    let pair = pair.split(';').next().expect("pair").to_owned();
    let s = engine.begin(vec![http::HeaderValue::from_str(&pair).expect("header")]);
    let started = Instant::now();
    let out = s.update("n", |n: Option<u64>| n.unwrap_or(0) + 1).await;
    (out, started.elapsed())
}

#[tokio::test]
async fn a_contended_save_gives_up_at_its_deadline() {
    let (out, took) = contended_update(&engine(Some(Duration::from_millis(300)))).await;
    assert!(
        matches!(out, Err(SessionError::TooManyConflicts)),
        "{out:?}"
    );
    assert!(
        took >= Duration::from_millis(100),
        "gave up too early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "held the request for {took:?}"
    );
}

#[tokio::test]
async fn the_default_deadline_is_five_seconds_not_a_minute() {
    let engine = engine(None);
    assert_eq!(engine.config().save_deadline(), Duration::from_secs(5));
    let (out, took) = contended_update(&engine).await;
    assert!(
        matches!(out, Err(SessionError::TooManyConflicts)),
        "{out:?}"
    );
    assert!(
        took < Duration::from_secs(7),
        "held the request for {took:?}"
    );
}

#[tokio::test]
async fn a_zero_or_huge_deadline_is_a_configuration_error() {
    for bad in [Duration::ZERO, Duration::from_secs(7200)] {
        let err = Config::builder()
            .secret(SECRET)
            .store(MemoryStore::new())
            .save_deadline(bad)
            .build()
            .expect_err("refused");
        assert!(err.to_string().contains("save_deadline"), "{err}");
    }
}

/// The engine's cleanup task asks the engine's clock what has expired.
#[tokio::test]
async fn the_engines_cleanup_uses_the_engines_clock() {
    let store = Arc::new(MemoryStore::new());
    let clock = common::MockClock::new();
    let engine = Engine::new(
        Config::builder()
            .secret(SECRET)
            .shared_store(store.clone())
            .clock(clock.clone())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("config"),
    );
    let s = engine.begin(vec![]);
    s.set("n", &1).expect("set");
    s.save().await.expect("save");
    assert_eq!(store.len(), 1);
    // Expired by the engine's clock only: the system clock has barely moved.
    clock.advance(Duration::from_secs(120));
    let task = engine.spawn_cleanup(Duration::from_secs(3600), Duration::from_secs(86_400), 10);
    for _ in 0..200 {
        if store.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task.abort();
    assert!(store.is_empty());
}
