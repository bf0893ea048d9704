//! Fixtures shared by the key-value store tests (`store_redis`, `store_memcached`):
//! finding the servers, driving the service scripts, and the store-level
//! behaviours every key-value store must show, written once.
#![allow(dead_code)]

#[path = "../server_env/mod.rs"]
mod server_env;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map};
use vishnu::id::{SessionId, StoreKey};
use vishnu::record::{Millis, Record};
use vishnu::{Clock, SaveOutcome, SessionStore, StoreError, SystemClock};

/// How long a call may take while its server is down: the 2 s store timeout
/// plus scheduling slack.
pub const FAIL_WITHIN: Duration = Duration::from_millis(2500);

/// Serializes the tests that stop a server against those that use it: each
/// test holds it for reading, an outage test for writing.
pub static SERVERS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The value of `var`, or `None` (after saying why the test is skipped) when it
/// is unset outside CI. Under CI (`CI=true` or `CI=1`) a missing server is a failure.
pub fn env_or_skip(var: &str, script: &str) -> Option<String> {
    let how = format!(
        "start the servers with `scripts/services/{script} start DIR` and `source DIR/{}.env`",
        script.trim_end_matches(".sh")
    );
    server_env::required_env(var, &how)
}

/// One server stopped (`kill`) or frozen (`pause`) through its service script.
/// [`Outage::end`] brings it back (`restart` / `resume`); if the test fails
/// first, dropping the guard does, so that no server stays down for the tests
/// after it.
pub struct Outage {
    script: PathBuf,
    dir: String,
    name: &'static str,
    undo: &'static str,
    ended: bool,
}

impl Outage {
    /// `kill` or `pause` server `name` of `script` (under `$VISHNU_SERVICES_DIR`).
    /// `None` when the test is skipped (no services dir, outside CI).
    pub async fn begin(script: &str, action: &str, name: &'static str) -> Option<Self> {
        let dir = env_or_skip("VISHNU_SERVICES_DIR", script)?;
        let undo = match action {
            "kill" => "restart",
            "pause" => "resume",
            other => panic!("no outage action {other:?}"),
        };
        let outage = Self {
            script: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../scripts/services")
                .join(script),
            dir,
            name,
            undo,
            ended: false,
        };
        outage.run(action).await;
        Some(outage)
    }

    /// Brings the server back, and waits until it answers.
    pub async fn end(mut self) {
        self.ended = true;
        self.run(self.undo).await;
    }

    async fn run(&self, action: &str) {
        let output = tokio::process::Command::new("bash")
            .arg(&self.script)
            .args([action, self.dir.as_str(), self.name])
            .output()
            .await
            .expect("run the service script");
        assert!(
            output.status.success(),
            "{} {action} {} failed: {}{}",
            self.script.display(),
            self.name,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.ended {
            let _ = std::process::Command::new("bash")
                .arg(&self.script)
                .args([self.undo, self.dir.as_str(), self.name])
                .status();
        }
    }
}

pub fn now() -> Millis {
    SystemClock.now_millis()
}

pub fn fresh_key() -> StoreKey {
    SessionId::generate().expect("rng").store_key()
}

pub fn record(n: u64, expires_in: Duration) -> Record {
    let mut data = Map::new();
    data.insert("n".into(), json!(n));
    data.insert("user".into(), json!("ada"));
    let now = now();
    Record::new(data, now, now + expires_in.as_millis() as u64)
}

const HOUR: Duration = Duration::from_secs(3600);

/// Runs `call` and checks that it fails with a store error within [`FAIL_WITHIN`].
pub async fn fails_fast<T: std::fmt::Debug>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> StoreError {
    let started = Instant::now();
    let result = call.await;
    let took = started.elapsed();
    eprintln!("{what} failed after {took:?}");
    assert!(
        took < FAIL_WITHIN,
        "{what} took {took:?} while the server was down"
    );
    match result {
        Err(e) => e,
        Ok(v) => panic!("{what} succeeded while the server was down: {v:?}"),
    }
}

/// A "server" that accepts connections (the kernel completes the handshake)
/// and never answers: what a hung or overloaded server looks like. Keep the
/// listener alive for as long as the address is used.
pub fn silent_server() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    (listener, addr)
}

/// A local address nothing listens on.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// load / create / save / touch / delete, each checked against what the trait promises.
pub async fn round_trip(store: &dyn SessionStore) {
    let key = fresh_key();
    assert_eq!(store.load(&key).await.expect("load"), None);

    let created = record(1, HOUR);
    assert!(store.create(&key, &created).await.expect("create"));
    assert_eq!(store.load(&key).await.expect("load"), Some(created.clone()));

    let mut saved = created.clone();
    saved.data.insert("n".into(), json!(2));
    saved
        .data
        .insert("cart".into(), json!([1, 2.5, {"sku": "x"}, null, []]));
    saved.version = 2;
    assert_eq!(
        store.save(&key, &saved, 1).await.expect("save"),
        SaveOutcome::Saved
    );
    assert_eq!(store.load(&key).await.expect("load"), Some(saved.clone()));

    // touch moves the times and nothing else, and never moves last_access back.
    let later = saved.last_access + 5_000;
    assert!(store
        .touch(&key, later, later + 7_200_000)
        .await
        .expect("touch"));
    let touched = store.load(&key).await.expect("load").expect("present");
    assert_eq!(
        (touched.last_access, touched.expires_at),
        (later, later + 7_200_000)
    );
    assert_eq!((&touched.data, touched.version), (&saved.data, 2));
    assert!(store
        .touch(&key, later - 1_000, later + 3_600_000)
        .await
        .expect("touch"));
    let touched = store.load(&key).await.expect("load").expect("present");
    assert_eq!(
        (touched.last_access, touched.expires_at),
        (later, later + 3_600_000)
    );

    // A save after a touch still compares versions only.
    let mut after_touch = touched.clone();
    after_touch.version = 3;
    assert_eq!(
        store.save(&key, &after_touch, 2).await.expect("save"),
        SaveOutcome::Saved
    );

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

pub async fn create_never_overwrites(store: &dyn SessionStore) {
    let key = fresh_key();
    assert!(store.create(&key, &record(1, HOUR)).await.expect("create"));
    assert!(!store
        .create(&key, &record(2, HOUR))
        .await
        .expect("second create"));
    let loaded = store.load(&key).await.expect("load").expect("present");
    assert_eq!(loaded.data["n"], json!(1));
}

pub async fn stale_version_save_conflicts(store: &dyn SessionStore) {
    let key = fresh_key();
    assert!(store.create(&key, &record(1, HOUR)).await.expect("create"));
    let mut second = record(2, HOUR);
    second.version = 2;
    assert_eq!(
        store.save(&key, &second, 1).await.expect("save"),
        SaveOutcome::Saved
    );
    let mut stale = record(3, HOUR);
    stale.version = 2;
    assert_eq!(
        store.save(&key, &stale, 1).await.expect("save"),
        SaveOutcome::Conflict
    );
    let mut ahead = record(4, HOUR);
    ahead.version = 4;
    assert_eq!(
        store.save(&key, &ahead, 3).await.expect("save"),
        SaveOutcome::Conflict
    );
    let loaded = store.load(&key).await.expect("load").expect("present");
    assert_eq!((loaded.data["n"].clone(), loaded.version), (json!(2), 2));
}

pub async fn save_on_missing_is_missing(store: &dyn SessionStore) {
    let key = fresh_key();
    let mut rec = record(1, HOUR);
    rec.version = 2;
    assert_eq!(
        store.save(&key, &rec, 1).await.expect("save"),
        SaveOutcome::Missing
    );
    assert_eq!(
        store.load(&key).await.expect("load"),
        None,
        "a failed save writes nothing"
    );
}

/// The server forgets a record at its `expires_at` without any cleanup call:
/// afterwards `create` succeeds on the same key, which only happens when the
/// server itself no longer holds the record.
pub async fn server_expires_records(store: &dyn SessionStore, wait: Duration) {
    let key = fresh_key();
    assert!(store
        .create(&key, &record(1, Duration::from_secs(1)))
        .await
        .expect("create"));
    assert!(store.load(&key).await.expect("load").is_some());
    tokio::time::sleep(wait).await;
    assert_eq!(
        store.load(&key).await.expect("load"),
        None,
        "the record outlived its TTL"
    );
    assert!(
        store.create(&key, &record(2, HOUR)).await.expect("create"),
        "the server still holds the expired record"
    );
}

/// A record extended by `touch` survives its original expiry.
pub async fn touch_extends_the_server_ttl(store: &dyn SessionStore, wait: Duration) {
    let key = fresh_key();
    assert!(store
        .create(&key, &record(1, Duration::from_secs(1)))
        .await
        .expect("create"));
    assert!(store
        .touch(&key, now(), now() + 60_000)
        .await
        .expect("touch"));
    tokio::time::sleep(wait).await;
    assert!(
        store.load(&key).await.expect("load").is_some(),
        "touch did not extend the TTL"
    );
}

/// `tasks` concurrent read-modify-write loops on one record (load, add one,
/// save with the loaded version, retry on conflict) end at exactly `tasks`.
pub async fn concurrent_cas_increments(store: Arc<dyn SessionStore>, tasks: u64) {
    let key = fresh_key();
    assert!(store.create(&key, &record(0, HOUR)).await.expect("create"));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let store = store.clone();
        let key = key.clone();
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            loop {
                let mut rec = store.load(&key).await.expect("load").expect("present");
                let read = rec.version;
                let n = rec.data["n"].as_u64().expect("n");
                rec.data.insert("n".into(), json!(n + 1));
                rec.version = read + 1;
                match store.save(&key, &rec, read).await.expect("save") {
                    SaveOutcome::Saved => return conflicts,
                    SaveOutcome::Conflict => conflicts += 1,
                    SaveOutcome::Missing => panic!("the record vanished"),
                }
            }
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
