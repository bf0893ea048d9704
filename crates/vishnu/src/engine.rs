//! The engine: `begin(cookie headers) -> Session`, then `finish(session, status) -> Set-Cookie`.
//!
//! Every front (the tower layer, the Python WSGI middleware) is a thin adapter
//! over these two calls. All session semantics live here and in
//! [`crate::session`]: when to load, what to save, how to retry on a version
//! conflict, which cookie to send.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use http::HeaderValue;
use serde_json::Value;

use crate::clock::{Clock, SystemClock};
use crate::codec::{CodecError, KeyUsed};
use crate::config::{Config, Timeout};
use crate::cookie;
use crate::error::SessionError;
use crate::forward;
use crate::id::{SessionId, StoreKey, ID_LEN};
use crate::record::{Millis, MoveReason, Moved, Record};
use crate::runtime::{millis, Runtime};
use crate::state::{CookieAction, CookieHeaders, Draft, Live, Pending, Session, State};
use crate::store::metered::Metered;
use crate::store::{Cleanup, SaveOutcome, StoreError};
use crate::telemetry::{self, Rejected};
use crate::users::{self, SessionInfo};

/// How many times a save retries after version conflicts before giving up.
pub const MAX_ATTEMPTS: u32 = 64;

/// A refresh of an idle timeout is written at most once per this fraction of
/// the timeout: with a 30-minute timeout, a user who only reads causes at most
/// one store write every 3 minutes, and still never expires while active.
const REFRESH_DIVISOR: u64 = 10;

/// How long a forward or tombstone stays in the store after its grace window
/// ends: long enough for a request that loaded the session before its id
/// changed (and is still within its store timeouts) to follow it.
const MOVED_KEEP: Millis = 60_000;

/// How many renewal forwards a lookup follows before calling the id unknown.
const MAX_HOPS: usize = 4;

/// What a save does besides writing the request's changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    /// Keep the id.
    Save,
    /// A new id; the old one grants nothing any more (privilege change).
    Cycle,
    /// A new id; the old one is served the same session for the renewal grace.
    Renew,
}

/// How a front ends a request once [`Engine::finish`] is done: the same for
/// every front, so that each only translates it into its own response type.
pub(crate) enum Ending {
    /// Send the handler's response, with this `Set-Cookie` if any.
    Send(Option<String>),
    /// Replace the handler's response with an empty one with this status:
    /// 409 for a write with a cycled-away id, 500 (logged here, once) for any
    /// other failure. Neither carries a cookie.
    Refuse(http::StatusCode),
}

impl Ending {
    pub(crate) fn of(finished: Result<Option<String>, SessionError>) -> Self {
        match finished {
            Ok(cookie) => Ending::Send(cookie),
            Err(SessionError::Superseded) => Ending::Refuse(http::StatusCode::CONFLICT),
            Err(error) => {
                tracing::error!(%error, "session could not be saved: answering 500");
                Ending::Refuse(http::StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

/// The framework-free core. Fronts call [`begin`](Engine::begin) when a
/// request arrives and [`finish`](Engine::finish) when its response is ready.
#[derive(Clone)]
pub struct Engine {
    rt: Arc<Runtime>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.rt.config)
            .finish_non_exhaustive()
    }
}

/// A callback that computes a key's new value from its current one (see [`Session::update`]).
pub(crate) type UpdateFn<'a> = (
    &'a str,
    &'a mut (dyn FnMut(Option<Value>) -> Result<Value, SessionError> + Send),
);

/// The cookie a response needs, as parts (see [`Engine::cookie_update`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieUpdate {
    /// Send this cookie value; `expires_at` (milliseconds since the epoch)
    /// is `None` for a browser-session cookie.
    Issue {
        /// The cookie's value.
        value: String,
        /// When the cookie expires, or `None` for a browser-session cookie.
        expires_at: Option<u64>,
    },
    /// Remove the cookie: the session ended or the browser's cookie was invalid.
    Remove,
    /// Send nothing.
    Keep,
}

impl Engine {
    /// An engine for this configuration.
    pub fn new(config: Config) -> Self {
        Self {
            rt: Arc::new(Runtime::new(config)),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.rt.config
    }

    /// Starts a request: wraps its `Cookie` header values in a [`Session`].
    /// Nothing is decoded or loaded until the session is used.
    pub fn begin(&self, cookie_headers: impl IntoIterator<Item = HeaderValue>) -> Session {
        Session::new(self.rt.clone(), CookieHeaders::collect(cookie_headers))
    }

    /// The engine a session was begun by. The fronts' response futures take
    /// it from their session, and only when there is something to finish,
    /// rather than keeping a clone of the engine for every request (a shared
    /// reference count that every request would touch twice more).
    pub(crate) fn of(session: &Session) -> Engine {
        Engine {
            rt: session.inner.rt.clone(),
        }
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
        let update = self.finish_update(session, status).await?;
        Ok(self.format_cookie(update))
    }

    /// [`finish`](Engine::finish) without store I/O, when none is needed: the
    /// session was not used, or only read, with no renewal due and no expiry
    /// to refresh in the store. `None` means the request needs
    /// [`finish`](Engine::finish). A front calls this first, so that a read
    /// completes with no future to make or runtime to enter.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = vishnu::Config::builder()
    ///     .secret("a secret of at least thirty-two bytes!")
    ///     .store(vishnu::MemoryStore::new())
    ///     .build()?;
    /// let engine = vishnu::Engine::new(config);
    /// let session = engine.begin([]);
    /// // Never used: nothing to do, no cookie to send.
    /// assert_eq!(engine.finish_ready(&session, 200).transpose()?, Some(None));
    /// session.set("n", &1)?;
    /// // A change to save: that needs `finish`.
    /// assert!(engine.finish_ready(&session, 200).is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn finish_ready(
        &self,
        session: &Session,
        status: u16,
    ) -> Option<Result<Option<String>, SessionError>> {
        Self::ready(session, status)
    }

    /// [`finish_ready`](Engine::finish_ready), with the cookie as parts (see
    /// [`finish_update`](Engine::finish_update)).
    pub fn finish_update_ready(
        &self,
        session: &Session,
        status: u16,
    ) -> Option<Result<CookieUpdate, SessionError>> {
        Self::ready_update(session, status)
    }

    /// [`finish_ready`](Engine::finish_ready) for a front that holds the
    /// session but not the engine.
    pub(crate) fn ready(
        session: &Session,
        status: u16,
    ) -> Option<Result<Option<String>, SessionError>> {
        let rt = &*session.inner.rt;
        Self::ready_update(session, status).map(|u| u.map(|u| format_cookie(rt, u)))
    }

    /// The one rule for "no store I/O is due", which
    /// [`finish_update`](Engine::finish_update) applies first too.
    /// It takes the session's lock once, and the clock reading from when the
    /// session was read (a handler's few milliseconds cannot make a renewal
    /// or refresh due that was not: one that becomes due meanwhile happens
    /// on the next request).
    fn ready_update(session: &Session, status: u16) -> Option<Result<CookieUpdate, SessionError>> {
        if !session.inner.used.load(Ordering::Relaxed) {
            return Some(Ok(CookieUpdate::Keep));
        }
        let rt = &*session.inner.rt;
        let state = session.state();
        if !state.pending.is_empty() {
            return None;
        }
        let now = state.read_at.unwrap_or_else(|| rt.clock.now_millis());
        if renewal_due_in(rt, &state, now) {
            return None;
        }
        if status < 500 && refresh_due_in(rt, &state, now) {
            return None;
        }
        Some(cookie_update_in(rt, session, &state))
    }

    /// [`finish`](Engine::finish), returning the cookie as parts (see
    /// [`cookie_update`](Engine::cookie_update)) for a front that writes
    /// cookies with its framework's own response API.
    ///
    /// # Errors
    /// As for [`finish`](Engine::finish).
    pub async fn finish_update(
        &self,
        session: &Session,
        status: u16,
    ) -> Result<CookieUpdate, SessionError> {
        if let Some(done) = Self::ready_update(session, status) {
            return done;
        }
        let config = &*self.rt;
        let server_error = status >= 500;
        let renew = !server_error && renewal_due(session);
        let mut renewed = false;
        // A save stamps the record's last access and expiry: no refresh after it.
        let mut saved = false;
        let has_pending = !session.state().pending.is_empty();
        if has_pending {
            if server_error {
                tracing::debug!(status, "server error: unsaved session changes discarded");
                session.state().pending = Pending::default();
            } else if config.auto_save {
                let write = if renew { Write::Renew } else { Write::Save };
                // Inline: the fronts box a finish only when it has I/O to
                // do (`ready_update` answers the rest), so a read never
                // moves this future; a save allocates one box, not two.
                match persist(session, None, write).await {
                    Ok(_) => {
                        renewed = renew;
                        saved = true;
                    }
                    Err(SessionError::Terminated) => renewed = renew,
                    Err(e) => return Err(e),
                }
            } else {
                tracing::debug!(
                    "unsaved session changes discarded: call save() or enable auto_save"
                );
                session.state().pending = Pending::default();
            }
        }
        if renew && !renewed {
            match Box::pin(persist(session, None, Write::Renew)).await {
                Ok(_) | Err(SessionError::Terminated | SessionError::Superseded) => {}
                // Renewal is worth retrying on the next request, not failing this one.
                Err(e) => tracing::warn!(error = %e, "could not renew the session id"),
            }
        } else if !server_error && !saved {
            refresh(session).await;
        }
        self.cookie_update(session)
    }

    /// The `Set-Cookie` value the session needs right now, if any, without any
    /// store I/O: a new or cycled id, a refreshed expiry, a re-issue under the
    /// current secret, or a removal. [`finish`](Engine::finish) returns this
    /// after saving; the Python front also exposes it as `Session.header()`.
    ///
    /// # Errors
    /// [`SessionError::Random`] if no nonce could be drawn for a sealed cookie.
    pub fn set_cookie(&self, session: &Session) -> Result<Option<String>, SessionError> {
        Ok(self.format_cookie(self.cookie_update(session)?))
    }

    fn format_cookie(&self, update: CookieUpdate) -> Option<String> {
        format_cookie(&self.rt, update)
    }

    /// What [`set_cookie`](Engine::set_cookie) would send, as parts, for a
    /// front that writes cookies with its framework's own response API
    /// (Flask, Starlette): no store I/O.
    ///
    /// # Errors
    /// As for [`set_cookie`](Engine::set_cookie).
    pub fn cookie_update(&self, session: &Session) -> Result<CookieUpdate, SessionError> {
        cookie_update(&self.rt, session)
    }

    /// The cookie value that names the session as it stands (the signed id,
    /// or with the cookie store the sealed session), whether or not it needs
    /// sending; `None` while there is no live session (not loaded, never
    /// saved, or ended). No store I/O. Django's session key is this value.
    ///
    /// # Errors
    /// As for [`set_cookie`](Engine::set_cookie).
    pub fn cookie_value(&self, session: &Session) -> Result<Option<String>, SessionError> {
        let state = session.state();
        match (&state.live, state.superseded) {
            (Some(live), false) => encode_cookie(&self.rt, live).map(Some),
            _ => Ok(None),
        }
    }

    /// `user`'s live sessions, most recently used first. Costs one store
    /// read for the user's index and one per listed session; expired and
    /// ended sessions drop out (and are pruned from the index) without any
    /// cleanup job. No entry is marked `current`: use [`Session::sessions`]
    /// for that.
    ///
    /// # Errors
    /// A store error, or [`SessionError::Unsupported`] with the cookie store.
    pub async fn sessions_of(&self, user: &str) -> Result<Vec<SessionInfo>, SessionError> {
        users::sessions_of(&self.rt, user, None).await
    }

    /// Ends `user`'s session with this handle. Returns `false` when the user
    /// has no session with that handle (a handle of another user's session
    /// is refused the same way).
    ///
    /// # Errors
    /// A store error, or [`SessionError::Unsupported`] with the cookie store.
    pub async fn revoke(&self, user: &str, handle: &str) -> Result<bool, SessionError> {
        Ok(users::revoke_where(&self.rt, user, |h| h == handle).await? > 0)
    }

    /// Ends every session of `user` ("log out everywhere"); returns how many.
    /// Every session that existed when it began is gone when it returns, also
    /// one whose id changes meanwhile. Costs 2 + n store round trips for n
    /// listed keys.
    ///
    /// # Errors
    /// A store error, or [`SessionError::Unsupported`] with the cookie store.
    pub async fn revoke_all(&self, user: &str) -> Result<usize, SessionError> {
        users::revoke_where(&self.rt, user, |_| true).await
    }

    /// Ends every session of `session`'s user except `session` itself ("log
    /// out my other devices"); returns how many. A session bound to no user
    /// has no others.
    ///
    /// # Errors
    /// A store error, or [`SessionError::Unsupported`] with the cookie store.
    pub async fn revoke_others(&self, session: &Session) -> Result<usize, SessionError> {
        session.revoke_others().await
    }

    /// Spawns the cleanup task ([`spawn_cleanup`](crate::spawn_cleanup)) for
    /// this engine's store, with this engine's clock; with the cookie store
    /// there is nothing to clean and the task does nothing.
    pub fn spawn_cleanup(
        &self,
        every: Duration,
        dormant_for: Duration,
        limit: usize,
    ) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        crate::store::cleanup::spawn_sweeps(
            self.rt.clock.clone(),
            every,
            limit,
            move |now, limit| {
                let engine = engine.clone();
                async move { engine.delete_expired_at(now, dormant_for, limit).await }
            },
        )
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
        self.delete_expired_at(self.rt.now(), dormant_for, limit)
            .await
    }

    async fn delete_expired_at(
        &self,
        now: Millis,
        dormant_for: Duration,
        limit: usize,
    ) -> Result<Cleanup, StoreError> {
        match self.rt.server() {
            Some(store) => store.delete_expired(now, dormant_for, limit).await,
            None => Ok(Cleanup::default()),
        }
    }
}

/// Decodes the request's cookie once: the first value that authenticates wins.
fn decode(session: &Session, state: &mut State) {
    if state.decoded {
        return;
    }
    state.decoded = true;
    let config = &*session.inner.rt;
    let mut error = None;
    let headers = session.inner.cookies.as_slice().iter().enumerate();
    let values = headers.flat_map(|(index, header)| {
        let header = header.as_bytes();
        cookie::cookie_values(std::iter::once(header), &config.cookie.name)
            .map(move |value| (value, index, subslice_range(header, value)))
    });
    for (value, index, range) in values {
        state.had_cookie = true;
        if !config.client_side() {
            match config.codec.decode_fixed::<ID_LEN>(value) {
                Ok((bytes, used)) => {
                    state.incoming = Some((SessionId::from_bytes(bytes), used));
                    state.incoming_at = range.map(|r| (index, r));
                    return;
                }
                Err(e) => error = Some(e),
            }
            continue;
        }
        match config.codec.decode(value) {
            Ok((payload, used)) => match client_side_record(&payload) {
                Some((id, record)) => {
                    state.incoming = Some((id, used));
                    let now = config.clock.now_millis();
                    state.read_at = Some(now);
                    if config.is_expired(&record, now) {
                        telemetry::rejected(Rejected::Expired);
                    } else {
                        state.live = Some(Live::new(id, id.store_key(), Arc::new(record)));
                    }
                    state.loaded = true;
                    return;
                }
                None => error = Some(CodecError::Truncated),
            },
            Err(e) => error = Some(e),
        }
    }
    if let Some(e) = error {
        telemetry::rejected(match e {
            CodecError::Authentication => Rejected::Signature,
            _ => Rejected::Malformed,
        });
        invalid_cookie(e);
    }
}

/// Where `part` (a value found in `whole`) sits in `whole`.
fn subslice_range(whole: &[u8], part: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// The value the request's cookie carried, when it is what encoding `live`
/// again would send: a server-side session under the same id, authenticated
/// by the current key in the current format. A signed value is the same bytes
/// every time; a sealed one is as good as a fresh seal. Re-issuing it (to
/// extend a persistent cookie) then costs no HMAC and no encryption.
fn as_sent<'a>(session: &'a Session, state: &State, live: &Live) -> Option<&'a str> {
    if state.incoming != Some((live.id, KeyUsed::Current)) {
        return None;
    }
    let (index, range) = state.incoming_at.clone()?;
    let header = session.inner.cookies.as_slice().get(index)?;
    std::str::from_utf8(header.as_bytes().get(range)?).ok()
}

/// The cookie value of a live session: its id, or with a client-side store
/// the id followed by the whole record.
fn encode_cookie(config: &Runtime, live: &Live) -> Result<String, SessionError> {
    let value = if config.client_side() {
        let mut payload = live.id.as_bytes().to_vec();
        payload.extend_from_slice(&live.record.to_json());
        config.codec.encode(&payload)
    } else {
        config.codec.encode(live.id.as_bytes())
    };
    let value = value.map_err(|_| SessionError::Random)?;
    let size = config.cookie.name.len() + 1 + value.len();
    if size > crate::codec::MAX_COOKIE_BYTES {
        return Err(SessionError::CookieTooLarge { size });
    }
    Ok(value)
}

fn format_cookie(config: &Runtime, update: CookieUpdate) -> Option<String> {
    match update {
        CookieUpdate::Issue { value, expires_at } => Some(cookie::issue(
            &config.cookie,
            &value,
            expires_at,
            config.clock.now_millis(),
        )),
        CookieUpdate::Remove => Some(cookie::removal(&config.cookie)),
        CookieUpdate::Keep => None,
    }
}

/// See [`Engine::cookie_update`].
fn cookie_update(config: &Runtime, session: &Session) -> Result<CookieUpdate, SessionError> {
    if !session.inner.used.load(Ordering::Relaxed) {
        return Ok(CookieUpdate::Keep);
    }
    cookie_update_in(config, session, &session.state())
}

/// [`cookie_update`] under the session's lock.
fn cookie_update_in(
    config: &Runtime,
    session: &Session,
    state: &State,
) -> Result<CookieUpdate, SessionError> {
    match (state.cookie_action(), &state.live) {
        (CookieAction::Issue, Some(live)) => {
            let value = match as_sent(session, state, live) {
                Some(value) => value.to_owned(),
                None => encode_cookie(config, live)?,
            };
            let expires_at = match state.timeout(config.timeout) {
                Timeout::Seconds(_) => Some(live.record.expires_at),
                Timeout::BrowserSession => None,
            };
            Ok(CookieUpdate::Issue { value, expires_at })
        }
        (CookieAction::Remove, _) => Ok(CookieUpdate::Remove),
        _ => Ok(CookieUpdate::Keep),
    }
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
    let now = SystemClock.now_millis() / 1000;
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

/// What a session id names in the store right now.
enum Found {
    /// A live session (perhaps reached through a renewal forward).
    Live(Live),
    /// The id was cycled away within the cycle grace window.
    Superseded,
    /// Nothing (unknown, expired, ended, or past its grace window), and why.
    Absent(Rejected),
}

/// Loads what `id` names, following renewal forwards inside their grace window.
/// `read_at` is set to the clock when a record was read.
async fn lookup(
    config: &Runtime,
    store: &Metered,
    mut id: SessionId,
    mut key: StoreKey,
    read_at: &mut Option<Millis>,
) -> Result<Found, SessionError> {
    for _ in 0..MAX_HOPS {
        let (record, now) = store.load_at(&key, &*config.clock).await?;
        let Some(record) = record else {
            return Ok(Found::Absent(Rejected::UnknownId));
        };
        *read_at = Some(now);
        // The record is consumed here, before any other await: kept across
        // one, it would sit in every load's future.
        let expired = match step(config, id, key, record, now) {
            Step::Found(found) => return Ok(found),
            Step::Follow(next) => {
                id = next;
                key = next.store_key();
                continue;
            }
            Step::Expired(expired) => expired,
        };
        // Expiry is enforced here, whatever the cookie or the store's TTL says.
        // Boxed: the rare path would otherwise make every load's future larger.
        Box::pin(delete_expired(store, &expired)).await;
        return Ok(Found::Absent(Rejected::Expired));
    }
    Ok(Found::Absent(Rejected::UnknownId))
}

/// What a record read by [`lookup`] leads to.
enum Step {
    /// The answer.
    Found(Found),
    /// The session under this key has expired: delete it, it is absent.
    Expired(StoreKey),
    /// A renewal forward inside its grace window: read the new id.
    Follow(SessionId),
}

/// [`lookup`]'s decision on the record read under `id` at `now`.
fn step(config: &Runtime, id: SessionId, key: StoreKey, record: Arc<Record>, now: Millis) -> Step {
    let Some(moved) = &record.moved else {
        if config.is_expired(&record, now) {
            return Step::Expired(key);
        }
        return Step::Found(Found::Live(Live::new(id, key, record)));
    };
    if now >= moved.until {
        return Step::Found(Found::Absent(Rejected::UnknownId));
    }
    match moved.reason {
        MoveReason::Ended => Step::Found(Found::Absent(Rejected::UnknownId)),
        MoveReason::Cycle => Step::Found(Found::Superseded),
        MoveReason::Renew => match moved.to.as_deref().and_then(|t| forward::open(&id, t)) {
            Some(next) => Step::Follow(next),
            None => Step::Found(Found::Absent(Rejected::UnknownId)),
        },
    }
}

/// Deletes a session found expired on load; a failure is logged, not returned
/// (the session is treated as absent either way).
async fn delete_expired(store: &Metered, key: &StoreKey) {
    tracing::debug!(%key, "session expired");
    if let Err(e) = store.delete(key).await {
        tracing::warn!(%key, error = %e, "could not delete an expired session");
    }
}

/// Loads the stored record the cookie points to, once per request; returns
/// the session's state, locked (the caller reads it without locking again).
pub(crate) async fn ensure_loaded(
    session: &Session,
) -> Result<MutexGuard<'_, State>, SessionError> {
    let config = &*session.inner.rt;
    let store = config.server();
    let (store, id, key) = {
        let mut state = session.state();
        if state.loaded {
            return Ok(state);
        }
        decode(session, &mut state);
        match (store, state.incoming) {
            (Some(store), Some((id, _))) => (store, id, id.store_key()),
            // The cookie store decoded the record with the cookie; no id, nothing to load.
            _ => {
                state.loaded = true;
                return Ok(state);
            }
        }
    };
    let mut read_at = None;
    let found = lookup(config, store, id, key, &mut read_at).await?;
    let mut state = session.state();
    if state.loaded {
        return Ok(state);
    }
    state.loaded = true;
    state.read_at = read_at;
    match found {
        Found::Live(live) => state.live = Some(live),
        Found::Superseded => {
            telemetry::rejected(Rejected::Superseded);
            tracing::debug!(
                "a cycled-away session id within its grace window: no session, no cookie"
            );
            state.superseded = true;
        }
        Found::Absent(why) => {
            telemetry::rejected(why);
            tracing::debug!("session id unknown to the store: a new id will be issued");
        }
    }
    Ok(state)
}

/// Whether the session's id is due for renewal.
fn renewal_due(session: &Session) -> bool {
    let config = &*session.inner.rt;
    if config.renew_every.is_none() {
        return false;
    }
    renewal_due_in(config, &session.state(), config.clock.now_millis())
}

/// [`renewal_due`] at `now`, under the session's lock.
fn renewal_due_in(config: &Runtime, state: &State, now: Millis) -> bool {
    let Some(every) = config.renew_every else {
        return false;
    };
    match &state.live {
        Some(live) if !config.client_side() && !state.superseded && !state.terminated => {
            now.saturating_sub(live.record.id_issued_at()) >= millis(every)
        }
        _ => false,
    }
}

/// After a lost compare-and-set on `key`: what it holds now. A live record
/// replaces this request's copy; a renewal forward is followed (the changes
/// go to the session under its new id); a cycle forward means superseded.
async fn reload(
    session: &Session,
    store: &Metered,
    live_id: SessionId,
    key: &StoreKey,
    now: Millis,
) -> Result<(), SessionError> {
    let config = &*session.inner.rt;
    match store.load(key).await? {
        Some(fresh) if fresh.moved.is_none() && !config.is_expired(&fresh, now) => {
            session.state().live = Some(Live::new(live_id, key.clone(), fresh));
            Ok(())
        }
        Some(fresh) => match &fresh.moved {
            Some(Moved {
                reason: MoveReason::Renew,
                to: Some(to),
                ..
            }) => {
                let Some(next) = forward::open(&live_id, to) else {
                    return Err(gone(session));
                };
                match lookup(config, store, next, next.store_key(), &mut None).await? {
                    Found::Live(live) => {
                        session.state().live = Some(live);
                        Ok(())
                    }
                    Found::Superseded => Err(superseded(session)),
                    Found::Absent(_) => Err(gone(session)),
                }
            }
            Some(Moved {
                reason: MoveReason::Cycle,
                ..
            }) => Err(superseded(session)),
            _ => Err(gone(session)),
        },
        None => Err(gone(session)),
    }
}

/// The save point shared by `save`, `update`, `cycle_id`, renewal and
/// auto-save: applies this request's changes (and the update closure) to the
/// stored record with compare-and-set, reloading and re-applying on conflict.
///
/// An id change (`Write::Cycle`, `Write::Renew`) is atomic in every store,
/// with single-key operations only: it creates the record under the new key
/// (which nobody knows yet), then replaces the old record by compare-and-set
/// with a forward. A concurrent save, terminate or id change makes that
/// compare-and-set fail, and the new key is deleted again.
pub(crate) async fn persist(
    session: &Session,
    mut update: Option<UpdateFn<'_>>,
    write: Write,
) -> Result<Option<Value>, SessionError> {
    if !session.state().loaded {
        // Boxed: most saves follow a read, and the load's future inline
        // would make every save's larger.
        drop(Box::pin(ensure_loaded(session)).await?);
    }
    if session.state().superseded {
        return Err(SessionError::Superseded);
    }
    let config = &*session.inner.rt;
    let server = config.server();
    // Requests of this process that write the same session take turns: under
    // sustained contention, optimistic retries alone can starve a request.
    // Compare-and-set still guards against other processes.
    // One deadline for the whole save, waiting for the turn included: under
    // contention a request fails cleanly instead of waiting for minutes.
    let begun = tokio::time::Instant::now();
    let deadline = begun + config.save_deadline;
    // When the first attempt starts: now, unless it waits for its turn.
    let mut started = begun.into_std();
    let existing = session.state().live.as_ref().map(|l| l.key.clone());
    let _turn = match (&existing, server) {
        (Some(key), Some(_)) => {
            // Uncontended (the usual case): no timer to arm.
            match config.turns.try_take(key) {
                Ok(turn) => Some(turn),
                // Boxed: waiting is rare, and its timer inline would make
                // every save's future larger.
                Err(ticket) => {
                    match Box::pin(tokio::time::timeout_at(deadline, ticket.wait())).await {
                        Ok(turn) => {
                            // The first attempt starts after the wait for the turn.
                            started = std::time::Instant::now();
                            Some(turn)
                        }
                        Err(_) => return Err(gave_up(0)),
                    }
                }
            }
        }
        _ => None,
    };
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            // The previous attempt ran from `started` until now.
            let pause = backoff_pause(attempt, started.elapsed());
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(gave_up(attempt));
            }
            tokio::time::sleep(pause).await;
            started = std::time::Instant::now();
        }
        let now = config.clock.now_millis();
        let Draft {
            live,
            mut record,
            binds: bind,
            timeout,
            sets_timeout,
        } = session.state().draft(
            now,
            config.timeout,
            |created, now, timeout| config.expires_at(created, now, timeout),
            users::new_handle,
        )?;
        let new_value = match update.as_mut() {
            Some((key, f)) => {
                let v = f(record.data.get(*key).cloned())?;
                record.data.insert((*key).to_owned(), v.clone());
                Some(v)
            }
            None => None,
        };
        let record = Arc::new(record);
        let persistent = matches!(timeout, Timeout::Seconds(_));

        let Some(store) = server else {
            // The record travels in the cookie: check now that it fits, so
            // the handler gets the error at save time.
            let id = match (&live, write) {
                (Some((id, _, _)), Write::Save) => *id,
                _ => SessionId::generate().map_err(|_| SessionError::Random)?,
            };
            let candidate = Live::new(id, id.store_key(), record);
            encode_cookie(config, &candidate)?;
            match (&live, write) {
                (None, _) => telemetry::created(),
                (Some(_), Write::Save) => {}
                (Some(_), w) => telemetry::id_changed(w == Write::Renew),
            }
            let Live { id, key, record } = candidate;
            commit(session, id, key, record, true);
            return Ok(new_value);
        };

        let Some((live_id, key, live_version)) = live else {
            // A new session: always a fresh id (a cookie's unknown id is never adopted).
            let id = SessionId::generate().map_err(|_| SessionError::Random)?;
            let key = id.store_key();
            if bind && !Box::pin(list(config, &record, &key, false)).await? {
                continue;
            }
            if store.create(&key, &record).await? {
                telemetry::created();
                commit(session, id, key, record, true);
                return Ok(new_value);
            }
            tracing::warn!("session id collision on create: drawing another id");
            continue;
        };

        if write == Write::Save {
            if bind && !Box::pin(list(config, &record, &key, false)).await? {
                return Err(gone(session));
            }
            match store.save_at(&key, &record, live_version, now).await? {
                SaveOutcome::Saved => {
                    let dirty = persistent || sets_timeout;
                    commit(session, live_id, key, record, dirty);
                    return Ok(new_value);
                }
                SaveOutcome::Conflict => {
                    telemetry::save_conflict();
                    Box::pin(reload(session, store, live_id, &key, now)).await?
                }
                SaveOutcome::Missing => return Err(gone(session)),
            }
            continue;
        }

        // Boxed: an id change is rare, and its future inline would make
        // every save's as large.
        if Box::pin(change_id(
            session,
            store,
            write,
            record,
            (live_id, key, live_version),
            now,
            bind,
        ))
        .await?
        {
            return Ok(new_value);
        }
    }
    Err(gave_up(MAX_ATTEMPTS))
}

/// [`persist`]'s id change (`Write::Cycle`, `Write::Renew`) of the stored
/// session `old` (its id, key and the version read): `true` when done,
/// `false` when the attempt must be made again.
async fn change_id(
    session: &Session,
    store: &Metered,
    write: Write,
    mut record: Arc<Record>,
    old: (SessionId, StoreKey, u64),
    now: Millis,
    bind: bool,
) -> Result<bool, SessionError> {
    let config = &*session.inner.rt;
    let (live_id, key, live_version) = old;
    // An id change. 1: the record under a new key that nobody knows yet.
    let reason = match write {
        Write::Renew => MoveReason::Renew,
        _ => MoveReason::Cycle,
    };
    let new_id = SessionId::generate().map_err(|_| SessionError::Random)?;
    let new_key = new_id.store_key();
    // The draft's own record, not yet shared: changed in place.
    let draft = Arc::make_mut(&mut record);
    let forgotten = draft.from.take();
    draft.version = 1;
    draft.id_at = Some(now);
    draft.from = Some(key.as_str().to_owned());
    if !store.create(&new_key, &record).await? {
        tracing::warn!("session id collision on create: drawing another id");
        return Ok(false);
    }
    // 2: a bound session lists its new key before anybody can reach it.
    if record.user.is_some() {
        match list_moving(config, &record, &new_key, forgotten.as_deref(), bind).await {
            Ok(true) => {}
            Ok(false) => {
                discard(store, &new_key).await;
                return Err(gone(session));
            }
            Err(e) => {
                discard(store, &new_key).await;
                return Err(e);
            }
        }
    }
    // 3: the old key becomes a forward, if nobody changed it meanwhile.
    let grace = match reason {
        MoveReason::Renew => config.renew_grace,
        _ => config.cycle_grace,
    };
    let until = now.saturating_add(millis(grace));
    let to = forward::seal(&live_id, &new_id).map_err(|_| SessionError::Random)?;
    let forward = Record::moved(
        Moved {
            reason,
            until,
            to: Some(to),
        },
        now,
        until.saturating_add(MOVED_KEEP),
        live_version.wrapping_add(1),
    );
    let outcome = store.save(&key, &Arc::new(forward), live_version).await;
    match outcome {
        Ok(SaveOutcome::Saved) => {
            tracing::debug!(old = %key, ?reason, "session id changed");
            telemetry::id_changed(reason == MoveReason::Renew);
            commit(session, new_id, new_key, record, true);
            return Ok(true);
        }
        Ok(SaveOutcome::Conflict) => {
            telemetry::save_conflict();
            discard(store, &new_key).await;
            let before = session.state().live.as_ref().map(|l| l.id);
            reload(session, store, live_id, &key, now).await?;
            let after = session.state().live.as_ref().map(|l| l.id);
            if write == Write::Renew && before != after {
                // Another request renewed it first: take its new id, so
                // that every tab converges on one session.
                return Ok(true);
            }
        }
        Ok(SaveOutcome::Missing) => {
            discard(store, &new_key).await;
            return Err(gone(session));
        }
        Err(e) => {
            discard(store, &new_key).await;
            return Err(e.into());
        }
    }
    Ok(false)
}

fn gave_up(attempts: u32) -> SessionError {
    tracing::warn!(
        attempts,
        "session save gave up after repeated conflicts (attempts or save_deadline exhausted)"
    );
    SessionError::TooManyConflicts
}

/// Lists `key` in the index of the record's user, under its handle.
async fn list(
    config: &Runtime,
    record: &Record,
    key: &StoreKey,
    must_exist: bool,
) -> Result<bool, SessionError> {
    list_moving(config, record, key, None, !must_exist).await
}

async fn list_moving(
    config: &Runtime,
    record: &Record,
    key: &StoreKey,
    forget: Option<&str>,
    fresh_bind: bool,
) -> Result<bool, SessionError> {
    match (&record.user, &record.handle) {
        (Some(user), Some(handle)) => {
            users::list_key(config, user, handle, key, forget, !fresh_bind).await
        }
        _ => Ok(true),
    }
}

/// Deletes the record of an id change that did not happen (best effort: the
/// key was never sent to anybody, and the record expires anyway).
async fn discard(store: &Metered, key: &StoreKey) {
    if let Err(e) = store.delete(key).await {
        tracing::warn!(%key, error = %e, "could not delete an abandoned session record");
    }
}

/// Makes a written record the session's state and clears the request's
/// changes.
fn commit(
    session: &Session,
    id: SessionId,
    key: StoreKey,
    record: Arc<Record>,
    cookie_dirty: bool,
) {
    let mut state = session.state();
    match &mut state.live {
        Some(live) if live.id == id => {
            live.key = key;
            live.record = record;
        }
        slot => *slot = Some(Live::new(id, key, record)),
    }
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

/// The session's id was cycled by another request while this one used it:
/// drop this request's changes and send no cookie at all.
fn superseded(session: &Session) -> SessionError {
    let mut state = session.state();
    state.live = None;
    state.pending = Pending::default();
    state.superseded = true;
    tracing::info!("session id cycled by another request; this request's changes were dropped");
    SessionError::Superseded
}

/// Random backoff after a conflict, scaled to how long an attempt takes on this
/// store (a loaded store needs wider spacing for one contender to get
/// through). The window stops growing after a few attempts: an ever-growing
/// window would let newly arriving requests overtake one that has been
/// retrying, and starve it.
fn backoff_pause(attempt: u32, last_attempt: Duration) -> Duration {
    let mut r = [0u8; 4];
    let _ = getrandom::fill(&mut r);
    let unit = last_attempt.max(Duration::from_millis(1));
    let window = (unit * (1u32 << attempt.min(2))).min(Duration::from_secs(1));
    let micros = u64::try_from(window.as_micros())
        .unwrap_or(1_000_000)
        .max(1);
    let jitter = u64::from(u32::from_le_bytes(r)) % micros;
    Duration::from_micros(jitter)
}

/// Ends the session server-side, whether or not it was read first.
pub(crate) async fn terminate(session: &Session) -> Result<(), SessionError> {
    let config = &*session.inner.rt;
    decode(session, &mut session.state());
    if let Some(store) = config.server() {
        drop(ensure_loaded(session).await?);
        let (superseded, live) = {
            let state = session.state();
            let live = state
                .live
                .as_ref()
                .map(|l| (l.id, l.key.clone(), l.record.version));
            (state.superseded, live)
        };
        if superseded {
            return Err(SessionError::Superseded);
        }
        if let Some((id, key, version)) = live {
            let _turn = config.turns.take(&key).await;
            end(config, store, id, key, Some(version)).await?;
            telemetry::terminated(1);
        }
    }
    let mut state = session.state();
    if config.client_side() && state.live.is_some() {
        telemetry::terminated(1);
    }
    state.decoded = true;
    state.loaded = true;
    state.live = None;
    state.pending = Pending::default();
    state.terminated = true;
    state.cookie_dirty = false;
    Ok(())
}

/// Ends the session under `key` by compare-and-set (to a tombstone, then a
/// delete), following any forward it finds: an id change that raced this
/// terminate cannot leave the session alive under its new id.
async fn end(
    config: &Runtime,
    store: &Metered,
    id: SessionId,
    key: StoreKey,
    mut expected: Option<u64>,
) -> Result<(), SessionError> {
    let (mut id, mut key) = (id, key);
    let mut hops = 0;
    for _ in 0..MAX_ATTEMPTS {
        let version = match expected.take() {
            Some(v) => v,
            None => match store.load(&key).await? {
                None => return Ok(()),
                Some(r) => match &r.moved {
                    None => r.version,
                    Some(moved) => {
                        // Whatever its grace window: the id change raced us.
                        let next = moved.to.as_deref().and_then(|t| forward::open(&id, t));
                        store.delete(&key).await?;
                        match next {
                            Some(next) if hops < MAX_HOPS => {
                                hops += 1;
                                id = next;
                                key = next.store_key();
                                continue;
                            }
                            _ => return Ok(()),
                        }
                    }
                },
            },
        };
        let now = config.clock.now_millis();
        let tombstone = Record::moved(
            Moved {
                reason: MoveReason::Ended,
                until: now,
                to: None,
            },
            now,
            now.saturating_add(MOVED_KEEP),
            version.wrapping_add(1),
        );
        match store.save(&key, &Arc::new(tombstone), version).await? {
            SaveOutcome::Saved => {
                store.delete(&key).await?;
                return Ok(());
            }
            SaveOutcome::Missing => return Ok(()),
            SaveOutcome::Conflict => {}
        }
    }
    Err(SessionError::TooManyConflicts)
}

/// What a refresh of the session's expiry would write (its key, the new
/// expiry, and whether the cookie is persistent), or `None` when none is due
/// at `now`.
fn refresh_plan(session: &Session, now: Millis) -> Option<(StoreKey, Millis, bool)> {
    refresh_plan_in(&session.inner.rt, &session.state(), now)
}

/// [`refresh_plan`] under the session's lock.
fn refresh_plan_in(
    config: &Runtime,
    state: &State,
    now: Millis,
) -> Option<(StoreKey, Millis, bool)> {
    if !refresh_due_in(config, state, now) {
        return None;
    }
    let live = state.live.as_ref()?;
    let timeout = state.timeout(config.timeout);
    Some((
        live.key.clone(),
        config.expires_at(live.record.created_at, now, timeout),
        matches!(timeout, Timeout::Seconds(_)),
    ))
}

/// Whether a refresh of the session's expiry is due at `now` (the test
/// behind [`refresh_plan`], without building the plan).
fn refresh_due_in(config: &Runtime, state: &State, now: Millis) -> bool {
    let Some(live) = &state.live else {
        return false;
    };
    let idle = config.idle_millis(state.timeout(config.timeout));
    now.saturating_sub(live.record.last_access) >= idle / REFRESH_DIVISOR
}

/// Reading is activity: slides the expiry of a session that was used, at most
/// once per tenth of its timeout, without rewriting its data.
async fn refresh(session: &Session) {
    let config = &*session.inner.rt;
    let now = config.clock.now_millis();
    let Some((key, new_expiry, persistent)) = refresh_plan(session, now) else {
        return;
    };
    let touched = match config.server() {
        Some(store) => store.touch(&key, now, new_expiry).await,
        None => Ok(true),
    };
    match touched {
        Ok(true) => {
            let mut state = session.state();
            if let Some(live) = &mut state.live {
                // A copy when the store still shares it: at most once per
                // tenth of the timeout.
                let record = Arc::make_mut(&mut live.record);
                record.last_access = now;
                record.expires_at = new_expiry;
            }
            state.cookie_dirty |= persistent || config.client_side();
        }
        Ok(false) => {
            let mut state = session.state();
            state.live = None;
            state.terminated = true;
        }
        Err(e) => tracing::warn!(%key, error = %e, "could not refresh the session's expiry"),
    }
}
