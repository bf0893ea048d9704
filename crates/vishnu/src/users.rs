//! A user's sessions: the per-user index behind listing and revoking.
//!
//! Each user with bound sessions has one index record in the same store as
//! the sessions, under `SHA-256("vishnu user index v1\0" || user id)`. It maps
//! each session's handle to the store keys that session may live under (its
//! current key, and the key it is moving to while an id change is under way).
//! Only store keys are kept: nothing in the index is an id or a cookie.
//!
//! The index is an ordinary record written with compare-and-set, so it works
//! in every server store alike (Redis Cluster included: it is one key), and
//! its compare-and-set orders every change to a user's set of sessions:
//!
//! - binding (and every id change of a bound session) adds the new key to the
//!   index *before* the session record is written, so a crash leaves at most a
//!   stale entry, never an unlisted session;
//! - an id change of a bound session whose entry is gone was revoked: it
//!   backs out;
//! - revoking removes entries with compare-and-set, then deletes their keys
//!   in the order they were added. An id change from `K` to `N` creates `N`
//!   before its compare-and-set on `K`, so deleting `K` first makes that
//!   compare-and-set fail and the change backs out (deleting `N`).
//!
//! Listing reads the index and each listed key (1 + n round trips), drops
//! what has expired or moved, and prunes those keys from the index.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::cookie::MAX_COOKIE_AGE;
use crate::error::SessionError;
use crate::id::StoreKey;
use crate::record::{Millis, Record};
use crate::runtime::Runtime;
use crate::store::SaveOutcome;

/// How many compare-and-set rounds an index change tries before giving up.
const MAX_ATTEMPTS: u32 = 64;

/// One of a user's sessions, as [`Engine::sessions_of`](crate::Engine::sessions_of) lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionInfo {
    /// Opaque and stable across id changes; never an id, nor derivable into one.
    pub handle: String,
    /// When the session was created (ms since the epoch).
    pub created_at: Millis,
    /// When the session was last used (ms since the epoch).
    pub last_access: Millis,
    /// When the session expires unless used (ms since the epoch).
    pub expires_at: Millis,
    /// The label set with [`Session::set_label`](crate::Session::set_label).
    pub label: Option<String>,
    /// Whether this is the session of the request that asked.
    pub current: bool,
}

/// The store key of `user`'s index.
pub(crate) fn index_key(user: &str) -> StoreKey {
    StoreKey::hashed(b"vishnu user index v1\0", user.as_bytes())
}

/// A fresh handle: 16 random bytes, base64url.
pub(crate) fn new_handle() -> Result<String, SessionError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| SessionError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A listed key, and when it was listed: a key is listed before its record
/// is written, so an absent record is only taken as gone once the writer has
/// had time to write it.
#[derive(Clone)]
struct Listed {
    key: String,
    at: Millis,
}

/// A key listed but absent for this long is gone (a writer finishes well within it).
const ABSENT_GRACE: Millis = 60_000;

fn keys_of(entry: &Value) -> Vec<Listed> {
    entry
        .get("keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(|k| {
                    Some(Listed {
                        key: k.get("k")?.as_str()?.to_owned(),
                        at: k.get("at")?.as_u64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn entry(keys: &[Listed]) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .map(|l| json!({ "k": l.key, "at": l.at }))
        .collect();
    json!({ "keys": keys })
}

/// Changes `user`'s index with compare-and-set: `change` edits the entries
/// and says whether to write. Returns what `change` returned last.
async fn change_index<T>(
    rt: &Runtime,
    user: &str,
    mut change: impl FnMut(&mut Map<String, Value>, Millis) -> (bool, T),
) -> Result<T, SessionError> {
    let store = rt.server_store()?;
    let key = index_key(user);
    for _ in 0..MAX_ATTEMPTS {
        let now = rt.now();
        let stored = store.load(&key).await?.filter(|r| !r.is_expired(now));
        // The index lives as long as a session could: it is raised on every
        // bind and id change, and dormant-record cleanup must never take it
        // (its last access counts as its expiry).
        let until = now.saturating_add(millis(MAX_COOKIE_AGE));
        let (mut record, expected) = match stored {
            Some(r) => {
                let v = r.version;
                (Arc::unwrap_or_clone(r), Some(v))
            }
            None => {
                // The index belongs to the user: stores that evict (the memory
                // store) keep it with the logged-in sessions, not the anonymous ones.
                let mut r = Record::new(Map::new(), now, until);
                r.user = Some(user.to_owned());
                (r, None)
            }
        };
        let (write, result) = change(&mut record.data, now);
        if !write {
            return Ok(result);
        }
        record.expires_at = record.expires_at.max(until);
        record.last_access = record.expires_at;
        let written = match expected {
            Some(v) => {
                record.version = v.wrapping_add(1);
                store.save(&key, &Arc::new(record), v).await? == SaveOutcome::Saved
            }
            None => store.create(&key, &Arc::new(record)).await?,
        };
        if written {
            return Ok(result);
        }
    }
    Err(SessionError::TooManyConflicts)
}

/// Lists `key` under `user`'s `handle`, before the session is written there.
/// `forget` is a key the session has certainly left (its id changed since).
/// With `must_exist`, a missing entry means the session was revoked: returns
/// `false` and writes nothing.
pub(crate) async fn list_key(
    rt: &Runtime,
    user: &str,
    handle: &str,
    key: &StoreKey,
    forget: Option<&str>,
    must_exist: bool,
) -> Result<bool, SessionError> {
    change_index(rt, user, |entries, now| {
        let mut keys = match entries.get(handle) {
            Some(entry) => keys_of(entry),
            None if must_exist => return (false, false),
            None => Vec::new(),
        };
        keys.retain(|l| Some(l.key.as_str()) != forget && l.key != key.as_str());
        keys.push(Listed {
            key: key.as_str().to_owned(),
            at: now,
        });
        entries.insert(handle.to_owned(), entry(&keys));
        (true, true)
    })
    .await
}

/// Deletes the listed keys of the removed entries, oldest first (see the module docs).
async fn delete_keys(rt: &Runtime, removed: Vec<Vec<Listed>>) -> Result<(), SessionError> {
    let store = rt.server_store()?;
    for keys in removed {
        for listed in keys {
            store.delete(&StoreKey::from_stored(listed.key)).await?;
        }
    }
    Ok(())
}

/// Revokes the sessions of `user` whose handle `which` selects; returns how many.
pub(crate) async fn revoke_where(
    rt: &Runtime,
    user: &str,
    which: impl Fn(&str) -> bool,
) -> Result<usize, SessionError> {
    let removed = change_index(rt, user, |entries, _| {
        let handles: Vec<String> = entries.keys().filter(|h| which(h)).cloned().collect();
        let removed: Vec<Vec<Listed>> = handles
            .iter()
            .filter_map(|h| entries.remove(h))
            .map(|e| keys_of(&e))
            .collect();
        (!removed.is_empty(), removed)
    })
    .await?;
    let n = removed.len();
    delete_keys(rt, removed).await?;
    crate::telemetry::terminated(n as u64);
    Ok(n)
}

/// `user`'s live sessions; `current` marks the asking session's key.
pub(crate) async fn sessions_of(
    rt: &Runtime,
    user: &str,
    current: Option<&StoreKey>,
) -> Result<Vec<SessionInfo>, SessionError> {
    let store = rt.server_store()?;
    let now = rt.now();
    let Some(index) = store
        .load(&index_key(user))
        .await?
        .filter(|r| !r.is_expired(now))
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut dead: Vec<String> = Vec::new();
    for (handle, entry) in &index.data {
        for listed in keys_of(entry) {
            let store_key = StoreKey::from_stored(listed.key.clone());
            let record = store.load(&store_key).await?;
            match record {
                Some(r)
                    if r.moved.is_none()
                        && !rt.is_expired(&r, now)
                        && r.user.as_deref() == Some(user)
                        && r.handle.as_deref() == Some(handle.as_str()) =>
                {
                    out.push(SessionInfo {
                        handle: handle.clone(),
                        created_at: r.created_at,
                        last_access: r.last_access,
                        expires_at: r.expires_at,
                        label: r.label.clone(),
                        current: current == Some(&store_key),
                    });
                }
                // Not written yet, perhaps: an id change lists its new key first.
                None if now.saturating_sub(listed.at) < ABSENT_GRACE => {}
                // Moved, ended, expired or rebound: this key holds none of
                // the user's sessions now, and never will again (ids are not reused).
                _ => dead.push(listed.key),
            }
        }
    }
    if !dead.is_empty() {
        let pruned = change_index(rt, user, |entries, _| {
            let mut write = false;
            entries.retain(|_, value| {
                let keys = keys_of(value);
                let kept: Vec<Listed> = keys
                    .iter()
                    .filter(|l| !dead.contains(&l.key))
                    .cloned()
                    .collect();
                if kept.len() != keys.len() {
                    write = true;
                    *value = entry(&kept);
                }
                !kept.is_empty()
            });
            (write, ())
        })
        .await;
        if let Err(e) = pruned {
            tracing::debug!(error = %e, "could not prune a user's session index");
        }
    }
    // One session may show under two keys while its id changes: list it
    // once, as the current one if either is.
    out.sort_by(|a, b| a.handle.cmp(&b.handle).then(b.current.cmp(&a.current)));
    out.dedup_by(|a, b| a.handle == b.handle);
    out.sort_by(|a, b| {
        b.last_access
            .cmp(&a.last_access)
            .then(a.handle.cmp(&b.handle))
    });
    Ok(out)
}
