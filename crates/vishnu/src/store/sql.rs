//! [`SqlStore`]: sessions in SQLite, PostgreSQL or MySQL/MariaDB, through sqlx.
//!
//! Each backend is a cargo feature of this crate (`sqlite`, `postgres`, `mysql`), so the store
//! always moves in version step with the engine. One type serves all three: the URL's scheme
//! picks the backend.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::{sync::Arc, time::Duration};
//! use vishnu::{spawn_cleanup, Config, SqlStore};
//!
//! let store = SqlStore::connect("postgres://app:secret@127.0.0.1/app").await?;
//! store.migrate().await?; // creates the table and its indexes; safe to run on every start
//! let config = Config::builder()
//!     .secret("replace with 32+ random bytes from a secret store")
//!     .store(store)
//!     .build()?;
//! // SQL has no native expiry: sweep expired and dormant rows every minute.
//! spawn_cleanup(config.store().clone(), Duration::from_secs(60), Duration::from_secs(86_400), 1_000);
//! # Ok(()) }
//! ```
//!
//! ## The table
//!
//! | column        | holds                                                            |
//! |---------------|------------------------------------------------------------------|
//! | `key`         | the [`StoreKey`] (primary key)                                   |
//! | `data`        | the whole record as JSON text ([`Record::to_json`])              |
//! | `version`     | the record's version, for compare-and-set saves                  |
//! | `last_access` | milliseconds since the epoch, indexed (dormant sweeps)           |
//! | `expires_at`  | milliseconds since the epoch, indexed (loads and expiry sweeps)  |
//!
//! The columns are authoritative for `version`, `last_access` and `expires_at`:
//! [`touch`](SessionStore::touch) updates only them, and a load copies them into the record.
//! Rows past `expires_at` are invisible to every operation; they stay on disk until
//! [`delete_expired`](SessionStore::delete_expired) (or [`spawn_cleanup`](crate::spawn_cleanup))
//! removes them.
//!
//! ## Failures
//!
//! Every operation is bounded by a timeout ([`SqlStore::with_timeout`], 2 s by default), so
//! a dead database fails requests fast with [`StoreError::Timeout`] or
//! [`StoreError::Unavailable`] instead of hanging them. The pool tests connections before use
//! and reconnects by itself once the database is back.
//!
//! TLS to the database is whatever sqlx was built with: enable one of sqlx's `tls-*` features
//! in your own `Cargo.toml` (cargo merges features) to use `sslmode=require`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::{Clock, SystemClock};
use crate::id::StoreKey;
use crate::record::{Millis, Record, MAX_RECORD_BYTES};
use crate::store::{Cleanup, SaveOutcome, SessionStore, StoreError};

#[cfg(feature = "mysql")]
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
#[cfg(feature = "postgres")]
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
#[cfg(feature = "sqlite")]
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// The table [`SqlStore`] uses unless [`SqlStore::with_table`] names another.
pub const DEFAULT_TABLE: &str = "vishnu_sessions";

/// The per-operation timeout unless [`SqlStore::with_timeout`] sets another.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a call runs before the server's port is probed for a refusal.
const PROBE_AFTER: Duration = Duration::from_millis(100);

/// How long [`SqlStore::connect`] waits for its first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`SqlStore::migrate`] may take: it may wait for another process migrating.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest table name accepted, so that derived index names stay within every backend's limit.
const MAX_TABLE_NAME: usize = 48;

/// The backends this build supports, for error messages.
const ENABLED_BACKENDS: &[&str] = &[
    #[cfg(feature = "sqlite")]
    "sqlite",
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "mysql")]
    "mysql",
];

/// A session store in an SQL database: SQLite, PostgreSQL or MySQL/MariaDB.
///
/// Create it with [`connect`](Self::connect) (or from an existing pool), then call
/// [`migrate`](Self::migrate) once before use. Cloning is cheap: clones share the pool.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::{sync::Arc, time::Duration};
///
/// let store = vishnu::SqlStore::connect("sqlite://sessions.db")
///     .await?
///     .with_table("web_sessions")?
///     .with_timeout(Duration::from_secs(1));
/// store.migrate().await?;
/// let store = Arc::new(store);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqlStore {
    backend: Backend,
    table: String,
    sql: Arc<Statements>,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    /// The server's TCP address, probed when a call is slow: a refused
    /// connection fails the call at once instead of after the whole timeout.
    server: Option<(String, u16)>,
}

/// The typed pool of the backend in use; each arm exists only with its feature.
#[derive(Clone)]
enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite(SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
    #[cfg(feature = "mysql")]
    MySql(MySqlPool),
}

/// Runs `$body` with `$pool` bound to the typed pool of the backend in use: the body is
/// written once and compiled for each enabled backend.
macro_rules! with_pool {
    ($backend:expr, |$pool:ident| $body:expr) => {
        match $backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite($pool) => $body,
            #[cfg(feature = "postgres")]
            Backend::Postgres($pool) => $body,
            #[cfg(feature = "mysql")]
            Backend::MySql($pool) => $body,
        }
    };
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => "postgres",
            #[cfg(feature = "mysql")]
            Backend::MySql(_) => "mysql",
        }
    }

    /// The server's host and port, for a pool that connects over TCP.
    fn tcp_address(&self) -> Option<(String, u16)> {
        match self {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => None,
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                let o = pool.connect_options();
                o.get_socket()
                    .is_none()
                    .then(|| (o.get_host().to_owned(), o.get_port()))
            }
            #[cfg(feature = "mysql")]
            Backend::MySql(pool) => {
                let o = pool.connect_options();
                o.get_socket()
                    .is_none()
                    .then(|| (o.get_host().to_owned(), o.get_port()))
            }
        }
    }
}

/// A table name [`SqlStore::with_table`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid session table name {0:?}: use 1 to 48 lowercase ASCII letters, digits and \
     underscores, not starting with a digit"
)]
pub struct InvalidTableName(pub String);

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend.name())
            .field("table", &self.table)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Connects to the database at `url` and opens a pool.
    ///
    /// - `sqlite://path/to/file.db` (the file is created if missing; WAL journal),
    ///   `sqlite::memory:` (one private in-memory database, for tests);
    /// - `postgres://user:password@host:port/database` (also `postgresql://`);
    /// - `mysql://user:password@host:port/database` (also `mariadb://`).
    ///
    /// Only the backends enabled as cargo features are available. The table is not created
    /// here: call [`migrate`](Self::migrate).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] for an unsupported scheme, a malformed URL or a database
    /// that cannot be reached within 10 seconds.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            #[cfg(feature = "sqlite")]
            "sqlite" => Self::connect_sqlite(url).await,
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => Self::connect_postgres(url).await,
            #[cfg(feature = "mysql")]
            "mysql" | "mariadb" => Self::connect_mysql(url).await,
            // The URL itself is not echoed: it may hold a password.
            _ => Err(StoreError::Unavailable(format!(
                "unsupported database URL scheme {scheme:?}: this build of vishnu supports {} \
                 (cargo features sqlite, postgres, mysql)",
                ENABLED_BACKENDS.join(", ")
            ))),
        }
    }

    #[cfg(feature = "sqlite")]
    async fn connect_sqlite(url: &str) -> Result<Self, StoreError> {
        use std::str::FromStr;
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| connect_error("sqlite", &e))?
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(5));
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let (pool_options, options) = if in_memory {
            // Every connection to `:memory:` would be a database of its own: keep exactly one,
            // forever.
            let pool_options = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
            (pool_options, options)
        } else {
            let options = options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            (SqlitePoolOptions::new().max_connections(8), options)
        };
        let pool = pool_options
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options);
        let pool = timed_connect("sqlite", pool).await?;
        Ok(Self::from_sqlite_pool(pool))
    }

    #[cfg(feature = "postgres")]
    async fn connect_postgres(url: &str) -> Result<Self, StoreError> {
        use std::str::FromStr;
        let options = PgConnectOptions::from_str(url).map_err(|e| connect_error("postgres", &e))?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options);
        Ok(Self::from_postgres_pool(
            timed_connect("postgres", pool).await?,
        ))
    }

    #[cfg(feature = "mysql")]
    async fn connect_mysql(url: &str) -> Result<Self, StoreError> {
        use std::str::FromStr;
        let options = MySqlConnectOptions::from_str(url).map_err(|e| connect_error("mysql", &e))?;
        let pool = MySqlPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options);
        Ok(Self::from_mysql_pool(timed_connect("mysql", pool).await?))
    }

    /// A store on an existing SQLite pool (sharing the application's pool, or tuning it).
    #[cfg(feature = "sqlite")]
    pub fn from_sqlite_pool(pool: SqlitePool) -> Self {
        Self::new(Backend::Sqlite(pool))
    }

    /// A store on an existing PostgreSQL pool (sharing the application's pool, or tuning it).
    #[cfg(feature = "postgres")]
    pub fn from_postgres_pool(pool: PgPool) -> Self {
        Self::new(Backend::Postgres(pool))
    }

    /// A store on an existing MySQL/MariaDB pool (sharing the application's pool, or tuning it).
    #[cfg(feature = "mysql")]
    pub fn from_mysql_pool(pool: MySqlPool) -> Self {
        Self::new(Backend::MySql(pool))
    }

    fn new(backend: Backend) -> Self {
        let sql = Arc::new(Statements::new(&backend, DEFAULT_TABLE));
        Self {
            server: backend.tcp_address(),
            backend,
            table: DEFAULT_TABLE.to_owned(),
            sql,
            timeout: DEFAULT_TIMEOUT,
            clock: Arc::new(SystemClock),
        }
    }

    /// Keeps sessions in the table `name` instead of [`DEFAULT_TABLE`].
    ///
    /// # Errors
    /// [`InvalidTableName`] unless `name` is 1 to 48 of `[a-z0-9_]`, not starting with a digit
    /// (the name is spliced into SQL, so nothing else is accepted).
    pub fn with_table(mut self, name: &str) -> Result<Self, InvalidTableName> {
        if !is_valid_table_name(name) {
            return Err(InvalidTableName(name.to_owned()));
        }
        self.sql = Arc::new(Statements::new(&self.backend, name));
        self.table = name.to_owned();
        Ok(self)
    }

    /// Bounds every operation (waiting for a connection included) to `timeout`
    /// (default [`DEFAULT_TIMEOUT`]); past it the operation fails with [`StoreError::Timeout`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses another clock to decide which rows are expired (tests). The engine's clock
    /// still sets the times written.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The table this store uses.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The backend in use: `"sqlite"`, `"postgres"` or `"mysql"`.
    pub fn backend(&self) -> &'static str {
        self.backend.name()
    }

    /// Creates the session table and its indexes if they do not exist. Idempotent, and safe
    /// when several processes start at once; it never drops or alters existing data.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database refuses (for example, the user may not
    /// create tables) or cannot be reached; [`StoreError::Timeout`] after 60 seconds.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let run = async {
            match &self.backend {
                #[cfg(feature = "postgres")]
                Backend::Postgres(pool) => {
                    // Serializes concurrent migrations: concurrent CREATE ... IF NOT EXISTS can
                    // fail on PostgreSQL's catalog constraints.
                    let mut tx = pool.begin().await?;
                    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                        .bind(format!("vishnu migrate {}", self.table))
                        .execute(&mut *tx)
                        .await?;
                    for statement in &self.sql.migrate {
                        sqlx::query(statement).execute(&mut *tx).await?;
                    }
                    tx.commit().await
                }
                #[cfg(feature = "sqlite")]
                Backend::Sqlite(pool) => {
                    let mut tx = pool.begin().await?;
                    for statement in &self.sql.migrate {
                        sqlx::query(statement).execute(&mut *tx).await?;
                    }
                    tx.commit().await
                }
                #[cfg(feature = "mysql")]
                Backend::MySql(pool) => {
                    // DDL commits implicitly in MySQL; one CREATE TABLE IF NOT EXISTS holds
                    // the table and its indexes, so it is atomic on its own.
                    for statement in &self.sql.migrate {
                        sqlx::query(statement).execute(pool).await?;
                    }
                    Ok(())
                }
            }
        };
        self.bounded("migrate", MIGRATE_TIMEOUT, run).await
    }

    /// Closes the pool: waits for connections in use to be returned, then closes them all.
    /// Operations after this fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        with_pool!(&self.backend, |pool| pool.close().await)
    }

    fn now(&self) -> i64 {
        db_time(self.clock.now_millis())
    }

    async fn run<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        self.bounded(op, self.timeout, fut).await
    }

    async fn bounded<T>(
        &self,
        op: &'static str,
        timeout: Duration,
        fut: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        let call = async {
            fut.await
                .map_err(|error| store_error(self.backend.name(), op, error))
        };
        let Some((host, port)) = &self.server else {
            return super::deadline::bounded(timeout, call).await;
        };
        // The pool keeps retrying a refused connection until its own timeout:
        // a call that is slow gets one probe of the server's port, and a
        // refusal (the server is down, not slow) fails the call at once.
        let refused = async {
            tokio::time::sleep(PROBE_AFTER).await;
            match tokio::net::TcpStream::connect((host.as_str(), *port)).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    StoreError::Unavailable(format!(
                        "{} {op}: connection to {host}:{port} refused",
                        self.backend.name()
                    ))
                }
                // Reachable (or unreachable in another way): leave it to the timeout.
                _ => std::future::pending().await,
            }
        };
        let mut call = std::pin::pin!(super::deadline::bounded(timeout, call));
        let mut refused = std::pin::pin!(refused);
        std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(out) = call.as_mut().poll(cx) {
                return std::task::Poll::Ready(out);
            }
            refused.as_mut().poll(cx).map(Err)
        })
        .await
    }
}

#[async_trait]
impl SessionStore for SqlStore {
    fn kind(&self) -> &'static str {
        self.backend.name()
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let now = self.now();
        let row = self
            .run("load", async {
                with_pool!(&self.backend, |pool| {
                    sqlx::query_as::<_, (String, i64, i64, i64)>(&self.sql.load)
                        .bind(key.as_str())
                        .bind(now)
                        .fetch_optional(pool)
                        .await
                })
            })
            .await?;
        row.map(|row| decode(key, row)).transpose()
    }

    async fn create(&self, key: &StoreKey, record: &Record) -> Result<bool, StoreError> {
        let row = Row::encode(record)?;
        let now = self.now();
        self.run("create", async {
            with_pool!(&self.backend, |pool| {
                let insert = || async {
                    let done = sqlx::query(&self.sql.insert)
                        .bind(key.as_str())
                        .bind(row.data.as_str())
                        .bind(row.version)
                        .bind(row.last_access)
                        .bind(row.expires_at)
                        .execute(pool)
                        .await;
                    match done {
                        Ok(done) => Ok(done.rows_affected() == 1),
                        // MySQL has no ON CONFLICT DO NOTHING that leaves other errors alone.
                        Err(e) if is_unique_violation(&e) => Ok(false),
                        Err(e) => Err(e),
                    }
                };
                if insert().await? {
                    return Ok(true);
                }
                // The key is taken, maybe by an expired row that no sweep removed yet: that
                // one may be replaced. Deleting only an expired row keeps this race-free: a
                // live row, even one created concurrently, always wins.
                let purged = sqlx::query(&self.sql.delete_expired_key)
                    .bind(key.as_str())
                    .bind(now)
                    .execute(pool)
                    .await?
                    .rows_affected();
                if purged == 0 {
                    return Ok(false);
                }
                insert().await
            })
        })
        .await
    }

    async fn save(
        &self,
        key: &StoreKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let row = Row::encode(record)?;
        let Ok(expected_version) = i64::try_from(expected_version) else {
            // No stored version is that large: whatever is there, it is not this version.
            return Ok(match self.load(key).await? {
                Some(_) => SaveOutcome::Conflict,
                None => SaveOutcome::Missing,
            });
        };
        let now = self.now();
        self.run("save", async {
            with_pool!(&self.backend, |pool| {
                let saved = sqlx::query(&self.sql.save)
                    .bind(row.data.as_str())
                    .bind(row.version)
                    .bind(row.last_access)
                    .bind(row.expires_at)
                    .bind(key.as_str())
                    .bind(expected_version)
                    .bind(now)
                    .execute(pool)
                    .await?
                    .rows_affected();
                if saved > 0 {
                    return Ok(SaveOutcome::Saved);
                }
                let exists = sqlx::query(&self.sql.exists)
                    .bind(key.as_str())
                    .bind(now)
                    .fetch_optional(pool)
                    .await?
                    .is_some();
                Ok(if exists {
                    SaveOutcome::Conflict
                } else {
                    SaveOutcome::Missing
                })
            })
        })
        .await
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.run("delete", async {
            with_pool!(&self.backend, |pool| {
                sqlx::query(&self.sql.delete)
                    .bind(key.as_str())
                    .execute(pool)
                    .await
                    .map(drop)
            })
        })
        .await
    }

    async fn touch(
        &self,
        key: &StoreKey,
        last_access: Millis,
        expires_at: Millis,
    ) -> Result<bool, StoreError> {
        let (last_access, expires_at) = (db_time(last_access), db_time(expires_at));
        let now = self.now();
        self.run("touch", async {
            with_pool!(&self.backend, |pool| {
                // MySQL reports matched rows here too (sqlx sets CLIENT_FOUND_ROWS), so a
                // touch that changes nothing still counts as found.
                sqlx::query(&self.sql.touch)
                    .bind(last_access)
                    .bind(last_access)
                    .bind(expires_at)
                    .bind(expires_at)
                    .bind(key.as_str())
                    .bind(now)
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected() > 0)
            })
        })
        .await
    }

    async fn delete_expired(
        &self,
        now: Millis,
        dormant_for: Duration,
        limit: usize,
    ) -> Result<Cleanup, StoreError> {
        let dormant_ms = u64::try_from(dormant_for.as_millis()).unwrap_or(u64::MAX);
        let cutoff = db_time(now.saturating_sub(dormant_ms));
        let now = db_time(now);
        let batch = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run("delete_expired", async {
            with_pool!(&self.backend, |pool| {
                let removed = if limit == 0 {
                    0
                } else {
                    sqlx::query(&self.sql.sweep)
                        .bind(now)
                        .bind(cutoff)
                        .bind(batch)
                        .execute(pool)
                        .await?
                        .rows_affected()
                };
                // A short batch means nothing else qualified; a full one may have left some.
                let more = if removed < u64::try_from(limit).unwrap_or(u64::MAX) {
                    false
                } else {
                    sqlx::query(&self.sql.any_doomed)
                        .bind(now)
                        .bind(cutoff)
                        .fetch_optional(pool)
                        .await?
                        .is_some()
                };
                Ok(Cleanup { removed, more })
            })
        })
        .await
    }
}

/// A record as its row holds it.
struct Row {
    data: String,
    version: i64,
    last_access: i64,
    expires_at: i64,
}

impl Row {
    fn encode(record: &Record) -> Result<Self, StoreError> {
        let json = record.to_json();
        if json.len() > MAX_RECORD_BYTES {
            // A load would reject it as corrupt: refuse it now, while the caller can react.
            return Err(StoreError::TooLarge(format!(
                "{} bytes exceed the {MAX_RECORD_BYTES}-byte limit",
                json.len()
            )));
        }
        let data = String::from_utf8(json)
            .map_err(|e| StoreError::Corrupt(format!("record JSON is not UTF-8: {e}")))?;
        let version = i64::try_from(record.version).map_err(|_| {
            StoreError::TooLarge(format!(
                "record version {} exceeds the BIGINT range",
                record.version
            ))
        })?;
        Ok(Self {
            data,
            version,
            last_access: db_time(record.last_access),
            expires_at: db_time(record.expires_at),
        })
    }
}

/// Rebuilds a record from its row; the columns win over the JSON for the fields they hold.
fn decode(
    key: &StoreKey,
    (data, version, last_access, expires_at): (String, i64, i64, i64),
) -> Result<Record, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(format!("record {key}: {what}"));
    let mut record = Record::from_json(data.as_bytes()).map_err(|e| corrupt(e.to_string()))?;
    record.version =
        u64::try_from(version).map_err(|_| corrupt(format!("negative version {version}")))?;
    record.last_access = column_time(last_access, record.last_access)
        .ok_or_else(|| corrupt(format!("negative last_access {last_access}")))?;
    record.expires_at = column_time(expires_at, record.expires_at)
        .ok_or_else(|| corrupt(format!("negative expires_at {expires_at}")))?;
    Ok(record)
}

/// A time for a BIGINT column; times past year 292 million are clamped.
fn db_time(ms: Millis) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A time read from a BIGINT column, or `None` if it is negative.
fn column_time(column: i64, in_json: Millis) -> Option<Millis> {
    let column = u64::try_from(column).ok()?;
    // A clamped time: the JSON still has the exact one.
    Some(if column == i64::MAX.unsigned_abs() {
        in_json.max(column)
    } else {
        column
    })
}

fn is_valid_table_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TABLE_NAME
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

/// Maps an sqlx error to a store error that says which backend and operation failed.
fn store_error(backend: &str, op: &str, error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => {
            StoreError::Corrupt(format!("{backend} {op}: {error}"))
        }
        sqlx::Error::PoolTimedOut => StoreError::Unavailable(format!(
            "{backend} {op}: no database connection could be had in time (is the server up?)"
        )),
        sqlx::Error::Database(ref db) if is_missing_table(&**db) => StoreError::Unavailable(
            format!("{backend} {op}: {error} (has SqlStore::migrate() been run?)"),
        ),
        _ => StoreError::Unavailable(format!("{backend} {op}: {error}")),
    }
}

fn is_missing_table(error: &dyn sqlx::error::DatabaseError) -> bool {
    // PostgreSQL undefined_table, MySQL ER_NO_SUCH_TABLE; SQLite only says it in words.
    matches!(error.code().as_deref(), Some("42P01" | "42S02"))
        || error.message().contains("no such table")
}

fn connect_error(backend: &str, error: &sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("{backend} connect: {error}"))
}

async fn timed_connect<T>(
    backend: &str,
    connect: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(pool)) => Ok(pool),
        Ok(Err(error)) => Err(connect_error(backend, &error)),
        Err(_elapsed) => Err(StoreError::Unavailable(format!(
            "{backend} connect: no connection within {CONNECT_TIMEOUT:?}"
        ))),
    }
}

/// The SQL of every operation, for one backend and table, written once at construction.
struct Statements {
    load: String,
    insert: String,
    delete_expired_key: String,
    save: String,
    exists: String,
    delete: String,
    touch: String,
    sweep: String,
    any_doomed: String,
    migrate: Vec<String>,
}

impl Statements {
    fn new(backend: &Backend, table: &str) -> Self {
        // Identifiers are quoted: `key` is reserved in MySQL. The table name is validated,
        // so it cannot contain a quote.
        let (quote, numbered) = match backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => ('"', false),
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => ('"', true),
            #[cfg(feature = "mysql")]
            Backend::MySql(_) => ('`', false),
        };
        let q = |name: &str| format!("{quote}{name}{quote}");
        let (t, k) = (q(table), q("key"));
        let expires_idx = q(&format!("{table}_expires_at_idx"));
        let last_access_idx = q(&format!("{table}_last_access_idx"));
        let columns = format!("{k}, data, version, last_access, expires_at");
        let doomed = "expires_at <= ? OR last_access <= ?";

        let mut sql = Statements {
            load: format!(
                "SELECT data, version, last_access, expires_at FROM {t} \
                 WHERE {k} = ? AND expires_at > ?"
            ),
            insert: format!("INSERT INTO {t} ({columns}) VALUES (?, ?, ?, ?, ?)"),
            delete_expired_key: format!("DELETE FROM {t} WHERE {k} = ? AND expires_at <= ?"),
            save: format!(
                "UPDATE {t} SET data = ?, version = ?, last_access = ?, expires_at = ? \
                 WHERE {k} = ? AND version = ? AND expires_at > ?"
            ),
            exists: format!("SELECT 1 FROM {t} WHERE {k} = ? AND expires_at > ?"),
            delete: format!("DELETE FROM {t} WHERE {k} = ?"),
            // Neither time moves backwards, as in the memory store.
            touch: format!(
                "UPDATE {t} SET last_access = CASE WHEN last_access < ? THEN ? ELSE last_access END, \
                 expires_at = CASE WHEN expires_at < ? THEN ? ELSE expires_at END \
                 WHERE {k} = ? AND expires_at > ?"
            ),
            sweep: format!(
                "DELETE FROM {t} WHERE {k} IN (SELECT {k} FROM {t} WHERE {doomed} LIMIT ?)"
            ),
            any_doomed: format!("SELECT 1 FROM {t} WHERE {doomed} LIMIT 1"),
            migrate: Vec::new(),
        };

        match backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => {
                sql.insert.push_str(" ON CONFLICT DO NOTHING");
                sql.migrate = vec![
                    format!(
                        "CREATE TABLE IF NOT EXISTS {t} ({k} TEXT NOT NULL PRIMARY KEY, \
                         data TEXT NOT NULL, version INTEGER NOT NULL, \
                         last_access INTEGER NOT NULL, expires_at INTEGER NOT NULL)"
                    ),
                    format!("CREATE INDEX IF NOT EXISTS {expires_idx} ON {t} (expires_at)"),
                    format!("CREATE INDEX IF NOT EXISTS {last_access_idx} ON {t} (last_access)"),
                ];
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => {
                sql.insert.push_str(" ON CONFLICT DO NOTHING");
                // Concurrent sweepers (one per app instance) take different rows instead of
                // waiting on each other or on a save in flight.
                sql.sweep = format!(
                    "DELETE FROM {t} WHERE {k} IN \
                     (SELECT {k} FROM {t} WHERE {doomed} LIMIT ? FOR UPDATE SKIP LOCKED)"
                );
                sql.migrate = vec![
                    format!(
                        "CREATE TABLE IF NOT EXISTS {t} ({k} TEXT NOT NULL PRIMARY KEY, \
                         data TEXT NOT NULL, version BIGINT NOT NULL, \
                         last_access BIGINT NOT NULL, expires_at BIGINT NOT NULL)"
                    ),
                    format!("CREATE INDEX IF NOT EXISTS {expires_idx} ON {t} (expires_at)"),
                    format!("CREATE INDEX IF NOT EXISTS {last_access_idx} ON {t} (last_access)"),
                ];
            }
            #[cfg(feature = "mysql")]
            Backend::MySql(_) => {
                // MySQL rejects LIMIT in an IN subquery but takes it on a single-table DELETE.
                sql.sweep = format!("DELETE FROM {t} WHERE {doomed} LIMIT ?");
                // The key compares byte for byte (a binary collation), not case-insensitively.
                // The data is never compared; a binary collation there would make sqlx see a
                // BLOB instead of text.
                sql.migrate = vec![format!(
                    "CREATE TABLE IF NOT EXISTS {t} (\
                     {k} VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, \
                     data LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL, \
                     version BIGINT NOT NULL, \
                     last_access BIGINT NOT NULL, \
                     expires_at BIGINT NOT NULL, \
                     INDEX {expires_idx} (expires_at), \
                     INDEX {last_access_idx} (last_access)\
                     ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
                )];
            }
        }

        if numbered {
            for statement in [
                &mut sql.load,
                &mut sql.insert,
                &mut sql.delete_expired_key,
                &mut sql.save,
                &mut sql.exists,
                &mut sql.delete,
                &mut sql.touch,
                &mut sql.sweep,
                &mut sql.any_doomed,
            ] {
                *statement = number_placeholders(statement);
            }
        }
        sql
    }
}

/// Rewrites `?` placeholders as PostgreSQL's `$1, $2, …` (no statement here has a `?` elsewhere).
fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            number_placeholders("UPDATE t SET a = ? WHERE k = ? AND v = ?"),
            "UPDATE t SET a = $1 WHERE k = $2 AND v = $3"
        );
    }

    #[test]
    fn table_names_are_plain_identifiers() {
        for good in ["vishnu_sessions", "s", "_x1", &"a".repeat(MAX_TABLE_NAME)] {
            assert!(is_valid_table_name(good), "{good}");
        }
        let too_long = "a".repeat(MAX_TABLE_NAME + 1);
        for bad in [
            "", "1abc", "Sessions", "a-b", "a b", "a\"b", "a`b", "s;drop", "é", &too_long,
        ] {
            assert!(!is_valid_table_name(bad), "{bad}");
        }
    }

    #[test]
    fn clamped_times_keep_the_exact_json_value() {
        assert_eq!(db_time(u64::MAX), i64::MAX);
        assert_eq!(column_time(i64::MAX, u64::MAX), Some(u64::MAX));
        assert_eq!(column_time(42, 7), Some(42));
        assert_eq!(column_time(-1, 7), None);
    }
}
