//! `SqlStore` against SQLite (a temporary file, always), PostgreSQL and MySQL/MariaDB.
//!
//! ```sh
//! scripts/services/postgres.sh start /tmp/sql-services
//! scripts/services/mariadb.sh start /tmp/sql-services
//! source /tmp/sql-services/postgres.env && source /tmp/sql-services/mariadb.env
//! cargo test -p vishnu --features sqlite,postgres,mysql --test store_sql
//! scripts/services/postgres.sh stop /tmp/sql-services && scripts/services/mariadb.sh stop /tmp/sql-services
//! ```
//!
//! Each backend runs only with its cargo feature. Without `VISHNU_POSTGRES_URL` or
//! `VISHNU_MYSQL_URL` that backend's tests are skipped, except under CI (`CI=true` or
//! `CI=1`), where they fail. Every test works in a table of its own, so tests run in parallel. The outage
//! test starts a private PostgreSQL under `VISHNU_SERVICES_DIR` with the same script, so
//! that stopping it cannot disturb the other tests.
//!
//! Only what is about SQL is here (migrations, table names, URLs, an outage); the store
//! contract runs against every backend in the conformance suite (`conformance_sql`).

#![cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]

#[cfg(any(feature = "postgres", feature = "mysql"))]
mod server_env;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use vishnu::id::{SessionId, StoreKey};
use vishnu::record::{Millis, Record};
use vishnu::{SaveOutcome, SessionStore, SqlStore, StoreError};

// ---------------------------------------------------------------------------------------------
// Fixtures

#[derive(Clone, Copy, Debug)]
enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres,
    #[cfg(feature = "mysql")]
    MySql,
}

/// A migrated store on an empty table of the test's own, and what to clean up after it.
struct Fixture {
    store: Arc<SqlStore>,
    _file: Option<TempDb>,
}

/// A SQLite database file, removed (with its WAL files) when dropped.
struct TempDb(PathBuf);

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The URL in `var`, or `None` (skip) outside CI; under CI a missing URL fails the test.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn url_or_skip(var: &str, script: &str) -> Option<String> {
    server_env::required_env(
        var,
        &format!("scripts/services/{script} start DIR, then source DIR/*.env"),
    )
}

fn table_for(test: &str) -> String {
    let mut name = format!("vt_{test}");
    name.truncate(48);
    name
}

/// Connects to `backend`, on the table of `test`, migrated and emptied.
async fn open(backend: Backend, test: &str) -> Option<Fixture> {
    let (url, file) = match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => {
            let path = std::env::temp_dir()
                .join(format!("vishnu-store-sql-{}-{test}.db", std::process::id()));
            let file = TempDb(path.clone());
            drop(TempDb(path.clone())); // leftovers of an earlier run
            (format!("sqlite://{}", path.display()), Some(file))
        }
        #[cfg(feature = "postgres")]
        Backend::Postgres => (url_or_skip("VISHNU_POSTGRES_URL", "postgres.sh")?, None),
        #[cfg(feature = "mysql")]
        Backend::MySql => (url_or_skip("VISHNU_MYSQL_URL", "mariadb.sh")?, None),
    };
    let store = SqlStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to {backend:?}: {e}"))
        .with_table(&table_for(test))
        .expect("valid table name");
    store.migrate().await.expect("migrate");
    empty(&store).await;
    Some(Fixture {
        store: Arc::new(store),
        _file: file,
    })
}

/// Removes every row: all of them count as dormant for a zero `dormant_for` at the end of time.
async fn empty(store: &dyn SessionStore) {
    loop {
        let cleanup = store
            .delete_expired(u64::MAX, Duration::ZERO, 10_000)
            .await
            .expect("empty the table");
        if !cleanup.more {
            break;
        }
    }
}

fn now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn fresh_key() -> StoreKey {
    SessionId::generate().expect("rng").store_key()
}

fn record(data: Value, created: Millis, expires_at: Millis) -> Record {
    let Value::Object(map) = data else {
        panic!("record data must be an object")
    };
    Record::new(map, created, expires_at)
}

const HOUR: Millis = 3_600_000;

/// Writes one test per backend for each named test body: `sqlite::name`, `postgres::name`, …
macro_rules! per_backend {
    ($($test:ident),* $(,)?) => {
        #[cfg(feature = "sqlite")]
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(f) = super::open(super::Backend::Sqlite, stringify!($test)).await {
                        super::$test(f.store.clone()).await;
                    }
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(f) = super::open(super::Backend::Postgres, stringify!($test)).await {
                        super::$test(f.store.clone()).await;
                    }
                }
            )*
        }
        #[cfg(feature = "mysql")]
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(f) = super::open(super::Backend::MySql, stringify!($test)).await {
                        super::$test(f.store.clone()).await;
                    }
                }
            )*
        }
    };
}

per_backend!(
    migrate_is_idempotent_and_keeps_data,
    unmigrated_table_error_mentions_migrate,
);

// ---------------------------------------------------------------------------------------------
// Test bodies about SQL: migrations and tables. The store contract (round trip, expiry,
// cleanup, compare-and-set, size limit, …) runs against every backend in the conformance
// suite (`conformance_sql`).

async fn migrate_is_idempotent_and_keeps_data(store: Arc<SqlStore>) {
    let key = fresh_key();
    let t = now();
    let r = record(json!({"n": 1}), t, t + HOUR);
    assert!(store.create(&key, &r).await.expect("create"));
    store.migrate().await.expect("second migrate");
    // Several instances starting at once all migrate.
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.migrate().await })
        })
        .collect();
    for run in runs {
        run.await.expect("task").expect("concurrent migrate");
    }
    assert_eq!(store.load(&key).await.expect("load"), Some(r));
}

async fn unmigrated_table_error_mentions_migrate(store: Arc<SqlStore>) {
    let never_migrated = (*store)
        .clone()
        .with_table("vt_never_migrated")
        .expect("valid name");
    match never_migrated.load(&fresh_key()).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("migrate()"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Construction

#[tokio::test]
async fn unsupported_url_scheme_is_an_error_without_the_url() {
    let error = SqlStore::connect("redis://user:hunter2@127.0.0.1/0")
        .await
        .expect_err("redis is no SQL database");
    let message = error.to_string();
    assert!(matches!(error, StoreError::Unavailable(_)), "{message}");
    assert!(message.contains("\"redis\""), "{message}");
    assert!(
        !message.contains("hunter2"),
        "the password leaked: {message}"
    );
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn in_memory_sqlite_works_and_bad_table_names_are_refused() {
    let store = SqlStore::connect("sqlite::memory:").await.expect("connect");
    assert!(store.clone().with_table("users; DROP TABLE x").is_err());
    assert!(store.clone().with_table("Sessions").is_err());
    store.migrate().await.expect("migrate");
    let key = fresh_key();
    let t = now();
    let r = record(json!({"n": 1}), t, t + HOUR);
    assert!(store.create(&key, &r).await.expect("create"));
    // The one connection is kept: the database outlives idle periods.
    assert_eq!(store.load(&key).await.expect("load"), Some(r));
}

// ---------------------------------------------------------------------------------------------
// Outage (PostgreSQL)

/// A PostgreSQL server of this test's own, started by the services script; stopped on drop.
#[cfg(feature = "postgres")]
struct PrivatePostgres {
    dir: PathBuf,
}

#[cfg(feature = "postgres")]
impl PrivatePostgres {
    fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services/postgres.sh")
    }

    fn run(&self, command: &str) {
        let out = std::process::Command::new("bash")
            .arg(Self::script())
            .arg(command)
            .arg(&self.dir)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run postgres.sh");
        assert!(
            out.status.success(),
            "postgres.sh {command} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(services: &str) -> (Self, String) {
        let server = Self {
            dir: PathBuf::from(services).join(format!("outage-{}", std::process::id())),
        };
        server.run("start");
        let env = std::fs::read_to_string(server.dir.join("postgres.env")).expect("postgres.env");
        let url = env
            .lines()
            .find_map(|l| l.strip_prefix("export VISHNU_POSTGRES_URL="))
            .expect("URL in postgres.env")
            .to_owned();
        (server, url)
    }
}

#[cfg(feature = "postgres")]
impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(Self::script())
            .arg("stop")
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_fast_and_the_same_store_recovers() {
    if url_or_skip("VISHNU_POSTGRES_URL", "postgres.sh").is_none() {
        return;
    }
    let Some(services) = url_or_skip("VISHNU_SERVICES_DIR", "postgres.sh") else {
        return;
    };
    let (server, url) = tokio::task::spawn_blocking(move || PrivatePostgres::start(&services))
        .await
        .expect("start a private PostgreSQL");
    let store = Arc::new(SqlStore::connect(&url).await.expect("connect"));
    store.migrate().await.expect("migrate");
    let key = fresh_key();
    let t = now();
    let r = record(json!({"n": 1}), t, t + HOUR);
    assert!(store.create(&key, &r).await.expect("create"));

    server.run("kill");
    for op in ["load", "create", "save", "touch"] {
        let started = std::time::Instant::now();
        let result = match op {
            "load" => store.load(&key).await.map(drop),
            "create" => store.create(&fresh_key(), &r).await.map(drop),
            "save" => store.save(&key, &r, 1).await.map(drop),
            _ => store.touch(&key, t, t + HOUR).await.map(drop),
        };
        let elapsed = started.elapsed();
        assert!(
            matches!(
                result,
                Err(StoreError::Timeout(_) | StoreError::Unavailable(_))
            ),
            "{op} during the outage: {result:?}"
        );
        // A refused connection fails at once, not after the 2-second store timeout.
        assert!(
            elapsed < Duration::from_millis(800),
            "{op} took {elapsed:?} to fail"
        );
        eprintln!("{op} during the outage failed in {elapsed:?}: {result:?}");
    }

    server.run("restart");
    assert_eq!(
        store
            .load(&key)
            .await
            .expect("the first load after the restart"),
        Some(r.clone()),
        "the same store object works again, with the data"
    );
    let mut next = r.clone();
    next.version = 2;
    assert_eq!(
        store.save(&key, &next, 1).await.expect("save"),
        SaveOutcome::Saved
    );
    drop(server);
}
