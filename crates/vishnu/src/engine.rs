//! The engine: `begin(cookie headers) -> Session`, then `finish(session, status) -> Set-Cookie`.
//!
//! Every front (the tower layer, the Python WSGI middleware) is a thin adapter
//! over these two calls. All session semantics live here and in
//! [`crate::session`]: when to load, what to save, how to retry on a version
//! conflict, which cookie to send.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderValue;
use serde_json::{Map, Value};

use crate::codec::{CodecError, KeyUsed};
use crate::config::{Clock, Config, ConfigInner, Timeout};
use crate::cookie;
use crate::error::SessionError;
use crate::id::{SessionId, StoreKey, ID_LEN};
use crate::record::{Millis, Record};
use crate::session::{CookieHeaders, Live, Pending, Session, State};
use crate::store::{Cleanup, SaveOutcome, StoreError};

/// How many times a save retries after version conflicts before giving up.
pub const MAX_ATTEMPTS: u32 = 64;

/// A refresh of an idle timeout is written at most once per this fraction of
/// the timeout: with a 30-minute timeout, a user who only reads causes at most
/// one store write every 3 minutes, and still never expires while active.
const REFRESH_DIVISOR: u64 = 10;

/// The framework-free core. Fronts call [`begin`](Engine::begin) when a
/// request arrives and [`finish`](Engine::finish) when its response is ready.
#[derive(Clone, Debug)]
pub struct Engine {
    config: Config,
}

/// A callback that computes a key's new value from its current one (see [`Session::update`]).
pub(crate) type UpdateFn<'a> = (
    &'a str,
    &'a mut (dyn FnMut(Option<Value>) -> Result<Value, SessionError> + Send),
);

impl Engine {
    /// An engine for this configuration.
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts a request: wraps its `Cookie` header values in a [`Session`].
    /// Nothing is decoded or loaded until the session is used.
    pub fn begin(&self, cookie_headers: impl IntoIterator<Item = HeaderValue>) -> Session {
        Session::new(self.config.clone(), CookieHeaders::collect(cookie_headers))
    }

    /// Ends a request whose response has status `status`: saves pending
    /// changes (with `auto_save`, and never for a 5xx), refreshes the expiry of
    /// a session that was read, and returns the `Set-Cookie` value to send, if any.
    ///
    /// # Errors
    /// A store error while saving: the front should then answer 500 without
    /// revealing the error to the client.
    pub async fn finish(
        &self,
        session: &Session,
        status: u16,
    ) -> Result<Option<String>, SessionError> {
        if !session.inner.used.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let config = &*self.config.inner;
        let server_error = status >= 500;
        let has_pending = !session.state().pending.is_empty();
        if has_pending {
            if server_error {
                tracing::debug!(status, "server error: unsaved session changes discarded");
            } else if config.auto_save {
                match persist(session, None, false).await {
                    Ok(_) | Err(SessionError::Terminated) => {}
                    Err(e) => return Err(e),
                }
            } else {
                tracing::debug!(
                    "unsaved session changes discarded: call save() or enable auto_save"
                );
            }
        }
        if !server_error {
            refresh(session).await;
        }
        self.set_cookie(session)
    }

    /// The `Set-Cookie` value the session needs right now, if any, without any
    /// store I/O: a new or cycled id, a refreshed expiry, a re-issue under the
    /// current secret, or a removal. [`finish`](Engine::finish) returns this
    /// after saving; the Python front also exposes it as `Session.header()`.
    ///
    /// # Errors
    /// [`SessionError::Random`] if no nonce could be drawn for a sealed cookie.
    pub fn set_cookie(&self, session: &Session) -> Result<Option<String>, SessionError> {
        if !session.inner.used.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let config = &*self.config.inner;
        let now = config.clock.now_millis();
        let state = session.state();
        match &state.live {
            Some(live) => {
                let reissue = match state.incoming {
                    Some((id, used)) => id != live.id || used == KeyUsed::Fallback,
                    None => true,
                };
                if !(state.cookie_dirty || reissue) {
                    return Ok(None);
                }
                let value = encode_cookie(config, live)?;
                let expires = match effective_timeout(&self.config, &state) {
                    Timeout::Seconds(_) => Some(live.record.expires_at),
                    Timeout::BrowserSession => None,
                };
                Ok(Some(cookie::issue(config, &value, expires, now)))
            }
            // Only a browser that sent our cookie gets a removal cookie: answering a
            // cookie-less request (say, a cross-site POST to a logout route, which a
            // SameSite=Strict cookie does not accompany) with one would let another
            // site log the user out of their browser.
            None if state.had_cookie && (state.terminated || state.loaded) => {
                Ok(Some(cookie::removal(config)))
            }
            None => Ok(None),
        }
    }

    /// Removes expired records, and records not used for `dormant_for`, at most
    /// `limit` of them, for stores without native expiry. Loop until
    /// `Cleanup::more` is false.
    ///
    /// # Errors
    /// A store error.
    pub async fn delete_expired(
        &self,
        dormant_for: Duration,
        limit: usize,
    ) -> Result<Cleanup, StoreError> {
        let now = self.config.inner.clock.now_millis();
        self.config
            .inner
            .store
            .delete_expired(now, dormant_for, limit)
            .await
    }
}

/// This session's timeout: its pending change, else its stored one, else the configured one.
pub(crate) fn effective_timeout(config: &Config, state: &State) -> Timeout {
    state
        .pending
        .timeout
        .or_else(|| state.live.as_ref().and_then(|l| l.record.timeout))
        .unwrap_or(config.inner.timeout)
}

fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn idle_millis(config: &ConfigInner, timeout: Timeout) -> Millis {
    match timeout {
        Timeout::Seconds(s) => s.saturating_mul(1000),
        Timeout::BrowserSession => millis(config.browser_session_ttl),
    }
}

/// When a session created at `created_at` and used at `now` expires.
fn expires_at(config: &ConfigInner, created_at: Millis, now: Millis, timeout: Timeout) -> Millis {
    let idle = now.saturating_add(idle_millis(config, timeout));
    match config.absolute_timeout {
        Some(abs) => idle.min(created_at.saturating_add(millis(abs))),
        None => idle,
    }
}

fn is_expired(config: &ConfigInner, record: &Record, now: Millis) -> bool {
    record.is_expired(now)
        || config
            .absolute_timeout
            .is_some_and(|abs| now >= record.created_at.saturating_add(millis(abs)))
}

/// Decodes the request's cookie once: the first value that authenticates wins.
fn decode(session: &Session, state: &mut State) {
    if state.decoded {
        return;
    }
    state.decoded = true;
    let config = &session.inner.config.inner;
    let mut error = None;
    let headers = session
        .inner
        .cookies
        .as_slice()
        .iter()
        .map(HeaderValue::as_bytes);
    for value in cookie::cookie_values(headers, &config.cookie_name) {
        state.had_cookie = true;
        match config.codec.decode(value) {
            Ok((payload, used)) if config.client_side => match client_side_record(&payload) {
                Some((id, record)) => {
                    state.incoming = Some((id, used));
                    if !is_expired(config, &record, config.clock.now_millis()) {
                        state.live = Some(Live::new(id, id.store_key(), record));
                    }
                    state.loaded = true;
                    return;
                }
                None => error = Some(CodecError::Truncated),
            },
            Ok((payload, used)) => match <[u8; ID_LEN]>::try_from(payload.as_slice()) {
                Ok(bytes) => {
                    state.incoming = Some((SessionId::from_bytes(bytes), used));
                    return;
                }
                Err(_) => error = Some(CodecError::Truncated),
            },
            Err(e) => error = Some(e),
        }
    }
    if let Some(e) = error {
        invalid_cookie(e);
    }
}

/// The cookie value of a live session: its id, or with a client-side store
/// the id followed by the whole record.
fn encode_cookie(config: &ConfigInner, live: &Live) -> Result<String, SessionError> {
    let value = if config.client_side {
        let mut payload = live.id.as_bytes().to_vec();
        payload.extend_from_slice(&live.record.to_json());
        config.codec.encode(&payload)
    } else {
        config.codec.encode(live.id.as_bytes())
    };
    let value = value.map_err(|_| SessionError::Random)?;
    let size = config.cookie_name.len() + 1 + value.len();
    if size > crate::codec::MAX_COOKIE_BYTES {
        return Err(SessionError::CookieTooLarge { size });
    }
    Ok(value)
}

fn client_side_record(payload: &[u8]) -> Option<(SessionId, Record)> {
    let (id, json) = payload.split_at_checked(ID_LEN)?;
    let id = SessionId::from_bytes(<[u8; ID_LEN]>::try_from(id).ok()?);
    Some((id, Record::from_json(json).ok()?))
}

/// Logs an invalid cookie at most once a second, counting the ones not logged,
/// so that a flood of bad cookies cannot flood the logs.
fn invalid_cookie(error: CodecError) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let now = crate::config::SystemClock.now_millis() / 1000;
    let last = LAST.load(Ordering::Relaxed);
    if now > last
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
        tracing::warn!(%error, suppressed, "invalid session cookie: starting a fresh session");
    } else {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Loads the stored record the cookie points to, once per request.
pub(crate) async fn ensure_loaded(session: &Session) -> Result<(), SessionError> {
    let (id, key) = {
        let mut state = session.state();
        if state.loaded {
            return Ok(());
        }
        decode(session, &mut state);
        if session.inner.config.inner.client_side {
            state.loaded = true;
            return Ok(());
        }
        match state.incoming {
            Some((id, _)) => (id, id.store_key()),
            None => {
                state.loaded = true;
                return Ok(());
            }
        }
    };
    let config = &session.inner.config.inner;
    let mut record = config.store.load(&key).await?;
    if let Some(r) = &record {
        if is_expired(config, r, config.clock.now_millis()) {
            // Expiry is enforced here, whatever the cookie or the store's TTL says.
            tracing::debug!(%key, "session expired");
            if let Err(e) = config.store.delete(&key).await {
                tracing::warn!(%key, error = %e, "could not delete an expired session");
            }
            record = None;
        }
    }
    let mut state = session.state();
    if state.loaded {
        return Ok(());
    }
    state.loaded = true;
    match record {
        Some(record) => state.live = Some(Live::new(id, key, record)),
        None => tracing::debug!(%key, "session id unknown to the store: a new id will be issued"),
    }
    Ok(())
}

/// The save point shared by `save`, `update`, `cycle_id` and auto-save: applies
/// this request's changes (and the update closure) to the stored record with
/// compare-and-set, reloading and re-applying on conflict.
pub(crate) async fn persist(
    session: &Session,
    mut update: Option<UpdateFn<'_>>,
    cycle: bool,
) -> Result<Option<Value>, SessionError> {
    ensure_loaded(session).await?;
    let config = &*session.inner.config.inner;
    let store = &config.store;
    // Requests of this process that write the same session take turns: under
    // sustained contention, optimistic retries alone can starve a request.
    // Compare-and-set still guards against other processes.
    let existing = session.state().live.as_ref().map(|l| l.key.clone());
    let _turn = match (&existing, config.client_side) {
        (Some(key), false) => Some(write_lock(config, key).lock().await),
        _ => None,
    };
    let mut started = std::time::Instant::now();
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            // The previous attempt ran from `started` until now.
            backoff(attempt, started.elapsed()).await;
            started = std::time::Instant::now();
        }
        let now = config.clock.now_millis();
        // One copy of the stored record per attempt: it becomes the new record.
        let (live, pending, timeout) = {
            let state = session.state();
            let timeout = effective_timeout(&session.inner.config, &state);
            let live = state
                .live
                .as_ref()
                .map(|l| (l.id, l.key.clone(), l.record.version, l.record.clone()));
            (live, state.pending.clone(), timeout)
        };
        let (live, mut record) = match live {
            Some((id, key, version, mut r)) => {
                r.version = version.wrapping_add(1);
                r.last_access = now;
                r.expires_at = expires_at(config, r.created_at, now, timeout);
                (Some((id, key, version)), r)
            }
            None => (
                None,
                Record::new(Map::new(), now, expires_at(config, now, now, timeout)),
            ),
        };
        pending.apply(&mut record.data);
        if let Some(t) = pending.timeout {
            record.timeout = Some(t);
        }
        let new_value = match update.as_mut() {
            Some((key, f)) => {
                let v = f(record.data.get(*key).cloned())?;
                record.data.insert((*key).to_owned(), v.clone());
                Some(v)
            }
            None => None,
        };
        let persistent = matches!(timeout, Timeout::Seconds(_));

        if config.client_side {
            // The record travels in the cookie: check now that it fits, so
            // the handler gets the error at save time.
            let id = match (&live, cycle) {
                (Some((id, _, _)), false) => *id,
                _ => SessionId::generate().map_err(|_| SessionError::Random)?,
            };
            let candidate = Live::new(id, id.store_key(), record);
            encode_cookie(config, &candidate)?;
            commit(session, candidate, true);
            return Ok(new_value);
        }

        let Some((live_id, key, live_version)) = live else {
            // A new session: always a fresh id (a cookie's unknown id is never adopted).
            let id = SessionId::generate().map_err(|_| SessionError::Random)?;
            let key = id.store_key();
            if store.create(&key, &record).await? {
                commit(session, Live::new(id, key, record), true);
                return Ok(new_value);
            }
            tracing::warn!("session id collision on create: drawing another id");
            continue;
        };

        if cycle {
            // Refuse to carry over a session that another request changed or ended meanwhile.
            match store.load(&key).await? {
                Some(fresh) if fresh.version == live_version => {}
                Some(fresh) if !is_expired(config, &fresh, now) => {
                    session.state().live = Some(Live::new(live_id, key, fresh));
                    continue;
                }
                _ => return Err(gone(session)),
            }
            let id = SessionId::generate().map_err(|_| SessionError::Random)?;
            let new_key = id.store_key();
            record.version = 1;
            if !store.create(&new_key, &record).await? {
                continue;
            }
            store.delete(&key).await?;
            tracing::debug!(old = %key, "session id cycled");
            commit(session, Live::new(id, new_key, record), true);
            return Ok(new_value);
        }

        match store.save(&key, &record, live_version).await? {
            SaveOutcome::Saved => {
                let dirty = persistent || pending.timeout.is_some();
                commit(session, Live::new(live_id, key, record), dirty);
                return Ok(new_value);
            }
            SaveOutcome::Conflict => match store.load(&key).await? {
                Some(fresh) if !is_expired(config, &fresh, now) => {
                    session.state().live = Some(Live::new(live_id, key, fresh));
                }
                _ => return Err(gone(session)),
            },
            SaveOutcome::Missing => return Err(gone(session)),
        }
    }
    tracing::warn!(
        attempts = MAX_ATTEMPTS,
        "session save gave up after repeated conflicts"
    );
    Err(SessionError::TooManyConflicts)
}

fn write_lock<'a>(config: &'a ConfigInner, key: &StoreKey) -> &'a tokio::sync::Mutex<()> {
    // Store keys are hex digests: their first characters are uniformly spread.
    let index = key.as_str().bytes().take(6).fold(0usize, |acc, b| {
        acc.wrapping_mul(16).wrapping_add(usize::from(b))
    });
    &config.write_locks[index % config.write_locks.len()]
}

fn commit(session: &Session, live: Live, cookie_dirty: bool) {
    let mut state = session.state();
    state.live = Some(live);
    state.pending = Pending::default();
    state.cookie_dirty |= cookie_dirty;
}

/// The session was terminated (or expired) elsewhere: drop this request's
/// changes rather than bring it back, and remove the cookie.
fn gone(session: &Session) -> SessionError {
    let mut state = session.state();
    state.live = None;
    state.pending = Pending::default();
    state.terminated = true;
    tracing::info!("session ended by another request; this request's changes were dropped");
    SessionError::Terminated
}

/// Random backoff after a conflict, scaled to how long an attempt takes on this
/// store (a loaded store needs wider spacing for one contender to get
/// through). The window stops growing after a few attempts: an ever-growing
/// window would let newly arriving requests overtake one that has been
/// retrying, and starve it.
async fn backoff(attempt: u32, last_attempt: Duration) {
    let mut r = [0u8; 4];
    let _ = getrandom::fill(&mut r);
    let unit = last_attempt.max(Duration::from_millis(1));
    let window = (unit * (1u32 << attempt.min(2))).min(Duration::from_secs(1));
    let micros = u64::try_from(window.as_micros())
        .unwrap_or(1_000_000)
        .max(1);
    let jitter = u64::from(u32::from_le_bytes(r)) % micros;
    tokio::time::sleep(Duration::from_micros(jitter)).await;
}

/// Deletes the session server-side, whether or not it was read first.
pub(crate) async fn terminate(session: &Session) -> Result<(), SessionError> {
    let keys = {
        let mut state = session.state();
        decode(session, &mut state);
        let mut keys = Vec::with_capacity(2);
        if let Some((id, _)) = state.incoming {
            keys.push(id.store_key());
        }
        if let Some(live) = &state.live {
            if state.incoming.map(|(id, _)| id) != Some(live.id) {
                keys.push(live.key.clone());
            }
        }
        keys
    };
    if !session.inner.config.inner.client_side {
        for key in &keys {
            session.inner.config.inner.store.delete(key).await?;
        }
    }
    let mut state = session.state();
    state.loaded = true;
    state.live = None;
    state.pending = Pending::default();
    state.terminated = true;
    state.cookie_dirty = false;
    Ok(())
}

/// Reading is activity: slides the expiry of a session that was used, at most
/// once per tenth of its timeout, without rewriting its data.
async fn refresh(session: &Session) {
    let config = &*session.inner.config.inner;
    let now = config.clock.now_millis();
    let (key, new_expiry, persistent) = {
        let state = session.state();
        let Some(live) = &state.live else { return };
        let timeout = effective_timeout(&session.inner.config, &state);
        let idle = idle_millis(config, timeout);
        if now.saturating_sub(live.record.last_access) < idle / REFRESH_DIVISOR {
            return;
        }
        let new_expiry = expires_at(config, live.record.created_at, now, timeout);
        (
            live.key.clone(),
            new_expiry,
            matches!(timeout, Timeout::Seconds(_)),
        )
    };
    let touched = if config.client_side {
        Ok(true)
    } else {
        config.store.touch(&key, now, new_expiry).await
    };
    match touched {
        Ok(true) => {
            let mut state = session.state();
            if let Some(live) = &mut state.live {
                live.record.last_access = now;
                live.record.expires_at = new_expiry;
            }
            state.cookie_dirty |= persistent || config.client_side;
        }
        Ok(false) => {
            let mut state = session.state();
            state.live = None;
            state.terminated = true;
        }
        Err(e) => tracing::warn!(%key, error = %e, "could not refresh the session's expiry"),
    }
}
