//! `vishnu._vishnu`: the Rust engine for the Python package.
//!
//! A few thin classes: `Engine` (one per `vishnu.session.Config`), `Store`
//! (opened from a URL, or wrapping a store written in Python), `Session`
//! (one per request) and `ManualClock` (a time source tests move forward). Values cross the boundary as JSON text; every call that
//! may touch the store releases the GIL while it waits.

#![forbid(unsafe_code)]

mod aio;
mod pystore;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::HeaderValue;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;
use tokio::runtime::Runtime;
use vishnu::{SameSite, SessionStore, Timeout};

create_exception!(
    _vishnu,
    SessionError,
    PyException,
    "A session operation failed."
);
create_exception!(
    _vishnu,
    StoreError,
    SessionError,
    "The session store failed (unreachable, timed out, or returned corrupt data)."
);
create_exception!(
    _vishnu,
    SessionTerminated,
    SessionError,
    "Another request terminated the session; the changes were not saved."
);
create_exception!(
    _vishnu,
    Superseded,
    SessionError,
    "Another request (a login) gave the session a new id; this request's old id grants nothing, so its changes were not saved. The WSGI middleware answers 409 without a cookie."
);
create_exception!(
    _vishnu,
    Unsupported,
    SessionError,
    "The operation needs a server-side store: the cookie store keeps no server state, so a user's sessions cannot be listed or revoked."
);

/// The engine's runtime: a current-thread one, driven by whichever thread
/// waits on it. A synchronous front (WSGI, Flask, Django) so does its store
/// I/O on the request's own thread, as redis-py does, instead of handing every
/// round trip to a runtime thread and back (two thread wake-ups each).
/// Asyncio awaitables need the runtime driven while no thread waits on it:
/// [`drive_in_background`] starts a thread for that on their first use.
fn runtime() -> PyResult<&'static Runtime> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| PyRuntimeError::new_err(format!("vishnu: cannot start its runtime: {e}")))
}

/// Starts (once) the thread that drives the runtime for the tasks nobody
/// blocks on: the asyncio awaitables'. From then on it does the process's
/// store I/O, also for synchronous callers.
pub(crate) fn drive_in_background(rt: &'static Runtime) -> PyResult<()> {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            // That thread now sees every reply first: a synchronous caller
            // polling for one would only burn its CPU.
            DRIVEN_IN_BACKGROUND.store(true, Ordering::Relaxed);
            std::thread::Builder::new()
                .name("vishnu-async".into())
                .spawn(move || rt.block_on(std::future::pending::<()>()))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| PyRuntimeError::new_err(format!("vishnu: cannot start its async thread: {e}")))
}

/// Whether [`drive_in_background`] started its thread.
static DRIVEN_IN_BACKGROUND: AtomicBool = AtomicBool::new(false);

/// A Python awaitable for a future run on the engine's runtime (see [`aio`]).
fn awaitable<'py, F, T>(py: Python<'py>, inline: bool, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    // A store written in Python runs inline, blocking the thread that polls:
    // never the event loop's.
    aio::awaitable(py, runtime()?, !inline, future)
}

/// A framework's secret key (any length) as a 32-byte vishnu secret
/// (`vishnu::codec::framework_secret`: HKDF-SHA256).
#[pyfunction]
fn derive_secret<'py>(py: Python<'py>, key: &[u8]) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let derived = vishnu::codec::framework_secret(key)
        .ok_or_else(|| PyValueError::new_err("the secret key must not be empty"))?;
    Ok(pyo3::types::PyBytes::new(py, &derived))
}

/// The session's values as a dict of JSON texts.
fn entries_dict(py: Python<'_>, data: serde_json::Map<String, Value>) -> PyResult<Py<PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in data {
        d.set_item(k, v.to_string())?;
    }
    Ok(d.unbind())
}

/// The parts of a cookie update: None, `("remove", None, None)` or
/// `("issue", value, expires_at_unix_seconds_or_None)`.
type CookieParts = Option<(&'static str, Option<String>, Option<u64>)>;

fn cookie_parts(update: vishnu::CookieUpdate) -> CookieParts {
    match update {
        vishnu::CookieUpdate::Issue { value, expires_at } => {
            Some(("issue", Some(value), expires_at.map(|ms| ms / 1000)))
        }
        vishnu::CookieUpdate::Remove => Some(("remove", None, None)),
        vishnu::CookieUpdate::Keep => None,
    }
}

async fn finish_parts(
    engine: vishnu::Engine,
    session: vishnu::Session,
    status: u16,
) -> PyResult<CookieParts> {
    engine
        .finish_update(&session, status)
        .await
        .map(cookie_parts)
        .map_err(to_py)
}

/// `Session.update`: `func` maps the old JSON text (or None) to the new one;
/// an exception it raises is re-raised as is.
async fn update_value(s: vishnu::Session, key: String, func: Py<PyAny>) -> PyResult<String> {
    let failure: Arc<Mutex<Option<PyErr>>> = Arc::new(Mutex::new(None));
    let slot = failure.clone();
    let result = s
        .update_value(&key, |current| {
            Python::attach(|py| {
                let arg = current.map(|v| v.to_string());
                let out = func
                    .call1(py, (arg,))
                    .and_then(|o| o.extract::<String>(py))
                    .and_then(|text| parse_json(&key, &text));
                out.map_err(|e| {
                    let message = e.to_string();
                    if let Ok(mut slot) = slot.lock() {
                        *slot = Some(e);
                    }
                    vishnu::SessionError::Callback(message.into())
                })
            })
        })
        .await;
    match result {
        Ok(v) => Ok(v.to_string()),
        Err(vishnu::SessionError::Callback(_)) => {
            let err = failure.lock().ok().and_then(|mut s| s.take());
            Err(err.unwrap_or_else(|| SessionError::new_err("the update function failed")))
        }
        Err(e) => Err(to_py(e)),
    }
}

/// Runs a future on the engine's runtime with the GIL released, polling for
/// its store's reply for a while before sleeping (see [`spin_then_wait`]).
fn block_on<F>(py: Python<'_>, future: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let rt = runtime()?;
    Ok(py.detach(|| rt.block_on(spin_then_wait(future))))
}

/// The longest a synchronous call polls for its store's reply before it
/// sleeps, in microseconds (`set_spin_wait`; `VISHNU_SPIN_WAIT_US` at start).
static SPIN_WAIT_US: AtomicU64 = AtomicU64::new(u64::MAX);
/// The default of [`SPIN_WAIT_US`]: on the 2-core virtual machine of
/// BENCHMARKS.md, 9 in 10 loopback Redis replies come within it; a slower
/// store soon stops being waited for so (see [`SPIN_MISSES`]).
const DEFAULT_SPIN_WAIT_US: u64 = 200;
/// How many polling waits in a row ended without the reply (the store is
/// slower than the window: polling only burns the CPU). After
/// [`MISSES_TO_STOP`] of them, calls sleep at once, but one call in
/// [`PROBE_EVERY`] still polls, to notice when replies come fast again.
static SPIN_MISSES: AtomicU32 = AtomicU32::new(0);
const MISSES_TO_STOP: u32 = 8;
const PROBE_EVERY: u32 = 32;
static WAITS: AtomicU32 = AtomicU32::new(0);

fn spin_window() -> Duration {
    let mut us = SPIN_WAIT_US.load(Ordering::Relaxed);
    if us == u64::MAX {
        us = std::env::var("VISHNU_SPIN_WAIT_US")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|v| *v < u64::MAX)
            .unwrap_or(DEFAULT_SPIN_WAIT_US);
        SPIN_WAIT_US.store(us, Ordering::Relaxed);
    }
    Duration::from_micros(us)
}

/// Polls `future` once, whatever the answer.
async fn poll_once<F: Future>(mut future: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(future.as_mut().poll(cx))).await
}

/// `set_spin_wait(microseconds)`: how long a synchronous call (WSGI, Flask,
/// Django) polls for its store's reply before its thread sleeps; 0 never
/// polls. Waking a sleeping thread costs tens of microseconds on many virtual
/// machines, more than a loopback round trip; polling trades that for CPU
/// time, and only while replies keep coming within the window.
#[pyfunction]
fn set_spin_wait(microseconds: u64) -> PyResult<()> {
    if microseconds == u64::MAX {
        return Err(PyValueError::new_err("the spin wait is too long"));
    }
    SPIN_WAIT_US.store(microseconds, Ordering::Relaxed);
    SPIN_MISSES.store(0, Ordering::Relaxed);
    Ok(())
}

/// Awaits `future`, polling it (and the runtime's I/O, without blocking)
/// for up to the spin window before letting the thread sleep until it is
/// woken. A reply that comes within the window is seen at once instead of
/// after the thread's wake-up; a future that needs no I/O is ready on the
/// first poll and costs nothing more.
async fn spin_then_wait<F: Future>(future: F) -> F::Output {
    use std::task::Poll;
    let mut future = std::pin::pin!(future);
    if let Poll::Ready(out) = poll_once(future.as_mut()).await {
        return out;
    }
    let window = spin_window();
    let polling = !window.is_zero()
        && !DRIVEN_IN_BACKGROUND.load(Ordering::Relaxed)
        && (SPIN_MISSES.load(Ordering::Relaxed) < MISSES_TO_STOP
            || WAITS.fetch_add(1, Ordering::Relaxed) % PROBE_EVERY == 0);
    if !polling {
        return future.await;
    }
    let start = std::time::Instant::now();
    loop {
        // Yielding to the runtime makes it poll its I/O without blocking.
        tokio::task::yield_now().await;
        if let Poll::Ready(out) = poll_once(future.as_mut()).await {
            SPIN_MISSES.store(0, Ordering::Relaxed);
            break out;
        }
        if start.elapsed() >= window {
            let misses = SPIN_MISSES.load(Ordering::Relaxed);
            SPIN_MISSES.store(misses.saturating_add(1), Ordering::Relaxed);
            break future.await;
        }
    }
}

fn to_py(err: vishnu::SessionError) -> PyErr {
    match err {
        vishnu::SessionError::Store(e) => StoreError::new_err(e.to_string()),
        vishnu::SessionError::Terminated => SessionTerminated::new_err(err.to_string()),
        vishnu::SessionError::Superseded => Superseded::new_err(err.to_string()),
        // The class names it unsupported; the message says what and why.
        vishnu::SessionError::Unsupported(what) => Unsupported::new_err(what),
        vishnu::SessionError::Serialize { .. } | vishnu::SessionError::Deserialize { .. } => {
            PyTypeError::new_err(err.to_string())
        }
        other => SessionError::new_err(other.to_string()),
    }
}

/// One of a user's sessions as a dict (the keys are `SessionInfo`'s fields).
fn info_dict<'py>(py: Python<'py>, info: vishnu::SessionInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("handle", info.handle)?;
    d.set_item("created_at", info.created_at)?;
    d.set_item("last_access", info.last_access)?;
    d.set_item("expires_at", info.expires_at)?;
    d.set_item("label", info.label)?;
    d.set_item("current", info.current)?;
    Ok(d)
}

fn info_list(py: Python<'_>, list: Vec<vishnu::SessionInfo>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    list.into_iter().map(|i| info_dict(py, i)).collect()
}

/// A grace window in seconds (fractions allowed) as a `Duration`.
fn grace(option: &str, seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        PyValueError::new_err(format!(
            "{option} must be a number of seconds from 0 to 3600, got {seconds}"
        ))
    })
}

fn parse_json(key: &str, json: &str) -> PyResult<Value> {
    let value = serde_json::from_str(json).map_err(|e| {
        PyTypeError::new_err(format!("session value {key:?} is not valid JSON: {e}"))
    })?;
    // An integer too large for 64 bits is read as a float: only a value
    // holding a float needs its text scanned for one.
    if let Some(integer) = holds_float(&value)
        .then(|| oversized_integer(json))
        .flatten()
    {
        return Err(PyValueError::new_err(format!(
            "session value {key:?} holds the integer {integer}, which does not fit in 64 bits: \
             it would come back rounded (store it as a string)"
        )));
    }
    Ok(value)
}

/// Whether a JSON value holds a number that is not an integer of 64 bits.
/// serde_json's nesting limit (128) bounds the recursion.
fn holds_float(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(holds_float),
        Value::Object(map) => map.values().any(holds_float),
        _ => false,
    }
}

/// The first integer literal of a valid JSON text, outside its strings, that
/// fits neither `i64` nor `u64`. The engine would read it as a float,
/// silently rounding a Python int; such a value is refused instead.
fn oversized_integer(json: &str) -> Option<&str> {
    let bytes = json.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    i += if c == b'\\' { 2 } else { 1 };
                    if c == b'"' {
                        break;
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while bytes
                    .get(i)
                    .is_some_and(|c| matches!(c, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
                {
                    i += 1;
                }
                // Every byte of the number is ASCII: the slice is on char boundaries.
                let number = json.get(start..i)?;
                let integer = !number.contains(['.', 'e', 'E']);
                if integer && number.parse::<i64>().is_err() && number.parse::<u64>().is_err() {
                    return Some(number);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// A session store, opened from a URL or wrapping a Python object.
#[pyclass(frozen, module = "vishnu._vishnu")]
struct Store {
    inner: Arc<dyn SessionStore>,
    /// A store written in Python, whose calls block the polling thread.
    inline: bool,
}

#[pymethods]
impl Store {
    /// Opens the store a URL names (`memory`, `redis://…`, `memcache://…`, `sqlite://…`, …).
    #[staticmethod]
    fn open(py: Python<'_>, url: String) -> PyResult<Self> {
        let inner = block_on(py, async move { vishnu::store::open(&url).await })?
            .map_err(|e| StoreError::new_err(e.to_string()))?;
        Ok(Self {
            inner,
            inline: false,
        })
    }

    /// Wraps a store written in Python (see `vishnu.backend.PythonStore`).
    #[staticmethod]
    fn python(store: Py<PyAny>) -> Self {
        Self {
            inner: Arc::new(pystore::PyStore::new(store)),
            inline: true,
        }
    }

    /// The store URL schemes this build supports.
    #[staticmethod]
    fn supported() -> Vec<&'static str> {
        vishnu::store::supported()
    }
}

/// A time source that only moves when told to: tests use it to pass a grace
/// window or a renewal period without sleeping. Starts at the system time.
#[pyclass(frozen, module = "vishnu._vishnu")]
struct ManualClock {
    now: Arc<AtomicU64>,
}

struct SharedClock(Arc<AtomicU64>);

impl vishnu::Clock for SharedClock {
    fn now_millis(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[pymethods]
impl ManualClock {
    #[new]
    fn new() -> Self {
        let now = vishnu::Clock::now_millis(&vishnu::SystemClock);
        Self {
            now: Arc::new(AtomicU64::new(now)),
        }
    }

    /// Moves the clock forward by `seconds` (fractions allowed).
    fn advance(&self, seconds: f64) -> PyResult<()> {
        let step = Duration::try_from_secs_f64(seconds)
            .map_err(|_| PyValueError::new_err("advance: a non-negative number of seconds"))?;
        let millis = u64::try_from(step.as_millis()).unwrap_or(u64::MAX);
        self.now.fetch_add(millis, Ordering::Relaxed);
        Ok(())
    }

    /// The clock's time in milliseconds since the epoch.
    fn now_millis(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }
}

/// The engine for one configuration.
#[pyclass(frozen, module = "vishnu._vishnu")]
struct Engine {
    inner: vishnu::Engine,
    inline: bool,
}

impl Engine {
    /// A request's session from its `Cookie` header, if any.
    fn session(&self, cookies: Option<HeaderValue>) -> Session {
        Session {
            inner: self.inner.begin(cookies),
            engine: self.inner.clone(),
            inline: self.inline,
            finished: Mutex::new(false),
        }
    }
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (*, secret, store, fallback_secrets=Vec::new(), cookie_name="vishnu".to_owned(), encrypt_key=None, fallback_encrypt_keys=Vec::new(), secure=true, http_only=true, same_site="Lax".to_owned(), domain=None, path="/".to_owned(), auto_save=false, timeout=None, absolute_timeout=None, renew_every=None, cycle_grace=10.0, renew_grace=10.0, partitioned=false, clock=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        secret: Vec<u8>,
        store: &Store,
        fallback_secrets: Vec<Vec<u8>>,
        cookie_name: String,
        encrypt_key: Option<Vec<u8>>,
        fallback_encrypt_keys: Vec<Vec<u8>>,
        secure: bool,
        http_only: bool,
        same_site: String,
        domain: Option<String>,
        path: String,
        auto_save: bool,
        timeout: Option<u64>,
        absolute_timeout: Option<u64>,
        renew_every: Option<u64>,
        cycle_grace: f64,
        renew_grace: f64,
        partitioned: bool,
        clock: Option<PyRef<'_, ManualClock>>,
    ) -> PyResult<Self> {
        let same_site = match same_site.to_ascii_lowercase().as_str() {
            "strict" => SameSite::Strict,
            "lax" => SameSite::Lax,
            "none" => SameSite::None,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "same_site must be 'Strict', 'Lax' or 'None', got {same_site:?}"
                )))
            }
        };
        let mut b = vishnu::Config::builder()
            .secret(secret)
            .shared_store(store.inner.clone())
            .cookie_name(cookie_name)
            .secure(secure)
            .http_only(http_only)
            .same_site(same_site)
            .path(path)
            .partitioned(partitioned)
            .auto_save(auto_save)
            .cycle_grace(grace("cycle_grace", cycle_grace)?)
            .renew_grace(grace("renew_grace", renew_grace)?);
        for s in fallback_secrets {
            b = b.fallback_secret(s);
        }
        if let Some(k) = encrypt_key {
            b = b.encrypt_key(k);
        }
        for k in fallback_encrypt_keys {
            b = b.fallback_encrypt_key(k);
        }
        if let Some(d) = domain {
            b = b.domain(d);
        }
        if let Some(t) = timeout {
            b = b.timeout(Duration::from_secs(t));
        }
        if let Some(t) = absolute_timeout {
            b = b.absolute_timeout(Duration::from_secs(t));
        }
        if let Some(every) = renew_every {
            b = b.renew_every(Duration::from_secs(every));
        }
        if let Some(clock) = clock {
            b = b.clock(Arc::new(SharedClock(clock.now.clone())));
        }
        let config = b
            .build()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Self {
            inner: vishnu::Engine::new(config),
            inline: store.inline,
        })
    }

    /// Starts a request from its `Cookie` header (WSGI `HTTP_COOKIE`), if any.
    #[pyo3(signature = (cookie_header=None))]
    fn begin(&self, cookie_header: Option<&str>) -> Session {
        self.session(cookie_header.and_then(|c| HeaderValue::from_bytes(c.as_bytes()).ok()))
    }

    /// Starts a request from a bare cookie value (a framework's session key), if any.
    #[pyo3(signature = (value=None))]
    fn begin_value(&self, value: Option<&str>) -> Session {
        let name = &self.inner.config().cookie_name();
        self.session(value.and_then(|v| HeaderValue::from_str(&format!("{name}={v}")).ok()))
    }

    /// Removes expired and dormant records from the engine's store, at most
    /// `limit`, judged by the engine's clock; returns `(removed, more)`.
    fn delete_expired(
        &self,
        py: Python<'_>,
        dormant_for: u64,
        limit: usize,
    ) -> PyResult<(u64, bool)> {
        let engine = self.inner.clone();
        let cleanup = block_on(py, async move {
            engine
                .delete_expired(Duration::from_secs(dormant_for), limit)
                .await
        })?
        .map_err(|e| StoreError::new_err(e.to_string()))?;
        Ok((cleanup.removed, cleanup.more))
    }

    /// `user`'s live sessions, most recently used first, as dicts (none `current`).
    fn sessions_of<'py>(&self, py: Python<'py>, user: String) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let engine = self.inner.clone();
        let list = block_on(py, async move { engine.sessions_of(&user).await })?.map_err(to_py)?;
        info_list(py, list)
    }

    /// Ends `user`'s session with this handle; False when the user has none with it.
    fn revoke(&self, py: Python<'_>, user: String, handle: String) -> PyResult<bool> {
        let engine = self.inner.clone();
        block_on(py, async move { engine.revoke(&user, &handle).await })?.map_err(to_py)
    }

    /// Ends every session of `user`; returns how many.
    fn revoke_all(&self, py: Python<'_>, user: String) -> PyResult<usize> {
        let engine = self.inner.clone();
        block_on(py, async move { engine.revoke_all(&user).await })?.map_err(to_py)
    }
}

/// One request's session. Values are JSON text.
#[pyclass(frozen, module = "vishnu._vishnu")]
struct Session {
    inner: vishnu::Session,
    engine: vishnu::Engine,
    inline: bool,
    finished: Mutex<bool>,
}

#[pymethods]
impl Session {
    /// The JSON text of `key`'s value, or None.
    fn get(&self, py: Python<'_>, key: String) -> PyResult<Option<String>> {
        let s = self.inner.clone();
        let v = block_on(py, async move { s.get_value(&key).await })?.map_err(to_py)?;
        Ok(v.map(|v| v.to_string()))
    }

    /// Sets `key` to a JSON text value.
    fn set(&self, key: &str, json: &str) -> PyResult<()> {
        let value = parse_json(key, json)?;
        self.inner.set_value(key, value);
        Ok(())
    }

    /// Removes `key`, returning the JSON text of its old value, or None.
    fn remove(&self, py: Python<'_>, key: String) -> PyResult<Option<String>> {
        let s = self.inner.clone();
        let v = block_on(py, async move { s.remove::<Value>(&key).await })?.map_err(to_py)?;
        Ok(v.map(|v| v.to_string()))
    }

    /// Whether `key` has a value.
    fn contains(&self, py: Python<'_>, key: String) -> PyResult<bool> {
        let s = self.inner.clone();
        block_on(py, async move { s.contains(&key).await })?.map_err(to_py)
    }

    /// All keys, sorted.
    fn keys(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let s = self.inner.clone();
        block_on(py, async move { s.keys().await })?.map_err(to_py)
    }

    /// Removes every value (written by the next save).
    fn clear(&self) {
        self.inner.clear();
    }

    /// Atomically replaces `key`'s value with `func(old JSON text or None) -> new JSON text`, saving at once.
    fn update(&self, py: Python<'_>, key: String, func: Py<PyAny>) -> PyResult<String> {
        block_on(py, update_value(self.inner.clone(), key, func))?
    }

    /// `update(key, func)` as an awaitable (`func` runs with the GIL on the
    /// engine's thread, possibly more than once: it must have no side effects).
    fn aupdate<'py>(
        &self,
        py: Python<'py>,
        key: String,
        func: Py<PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, self.inline, update_value(self.inner.clone(), key, func))
    }

    /// Writes this request's changes now.
    fn save(&self, py: Python<'_>) -> PyResult<()> {
        let s = self.inner.clone();
        block_on(py, async move { s.save().await })?.map_err(to_py)
    }

    /// Deletes the session server-side and schedules a removal cookie.
    fn terminate(&self, py: Python<'_>) -> PyResult<()> {
        let s = self.inner.clone();
        block_on(py, async move { s.terminate().await })?.map_err(to_py)
    }

    /// A new id for the same data; the old id is deleted.
    fn cycle_id(&self, py: Python<'_>) -> PyResult<()> {
        let s = self.inner.clone();
        block_on(py, async move { s.cycle_id().await })?.map_err(to_py)
    }

    /// Binds the session to `user` (written by the next save).
    fn set_user(&self, user: &str) {
        self.inner.set_user(user);
    }

    /// Binds the session to `user` and cycles its id. Saves.
    fn login(&self, py: Python<'_>, user: String) -> PyResult<()> {
        let s = self.inner.clone();
        block_on(py, async move { s.login(&user).await })?.map_err(to_py)
    }

    /// The user the session is bound to, or None.
    fn user(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let s = self.inner.clone();
        block_on(py, async move { s.user().await })?.map_err(to_py)
    }

    /// Sets the label shown when the user's sessions are listed (written by the next save).
    fn set_label(&self, label: &str) {
        self.inner.set_label(label);
    }

    /// The session's handle, or None until it is bound to a user and saved.
    fn handle(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let s = self.inner.clone();
        block_on(py, async move { s.handle().await })?.map_err(to_py)
    }

    /// The sessions of this session's user as dicts, this one `current`.
    fn sessions<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let s = self.inner.clone();
        let list = block_on(py, async move { s.sessions().await })?.map_err(to_py)?;
        info_list(py, list)
    }

    /// Ends the session of this session's user with this handle; False when there is none.
    fn revoke(&self, py: Python<'_>, handle: String) -> PyResult<bool> {
        let s = self.inner.clone();
        block_on(py, async move { s.revoke(&handle).await })?.map_err(to_py)
    }

    /// Ends every other session of this session's user; returns how many.
    fn revoke_others(&self, py: Python<'_>) -> PyResult<usize> {
        let s = self.inner.clone();
        block_on(py, async move { s.revoke_others().await })?.map_err(to_py)
    }

    /// Ends every session of this session's user, this one included; returns how many.
    fn revoke_all(&self, py: Python<'_>) -> PyResult<usize> {
        let s = self.inner.clone();
        block_on(py, async move { s.revoke_all().await })?.map_err(to_py)
    }

    /// This session's own timeout in seconds, or None for a browser-session cookie.
    #[pyo3(signature = (seconds=None))]
    fn set_timeout(&self, seconds: Option<u64>) -> PyResult<()> {
        let timeout = match seconds {
            Some(0) => return Err(PyValueError::new_err("timeout must be at least 1 second")),
            Some(s) => Timeout::Seconds(s),
            None => Timeout::BrowserSession,
        };
        self.inner.set_timeout(timeout);
        Ok(())
    }

    /// This session's timeout in seconds, or None for a browser-session cookie.
    fn timeout(&self) -> Option<u64> {
        match self.inner.timeout() {
            Timeout::Seconds(s) => Some(s),
            Timeout::BrowserSession => None,
        }
    }

    /// Whether the session exists in the store.
    fn is_stored(&self) -> bool {
        self.inner.is_stored()
    }

    /// Whether there are unsaved changes.
    fn has_pending_changes(&self) -> bool {
        self.inner.has_pending_changes()
    }

    /// The Set-Cookie value the session needs now, without store I/O.
    fn header(&self) -> PyResult<Option<String>> {
        self.engine.set_cookie(&self.inner).map_err(to_py)
    }

    /// Ends the request: saves (with auto_save, never for a 5xx), refreshes the
    /// expiry, and returns the Set-Cookie value, if any.
    fn finish(&self, py: Python<'_>, status: u16) -> PyResult<Option<String>> {
        if let Ok(mut f) = self.finished.lock() {
            *f = true;
        }
        // A read (or nothing to do) needs no store I/O: no runtime to enter.
        if let Some(done) = self.engine.finish_ready(&self.inner, status) {
            return done.map_err(to_py);
        }
        let s = self.inner.clone();
        let engine = self.engine.clone();
        block_on(py, async move { engine.finish(&s, status).await })?.map_err(to_py)
    }

    // The framework fronts' calls: the whole session at once, cookies as
    // parts, and awaitables for asyncio.

    /// Every value as JSON text, in a dict (one store load).
    fn entries(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let s = self.inner.clone();
        let data = block_on(py, async move { s.entries().await })?.map_err(to_py)?;
        entries_dict(py, data)
    }

    /// `entries()` as an awaitable.
    fn aentries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.inner.clone();
        awaitable(py, self.inline, async move {
            let data = s.entries().await.map_err(to_py)?;
            Python::attach(|py| entries_dict(py, data))
        })
    }

    /// Records the removal of `key` without loading the session.
    fn delete(&self, key: &str) {
        self.inner.delete(key);
    }

    /// The cookie value naming the session as it stands (no I/O), or None.
    fn cookie_value(&self) -> PyResult<Option<String>> {
        self.engine.cookie_value(&self.inner).map_err(to_py)
    }

    /// Like `finish`, but returns the cookie as parts: None,
    /// `("remove", None, None)` or `("issue", value, expires_unix_seconds_or_None)`.
    fn finish_cookie(&self, py: Python<'_>, status: u16) -> PyResult<CookieParts> {
        if let Ok(mut f) = self.finished.lock() {
            *f = true;
        }
        if let Some(done) = self.engine.finish_update_ready(&self.inner, status) {
            return done.map(cookie_parts).map_err(to_py);
        }
        let (engine, s) = (self.engine.clone(), self.inner.clone());
        block_on(py, finish_parts(engine, s, status))?
    }

    /// `finish_cookie(status)` as an awaitable.
    fn afinish_cookie<'py>(&self, py: Python<'py>, status: u16) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(mut f) = self.finished.lock() {
            *f = true;
        }
        let (engine, s) = (self.engine.clone(), self.inner.clone());
        awaitable(py, self.inline, finish_parts(engine, s, status))
    }

    /// `save()` as an awaitable.
    fn asave<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.inner.clone();
        awaitable(
            py,
            self.inline,
            async move { s.save().await.map_err(to_py) },
        )
    }

    /// `cycle_id()` as an awaitable.
    fn acycle_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.inner.clone();
        awaitable(
            py,
            self.inline,
            async move { s.cycle_id().await.map_err(to_py) },
        )
    }

    /// `terminate()` as an awaitable.
    fn aterminate<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.inner.clone();
        awaitable(py, self.inline, async move {
            s.terminate().await.map_err(to_py)
        })
    }
}

#[pymodule]
fn _vishnu(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_class::<Session>()?;
    m.add_class::<Store>()?;
    m.add_class::<ManualClock>()?;
    m.add_function(wrap_pyfunction!(derive_secret, m)?)?;
    m.add_function(wrap_pyfunction!(set_spin_wait, m)?)?;
    m.add("SessionError", m.py().get_type::<SessionError>())?;
    m.add("StoreError", m.py().get_type::<StoreError>())?;
    m.add("SessionTerminated", m.py().get_type::<SessionTerminated>())?;
    m.add("Superseded", m.py().get_type::<Superseded>())?;
    m.add("Unsupported", m.py().get_type::<Unsupported>())?;
    Ok(())
}
