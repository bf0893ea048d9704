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
use crate::record::Record;
use crate::runtime::Runtime;

/// The session of the current request.
///
/// Get it with the axum extractor (`session: vishnu::Session` as a handler
/// argument) or, in a plain tower service, from the request extensions.
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
    pub(crate) record: Record,
}

impl Live {
    pub(crate) fn new(id: SessionId, key: StoreKey, record: Record) -> Self {
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
            match v {
                Some(v) => {
                    data.insert(k.clone(), v.clone());
                }
                None => {
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
    pub(crate) live: Option<Live>,
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
    if let Some(change) = state.pending.changes.get(key) {
        return change.clone();
    }
    if state.pending.cleared {
        return None;
    }
    state
        .live
        .as_ref()
        .and_then(|l| l.record.data.get(key).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live(id: u8) -> Live {
        let id = SessionId::from_bytes([id; crate::id::ID_LEN]);
        Live::new(id, id.store_key(), Record::new(Map::new(), 0, 1))
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

    #[test]
    fn the_view_is_the_delta_over_the_stored_data() {
        let mut l = live(1);
        l.record.data.insert("a".into(), json!(1));
        l.record.data.insert("b".into(), json!(2));
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
