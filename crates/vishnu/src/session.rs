//! The [`Session`] handle that handlers use: values, pending changes, update closures, timeout.
//!
//! A handle is created for every request by the engine and is cheap to clone.
//! Nothing touches the store until a method needs the stored data: a request
//! that never uses its session costs no store I/O and sends no cookie.
//! The data behind the handle is in [`crate::state`]; the store I/O in [`crate::engine`].

use std::sync::MutexGuard;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::Timeout;
use crate::engine::{self, Write};
use crate::error::SessionError;
use crate::id::StoreKey;
pub use crate::state::Session;
use crate::state::{view, view_ref, State};
use crate::users::{self, SessionInfo};

impl Session {
    /// The state, loaded, and locked for the caller.
    async fn loaded(&self) -> Result<MutexGuard<'_, State>, SessionError> {
        self.mark_used();
        engine::ensure_loaded(self).await
    }

    /// The value under `key`, or `None` when there is none.
    ///
    /// # Errors
    /// A store error while loading, or a value of another type.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        // Deserialized from the stored value in place, not from a copy of it.
        let state = self.loaded().await?;
        let Some(value) = view_ref(&state, key) else {
            return Ok(None);
        };
        T::deserialize(value)
            .map(Some)
            .map_err(|source| SessionError::Deserialize {
                key: key.to_owned(),
                source,
            })
    }

    /// The JSON value under `key`, or `None` when there is none.
    ///
    /// # Errors
    /// A store error while loading.
    pub async fn get_value(&self, key: &str) -> Result<Option<Value>, SessionError> {
        Ok(view(&*self.loaded().await?, key))
    }

    /// Whether `key` has a value.
    ///
    /// # Errors
    /// A store error while loading.
    pub async fn contains(&self, key: &str) -> Result<bool, SessionError> {
        Ok(view(&*self.loaded().await?, key).is_some())
    }

    /// All keys that have a value, sorted.
    ///
    /// # Errors
    /// A store error while loading.
    pub async fn keys(&self) -> Result<Vec<String>, SessionError> {
        Ok(self.entries().await?.into_iter().map(|(k, _)| k).collect())
    }

    /// Every key and its value as this request sees them (the stored data
    /// with this request's changes applied), sorted by key. One load, as for
    /// [`get`](Session::get). Framework fronts whose session object is a
    /// dict filled at the start of a request read it with this.
    ///
    /// # Errors
    /// A store error while loading.
    pub async fn entries(&self) -> Result<Map<String, Value>, SessionError> {
        let state = self.loaded().await?;
        let mut data = match (&state.live, state.pending.cleared) {
            (Some(live), false) => live.record.data.clone(),
            _ => Map::new(),
        };
        state.pending.apply(&mut data);
        Ok(data)
    }

    /// Sets `key` to `value`. Recorded now, written by the next save.
    ///
    /// # Errors
    /// [`SessionError::Serialize`] when the value cannot be represented as JSON.
    pub fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), SessionError> {
        let value = serde_json::to_value(value).map_err(|source| SessionError::Serialize {
            key: key.to_owned(),
            source,
        })?;
        self.set_value(key, value);
        Ok(())
    }

    /// Sets `key` to a JSON value. Recorded now, written by the next save.
    pub fn set_value(&self, key: &str, value: Value) {
        self.mark_used();
        self.state()
            .pending
            .changes
            .insert(key.to_owned(), Some(value));
    }

    /// Removes `key`, returning its previous value.
    ///
    /// # Errors
    /// A store error while loading, or a previous value of another type.
    pub async fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let old = {
            let mut state = self.loaded().await?;
            let old = view(&state, key);
            state.pending.changes.insert(key.to_owned(), None);
            old
        };
        match old {
            None => Ok(None),
            Some(v) => {
                serde_json::from_value(v)
                    .map(Some)
                    .map_err(|source| SessionError::Deserialize {
                        key: key.to_owned(),
                        source,
                    })
            }
        }
    }

    /// Removes `key` without reading the session first. Recorded now, written
    /// by the next save (a no-op for a key that has no value then). Unlike
    /// [`remove`](Session::remove) it costs no store I/O, for fronts that
    /// already hold the values.
    pub fn delete(&self, key: &str) {
        self.mark_used();
        self.state().pending.changes.insert(key.to_owned(), None);
    }

    /// Removes every value. Recorded now, written by the next save.
    pub fn clear(&self) {
        self.mark_used();
        let mut state = self.state();
        state.pending.cleared = true;
        state.pending.changes.clear();
    }

    /// Atomically replaces the value under `key` with `f(current value)` and
    /// saves at once, returning the new value.
    ///
    /// The closure may run more than once: when another request saved the
    /// session in between, the engine reloads it and runs `f` again on the
    /// fresh value, so concurrent increments are never lost. Like
    /// [`save`](Session::save), it also writes this request's other changes.
    ///
    /// # Errors
    /// A store error, a value of another type, a value that cannot be
    /// represented as JSON, [`SessionError::Terminated`] when another request
    /// terminated the session, or [`SessionError::TooManyConflicts`].
    pub async fn update<T, F>(&self, key: &str, mut f: F) -> Result<T, SessionError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> T + Send,
    {
        self.mark_used();
        let mut apply = |current: Option<Value>| -> Result<Value, SessionError> {
            let current =
                match current {
                    None => None,
                    Some(v) => Some(serde_json::from_value(v).map_err(|source| {
                        SessionError::Deserialize {
                            key: key.to_owned(),
                            source,
                        }
                    })?),
                };
            serde_json::to_value(f(current)).map_err(|source| SessionError::Serialize {
                key: key.to_owned(),
                source,
            })
        };
        let value = engine::persist(self, Some((key, &mut apply)), Write::Save).await?;
        let value = value.unwrap_or(Value::Null);
        serde_json::from_value(value).map_err(|source| SessionError::Deserialize {
            key: key.to_owned(),
            source,
        })
    }

    /// Like [`update`](Session::update) on JSON values, with a fallible
    /// function: an `Err` aborts the update, saves nothing, and is returned.
    /// Used by the Python front, whose callbacks can raise.
    ///
    /// # Errors
    /// As for [`update`](Session::update), plus the function's own error.
    pub async fn update_value<F>(&self, key: &str, mut f: F) -> Result<Value, SessionError>
    where
        F: FnMut(Option<Value>) -> Result<Value, SessionError> + Send,
    {
        self.mark_used();
        let value = engine::persist(self, Some((key, &mut f)), Write::Save).await?;
        Ok(value.unwrap_or(Value::Null))
    }

    /// Writes this request's changes to the store now, creating the session
    /// (and its cookie) if it does not exist yet. Never wipes data that this
    /// request did not change, whether or not it read the session first.
    ///
    /// # Errors
    /// A store error, [`SessionError::Terminated`] when another request
    /// terminated the session, or [`SessionError::TooManyConflicts`].
    pub async fn save(&self) -> Result<(), SessionError> {
        self.mark_used();
        engine::persist(self, None, Write::Save).await.map(|_| ())
    }

    /// Gives the session a new id, keeping its data; the old id never again
    /// reads or writes it. Call it after login and any other privilege
    /// change, so that an id known before (session fixation) is worthless
    /// after. Saves like [`save`](Session::save).
    ///
    /// For [`cycle_grace`](crate::ConfigBuilder::cycle_grace) (10 s by
    /// default) a request that still carries the old id (one that was in
    /// flight during the login) gets no `Set-Cookie` of ours at all, so it
    /// cannot log the browser out again, and its writes fail with
    /// [`SessionError::Superseded`]. The change is atomic in every store: a
    /// concurrent `terminate` leaves neither id alive, a concurrent save is
    /// either kept or fails with `Superseded`.
    ///
    /// # Errors
    /// As for [`save`](Session::save), and [`SessionError::Superseded`] when
    /// another request cycled the id first.
    pub async fn cycle_id(&self) -> Result<(), SessionError> {
        self.mark_used();
        engine::persist(self, None, Write::Cycle).await.map(|_| ())
    }

    /// Binds the session to `user` and cycles its id: what a login handler
    /// calls. The session is then listed by
    /// [`Engine::sessions_of`](crate::Engine::sessions_of) and revoked by
    /// [`Engine::revoke_all`](crate::Engine::revoke_all).
    ///
    /// # Errors
    /// As for [`cycle_id`](Session::cycle_id).
    pub async fn login(&self, user: &str) -> Result<(), SessionError> {
        self.set_user(user);
        self.cycle_id().await
    }

    /// Binds the session to `user` (an application's user id). Written by the
    /// next save; binding to a new user gives the session a new handle. Call
    /// [`cycle_id`](Session::cycle_id) too (or use [`login`](Session::login)).
    pub fn set_user(&self, user: &str) {
        self.mark_used();
        self.state().pending.user = Some(user.to_owned());
    }

    /// The user this session is bound to, if any.
    ///
    /// # Errors
    /// A store error while loading.
    pub async fn user(&self) -> Result<Option<String>, SessionError> {
        let state = self.loaded().await?;
        Ok(state
            .pending
            .user
            .clone()
            .or_else(|| state.live.as_ref().and_then(|l| l.record.user.clone())))
    }

    /// Sets the label shown when the user's sessions are listed (for example
    /// the user agent). Written by the next save.
    pub fn set_label(&self, label: &str) {
        self.mark_used();
        self.state().pending.label = Some(label.to_owned());
    }

    /// The session's handle: opaque, stable across id changes, never an id.
    /// `None` until the session is bound to a user and saved.
    ///
    /// # Errors
    /// A store error while loading.
    pub async fn handle(&self) -> Result<Option<String>, SessionError> {
        Ok(self
            .loaded()
            .await?
            .live
            .as_ref()
            .and_then(|l| l.record.handle.clone()))
    }

    /// The sessions of this session's user, this one marked `current`; empty
    /// when the session is bound to no user.
    ///
    /// # Errors
    /// A store error, or [`SessionError::Unsupported`] with the cookie store.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, SessionError> {
        let (user, key) = self.bound().await?;
        match user {
            Some(user) => users::sessions_of(&self.inner.rt, &user, key.as_ref()).await,
            None => Ok(Vec::new()),
        }
    }

    /// Ends the session of this session's user that has this handle; `false`
    /// when the user has none with it.
    ///
    /// # Errors
    /// A store error, or [`SessionError::Unsupported`] with the cookie store.
    pub async fn revoke(&self, handle: &str) -> Result<bool, SessionError> {
        match self.bound().await?.0 {
            Some(user) => {
                Ok(users::revoke_where(&self.inner.rt, &user, |h| h == handle).await? > 0)
            }
            None => Ok(false),
        }
    }

    /// Ends every other session of this session's user ("log out my other
    /// devices"); returns how many.
    ///
    /// # Errors
    /// A store error, or [`SessionError::Unsupported`] with the cookie store.
    pub async fn revoke_others(&self) -> Result<usize, SessionError> {
        let (user, _) = self.bound().await?;
        let handle = self.handle().await?;
        match user {
            Some(user) => {
                users::revoke_where(&self.inner.rt, &user, |h| Some(h) != handle.as_deref()).await
            }
            None => Ok(0),
        }
    }

    /// Ends every session of this session's user, this one included ("log
    /// out everywhere"), and removes this request's cookie; returns how many.
    ///
    /// # Errors
    /// A store error, or [`SessionError::Unsupported`] with the cookie store.
    pub async fn revoke_all(&self) -> Result<usize, SessionError> {
        let (user, _) = self.bound().await?;
        let n = match user {
            Some(user) => users::revoke_where(&self.inner.rt, &user, |_| true).await?,
            None => 0,
        };
        self.terminate().await?;
        Ok(n)
    }

    /// The stored user (pending bindings are not listed yet) and store key.
    async fn bound(&self) -> Result<(Option<String>, Option<StoreKey>), SessionError> {
        self.inner.rt.server_store()?;
        let state = self.loaded().await?;
        Ok(match &state.live {
            Some(l) => (l.record.user.clone(), Some(l.key.clone())),
            None => (None, None),
        })
    }

    /// Deletes the session from the store and sends a cookie that removes it
    /// from the browser. Values set afterwards, and saved, start a new session
    /// under a new id.
    ///
    /// # Errors
    /// A store error while deleting.
    pub async fn terminate(&self) -> Result<(), SessionError> {
        self.mark_used();
        engine::terminate(self).await
    }

    /// Sets this session's own timeout, leaving the configured default (and
    /// every other session) alone. Written by the next save; the cookie's
    /// Max-Age follows.
    pub fn set_timeout(&self, timeout: Timeout) {
        self.mark_used();
        self.state().pending.timeout = Some(timeout);
    }

    /// This session's timeout: its own if set, else the configured default.
    pub fn timeout(&self) -> Timeout {
        let state = self.state();
        state.timeout(self.inner.rt.timeout)
    }

    /// Whether the session exists in the store (it was loaded, or saved by this request).
    pub fn is_stored(&self) -> bool {
        self.state().live.is_some()
    }

    /// Whether this request has changes that are not saved yet.
    pub fn has_pending_changes(&self) -> bool {
        !self.state().pending.is_empty()
    }
}
