//! [`RedisStore`]: sessions in Redis, standalone or Redis Cluster (feature `redis`).
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use vishnu::RedisStore;
//!
//! # async fn demo() -> Result<(), vishnu::StoreError> {
//! let store = RedisStore::from_url("redis://127.0.0.1:6379/0")
//!     .await?
//!     .with_prefix("myapp:session:")
//!     .with_timeout(Duration::from_millis(500));
//! let cluster = RedisStore::from_url("redis+cluster://10.0.0.1:6379,10.0.0.2:6379").await?;
//! let shared = Arc::new(store); // hand it to `Config::builder().store(...)`
//! # let _ = (cluster, shared);
//! # Ok(())
//! # }
//! ```
//!
//! ## What is stored
//! One string per session, under `{prefix}{store key}` (prefix `vishnu:` by
//! default): a fixed-width header, then the record as [`Record::to_json`]
//! writes it (the encoding every front shares):
//!
//! ```text
//! 00000000000000000007 0001764480000000 0001764566400000 {"v":1,"data":{...},...}
//! version (20 digits)  last_access (16) expires_at (16)  record JSON
//! ```
//!
//! The header's version and times win over the copies inside the JSON. The
//! compare-and-set of [`save`](SessionStore::save) reads only the version
//! (`GETRANGE`), and [`touch`](SessionStore::touch) rewrites only the times in
//! place (`SETRANGE`): neither copies, decodes or re-encodes the data.
//!
//! Every write sets a native TTL ending at `expires_at` (`PXAT`, `PEXPIREAT`),
//! so Redis forgets expired sessions by itself:
//! [`delete_expired`](SessionStore::delete_expired) does nothing and returns
//! [`Cleanup::default()`]. A session not used for a while is forgotten at its
//! `expires_at` like any other. `SET … PXAT` needs Redis 6.2 or later.
//!
//! Records of the earlier layout (a hash with the fields `record`, `version`,
//! `last_access` and `expires_at`) are still read, saved and touched; their
//! first save rewrites them in this layout.
//!
//! ## Round trips
//! `load` is one `GET`, `create` one `SET … NX PXAT`, `delete` one `DEL`;
//! `save` and `touch` are each one Lua script (`EVALSHA`), which makes the check
//! and the write atomic on the server. The first call of a script after a
//! server restart costs one more round trip to load it. Every command and
//! script touches a single key, so under Redis Cluster it runs on the node
//! that owns the key's slot.
//!
//! ## Connection
//! A standalone server over TCP is spoken to through vishnu's own pipelined
//! connection: one TCP connection that every request shares, its commands
//! written in batches, each reply handed to its request in order. It does
//! less work per request than redis-rs's `ConnectionManager` (BENCHMARKS.md
//! has the figures). A Unix socket (`redis+unix://`), a URL asking for RESP3
//! and Redis Cluster go through redis-rs's own connections.
//! [`RedisStore::connection`] lends the store's connection to the
//! application's own commands.
//!
//! ## Failures
//! The connection is opened once and shared by every clone of the store; it
//! reconnects by itself after a server restart. Every call is bounded by the
//! store's timeout (2 s unless [`with_timeout`](RedisStore::with_timeout) says
//! otherwise): past it the call fails with [`StoreError::Timeout`]; a refused or
//! broken connection fails with [`StoreError::Unavailable`]. While the server is
//! down, calls fail within the timeout (at once when the connection is
//! refused); once it is back, calls succeed again with the same store, without
//! recreating it. A call that was in flight when the connection broke fails:
//! it is not sent again, since it may have been applied.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{
    Cmd, ConnectionAddr, ErrorKind, Pipeline, ProtocolVersion, RedisError, RedisFuture, Script,
    Value,
};
use async_trait::async_trait;

use crate::id::StoreKey;
use crate::record::{Millis, Record};
use crate::store::pipelined::{Pipelined, Target};
use crate::store::{redact_url as redact, Cleanup, SaveOutcome, SessionStore, StoreError};

/// The key prefix used unless [`RedisStore::with_prefix`] sets another.
pub const DEFAULT_PREFIX: &str = "vishnu:";

/// The time a call may take unless [`RedisStore::with_timeout`] sets another.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Bounds each attempt to (re)connect, so that a server that stopped answering
/// cannot hold the shared reconnection for minutes of OS-level TCP timeouts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A Lua script and its SHA-1, run with `EVALSHA` (sent whole on `NOSCRIPT`).
/// The command is built here rather than by `redis::ScriptInvocation`, which
/// copies every argument (the whole record) twice more.
struct Lua {
    code: &'static str,
    hash: String,
}

impl Lua {
    fn new(code: &'static str) -> Self {
        Self {
            code,
            hash: Script::new(code).get_hash().to_owned(),
        }
    }

    /// `EVALSHA` of this script on one key with `args`. When the server does
    /// not know the script (after a restart or a `SCRIPT FLUSH`), the call is
    /// made again as `EVAL` with the source: one command that cannot meet
    /// `NOSCRIPT` again however often scripts are flushed, and that caches
    /// the script for the next `EVALSHA`.
    async fn eval<T: ::redis::FromRedisValue>(
        &self,
        connection: &mut RedisConnection,
        key: KeyArg<'_>,
        args: &[&[u8]],
    ) -> Result<T, RedisError> {
        match connection
            .query(&self.command("EVALSHA", &self.hash, key, args))
            .await
        {
            Err(e) if e.kind() == ErrorKind::NoScriptError => {
                // Boxed: the rare path would otherwise make every call's future larger.
                Box::pin(connection.query(&self.command("EVAL", self.code, key, args))).await
            }
            other => other,
        }
    }

    /// `verb script 1 key args…`, sized up front: growing the buffer arg by
    /// arg reallocates it.
    fn command(&self, verb: &str, script: &str, key: KeyArg<'_>, args: &[&[u8]]) -> ::redis::Cmd {
        let size =
            verb.len() + script.len() + 1 + key.len() + args.iter().map(|a| a.len()).sum::<usize>();
        let mut cmd = ::redis::Cmd::with_capacity(4 + args.len(), size);
        cmd.arg(verb).arg(script).arg(b"1").arg(key);
        for arg in args {
            cmd.arg(*arg);
        }
        cmd
    }
}

/// A record's Redis key (the store's prefix, then the store key) as one
/// command argument.
#[derive(Clone, Copy)]
struct KeyArg<'a> {
    prefix: &'a str,
    key: &'a [u8],
}

impl KeyArg<'_> {
    fn len(self) -> usize {
        self.prefix.len() + self.key.len()
    }
}

impl ::redis::ToRedisArgs for KeyArg<'_> {
    fn write_redis_args<W: ?Sized + ::redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's buffer cannot fail.
        let _ = arg.write_all(self.prefix.as_bytes());
        let _ = arg.write_all(self.key);
    }
}

/// The header before the record JSON: version, last_access and expires_at,
/// each zero-padded to a fixed width and followed by a space.
const HEADER_LEN: usize = 20 + 1 + 16 + 1 + 16 + 1;

/// Millisecond times in the header are capped at 2^53 - 1 (16 digits, and
/// exact as a Lua number): the year 287396.
const MAX_HEADER_MILLIS: Millis = (1 << 53) - 1;

/// `KEYS[1]` key; `ARGV` expected version (20 digits), header + record JSON,
/// expires_at. Returns 0 when there is no record, 1 on a version conflict, 2
/// when the record was written. A record of the earlier hash layout is
/// compared by its `version` field and rewritten in the string layout.
static SAVE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"
local current = redis.pcall('GETRANGE', KEYS[1], 0, 19)
if type(current) == 'table' then
  current = redis.call('HGET', KEYS[1], 'version')
  if not current then return 0 end
  if current ~= string.match(ARGV[1], '^0*(%d+)$') then return 1 end
  redis.call('DEL', KEYS[1])
elseif current == '' then return 0
elseif current ~= ARGV[1] then return 1
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 2
",
    )
});
const SAVE_MISSING: i64 = 0;
const SAVE_CONFLICT: i64 = 1;
const SAVE_SAVED: i64 = 2;

/// `KEYS[1]` key; `ARGV` last_access, expires_at (16 digits each). Returns 0
/// when there is no record. Neither time moves backwards (see
/// `SessionStore::touch`). Millisecond times stay below 2^53, so Lua numbers
/// compare them exactly. Touches a record of the earlier hash layout in place.
static TOUCH: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"
local la, ea = tonumber(ARGV[1]), tonumber(ARGV[2])
local head = redis.pcall('GETRANGE', KEYS[1], 0, 53)
if type(head) == 'table' then
  local current = redis.call('HMGET', KEYS[1], 'last_access', 'expires_at')
  if not current[1] then return 0 end
  if la > (tonumber(current[1]) or 0) then
    redis.call('HSET', KEYS[1], 'last_access', tostring(la))
  end
  if ea > (tonumber(current[2]) or 0) then
    redis.call('HSET', KEYS[1], 'expires_at', tostring(ea))
    redis.call('PEXPIREAT', KEYS[1], ea)
  end
  return 1
end
if string.len(head) < 54 then return 0 end
if la > (tonumber(string.sub(head, 22, 37)) or 0) then
  redis.call('SETRANGE', KEYS[1], 21, ARGV[1])
end
if ea > (tonumber(string.sub(head, 39, 54)) or 0) then
  redis.call('SETRANGE', KEYS[1], 38, ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], ea)
end
return 1
",
    )
});

/// A [`SessionStore`] on Redis: one server (`redis://host:port/db`) or a Redis
/// Cluster (`redis+cluster://host:port,host:port,...`). See the
/// [module docs](self) for the stored layout and the failure behaviour.
///
/// Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct RedisStore {
    connection: RedisConnection,
    prefix: Arc<str>,
    timeout: Duration,
    /// The URL without credentials, for error messages and `Debug`.
    target: Arc<str>,
}

/// The kinds of connection behind one store type. All multiplex every
/// request over shared connections and reconnect by themselves.
#[derive(Clone)]
enum Connection {
    /// A standalone server over TCP: vishnu's own pipelined connection.
    Pipelined(Pipelined),
    /// A standalone server on a Unix socket, or spoken to in RESP3.
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

/// The connection a [`RedisStore`] sends its commands over (see
/// [`RedisStore::connection`]): run any command of the `redis` crate (0.32)
/// on it with `query_async`. Clones share it.
#[derive(Clone)]
pub struct RedisConnection {
    connection: Connection,
    /// When the store's call that holds this handle gives up (the
    /// pipelined connection enforces it itself); `None` for the
    /// application's handles.
    deadline: Option<tokio::time::Instant>,
}

impl RedisConnection {
    /// Sends `cmd` and converts its reply, as `cmd.query_async(self)` does,
    /// without boxing the request on the pipelined connection.
    async fn query<T: ::redis::FromRedisValue>(&mut self, cmd: &Cmd) -> Result<T, RedisError> {
        let reply = match &self.connection {
            Connection::Pipelined(c) => c.request(cmd, self.deadline).await?,
            Connection::Standalone(_) | Connection::Cluster(_) => {
                return cmd.query_async(self).await;
            }
        };
        ::redis::from_owned_redis_value(reply.extract_error()?)
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.connection {
            Connection::Pipelined(_) => "pipelined",
            Connection::Standalone(_) => "connection manager",
            Connection::Cluster(_) => "cluster",
        };
        f.debug_tuple("RedisConnection").field(&kind).finish()
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.connection {
            Connection::Pipelined(c) => Box::pin(c.request(cmd, self.deadline)),
            Connection::Standalone(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.connection {
            Connection::Pipelined(c) => Box::pin(c.request_many(cmd, offset, count, self.deadline)),
            Connection::Standalone(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.connection {
            Connection::Pipelined(c) => c.get_db(),
            Connection::Standalone(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to Redis.
    ///
    /// - `redis://[user:password@]host:port/db` (and `redis+unix:///path`): one
    ///   server, through a connection manager that reconnects by itself;
    /// - `redis+cluster://[user:password@]host:port,host:port,...`: a Redis
    ///   Cluster, discovered from any of the listed nodes (the credentials apply
    ///   to every node).
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] for a malformed URL (or `rediss://`: TLS is
    /// not compiled in), [`StoreError::Unavailable`] for a server that cannot
    /// be reached, [`StoreError::Timeout`] when connecting takes longer than
    /// [`DEFAULT_TIMEOUT`].
    pub async fn from_url(url: &str) -> Result<Self, StoreError> {
        let target: Arc<str> = redact(url).into();
        let connecting = async {
            if let Some(nodes) = url.strip_prefix("redis+cluster://") {
                let nodes = cluster_nodes(nodes).map_err(|why| {
                    StoreError::InvalidUrl(format!("Redis Cluster URL {target}: {why}"))
                })?;
                let client = ClusterClientBuilder::new(nodes)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .build()
                    .map_err(|e| {
                        StoreError::InvalidUrl(format!("Redis Cluster URL {target}: {e}"))
                    })?;
                let connection = client
                    .get_async_connection()
                    .await
                    .map_err(|e| connect_failure(&e, "Redis Cluster", &target))?;
                Ok(Connection::Cluster(connection))
            } else {
                let client = ::redis::Client::open(url)
                    .map_err(|e| StoreError::InvalidUrl(format!("Redis URL {target}: {e}")))?;
                let info = client.get_connection_info();
                if let (ConnectionAddr::Tcp(host, port), ProtocolVersion::RESP2) =
                    (&info.addr, info.redis.protocol)
                {
                    let server = Target {
                        host: host.clone(),
                        port: *port,
                        db: info.redis.db,
                        username: info.redis.username.clone(),
                        password: info.redis.password.clone(),
                    };
                    let connection = Pipelined::connect(server, CONNECT_TIMEOUT)
                        .await
                        .map_err(|e| connect_failure(&e, "Redis at", &target))?;
                    return Ok(Connection::Pipelined(connection));
                }
                // No retry series inside the manager: its backoff would hold
                // every call of an outage for seconds. A failed attempt fails
                // the calls waiting on it at once, and the next call starts a
                // new attempt, so the store notices at once that the server is back.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_number_of_retries(0);
                let manager = ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(|e| connect_failure(&e, "Redis at", &target))?;
                Ok(Connection::Standalone(manager))
            }
        };
        let connection = tokio::time::timeout(DEFAULT_TIMEOUT, connecting)
            .await
            .map_err(|_| StoreError::Timeout(DEFAULT_TIMEOUT))??;
        Ok(Self {
            connection: RedisConnection {
                connection,
                deadline: None,
            },
            prefix: DEFAULT_PREFIX.into(),
            timeout: DEFAULT_TIMEOUT,
            target,
        })
    }

    /// The store's own connection, for the application's other Redis
    /// commands: they then share its TCP connection (or its cluster
    /// connections) and its reconnection instead of opening more.
    ///
    /// Every command is pipelined with the sessions' own, so a command that
    /// holds the connection (`BLPOP`, `SUBSCRIBE`, `MONITOR`) or changes its
    /// state (`SELECT`, `MULTI`, `CLIENT REPLY OFF`) would stall or corrupt
    /// every session call: use a connection of your own for those. The
    /// store's timeout does not apply to these commands.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = vishnu::RedisStore::from_url("redis://127.0.0.1:6379/0").await?;
    /// let mut connection = store.connection();
    /// let hits: i64 = redis::cmd("INCR").arg("hits").query_async(&mut connection).await?;
    /// # let _ = hits;
    /// # Ok(())
    /// # }
    /// ```
    pub fn connection(&self) -> RedisConnection {
        self.connection.clone()
    }

    /// Puts `prefix` before every key (default `vishnu:`), to share a database
    /// with other data or other applications.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().into();
        self
    }

    /// Bounds every call (default 2 s): a call that takes longer fails with
    /// [`StoreError::Timeout`]. Each attempt to reconnect is bounded by 2 s on
    /// its own, whatever this timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The Redis key of `key`, as text (for messages and the earlier layout).
    fn key(&self, key: &StoreKey) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.as_str().len());
        full.push_str(&self.prefix);
        full.push_str(key.as_str());
        full
    }

    /// The Redis key of `key`, as a command argument: written straight into
    /// the command, with no string of its own.
    fn key_arg<'a>(&'a self, key: &'a StoreKey) -> KeyArg<'a> {
        KeyArg {
            prefix: &self.prefix,
            key: key.as_bytes(),
        }
    }

    /// Runs one request with the store's timeout, mapping its failure.
    ///
    /// `request` gets its own handle on the shared connection. A request that
    /// failed because the connection was refused is made once more: nothing
    /// was sent, and the refusal may be the attempt cached from before the
    /// server came back, so the retry is both safe and what makes the store
    /// recover on the first call after an outage.
    ///
    /// Every store call's future is boxed, and one of more than 1 KiB costs
    /// glibc's allocator its slow path (a save's is just under). So futures
    /// are made where they are awaited (one built earlier and awaited later
    /// is kept twice over), rare paths are boxed, and neither this nor
    /// [`run_raw`](Self::run_raw) is an `async fn`, which would keep its
    /// arguments beside the future it awaits (32 bytes more, measured with
    /// `-Zprint-type-sizes`).
    #[allow(clippy::manual_async_fn)] // on purpose, see above
    fn run<'a, T, F, Fut>(
        &'a self,
        operation: &'a str,
        request: F,
    ) -> impl Future<Output = Result<T, StoreError>> + 'a
    where
        F: FnMut(RedisConnection) -> Fut + 'a,
        Fut: Future<Output = Result<T, RedisError>> + 'a,
        T: 'a,
    {
        async move {
            self.run_raw(request)
                .await?
                .map_err(|e| self.failure(operation, &e))
        }
    }

    /// [`run`](Self::run) that leaves the server's answer unmapped, for a
    /// caller that handles some errors itself; only a timeout is an `Err`.
    ///
    /// On the pipelined connection the request carries its deadline and the
    /// connection enforces it, with one timer for all its requests; on the
    /// others, the call runs under a timer of its own.
    #[allow(clippy::manual_async_fn)] // on purpose, see `run`
    fn run_raw<'a, T, F, Fut>(
        &'a self,
        request: F,
    ) -> impl Future<Output = Result<Result<T, RedisError>, StoreError>> + 'a
    where
        F: FnMut(RedisConnection) -> Fut + 'a,
        Fut: Future<Output = Result<T, RedisError>> + 'a,
        T: 'a,
    {
        async move {
            if let Connection::Pipelined(_) = self.connection.connection {
                // A timeout too large for the clock is no deadline.
                let deadline = tokio::time::Instant::now().checked_add(self.timeout);
                return match self.attempts(deadline, request).await {
                    Err(e)
                        if e.is_timeout()
                            && deadline.is_some_and(|at| tokio::time::Instant::now() >= at) =>
                    {
                        Err(StoreError::Timeout(self.timeout))
                    }
                    other => Ok(other),
                };
            }
            // Boxed: inline, its timer would make every pipelined call's
            // future larger (see `run`).
            Box::pin(super::deadline::bounded(self.timeout, async move {
                Ok(self.attempts(None, request).await)
            }))
            .await
        }
    }

    /// `request`, and once more if the connection was refused (see [`run`](Self::run)).
    async fn attempts<T, F, Fut>(
        &self,
        deadline: Option<tokio::time::Instant>,
        mut request: F,
    ) -> Result<T, RedisError>
    where
        F: FnMut(RedisConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let connection = || RedisConnection {
            connection: self.connection.connection.clone(),
            deadline,
        };
        match request(connection()).await {
            Err(e) if e.is_connection_refusal() => request(connection()).await,
            other => other,
        }
    }

    /// Loads a record of the earlier layout: a hash with the fields `record`,
    /// `version`, `last_access` and `expires_at`.
    async fn load_legacy(&self, redis_key: &str) -> Result<Option<Record>, StoreError> {
        let mut cmd = ::redis::cmd("HMGET");
        cmd.arg(redis_key)
            .arg("record")
            .arg("version")
            .arg("last_access")
            .arg("expires_at");
        let cmd = &cmd;
        let fields: Vec<Option<Vec<u8>>> = self
            .run("load", |mut c| async move { c.query(cmd).await })
            .await?;
        let [json, version, last_access, expires_at]: [Option<Vec<u8>>; 4] =
            fields.try_into().map_err(|fields: Vec<_>| {
                StoreError::Corrupt(format!("HMGET returned {} fields, not 4", fields.len()))
            })?;
        let Some(json) = json else {
            return Ok(None);
        };
        let mut record = Record::from_json(&json)
            .map_err(|e| StoreError::Corrupt(format!("record at {redis_key}: {e}")))?;
        if let Some(version) = version {
            record.version = parse_number("version", &version)?;
        }
        if let Some(last_access) = last_access {
            record.last_access = parse_number("last_access", &last_access)?;
        }
        if let Some(expires_at) = expires_at {
            record.expires_at = parse_number("expires_at", &expires_at)?;
        }
        Ok(Some(record))
    }

    fn failure(&self, operation: &str, e: &RedisError) -> StoreError {
        if e.is_timeout() {
            // The client's own bound: only connecting has one (CONNECT_TIMEOUT).
            StoreError::Timeout(CONNECT_TIMEOUT)
        } else if e.kind() == ErrorKind::TypeError || e.code() == Some("WRONGTYPE") {
            // Something else lives under our key, or the reply has another shape.
            StoreError::Corrupt(format!("redis {operation} at {}: {e}", self.target))
        } else {
            StoreError::Unavailable(format!("redis {operation} at {} failed: {e}", self.target))
        }
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let redis_key = self.key_arg(key);
        let mut cmd = ::redis::Cmd::with_capacity(2, 3 + redis_key.len());
        cmd.arg("GET").arg(redis_key);
        let cmd = &cmd;
        let value: Option<Vec<u8>> = match self
            .run_raw(|mut c| async move { c.query(cmd).await })
            .await?
        {
            Err(e) if e.code() == Some("WRONGTYPE") => {
                // Boxed: the rare path would otherwise make every load's future larger.
                return Box::pin(self.load_legacy(&self.key(key))).await;
            }
            other => other.map_err(|e| self.failure("load", &e))?,
        };
        let Some(value) = value else {
            return Ok(None);
        };
        let corrupt =
            |why: String| StoreError::Corrupt(format!("record at {}: {why}", self.key(key)));
        let (head, json) = value
            .split_at_checked(HEADER_LEN)
            .ok_or_else(|| corrupt(format!("{} bytes, shorter than its header", value.len())))?;
        let (version, last_access, expires_at) =
            parse_header(head).ok_or_else(|| corrupt("malformed header".to_owned()))?;
        let mut record = Record::from_json(json).map_err(|e| corrupt(e.to_string()))?;
        record.version = version;
        record.last_access = last_access;
        record.expires_at = expires_at;
        Ok(Some(record))
    }

    async fn create(&self, key: &StoreKey, record: &Record) -> Result<bool, StoreError> {
        let value = encode_value(record)?;
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.key_arg(key))
            .arg(value)
            .arg("NX")
            .arg("PXAT")
            .arg(record.expires_at);
        let cmd = &cmd;
        // `OK` when written, nil when the key is taken.
        let created: Option<String> = self
            .run("create", |mut c| async move { c.query(cmd).await })
            .await?;
        Ok(created.is_some())
    }

    async fn save(
        &self,
        key: &StoreKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let value = encode_value(record)?;
        let redis_key = self.key_arg(key);
        let expected = digits::<20>(expected_version);
        // Not itoa's buffer, twice the size: every byte here is kept in the
        // call's future, which must stay under 1 KiB (see `run_raw`).
        let expires_at = digits::<20>(record.expires_at);
        let args: [&[u8]; 3] = [&expected, &value, unpadded(&expires_at)];
        let args = &args;
        let outcome: i64 = self
            .run("save", |mut c| async move {
                SAVE.eval(&mut c, redis_key, args).await
            })
            .await?;
        match outcome {
            SAVE_SAVED => Ok(SaveOutcome::Saved),
            SAVE_CONFLICT => Ok(SaveOutcome::Conflict),
            SAVE_MISSING => Ok(SaveOutcome::Missing),
            other => Err(StoreError::Corrupt(format!(
                "the save script answered {other}"
            ))),
        }
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(self.key_arg(key));
        let cmd = &cmd;
        let _removed: i64 = self
            .run("delete", |mut c| async move { c.query(cmd).await })
            .await?;
        Ok(())
    }

    async fn touch(
        &self,
        key: &StoreKey,
        last_access: Millis,
        expires_at: Millis,
    ) -> Result<bool, StoreError> {
        let redis_key = self.key_arg(key);
        let last_access = digits::<16>(last_access.min(MAX_HEADER_MILLIS));
        let expires_at = digits::<16>(expires_at.min(MAX_HEADER_MILLIS));
        let args: [&[u8]; 2] = [&last_access, &expires_at];
        let args = &args;
        let touched: i64 = self
            .run("touch", |mut c| async move {
                TOUCH.eval(&mut c, redis_key, args).await
            })
            .await?;
        Ok(touched == 1)
    }

    /// Does nothing: every record carries a native TTL, so Redis removes
    /// expired records by itself.
    async fn delete_expired(
        &self,
        _now: Millis,
        _dormant_for: Duration,
        _limit: usize,
    ) -> Result<Cleanup, StoreError> {
        Ok(Cleanup::default())
    }
}

fn connect_failure(e: &RedisError, what: &str, target: &str) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout(CONNECT_TIMEOUT)
    } else {
        StoreError::Unavailable(format!("cannot reach {what} {target}: {e}"))
    }
}

fn parse_number(field: &str, bytes: &[u8]) -> Result<u64, StoreError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("field {field} is not a decimal number")))
}

/// The stored value: the fixed-width header, then the record JSON.
fn encode_value(record: &Record) -> Result<Vec<u8>, StoreError> {
    let mut value = Vec::with_capacity(256);
    value.extend_from_slice(&digits::<20>(record.version));
    value.push(b' ');
    value.extend_from_slice(&digits::<16>(record.last_access.min(MAX_HEADER_MILLIS)));
    value.push(b' ');
    value.extend_from_slice(&digits::<16>(record.expires_at.min(MAX_HEADER_MILLIS)));
    value.push(b' ');
    record.write_json(&mut value);
    let json_len = value.len() - HEADER_LEN;
    if json_len > crate::record::MAX_RECORD_BYTES {
        return Err(StoreError::TooLarge(format!(
            "{json_len} bytes exceed the {}-byte limit",
            crate::record::MAX_RECORD_BYTES
        )));
    }
    Ok(value)
}

/// `value` in decimal, zero-padded to `N` digits (its last `N` digits, if longer:
/// callers cap their values to fit).
fn digits<const N: usize>(mut value: u64) -> [u8; N] {
    let mut out = [b'0'; N];
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out
}

/// `digits` without its leading zeros (one `0` for zero): Redis reads no
/// leading zero in an integer argument.
fn unpadded(digits: &[u8]) -> &[u8] {
    let start = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len().saturating_sub(1));
    &digits[start..]
}

/// Version, last_access and expires_at from a header that [`encode_value`] wrote.
fn parse_header(head: &[u8]) -> Option<(u64, Millis, Millis)> {
    // Digits only (no sign, no space), and no overflow: what `u64::from_str`
    // accepts of these fields, without its UTF-8 check and sign handling.
    let number = |field: &[u8]| -> Option<u64> {
        if field.is_empty() {
            return None;
        }
        field.iter().try_fold(0u64, |n, &b| {
            let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
            n.checked_mul(10)?.checked_add(u64::from(digit))
        })
    };
    if head.len() != HEADER_LEN || head[20] != b' ' || head[37] != b' ' || head[54] != b' ' {
        return None;
    }
    Some((
        number(&head[..20])?,
        number(&head[21..37])?,
        number(&head[38..54])?,
    ))
}

/// Splits the part after `redis+cluster://` into one `redis://` URL per node.
fn cluster_nodes(spec: &str) -> Result<Vec<String>, &'static str> {
    // A cluster has only database 0: accept a trailing "/" or "/0".
    let spec = spec
        .strip_suffix("/0")
        .or_else(|| spec.strip_suffix('/'))
        .unwrap_or(spec);
    let (credentials, hosts) = match spec.rsplit_once('@') {
        Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
        None => (String::new(), spec),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .map(|host| {
            if host.is_empty() || host.contains('/') {
                Err("expected host:port,host:port,...")
            } else {
                Ok(format!("redis://{credentials}{host}"))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_list_every_node() {
        assert_eq!(
            cluster_nodes("127.0.0.1:7000,127.0.0.1:7001/0").expect("valid"),
            ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
        );
        assert_eq!(
            cluster_nodes("u:p@h1:1,h2:2").expect("valid"),
            ["redis://u:p@h1:1", "redis://u:p@h2:2"]
        );
        assert!(cluster_nodes("h1:1,,h2:2").is_err());
        assert!(cluster_nodes("h1:1/3").is_err());
    }

    #[test]
    fn unpadded_digits_are_what_redis_reads_as_the_number() {
        for n in [0, 7, 10, 1_764_566_400_000, u64::MAX] {
            assert_eq!(unpadded(&digits::<20>(n)), n.to_string().as_bytes());
        }
    }

    #[test]
    fn the_header_round_trips_and_rejects_garbage() {
        let mut record = Record::new(serde_json::Map::new(), 1_764_480_000_000, 1_764_566_400_000);
        record.version = 42;
        let value = encode_value(&record).expect("encodes");
        assert_eq!(
            &value[..HEADER_LEN],
            b"00000000000000000042 0001764480000000 0001764566400000 "
        );
        let (head, json) = value.split_at(HEADER_LEN);
        assert_eq!(
            parse_header(head),
            Some((42, 1_764_480_000_000, 1_764_566_400_000))
        );
        assert_eq!(Record::from_json(json).expect("json"), record);
        assert_eq!(parse_header(b"short"), None);
        assert_eq!(&digits::<20>(u64::MAX), b"18446744073709551615");
        assert_eq!(&digits::<16>(MAX_HEADER_MILLIS), b"9007199254740991");
        assert_eq!(&digits::<4>(7), b"0007");
        let mut bad = head.to_vec();
        bad[3] = b'x';
        assert_eq!(parse_header(&bad), None);
        bad[3] = b'+';
        assert_eq!(parse_header(&bad), None);
        // The widest version field: u64::MAX reads back, one more is garbage.
        let mut widest = head.to_vec();
        widest[..20].copy_from_slice(b"18446744073709551615");
        assert_eq!(parse_header(&widest).map(|h| h.0), Some(u64::MAX));
        widest[..20].copy_from_slice(b"18446744073709551616");
        assert_eq!(parse_header(&widest), None);
        widest[..20].copy_from_slice(b"99999999999999999999");
        assert_eq!(parse_header(&widest), None);
    }

    #[test]
    fn credentials_never_reach_messages() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379/0"), "redis://host:6379/0");
    }
}
