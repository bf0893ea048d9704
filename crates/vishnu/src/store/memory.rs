//! [`MemoryStore`]: the embedded store, for development, tests and single-process apps.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::{Clock, SystemClock};
use crate::id::StoreKey;
use crate::record::{Millis, Record};
use crate::store::{Cleanup, SaveOutcome, SessionStore, StoreError};

const SHARDS: usize = 64;
/// How often a shard is swept of expired records, at most.
const SWEEP_EVERY: Millis = 1_000;

/// An in-process store: 64 independently locked shards, so concurrent requests
/// on different sessions rarely contend, with expired records evicted for real
/// (each shard is swept at most once a second, on use) and an optional
/// capacity bound, past which the least recently used session is evicted,
/// one that is bound to no user first: an attacker who creates sessions
/// pushes out other anonymous sessions, not logged-in users. Eviction costs
/// O(log n) (two ordered indexes per shard), never a scan.
///
/// Sessions live as long as the process: use a server store when the
/// application runs on several processes or must survive restarts.
///
/// ```
/// let store = vishnu::MemoryStore::new().with_capacity(100_000);
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Mutex<Shard>>,
    per_shard_capacity: Option<usize>,
    clock: Arc<dyn Clock>,
    /// `clock` is the [`SystemClock`]: the engine, on the same clock, may
    /// pass its own reading instead of this store taking another.
    system_clock: bool,
}

/// A record and when it was last used (a per-shard sequence number).
struct Entry {
    /// Shared with the requests that read it: a read takes a reference,
    /// not a copy, and a save hands over the record it built.
    record: Arc<Record>,
    used: u64,
}

#[derive(Default)]
struct Shard {
    /// Whether the LRU order is kept: only a bounded store evicts, so an
    /// unbounded one skips the two ordered indexes on every call.
    ordered: bool,
    records: HashMap<StoreKey, Entry, KeyHash>,
    /// Least recently used first: sessions bound to no user, evicted first…
    anonymous: BTreeMap<u64, StoreKey>,
    /// …then the others (bound sessions, user indexes).
    bound: BTreeMap<u64, StoreKey>,
    next_use: u64,
    next_sweep: Millis,
}

/// Store keys are already uniform (hex SHA-256 digests of ids the server drew
/// itself, so nobody can choose them): hashing them again with SipHash would
/// only cost time. This hasher keeps 64 bits of the digest.
#[derive(Default, Clone, Copy)]
struct KeyHash;

impl std::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher::default()
    }
}

/// Hashes a [`StoreKey`] to its digest bits, which `StoreKey`'s `Hash`
/// writes as one `u64`.
#[derive(Default)]
struct KeyHasher {
    hash: u64,
}

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.hash
    }
    fn write_u64(&mut self, bits: u64) {
        self.hash = bits;
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not reached for a `StoreKey`; any other bytes still hash.
        for &b in bytes {
            self.hash = self.hash.rotate_left(8) ^ u64::from(b);
        }
    }
}

impl Shard {
    /// The LRU order of sessions bound to a user (`bound`) or of the others.
    fn order(&mut self, bound: bool) -> &mut BTreeMap<u64, StoreKey> {
        if bound {
            &mut self.bound
        } else {
            &mut self.anonymous
        }
    }

    fn next_use(&mut self) -> u64 {
        self.next_use += 1;
        self.next_use
    }

    /// Inserts or replaces `key`'s record, as just used.
    fn put(&mut self, key: &StoreKey, record: Arc<Record>) {
        self.remove(key);
        let used = self.next_use();
        if self.ordered {
            self.order(record.user.is_some()).insert(used, key.clone());
        }
        self.records.insert(key.clone(), Entry { record, used });
    }

    /// Replaces the record of a `key` the shard holds, as just used: the
    /// entry and its key stay where they are (no copy of the key, no
    /// rehash); only its place in the LRU order moves.
    fn replace(&mut self, key: &StoreKey, record: Arc<Record>) {
        let used = self.next_use();
        let Some(entry) = self.records.get_mut(key) else {
            self.put(key, record);
            return;
        };
        let was_bound = entry.record.user.is_some();
        let bound = record.user.is_some();
        let old = std::mem::replace(&mut entry.used, used);
        entry.record = record;
        if self.ordered {
            self.reorder(key, (was_bound, old), (bound, used));
        }
    }

    fn remove(&mut self, key: &StoreKey) -> Option<Arc<Record>> {
        let entry = self.records.remove(key)?;
        if self.ordered {
            self.order(entry.record.user.is_some()).remove(&entry.used);
        }
        Some(entry.record)
    }

    /// Marks `key` as just used.
    fn used(&mut self, key: &StoreKey) {
        if !self.ordered {
            return;
        }
        let used = self.next_use();
        let Some(entry) = self.records.get_mut(key) else {
            return;
        };
        let (old, bound) = (
            std::mem::replace(&mut entry.used, used),
            entry.record.user.is_some(),
        );
        self.reorder(key, (bound, old), (bound, used));
    }

    /// Moves `key` from its place in one LRU order to another place (in the
    /// same order or the other one): the key itself moves, no copy of it.
    fn reorder(&mut self, key: &StoreKey, from: (bool, u64), to: (bool, u64)) {
        let moved = self
            .order(from.0)
            .remove(&from.1)
            .unwrap_or_else(|| key.clone());
        self.order(to.0).insert(to.1, moved);
    }

    fn sweep(&mut self, now: Millis) {
        if now >= self.next_sweep {
            let expired: Vec<StoreKey> = self
                .records
                .iter()
                .filter(|(_, e)| e.record.is_expired(now))
                .map(|(k, _)| k.clone())
                .collect();
            for key in expired {
                self.remove(&key);
            }
            self.next_sweep = now.saturating_add(SWEEP_EVERY);
        }
    }

    fn live(&self, key: &StoreKey, now: Millis) -> Option<&Arc<Record>> {
        self.records
            .get(key)
            .map(|e| &e.record)
            .filter(|r| !r.is_expired(now))
    }

    /// Evicts the least recently used session, an anonymous one if any.
    fn evict(&mut self) -> Option<StoreKey> {
        let (_, key) = self
            .anonymous
            .first_key_value()
            .or_else(|| self.bound.first_key_value())
            .map(|(u, k)| (*u, k.clone()))?;
        self.remove(&key);
        Some(key)
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("len", &self.len())
            .field(
                "capacity",
                &self.inner.per_shard_capacity.map(|c| c * SHARDS),
            )
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty, unbounded store.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                per_shard_capacity: None,
                clock: Arc::new(SystemClock),
                system_clock: true,
            }),
        }
    }

    fn rebuild(
        &self,
        per_shard_capacity: Option<usize>,
        clock: Arc<dyn Clock>,
        system_clock: bool,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                shards: (0..SHARDS)
                    .map(|_| {
                        Mutex::new(Shard {
                            ordered: per_shard_capacity.is_some(),
                            ..Shard::default()
                        })
                    })
                    .collect(),
                per_shard_capacity,
                clock,
                system_clock,
            }),
        }
    }

    /// Bounds the store to about `capacity` live records (rounded up to a
    /// multiple of 64). When a shard is full, creating a session evicts the
    /// least recently used one, preferring sessions bound to no user.
    #[must_use]
    pub fn with_capacity(self, capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        self.rebuild(
            Some(per_shard),
            self.inner.clock.clone(),
            self.inner.system_clock,
        )
    }

    /// Uses another clock for eviction (tests). Call before sharing the store.
    #[must_use]
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        self.rebuild(self.inner.per_shard_capacity, clock, false)
    }

    /// The number of records held, expired ones not yet evicted included.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| lock(s).records.len())
            .sum()
    }

    /// Whether the store holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &StoreKey) -> MutexGuard<'_, Shard> {
        // The low bits pick the shard; the hash map uses all 64.
        let index = usize::try_from(key.digest_bits() % SHARDS as u64).unwrap_or(0);
        lock(&self.inner.shards[index])
    }

    fn now(&self) -> Millis {
        self.inner.clock.now_millis()
    }

    /// Whether this store reads the [`SystemClock`] (no `with_clock`).
    pub(crate) fn on_system_clock(&self) -> bool {
        self.inner.system_clock
    }
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding a shard lock cannot leave a record half-written
    // (records are replaced whole), so a poisoned lock is safe to reuse.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemoryStore {
    /// [`SessionStore::load`], sharing the stored record instead of copying
    /// it. The engine calls this (and the other `*_shared` methods) directly:
    /// no boxed future, no copy of the record on a read, none on a save.
    pub(crate) fn load_shared(&self, key: &StoreKey) -> Option<Arc<Record>> {
        self.load_shared_at(key, self.now())
    }

    /// [`load_shared`](Self::load_shared) at `now`, a reading of this
    /// store's clock that the caller took.
    pub(crate) fn load_shared_at(&self, key: &StoreKey, now: Millis) -> Option<Arc<Record>> {
        let mut shard = self.shard(key);
        shard.sweep(now);
        let found = shard.live(key, now).cloned();
        if found.is_some() {
            shard.used(key);
        }
        found
    }

    /// [`SessionStore::create`], keeping `record` itself.
    pub(crate) fn create_shared(&self, key: &StoreKey, record: &Arc<Record>) -> bool {
        let now = self.now();
        let capacity = self.inner.per_shard_capacity;
        let mut shard = self.shard(key);
        shard.sweep(now);
        if shard.live(key, now).is_some() {
            return false;
        }
        if let Some(cap) = capacity {
            while shard.records.len() >= cap {
                match shard.evict() {
                    Some(k) => {
                        tracing::debug!(key = %k, "memory store full: evicted the least recently used session")
                    }
                    None => break,
                }
            }
        }
        shard.put(key, record.clone());
        true
    }

    /// [`SessionStore::save`], keeping `record` itself.
    pub(crate) fn save_shared(
        &self,
        key: &StoreKey,
        record: &Arc<Record>,
        expected_version: u64,
    ) -> SaveOutcome {
        self.save_shared_at(key, record, expected_version, self.now())
    }

    /// [`save_shared`](Self::save_shared) at `now`, a reading of this
    /// store's clock that the caller took.
    pub(crate) fn save_shared_at(
        &self,
        key: &StoreKey,
        record: &Arc<Record>,
        expected_version: u64,
        now: Millis,
    ) -> SaveOutcome {
        let mut shard = self.shard(key);
        match shard.records.get(key).map(|e| &e.record) {
            Some(stored) if !stored.is_expired(now) => {
                if stored.version != expected_version {
                    return SaveOutcome::Conflict;
                }
                shard.replace(key, record.clone());
                SaveOutcome::Saved
            }
            Some(_) => {
                shard.remove(key);
                SaveOutcome::Missing
            }
            None => SaveOutcome::Missing,
        }
    }

    /// [`SessionStore::delete`].
    pub(crate) fn delete_now(&self, key: &StoreKey) {
        self.shard(key).remove(key);
    }

    /// [`SessionStore::touch`].
    pub(crate) fn touch_now(
        &self,
        key: &StoreKey,
        last_access: Millis,
        expires_at: Millis,
    ) -> bool {
        let now = self.now();
        let mut shard = self.shard(key);
        match shard.records.get_mut(key).map(|e| &mut e.record) {
            Some(stored) if !stored.is_expired(now) => {
                // Neither moves backwards: a late touch from an older request
                // must not undo a longer timeout another request just saved.
                // A request still holding the record keeps its own copy.
                let stored = Arc::make_mut(stored);
                stored.last_access = stored.last_access.max(last_access);
                stored.expires_at = stored.expires_at.max(expires_at);
                shard.used(key);
                true
            }
            _ => false,
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        Ok(self.load_shared(key).map(|r| (*r).clone()))
    }

    async fn create(&self, key: &StoreKey, record: &Record) -> Result<bool, StoreError> {
        Ok(self.create_shared(key, &Arc::new(record.clone())))
    }

    async fn save(
        &self,
        key: &StoreKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        Ok(self.save_shared(key, &Arc::new(record.clone()), expected_version))
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.delete_now(key);
        Ok(())
    }

    async fn touch(
        &self,
        key: &StoreKey,
        last_access: Millis,
        expires_at: Millis,
    ) -> Result<bool, StoreError> {
        Ok(self.touch_now(key, last_access, expires_at))
    }

    async fn delete_expired(
        &self,
        now: Millis,
        dormant_for: Duration,
        limit: usize,
    ) -> Result<Cleanup, StoreError> {
        let dormant_ms = u64::try_from(dormant_for.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now.saturating_sub(dormant_ms);
        let mut cleanup = Cleanup::default();
        let mut budget = limit;
        for shard in &self.inner.shards {
            let mut shard = lock(shard);
            let doomed: Vec<StoreKey> = shard
                .records
                .iter()
                .filter(|(_, e)| e.record.is_expired(now) || e.record.last_access <= cutoff)
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                if budget == 0 {
                    cleanup.more = true;
                    return Ok(cleanup);
                }
                shard.remove(&k);
                budget -= 1;
                cleanup.removed += 1;
            }
        }
        Ok(cleanup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;
    use serde_json::Map;

    /// `n` fresh keys that all land in the same shard.
    fn keys_in_one_shard(n: usize) -> Vec<StoreKey> {
        let mut keys = Vec::new();
        while keys.len() < n {
            let key = SessionId::generate().expect("rng").store_key();
            if key.digest_bits() % SHARDS as u64 == 0 {
                keys.push(key);
            }
        }
        keys
    }

    fn record(user: Option<&str>) -> Record {
        let now = SystemClock.now_millis();
        let mut r = Record::new(Map::new(), now, now + 3_600_000);
        r.user = user.map(str::to_owned);
        r
    }

    /// Saves a fresh record for `user` over version `read` of `key`.
    async fn save(
        store: &MemoryStore,
        key: &StoreKey,
        user: Option<&str>,
        read: u64,
    ) -> SaveOutcome {
        let mut r = record(user);
        r.version = read + 1;
        store.save(key, &r, read).await.expect("save")
    }

    #[tokio::test]
    async fn a_full_shard_evicts_the_least_recently_used_anonymous_session_first() {
        // Three per shard.
        let store = MemoryStore::new().with_capacity(3 * SHARDS);
        let k = keys_in_one_shard(6);
        assert!(store
            .create(&k[0], &record(Some("ada")))
            .await
            .expect("create"));
        assert!(store.create(&k[1], &record(None)).await.expect("create"));
        assert!(store.create(&k[2], &record(None)).await.expect("create"));
        // k[1] is used again: k[2] is now the least recently used anonymous one.
        assert!(store.load(&k[1]).await.expect("load").is_some());
        assert!(store.create(&k[3], &record(None)).await.expect("create"));
        assert!(
            store.load(&k[2]).await.expect("load").is_none(),
            "LRU anonymous evicted"
        );
        assert!(
            store.load(&k[0]).await.expect("load").is_some(),
            "the user's session stays"
        );
        // A flood of anonymous sessions never pushes out the logged-in one.
        for key in &k[4..] {
            assert!(store.create(key, &record(None)).await.expect("create"));
        }
        assert!(store.load(&k[0]).await.expect("load").is_some());
        assert_eq!(store.len(), 3);
        // Only bound sessions left to evict: the least recently used of them goes.
        let b = keys_in_one_shard(3);
        for key in &b {
            assert!(store
                .create(key, &record(Some("bob")))
                .await
                .expect("create"));
        }
        assert!(store.load(&k[0]).await.expect("load").is_none());
        assert_eq!(store.len(), 3);
    }

    #[tokio::test]
    async fn binding_a_session_moves_it_out_of_the_first_eviction_line() {
        let store = MemoryStore::new().with_capacity(2 * SHARDS);
        let k = keys_in_one_shard(3);
        assert!(store.create(&k[0], &record(None)).await.expect("create"));
        assert!(store.create(&k[1], &record(None)).await.expect("create"));
        // k[0], the older, logs in (a save that binds it).
        assert_eq!(
            save(&store, &k[0], Some("ada"), 1).await,
            SaveOutcome::Saved
        );
        assert!(store.create(&k[2], &record(None)).await.expect("create"));
        assert!(store.load(&k[0]).await.expect("load").is_some());
        assert!(store.load(&k[1]).await.expect("load").is_none());
    }

    #[tokio::test]
    async fn saves_move_a_session_in_the_eviction_order_and_unbinding_moves_it_back() {
        let store = MemoryStore::new().with_capacity(2 * SHARDS);
        let k = keys_in_one_shard(4);
        assert!(store.create(&k[0], &record(None)).await.expect("create"));
        assert!(store.create(&k[1], &record(None)).await.expect("create"));
        // Saved three times, k[0] is the most recently used: k[1] goes first.
        for version in 1..4 {
            assert_eq!(save(&store, &k[0], None, version).await, SaveOutcome::Saved);
        }
        assert!(store.create(&k[2], &record(None)).await.expect("create"));
        assert!(store.load(&k[1]).await.expect("load").is_none());
        assert_eq!(store.len(), 2);
        // Bound, then unbound again (a logout): k[0] is back in the first
        // eviction line, and once k[2] is used, its least recently used.
        assert_eq!(
            save(&store, &k[0], Some("ada"), 4).await,
            SaveOutcome::Saved
        );
        assert_eq!(save(&store, &k[0], None, 5).await, SaveOutcome::Saved);
        assert!(store.load(&k[2]).await.expect("load").is_some());
        assert!(store.create(&k[3], &record(None)).await.expect("create"));
        assert!(store.load(&k[0]).await.expect("load").is_none());
        assert!(store.load(&k[2]).await.expect("load").is_some());
        assert_eq!(store.len(), 2);
    }
}
