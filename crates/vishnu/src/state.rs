//! One request's session as data: what the cookie said, what the store holds,
//! what the request changed, and what must happen at the end. No I/O: the
//! engine ([`crate::engine`]) drives it against the store, and the
//! [`Session`] methods ([`crate::session`]) are the handle handlers use.
//!
//! Changes are kept as a delta (the keys this request set or removed), not as a
//! whole copy of the data: saving applies the delta to what the store holds,
//! and when a concurrent request saved first, the engine reloads and applies
//! the delta again. Two requests that set different keys both keep theirs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use http::HeaderValue;
use serde_json::{Map, Value};

use crate::codec::KeyUsed;
use crate::config::Timeout;
use crate::id::{SessionId, StoreKey};
use crate::record::{Millis, Record};
use crate::runtime::Runtime;

/// The session of the current request.
///
/// Get it as a handler argument (`session: vishnu::Session`) with axum or
/// actix-web (feature `actix`), or, in a plain tower service, from the
/// request extensions.
/// Reads load the stored session lazily on first use; `set`, `remove` and
/// `clear` are recorded and written by [`save`](Session::save) (or at the end
/// of the request with `auto_save`).
#[derive(Clone)]
pub struct Session {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) rt: Arc<Runtime>,
    pub(crate) cookies: CookieHeaders,
    pub(crate) used: AtomicBool,
    pub(crate) state: Mutex<State>,
}

/// A request's `Cookie` header values. Almost every request has at most one,
/// so that case is kept without a separate allocation.
pub(crate) enum CookieHeaders {
    None,
    One(HeaderValue),
    Many(Vec<HeaderValue>),
}

impl CookieHeaders {
    pub(crate) fn collect(headers: impl IntoIterator<Item = HeaderValue>) -> Self {
        let mut it = headers.into_iter();
        match (it.next(), it.next()) {
            (None, _) => Self::None,
            (Some(one), None) => Self::One(one),
            (Some(a), Some(b)) => {
                let mut all = vec![a, b];
                all.extend(it);
                Self::Many(all)
            }
        }
    }

    pub(crate) fn as_slice(&self) -> &[HeaderValue] {
        match self {
            Self::None => &[],
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(all) => all,
        }
    }
}

/// The stored session this request is attached to, as last read or written.
#[derive(Clone)]
pub(crate) struct Live {
    pub(crate) id: SessionId,
    /// `id.store_key()`, computed once (it is a SHA-256).
    pub(crate) key: StoreKey,
    /// Shared, not copied: with the [`MemoryStore`](crate::MemoryStore), the
    /// very record the store holds; a save writes a new one.
    pub(crate) record: Arc<Record>,
}

impl Live {
    pub(crate) fn new(id: SessionId, key: StoreKey, record: Arc<Record>) -> Self {
        Self { id, key, record }
    }
}

/// Changes made by this request and not yet saved.
#[derive(Clone, Default)]
pub(crate) struct Pending {
    pub(crate) cleared: bool,
    pub(crate) changes: BTreeMap<String, Option<Value>>,
    pub(crate) timeout: Option<Timeout>,
    /// The user to bind the session to.
    pub(crate) user: Option<String>,
    /// The session's new label.
    pub(crate) label: Option<String>,
}

impl Pending {
    pub(crate) fn is_empty(&self) -> bool {
        !self.cleared
            && self.changes.is_empty()
            && self.timeout.is_none()
            && self.user.is_none()
            && self.label.is_none()
    }

    /// Applies the delta to `data`.
    pub(crate) fn apply(&self, data: &mut Map<String, Value>) {
        if self.cleared {
            data.clear();
        }
        for (k, v) in &self.changes {
            match (v, data.get_mut(k)) {
                // In place: inserting would clone the key only to drop the copy.
                (Some(v), Some(slot)) => *slot = v.clone(),
                (Some(v), None) => {
                    data.insert(k.clone(), v.clone());
                }
                (None, _) => {
                    data.remove(k);
                }
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct State {
    /// The cookie has been decoded.
    pub(crate) decoded: bool,
    /// The stored record has been loaded (or found absent).
    pub(crate) loaded: bool,
    /// A cookie with our name arrived (valid or not).
    pub(crate) had_cookie: bool,
    /// The id the cookie carried, and which key authenticated it.
    pub(crate) incoming: Option<(SessionId, KeyUsed)>,
    /// Where that cookie's value sits in the request's `Cookie` headers: the
    /// header's index and the value's byte range (server-side stores only).
    pub(crate) incoming_at: Option<(usize, std::ops::Range<usize>)>,
    pub(crate) live: Option<Live>,
    /// The clock when the session was read (ms since the epoch): the
    /// request's one reading, reused when it ends with no store I/O.
    pub(crate) read_at: Option<Millis>,
    pub(crate) pending: Pending,
    /// `terminate()` was called (or another request terminated the session).
    pub(crate) terminated: bool,
    /// The cookie's id was cycled away (within the cycle grace window): no
    /// session, no cookie of ours, and writes fail with `Superseded`.
    pub(crate) superseded: bool,
    /// A Set-Cookie must go out for the live session (new id, new expiry).
    pub(crate) cookie_dirty: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("Session")
            .field("loaded", &state.loaded)
            .field("live", &state.live.as_ref().map(|l| l.id))
            .field(
                "pending_keys",
                &state.pending.changes.keys().collect::<Vec<_>>(),
            )
            .field("terminated", &state.terminated)
            .field("superseded", &state.superseded)
            .finish()
    }
}

impl Session {
    pub(crate) fn new(rt: Arc<Runtime>, cookies: CookieHeaders) -> Self {
        Self {
            inner: Arc::new(Inner {
                rt,
                cookies,
                used: AtomicBool::new(false),
                state: Mutex::new(State::default()),
            }),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // State is only mutated in small, panic-free sections.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn mark_used(&self) {
        if !self.inner.used.load(Ordering::Relaxed) {
            self.inner.used.store(true, Ordering::Relaxed);
        }
    }
}

/// What a save writes: this request's changes over the stored record (or a
/// new one), its times moved to now and its version to the next.
pub(crate) struct Draft {
    /// The stored session it replaces: id, key and the version read.
    pub(crate) live: Option<(SessionId, StoreKey, u64)>,
    pub(crate) record: Record,
    /// It binds the session to a (new) user: the user index must list it first.
    pub(crate) binds: bool,
    /// The session's timeout.
    pub(crate) timeout: Timeout,
    /// This request set the session's own timeout (its cookie must follow).
    pub(crate) sets_timeout: bool,
}

/// What the end of a request must send about the session cookie.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CookieAction {
    /// Nothing.
    None,
    /// (Re-)issue the live session's cookie.
    Issue,
    /// Remove the cookie from the browser.
    Remove,
}

impl State {
    /// This session's timeout: its pending change, else its stored one, else `default`.
    pub(crate) fn timeout(&self, default: Timeout) -> Timeout {
        self.pending
            .timeout
            .or_else(|| self.live.as_ref().and_then(|l| l.record.timeout))
            .unwrap_or(default)
    }

    /// The record a save would write at `now`: one copy of the stored record
    /// (or a new one), with the pending delta, timeout, label and user
    /// applied. `expires_at(created_at, now, timeout)` is the lifetime rule;
    /// `new_handle` gives a handle when the session is bound to a new user.
    pub(crate) fn draft<E>(
        &self,
        now: Millis,
        default_timeout: Timeout,
        expires_at: impl Fn(Millis, Millis, Timeout) -> Millis,
        new_handle: impl FnOnce() -> Result<String, E>,
    ) -> Result<Draft, E> {
        let timeout = self.timeout(default_timeout);
        let (live, mut record) = match &self.live {
            Some(l) => {
                let mut r = Record::clone(&l.record);
                r.version = l.record.version.wrapping_add(1);
                r.last_access = now;
                r.expires_at = expires_at(r.created_at, now, timeout);
                (Some((l.id, l.key.clone(), l.record.version)), r)
            }
            None => (
                None,
                Record::new(Map::new(), now, expires_at(now, now, timeout)),
            ),
        };
        let pending = &self.pending;
        pending.apply(&mut record.data);
        if let Some(t) = pending.timeout {
            record.timeout = Some(t);
        }
        if let Some(label) = &pending.label {
            record.label = Some(label.clone());
        }
        // Binding to a user (or to another one) gives the session a fresh handle.
        let binds = match &pending.user {
            Some(user) if record.user.as_ref() != Some(user) || record.handle.is_none() => {
                record.user = Some(user.clone());
                record.handle = Some(new_handle()?);
                true
            }
            _ => false,
        };
        Ok(Draft {
            live,
            record,
            binds,
            timeout,
            sets_timeout: pending.timeout.is_some(),
        })
    }

    /// Which cookie the response needs.
    pub(crate) fn cookie_action(&self) -> CookieAction {
        if self.superseded {
            // The id was cycled away: neither a removal nor a new id, so that
            // a request that raced a login cannot log the browser out again.
            return CookieAction::None;
        }
        match &self.live {
            Some(live) => {
                let reissue = match self.incoming {
                    Some((id, used)) => id != live.id || used == KeyUsed::Fallback,
                    None => true,
                };
                if self.cookie_dirty || reissue {
                    CookieAction::Issue
                } else {
                    CookieAction::None
                }
            }
            // Only a browser that sent our cookie gets a removal cookie: answering a
            // cookie-less request (say, a cross-site POST to a logout route, which a
            // SameSite=Strict cookie does not accompany) with one would let another
            // site log the user out of their browser.
            None if self.had_cookie && (self.terminated || self.loaded) => CookieAction::Remove,
            None => CookieAction::None,
        }
    }
}

/// The value of `key` as this request sees it: its own changes over the stored data.
pub(crate) fn view(state: &State, key: &str) -> Option<Value> {
    view_ref(state, key).cloned()
}

/// [`view`], borrowed.
pub(crate) fn view_ref<'a>(state: &'a State, key: &str) -> Option<&'a Value> {
    if let Some(change) = state.pending.changes.get(key) {
        return change.as_ref();
    }
    if state.pending.cleared {
        return None;
    }
    state.live.as_ref().and_then(|l| l.record.data.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live(id: u8) -> Live {
        let id = SessionId::from_bytes([id; crate::id::ID_LEN]);
        Live::new(id, id.store_key(), Arc::new(Record::new(Map::new(), 0, 1)))
    }

    #[test]
    fn a_superseded_request_sends_no_cookie_at_all() {
        let state = State {
            had_cookie: true,
            loaded: true,
            superseded: true,
            ..State::default()
        };
        assert_eq!(state.cookie_action(), CookieAction::None);
    }

    #[test]
    fn removal_only_for_a_browser_that_sent_our_cookie() {
        let mut state = State {
            loaded: true,
            terminated: true,
            ..State::default()
        };
        assert_eq!(state.cookie_action(), CookieAction::None);
        state.had_cookie = true;
        assert_eq!(state.cookie_action(), CookieAction::Remove);
    }

    #[test]
    fn a_new_id_or_a_fallback_key_is_reissued() {
        let mut state = State {
            live: Some(live(1)),
            ..State::default()
        };
        assert_eq!(state.cookie_action(), CookieAction::Issue, "new session");
        state.incoming = Some((live(1).id, KeyUsed::Current));
        assert_eq!(state.cookie_action(), CookieAction::None, "unchanged");
        state.incoming = Some((live(1).id, KeyUsed::Fallback));
        assert_eq!(state.cookie_action(), CookieAction::Issue, "old secret");
        state.incoming = Some((live(2).id, KeyUsed::Current));
        assert_eq!(state.cookie_action(), CookieAction::Issue, "renewed");
    }

    fn draft(state: &State, now: Millis) -> Draft {
        let mut handles = 0;
        state
            .draft(
                now,
                Timeout::Seconds(60),
                |_, now, t| match t {
                    Timeout::Seconds(s) => now + s * 1000,
                    Timeout::BrowserSession => now,
                },
                || -> Result<String, ()> {
                    handles += 1;
                    Ok(format!("handle-{handles}"))
                },
            )
            .expect("draft")
    }

    #[test]
    fn a_save_writes_the_delta_over_the_stored_record_at_the_next_version() {
        let mut l = live(1);
        Arc::make_mut(&mut l.record)
            .data
            .insert("kept".into(), json!(1));
        Arc::make_mut(&mut l.record)
            .data
            .insert("gone".into(), json!(2));
        Arc::make_mut(&mut l.record)
            .data
            .insert("changed".into(), json!(4));
        Arc::make_mut(&mut l.record).version = 7;
        let mut state = State {
            live: Some(l),
            ..State::default()
        };
        state.pending.changes.insert("gone".into(), None);
        state.pending.changes.insert("new".into(), Some(json!(3)));
        state
            .pending
            .changes
            .insert("changed".into(), Some(json!(5)));
        let d = draft(&state, 1_000);
        assert_eq!(d.live.map(|(_, _, v)| v), Some(7));
        assert_eq!(d.record.version, 8);
        assert_eq!(d.record.last_access, 1_000);
        assert_eq!(d.record.expires_at, 61_000);
        assert_eq!(d.record.data.get("kept"), Some(&json!(1)));
        assert_eq!(d.record.data.get("gone"), None);
        assert_eq!(d.record.data.get("new"), Some(&json!(3)));
        assert_eq!(d.record.data.get("changed"), Some(&json!(5)));
        assert_eq!(d.record.data.len(), 3);
        assert!(!d.binds);
    }

    #[test]
    fn binding_gives_a_handle_only_for_a_new_user() {
        let mut state = State::default();
        state.pending.user = Some("ada".into());
        let d = draft(&state, 0);
        assert!(d.live.is_none() && d.binds);
        assert_eq!(d.record.user.as_deref(), Some("ada"));
        assert_eq!(d.record.handle.as_deref(), Some("handle-1"));
        // The same user again keeps the handle; another user gets a new one.
        let mut l = live(1);
        l.record = Arc::new(d.record);
        state.live = Some(l);
        assert!(!draft(&state, 0).binds);
        state.pending.user = Some("bob".into());
        let d = draft(&state, 0);
        assert!(d.binds);
        assert_eq!(d.record.user.as_deref(), Some("bob"));
    }

    #[test]
    fn the_view_is_the_delta_over_the_stored_data() {
        let mut l = live(1);
        Arc::make_mut(&mut l.record)
            .data
            .insert("a".into(), json!(1));
        Arc::make_mut(&mut l.record)
            .data
            .insert("b".into(), json!(2));
        let mut state = State {
            live: Some(l),
            ..State::default()
        };
        state.pending.changes.insert("a".into(), Some(json!(9)));
        state.pending.changes.insert("b".into(), None);
        assert_eq!(view(&state, "a"), Some(json!(9)));
        assert_eq!(view(&state, "b"), None);
        state.pending.cleared = true;
        state.pending.changes.clear();
        assert_eq!(view(&state, "a"), None);
    }
}
