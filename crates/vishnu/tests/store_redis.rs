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

    /// The worst case of scripts flushed by someone else: a server that
    /// forgets every script between two commands (a proxy answers each
    /// `EVALSHA` with `NOSCRIPT`). Loading the script and retrying `EVALSHA`
    /// would fail every time; saves and touches must still go through.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn scripts_work_on_a_server_that_forgets_them_between_commands() {
        let _servers = kv::SERVERS.read().await;
        let Some(url) = kv::env_or_skip("VISHNU_REDIS_URL", SCRIPT) else {
            return;
        };
        let upstream = url
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .expect("host:port")
            .to_owned();
        let proxy = forgetful::Proxy::start(upstream).await;
        let store = RedisStore::from_url(&format!("redis://{}/0", proxy.addr))
            .await
            .expect("connect through the proxy");
        let key = c::fresh_key();
        let rec = c::record(1, Duration::from_secs(60));
        assert!(store.create(&key, &rec).await.expect("create"));
        let mut next = rec.clone();
        next.version = 2;
        next.data.insert("n".into(), 2.into());
        assert_eq!(
            store.save(&key, &next, 1).await.expect("save"),
            vishnu::SaveOutcome::Saved
        );
        assert_eq!(
            store.save(&key, &next, 1).await.expect("save"),
            vishnu::SaveOutcome::Conflict,
            "compare-and-set still holds"
        );
        assert!(store
            .touch(&key, next.last_access + 1, next.expires_at + 1_000)
            .await
            .expect("touch"));
        let stored = store.load(&key).await.expect("load").expect("present");
        assert_eq!((stored.version, stored.data), (2, next.data));
        assert!(
            proxy.refused() >= 3,
            "the proxy refused {} EVALSHA",
            proxy.refused()
        );
        store.delete(&key).await.expect("delete");
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

    /// Hundreds of commands in flight on the store's shared connection, from
    /// four threads, of sizes that make requests write batches themselves,
    /// one in seven abandoned at once (as a timeout would): every reply that
    /// arrives is the one to its own command.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn every_reply_goes_to_its_own_command_under_load() {
        let _servers = kv::SERVERS.read().await;
        let Some(store) = standalone().await else {
            return;
        };
        let connection = store.connection();
        let tasks = (0..8).map(|task| {
            let connection = connection.clone();
            tokio::spawn(async move {
                let calls = (0..400).map(|n| {
                    let mut connection = connection.clone();
                    async move {
                        let payload = format!("{task}:{n}:{}", "x".repeat(n % 40 * 90));
                        let mut echo = redis::cmd("ECHO");
                        echo.arg(&payload);
                        if n % 7 == 0 {
                            let abandoned = tokio::time::timeout(
                                Duration::ZERO,
                                echo.query_async::<String>(&mut connection),
                            );
                            return abandoned.await.is_ok();
                        }
                        let reply: String = echo.query_async(&mut connection).await.expect("ECHO");
                        assert_eq!(reply, payload);
                        true
                    }
                });
                futures_util::future::join_all(calls).await
            })
        });
        for task in tasks {
            let answered = task.await.expect("task");
            assert!(answered.iter().filter(|a| **a).count() >= 340);
        }
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

/// A proxy in front of Redis that forgets scripts: it answers every `EVALSHA`
/// with `NOSCRIPT` and forwards every other command, one at a time.
mod forgetful {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};

    pub struct Proxy {
        pub addr: String,
        refused: Arc<AtomicUsize>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Proxy {
        pub async fn start(upstream: String) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr").to_string();
            let refused = Arc::new(AtomicUsize::new(0));
            let count = refused.clone();
            let task = tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let server = TcpStream::connect(&upstream).await.expect("upstream");
                    tokio::spawn(relay(client, server, count.clone()));
                }
            });
            Self {
                addr,
                refused,
                task,
            }
        }

        pub fn refused(&self) -> usize {
            self.refused.load(Ordering::SeqCst)
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn relay(client: TcpStream, server: TcpStream, refused: Arc<AtomicUsize>) {
        let (client_in, mut client_out) = client.into_split();
        let (server_in, mut server_out) = server.into_split();
        let mut client_in = BufReader::new(client_in);
        let mut server_in = BufReader::new(server_in);
        while let Some((name, command)) = frame(&mut client_in).await {
            if name.eq_ignore_ascii_case(b"EVALSHA") {
                refused.fetch_add(1, Ordering::SeqCst);
                let reply = b"-NOSCRIPT No matching script. Please use EVAL.\r\n";
                if client_out.write_all(reply).await.is_err() {
                    return;
                }
                continue;
            }
            let Some((_, reply)) = async {
                server_out.write_all(&command).await.ok()?;
                frame(&mut server_in).await
            }
            .await
            else {
                return;
            };
            if client_out.write_all(&reply).await.is_err() {
                return;
            }
        }
    }

    /// One RESP frame, raw, with the first bulk string of an array (a
    /// command's name); `None` at the end of the stream.
    async fn frame<R: AsyncBufRead + Unpin>(reader: &mut R) -> Option<(Vec<u8>, Vec<u8>)> {
        let mut raw = Vec::new();
        let mut name = None;
        let mut pending = 1usize;
        while pending > 0 {
            pending -= 1;
            let start = raw.len();
            if reader.read_until(b'\n', &mut raw).await.ok()? == 0 {
                return None;
            }
            let line = &raw[start..raw.len() - 2];
            let (kind, rest) = line.split_first()?;
            let n: i64 = std::str::from_utf8(rest).ok()?.parse().unwrap_or(0);
            match kind {
                b'$' | b'=' | b'!' if n >= 0 => {
                    let body_start = raw.len();
                    raw.resize(body_start + n as usize + 2, 0);
                    reader.read_exact(&mut raw[body_start..]).await.ok()?;
                    name.get_or_insert_with(|| raw[body_start..body_start + n as usize].to_vec());
                }
                b'*' | b'~' | b'>' if n > 0 => pending += n as usize,
                b'%' | b'|' if n > 0 => pending += 2 * n as usize,
                _ => {}
            }
        }
        Some((name.unwrap_or_default(), raw))
    }
}
