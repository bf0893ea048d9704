//! Scale: the memory store holding many sessions; delete_expired on SQL with many expired rows.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use vishnu::id::SessionId;
use vishnu::record::Record;
use vishnu::{Clock, MemoryStore, SessionStore, SystemClock};

use crate::row;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The memory store with 10k, 100k and 1M live sessions: bytes per session, p99 lookup.
pub fn memory(quick: bool) -> Vec<Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sizes: &[usize] = if quick {
        &[10_000, 100_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    let mut rows = Vec::new();
    for &n in sizes {
        rt.block_on(async {
            let before = rss_bytes();
            let store = MemoryStore::new();
            let now = SystemClock.now_millis();
            let mut keys = Vec::with_capacity(n);
            for i in 0..n {
                let key = SessionId::generate().expect("rng").store_key();
                let mut data = Map::new();
                data.insert("user".into(), json!(format!("user{i}")));
                let record = Record::new(data, now, now + 3_600_000);
                store.create(&key, &record).await.expect("create");
                keys.push(key);
            }
            let keys_bytes =
                (keys.capacity() * std::mem::size_of::<vishnu::id::StoreKey>() + n * 64) as u64;
            let per_session = (rss_bytes()
                .saturating_sub(before)
                .saturating_sub(keys_bytes)) as f64
                / n as f64;
            let samples = 20_000.min(n * 2);
            let mut lat: Vec<Duration> = Vec::with_capacity(samples);
            for i in 0..samples {
                let key = &keys[(i * 7919) % n];
                let start = Instant::now();
                let r = store.load(key).await.expect("load");
                lat.push(start.elapsed());
                assert!(r.is_some());
            }
            lat.sort();
            let p99 = lat[lat.len() * 99 / 100].as_secs_f64() * 1e6;
            let scenario = format!("memory-{}k", n / 1000);
            rows.push(row(
                "scale",
                &scenario,
                "vishnu",
                "bytes_per_session",
                per_session,
                "bytes",
            ));
            rows.push(row("scale", &scenario, "vishnu", "p99_us", p99, "us"));
            drop(keys);
            drop(store);
        });
    }
    rows
}

/// delete_expired on SQLite (and PostgreSQL when VISHNU_POSTGRES_URL is set) with many expired rows.
pub fn sql(quick: bool) -> Vec<Value> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let n: u64 = if quick { 100_000 } else { 1_000_000 };
    let mut rows = Vec::new();
    let dir = std::env::temp_dir().join(format!("vishnu-bench-{}.db", std::process::id()));
    let mut targets = vec![("sqlite", format!("sqlite://{}", dir.display()))];
    if let Ok(url) = std::env::var("VISHNU_POSTGRES_URL") {
        targets.push(("postgres", url));
    }
    for (name, url) in targets {
        let seconds = rt.block_on(async {
            let store = vishnu::SqlStore::connect(&url)
                .await
                .expect("connect")
                .with_table("vishnu_bench_cleanup")
                .expect("table")
                .with_timeout(Duration::from_secs(600));
            store.migrate().await.expect("migrate");
            fill(&url, n).await;
            let now = SystemClock.now_millis();
            let start = Instant::now();
            let mut removed = 0;
            loop {
                let c = store
                    .delete_expired(now, Duration::from_secs(86_400), 10_000)
                    .await
                    .expect("delete_expired");
                removed += c.removed;
                if !c.more {
                    break;
                }
            }
            assert_eq!(removed, n, "every expired row removed");
            start.elapsed().as_secs_f64()
        });
        let scenario = format!("delete-expired-{}k", n / 1000);
        rows.push(row(
            "scale",
            &scenario,
            &format!("vishnu-{name}"),
            "seconds",
            seconds,
            "s",
        ));
    }
    let _ = std::fs::remove_file(&dir);
    rows
}

/// Bulk-inserts `n` expired rows straight through SQL (the store's own create would take hours).
async fn fill(url: &str, n: u64) {
    let data = r#"{"v":1,"data":{},"created_at":1,"last_access":1,"expires_at":2,"version":1}"#;
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.expect("sqlite");
        sqlx::query(&format!(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) \
             INSERT INTO vishnu_bench_cleanup (\"key\", data, version, last_access, expires_at) \
             SELECT printf('%064d', i), '{data}', 1, 1, 2 FROM s"
        ))
        .execute(&pool)
        .await
        .expect("fill sqlite");
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("postgres");
        sqlx::query(&format!(
            "INSERT INTO vishnu_bench_cleanup (\"key\", data, version, last_access, expires_at) \
             SELECT lpad(i::text, 64, '0'), '{data}', 1, 1, 2 FROM generate_series(1, {n}) AS i"
        ))
        .execute(&pool)
        .await
        .expect("fill postgres");
    }
}
