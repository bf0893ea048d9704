//! [`MemcachedStore`]: sessions spread over several memcached servers (feature `memcached`).
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use vishnu::MemcachedStore;
//!
//! # async fn demo() -> Result<(), vishnu::StoreError> {
//! let store = MemcachedStore::from_url("memcache://10.0.0.1:11211,10.0.0.2:11211")
//!     .await?
//!     .with_prefix("myapp:session:")?
//!     .with_timeout(Duration::from_millis(500));
//! let shared = Arc::new(store); // hand it to `Config::builder().store(...)`
//! # let _ = shared;
//! # Ok(())
//! # }
//! ```
//!
//! ## Which server holds a session
//! Rendezvous (highest-random-weight) hashing of the [`StoreKey`]: for every
//! server, `score = first 8 bytes, big-endian, of SHA-256("host:port" NUL store key)`,
//! with `host:port` spelled as in the URL; the highest score wins. Adding or
//! removing a server moves only the sessions that it gains or held, and any
//! other front (Python) can compute the same placement in a few lines.
//!
//! ## A server that is down
//! Its sessions fail with [`StoreError::Unavailable`] within the timeout;
//! they are **not** moved to another server, and sessions on the other servers
//! keep working. Moving them would look friendlier but breaks the promises the
//! engine builds on: when the server comes back, its older copies would win
//! again, so a session terminated or cycled in the meantime would be brought
//! back to life. A clean error keeps every session consistent: the
//! application answers those requests with an error until the server is back
//! (a restarted memcached is empty, so its sessions are then simply gone). A
//! refused connection fails at once; after a connection attempt that timed out
//! (a host that does not answer) the server is skipped for one second, so that
//! calls fail at once instead of each waiting for it. Every call after that
//! tries again, so the store recovers by itself as soon as the server is back.
//!
//! ## Protocol and client
//! The store speaks memcached's text protocol itself, over tokio TCP
//! connections kept in a small pool per server. Of the async clients on
//! crates.io, `memcache-async` has CAS but sends `set` and `delete` as
//! `noreply` (failures go unseen), misreads `NOT_FOUND` after `cas`, and has
//! neither several servers nor a pool; `async-memcached` has no CAS. The few
//! commands needed here (`gets`, `add`, `cas`, `delete`, `version`) are
//! simpler to get exactly right than to work around.
//!
//! - `load` = `gets`; `create` = `add`; `delete` = `delete`.
//! - `save` = `gets` (compare the stored version) + `cas` (write only if
//!   nobody wrote in between); when `cas` loses to a concurrent write, the
//!   version is compared again, so the version check stays exact.
//! - `touch` = `gets` + `cas` of the same record with the new times: memcached
//!   cannot change part of a value, so the record is rewritten (data and
//!   version unchanged).
//!
//! Expiry: every write passes an expiry time ending at `record.expires_at`,
//! rounded up to the second. Beyond 30 days memcached reads the number as an
//! absolute Unix time, so such expiries are sent that way. A record within
//! that last second is treated as absent on load. [`delete_expired`](SessionStore::delete_expired)
//! does nothing and returns [`Cleanup::default()`]: memcached expires records
//! by itself (and may evict them early when it runs out of memory, which is
//! the price of a cache as a session store).
//!
//! Every call is bounded by the store's timeout (2 s unless
//! [`with_timeout`](MemcachedStore::with_timeout) says otherwise):
//! [`StoreError::Timeout`] past it, [`StoreError::Unavailable`] for a refused
//! or broken connection. A connection interrupted mid-command is dropped,
//! never reused.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::clock::{Clock, SystemClock};
use crate::id::StoreKey;
use crate::record::{Millis, Record, MAX_RECORD_BYTES};
use crate::store::{
    encode_record as encode, redact_url as redact, Cleanup, SaveOutcome, SessionStore, StoreError,
};

/// The key prefix used unless [`MemcachedStore::with_prefix`] sets another.
pub const DEFAULT_PREFIX: &str = "vishnu:";

/// The time a call may take unless [`MemcachedStore::with_timeout`] sets another.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The port used for a server listed without one.
pub const DEFAULT_PORT: u16 = 11211;

/// memcached's longest key.
const MAX_KEY_LEN: usize = 250;
/// Longest reply line accepted (replies other than values are short).
const MAX_LINE: u64 = 1024;
/// Expiry times above this many seconds are absolute Unix times to memcached.
const RELATIVE_EXPIRY_LIMIT: u64 = 60 * 60 * 24 * 30;
/// Idle connections kept per server.
const MAX_IDLE: usize = 32;
/// Bounds connecting, so that a server that does not answer is marked down
/// before the call's own timeout ends.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a server is skipped after a connection attempt that timed out.
const DOWN_FOR: Duration = Duration::from_secs(1);
/// `cas` attempts before a save or touch that keeps losing gives up.
const CAS_ATTEMPTS: usize = 16;

/// A [`SessionStore`] on one or more memcached servers (`memcache://host:port,host:port`).
/// See the [module docs](self) for placement, the protocol and the failure behaviour.
///
/// Cloning is cheap and shares the connection pools.
#[derive(Clone)]
pub struct MemcachedStore {
    nodes: Arc<[Node]>,
    prefix: Arc<str>,
    timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for MemcachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<&str> = self.nodes.iter().map(|n| n.addr.as_str()).collect();
        f.debug_struct("MemcachedStore")
            .field("nodes", &nodes)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl MemcachedStore {
    /// Opens a store on the servers listed in `url`:
    /// `memcache://host:port,host:port,...` (`memcached://` works too; the
    /// port defaults to 11211). Every server is asked for its version once;
    /// one that does not answer is kept in the list (its sessions fail until
    /// it is back), and a warning is logged.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] for a malformed URL, [`StoreError::Unavailable`]
    /// when no server answers (each is given the store's timeout).
    pub async fn from_url(url: &str) -> Result<Self, StoreError> {
        let addrs = parse_url(url).map_err(|why| {
            StoreError::InvalidUrl(format!("memcached URL {}: {why}", redact(url)))
        })?;
        let store = Self {
            nodes: addrs.into_iter().map(Node::new).collect(),
            prefix: DEFAULT_PREFIX.into(),
            timeout: DEFAULT_TIMEOUT,
            clock: Arc::new(SystemClock),
        };
        let mut failures = Vec::new();
        for node in store.nodes.iter() {
            let version = store
                .bounded(async {
                    let mut conn = node.checkout().await?;
                    let version = conn.version().await;
                    node.release(conn);
                    version
                })
                .await;
            if let Err(e) = version {
                tracing::warn!(server = %node.addr, error = %e, "memcached server does not answer: its sessions fail until it is back");
                failures.push(e.to_string());
            }
        }
        if failures.len() == store.nodes.len() {
            return Err(StoreError::Unavailable(format!(
                "no memcached server in {url} answers: {}",
                failures.join("; ")
            )));
        }
        Ok(store)
    }

    /// Puts `prefix` before every key (default `vishnu:`).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when memcached could not take the keys: the
    /// prefix contains spaces or control characters, or is longer than 186
    /// bytes (keys are at most 250 bytes, and a store key takes 64).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Result<Self, StoreError> {
        let prefix = prefix.into();
        if prefix.len() + 64 > MAX_KEY_LEN {
            return Err(StoreError::Unavailable(format!(
                "memcached key prefix of {} bytes is too long (at most {})",
                prefix.len(),
                MAX_KEY_LEN - 64
            )));
        }
        if prefix.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(StoreError::Unavailable(
                "memcached key prefix contains spaces or control characters".into(),
            ));
        }
        self.prefix = prefix.into();
        Ok(self)
    }

    /// Bounds every call (default 2 s): a call that takes longer fails with
    /// [`StoreError::Timeout`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Replaces the clock that decides what has expired (pass the engine's,
    /// as with the memory and SQL stores); default the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The server that holds `key` (rendezvous hashing).
    fn node(&self, key: &StoreKey) -> &Node {
        let mut best = &self.nodes[0];
        let mut best_score = 0;
        for node in self.nodes.iter() {
            let digest = Sha256::new()
                .chain_update(node.addr.as_bytes())
                .chain_update([0u8])
                .chain_update(key.as_str().as_bytes())
                .finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest[..8]);
            let score = u64::from_be_bytes(first);
            if score >= best_score {
                best = node;
                best_score = score;
            }
        }
        best
    }

    fn key(&self, key: &StoreKey) -> String {
        format!("{}{}", self.prefix, key.as_str())
    }

    /// Runs one call with the store's timeout. Dropping the call on timeout
    /// drops its connection too, so a half-finished exchange is never reused.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        super::deadline::bounded(self.timeout, call).await
    }
}

#[async_trait]
impl SessionStore for MemcachedStore {
    fn kind(&self) -> &'static str {
        "memcached"
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let node = self.node(key);
        let mkey = self.key(key);
        let now = self.clock.now_millis();
        self.bounded(async {
            let mut conn = node.checkout().await?;
            let found = conn.gets(&mkey).await;
            node.release(conn);
            match found? {
                Some((bytes, _)) => {
                    let record = decode(&mkey, &bytes)?;
                    Ok((!record.is_expired(now)).then_some(record))
                }
                None => Ok(None),
            }
        })
        .await
    }

    async fn create(&self, key: &StoreKey, record: &Record) -> Result<bool, StoreError> {
        let node = self.node(key);
        let mkey = self.key(key);
        let json = encode(record)?;
        let now = self.clock.now_millis();
        let exptime = exptime(record.expires_at, now);
        self.bounded(async {
            let mut conn = node.checkout().await?;
            let stored = conn.add(&mkey, &json, exptime).await;
            node.release(conn);
            stored
        })
        .await
    }

    async fn save(
        &self,
        key: &StoreKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let node = self.node(key);
        let mkey = self.key(key);
        let json = encode(record)?;
        let now = self.clock.now_millis();
        let exptime = exptime(record.expires_at, now);
        self.bounded(async {
            let mut conn = node.checkout().await?;
            let outcome = save_on(&mut conn, &mkey, &json, exptime, expected_version, now).await;
            node.release(conn);
            outcome
        })
        .await
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        let node = self.node(key);
        let mkey = self.key(key);
        self.bounded(async {
            let mut conn = node.checkout().await?;
            let deleted = conn.delete(&mkey).await;
            node.release(conn);
            deleted
        })
        .await
    }

    async fn touch(
        &self,
        key: &StoreKey,
        last_access: Millis,
        expires_at: Millis,
    ) -> Result<bool, StoreError> {
        let node = self.node(key);
        let mkey = self.key(key);
        let now = self.clock.now_millis();
        self.bounded(async {
            let mut conn = node.checkout().await?;
            let touched = touch_on(&mut conn, &mkey, last_access, expires_at, now).await;
            node.release(conn);
            touched
        })
        .await
    }

    /// Does nothing: every record carries an expiry time, so memcached
    /// removes expired records by itself.
    async fn delete_expired(
        &self,
        _now: Millis,
        _dormant_for: Duration,
        _limit: usize,
    ) -> Result<Cleanup, StoreError> {
        Ok(Cleanup::default())
    }
}

async fn save_on(
    conn: &mut Conn,
    mkey: &str,
    json: &[u8],
    exptime: i64,
    expected_version: u64,
    now: Millis,
) -> Result<SaveOutcome, StoreError> {
    for attempt in 0..CAS_ATTEMPTS {
        let Some((bytes, cas)) = conn.gets(mkey).await? else {
            return Ok(SaveOutcome::Missing);
        };
        let stored = decode(mkey, &bytes)?;
        if stored.is_expired(now) {
            return Ok(SaveOutcome::Missing);
        }
        if stored.version != expected_version {
            return Ok(SaveOutcome::Conflict);
        }
        match conn.cas(mkey, json, exptime, cas).await? {
            CasReply::Stored => return Ok(SaveOutcome::Saved),
            CasReply::NotFound => return Ok(SaveOutcome::Missing),
            // Written in between (a touch, or a save): compare versions again,
            // after a pause that grows, so as not to lose in lockstep forever.
            CasReply::Exists => backoff(attempt).await,
        }
    }
    // Still losing after several rounds: another writer is active, and the
    // engine answers a conflict by reloading, which is always safe.
    Ok(SaveOutcome::Conflict)
}

async fn touch_on(
    conn: &mut Conn,
    mkey: &str,
    last_access: Millis,
    expires_at: Millis,
    now: Millis,
) -> Result<bool, StoreError> {
    for attempt in 0..CAS_ATTEMPTS {
        let Some((bytes, cas)) = conn.gets(mkey).await? else {
            return Ok(false);
        };
        let mut record = decode(mkey, &bytes)?;
        if record.is_expired(now) {
            return Ok(false);
        }
        // Neither moves backwards (see `SessionStore::touch`).
        record.last_access = record.last_access.max(last_access);
        record.expires_at = record.expires_at.max(expires_at);
        match conn
            .cas(
                mkey,
                &encode(&record)?,
                exptime(record.expires_at, now),
                cas,
            )
            .await?
        {
            CasReply::Stored => return Ok(true),
            CasReply::NotFound => return Ok(false),
            CasReply::Exists => backoff(attempt).await,
        }
    }
    // The record exists and keeps being written by others, each write setting
    // its own expiry: there is nothing left for this touch to extend.
    Ok(true)
}

/// The pause after losing `cas` attempt `attempt`: none the first time, then
/// 1 ms, 2 ms, ... (120 ms in all at most), so that two writers cannot keep
/// losing to each other in lockstep.
async fn backoff(attempt: usize) {
    if attempt > 0 {
        let millis = u64::try_from(attempt).unwrap_or(u64::MAX);
        tokio::time::sleep(Duration::from_millis(millis)).await;
    }
}

/// memcached's expiry argument for a record that expires at `expires_at`:
/// seconds from now rounded up, an absolute Unix time beyond 30 days (the
/// server's rule), and -1 (expired at once) for a time already past, since 0
/// would mean "never".
fn exptime(expires_at: Millis, now: Millis) -> i64 {
    if expires_at <= now {
        return -1;
    }
    let seconds = (expires_at - now).div_ceil(1000);
    let value = if seconds > RELATIVE_EXPIRY_LIMIT {
        expires_at.div_ceil(1000)
    } else {
        seconds
    };
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn decode(mkey: &str, bytes: &[u8]) -> Result<Record, StoreError> {
    Record::from_json(bytes).map_err(|e| StoreError::Corrupt(format!("record at {mkey}: {e}")))
}

/// Splits `memcache://host:port,host:port` into addresses.
fn parse_url(url: &str) -> Result<Vec<String>, &'static str> {
    let rest = url
        .strip_prefix("memcache://")
        .or_else(|| url.strip_prefix("memcached://"))
        .ok_or("expected memcache://host:port,host:port,...")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut addrs = Vec::new();
    for addr in rest.split(',').map(str::trim) {
        if addr.is_empty() || addr.contains(['/', '@', '?']) {
            return Err("expected memcache://host:port,host:port,...");
        }
        // A bare host, or a bracketed IPv6 address, gets the default port.
        let has_port = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            && !addr.ends_with(']');
        let addr = if has_port {
            addr.to_owned()
        } else {
            format!("{addr}:{DEFAULT_PORT}")
        };
        if addrs.contains(&addr) {
            return Err("a server is listed twice");
        }
        addrs.push(addr);
    }
    Ok(addrs)
}

/// One server: its address, its idle connections and whether it is down.
struct Node {
    addr: String,
    idle: Mutex<Vec<Conn>>,
    /// Set by a failed connection: until then, calls fail at once.
    down: Mutex<Option<(Instant, String)>>,
}

impl Node {
    fn new(addr: String) -> Self {
        Self {
            addr,
            idle: Mutex::new(Vec::new()),
            down: Mutex::new(None),
        }
    }

    /// An idle connection that is still open, or a new one.
    async fn checkout(&self) -> Result<Conn, StoreError> {
        while let Some(conn) = self.take_idle() {
            if conn.is_open() {
                return Ok(conn);
            }
        }
        if let Some((until, why)) = lock(&self.down).clone() {
            if Instant::now() < until {
                return Err(StoreError::Unavailable(format!(
                    "memcached server {} is down ({why}); retrying within {DOWN_FOR:?}",
                    self.addr
                )));
            }
        }
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {CONNECT_TIMEOUT:?}"),
                ))
            });
        match connected {
            Ok(stream) => {
                // Requests are single small writes: do not wait to batch them.
                let _ = stream.set_nodelay(true);
                *lock(&self.down) = None;
                Ok(Conn::new(stream))
            }
            Err(e) => {
                // A refused connection costs nothing to retry, and retrying
                // notices at once that the server is back; one that hangs
                // would cost every call its whole timeout.
                if e.kind() == std::io::ErrorKind::TimedOut {
                    *lock(&self.down) = Some((Instant::now() + DOWN_FOR, e.to_string()));
                }
                // Its other connections are most likely dead too.
                lock(&self.idle).clear();
                Err(StoreError::Unavailable(format!(
                    "cannot connect to memcached server {}: {e}",
                    self.addr
                )))
            }
        }
    }

    fn take_idle(&self) -> Option<Conn> {
        lock(&self.idle).pop()
    }

    /// Returns a connection to the pool, unless an exchange on it did not finish.
    fn release(&self, conn: Conn) {
        if conn.in_sync {
            let mut idle = lock(&self.idle);
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        } else {
            // A broken connection usually means the server went away: drop
            // the other idle ones too rather than fail one call per connection.
            lock(&self.idle).clear();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values (a list of connections, a time) stay valid whatever
    // panicked while holding them.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The reply to `cas`.
enum CasReply {
    Stored,
    Exists,
    NotFound,
}

/// One connection speaking memcached's text protocol.
struct Conn {
    stream: BufReader<TcpStream>,
    /// False from the moment a command is sent until its whole reply is read:
    /// a connection left that way (error, timeout, cancellation) is dropped.
    in_sync: bool,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream: BufReader::new(stream),
            in_sync: true,
        }
    }

    /// Whether the server has not closed this idle connection (a restarted
    /// server closes them all): a pending end-of-file or stray bytes rule it out.
    fn is_open(&self) -> bool {
        if !self.in_sync || !self.stream.buffer().is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(
            self.stream.get_ref().try_read(&mut probe),
            Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock
        )
    }

    async fn send(&mut self, request: &[u8]) -> Result<(), StoreError> {
        self.in_sync = false;
        let stream = self.stream.get_mut();
        stream.write_all(request).await.map_err(io_failure)?;
        stream.flush().await.map_err(io_failure)
    }

    async fn read_line(&mut self) -> Result<String, StoreError> {
        let mut line = Vec::new();
        (&mut self.stream)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
            .map_err(io_failure)?;
        if line.is_empty() {
            return Err(StoreError::Unavailable(
                "memcached closed the connection".into(),
            ));
        }
        let line = line
            .strip_suffix(b"\r\n")
            .ok_or_else(|| protocol("a reply line without CRLF, or too long"))?;
        String::from_utf8(line.to_vec()).map_err(|_| protocol("a reply line that is not text"))
    }

    /// Sends a storage command (`add`, `cas`) with its data, and reads the reply line.
    async fn store(&mut self, header: String, data: &[u8]) -> Result<String, StoreError> {
        let mut request = header.into_bytes();
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(data);
        request.extend_from_slice(b"\r\n");
        self.send(&request).await?;
        let reply = self.read_line().await?;
        if let Some(message) = reply.strip_prefix("SERVER_ERROR ") {
            if message.contains("too large") {
                return Err(StoreError::TooLarge(format!("memcached: {message}")));
            }
        }
        Ok(reply)
    }

    /// `gets`: the value and its CAS unique, or `None`.
    async fn gets(&mut self, mkey: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        self.send(format!("gets {mkey}\r\n").as_bytes()).await?;
        let header = self.read_line().await?;
        if header == "END" {
            self.in_sync = true;
            return Ok(None);
        }
        // VALUE <key> <flags> <bytes> <cas unique>
        let parts: Vec<&str> = header.split(' ').collect();
        let (len, cas) = match parts.as_slice() {
            ["VALUE", key, _flags, len, cas] if *key == mkey => (
                len.parse::<usize>().map_err(|_| protocol("a bad length"))?,
                cas.parse::<u64>()
                    .map_err(|_| protocol("a bad CAS unique"))?,
            ),
            _ => return Err(unexpected("gets", &header)),
        };
        if len > MAX_RECORD_BYTES {
            return Err(StoreError::Corrupt(format!(
                "{len} bytes at {mkey} exceed the {MAX_RECORD_BYTES}-byte limit"
            )));
        }
        let mut value = vec![0u8; len + 2];
        self.stream
            .read_exact(&mut value)
            .await
            .map_err(io_failure)?;
        if value.split_off(len) != b"\r\n" {
            return Err(protocol("a value without its CRLF"));
        }
        let end = self.read_line().await?;
        if end != "END" {
            return Err(unexpected("gets", &end));
        }
        self.in_sync = true;
        Ok(Some((value, cas)))
    }

    /// `add`: whether the value was stored (false: the key is taken).
    async fn add(&mut self, mkey: &str, data: &[u8], exptime: i64) -> Result<bool, StoreError> {
        let header = format!("add {mkey} 0 {exptime} {}", data.len());
        let reply = self.store(header, data).await?;
        let stored = match reply.as_str() {
            "STORED" => true,
            "NOT_STORED" => false,
            _ => return Err(unexpected("add", &reply)),
        };
        self.in_sync = true;
        Ok(stored)
    }

    async fn cas(
        &mut self,
        mkey: &str,
        data: &[u8],
        exptime: i64,
        cas: u64,
    ) -> Result<CasReply, StoreError> {
        let header = format!("cas {mkey} 0 {exptime} {} {cas}", data.len());
        let reply = self.store(header, data).await?;
        let outcome = match reply.as_str() {
            "STORED" => CasReply::Stored,
            "EXISTS" => CasReply::Exists,
            "NOT_FOUND" => CasReply::NotFound,
            _ => return Err(unexpected("cas", &reply)),
        };
        self.in_sync = true;
        Ok(outcome)
    }

    async fn delete(&mut self, mkey: &str) -> Result<(), StoreError> {
        self.send(format!("delete {mkey}\r\n").as_bytes()).await?;
        let reply = self.read_line().await?;
        match reply.as_str() {
            "DELETED" | "NOT_FOUND" => {
                self.in_sync = true;
                Ok(())
            }
            _ => Err(unexpected("delete", &reply)),
        }
    }

    async fn version(&mut self) -> Result<String, StoreError> {
        self.send(b"version\r\n").await?;
        let reply = self.read_line().await?;
        match reply.strip_prefix("VERSION ") {
            Some(version) => {
                self.in_sync = true;
                Ok(version.to_owned())
            }
            None => Err(unexpected("version", &reply)),
        }
    }
}

fn io_failure(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("memcached connection failed: {e}"))
}

fn protocol(what: &str) -> StoreError {
    StoreError::Unavailable(format!("memcached sent {what}"))
}

fn unexpected(command: &str, reply: &str) -> StoreError {
    let reply: String = reply.chars().take(200).collect();
    StoreError::Unavailable(format!("memcached answered `{command}` with: {reply}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_relative_up_to_30_days_then_absolute() {
        let now = 1_700_000_000_000;
        assert_eq!(exptime(now + 1, now), 1);
        assert_eq!(exptime(now + 1_500, now), 2);
        assert_eq!(exptime(now + 30 * 86_400_000, now), 2_592_000);
        assert_eq!(
            exptime(now + 30 * 86_400_000 + 1_000, now),
            1_700_000_000 + 2_592_001
        );
        assert_eq!(exptime(now, now), -1, "0 would mean never");
        assert_eq!(exptime(now - 5_000, now), -1);
    }

    #[test]
    fn urls_list_servers_with_default_port() {
        assert_eq!(
            parse_url("memcache://127.0.0.1:11311,cache-b").expect("valid"),
            ["127.0.0.1:11311", "cache-b:11211"]
        );
        assert_eq!(
            parse_url("memcached://[::1]:7000,[::1]").expect("valid"),
            ["[::1]:7000", "[::1]:11211"]
        );
        assert!(parse_url("redis://h:1").is_err());
        assert!(parse_url("memcache://h:1,,h:2").is_err());
        assert!(parse_url("memcache://h:1,h:1").is_err());
    }

    #[test]
    fn placement_is_stable_and_spreads_keys() {
        let store = MemcachedStore {
            nodes: ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"]
                .into_iter()
                .map(|a| Node::new(a.to_owned()))
                .collect(),
            prefix: DEFAULT_PREFIX.into(),
            timeout: DEFAULT_TIMEOUT,
            clock: Arc::new(SystemClock),
        };
        let mut counts = [0usize; 3];
        for i in 0..3000u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_le_bytes());
            let key = crate::id::SessionId::from_bytes(id).store_key();
            let chosen = store.node(&key);
            assert!(
                std::ptr::eq(chosen, store.node(&key)),
                "placement is stable"
            );
            counts[store
                .nodes
                .iter()
                .position(|n| std::ptr::eq(n, chosen))
                .unwrap_or(0)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "uneven spread: {counts:?}");
        // Known answer, for other fronts that place keys the same way: the
        // scores are 12543149052030496694, 11897225712672909123, 3990614558885198539.
        let key = crate::id::SessionId::from_bytes([7u8; 16]).store_key();
        assert_eq!(store.node(&key).addr, "10.0.0.1:11211");
    }
}
