//! [`MemoryStore`]: the embedded store, for development, tests and single-process apps.

use std::collections::HashMap;
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
/// capacity bound, past which the records closest to expiry are evicted.
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
}

#[derive(Default)]
struct Shard {
    records: HashMap<StoreKey, Record, KeyHash>,
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

/// Hashes a [`StoreKey`] to its digest bits (`StoreKey`'s `Hash` writes its text).
#[derive(Default)]
struct KeyHasher {
    hash: u64,
}

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.hash
    }
    fn write(&mut self, bytes: &[u8]) {
        // `str`'s Hash writes the text, then a terminator byte: keep the text's bits.
        if bytes.len() > 1 {
            self.hash = crate::id::digest_bits(bytes);
        }
    }
}

impl Shard {
    fn sweep(&mut self, now: Millis) {
        if now >= self.next_sweep {
            self.records.retain(|_, r| !r.is_expired(now));
            self.next_sweep = now.saturating_add(SWEEP_EVERY);
        }
    }

    fn live(&self, key: &StoreKey, now: Millis) -> Option<&Record> {
        self.records.get(key).filter(|r| !r.is_expired(now))
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
            }),
        }
    }

    fn rebuild(&self, per_shard_capacity: Option<usize>, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                per_shard_capacity,
                clock,
            }),
        }
    }

    /// Bounds the store to about `capacity` live records (rounded up to a
    /// multiple of 64). When a shard is full, creating a session first drops
    /// expired records, then the record closest to expiry.
    #[must_use]
    pub fn with_capacity(self, capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        self.rebuild(Some(per_shard), self.inner.clock.clone())
    }

    /// Uses another clock for eviction (tests). Call before sharing the store.
    #[must_use]
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        self.rebuild(self.inner.per_shard_capacity, clock)
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
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding a shard lock cannot leave a record half-written
    // (records are replaced whole), so a poisoned lock is safe to reuse.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let now = self.now();
        let mut shard = self.shard(key);
        shard.sweep(now);
        Ok(shard.live(key, now).cloned())
    }

    async fn create(&self, key: &StoreKey, record: &Record) -> Result<bool, StoreError> {
        let now = self.now();
        let capacity = self.inner.per_shard_capacity;
        let mut shard = self.shard(key);
        shard.sweep(now);
        if shard.live(key, now).is_some() {
            return Ok(false);
        }
        if let Some(cap) = capacity {
            if shard.records.len() >= cap {
                shard.records.retain(|_, r| !r.is_expired(now));
            }
            while shard.records.len() >= cap {
                let victim = shard
                    .records
                    .iter()
                    .min_by_key(|(_, r)| r.expires_at)
                    .map(|(k, _)| k.clone());
                match victim {
                    Some(k) => {
                        shard.records.remove(&k);
                        tracing::debug!(key = %k, "memory store full: evicted the session closest to expiry");
                    }
                    None => break,
                }
            }
        }
        shard.records.insert(key.clone(), record.clone());
        Ok(true)
    }

    async fn save(
        &self,
        key: &StoreKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let now = self.now();
        let mut shard = self.shard(key);
        match shard.records.get_mut(key) {
            Some(stored) if !stored.is_expired(now) => {
                if stored.version != expected_version {
                    return Ok(SaveOutcome::Conflict);
                }
                *stored = record.clone();
                Ok(SaveOutcome::Saved)
            }
            Some(_) => {
                shard.records.remove(key);
                Ok(SaveOutcome::Missing)
            }
            None => Ok(SaveOutcome::Missing),
        }
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.shard(key).records.remove(key);
        Ok(())
    }

    async fn touch(
        &self,
        key: &StoreKey,
        last_access: Millis,
        expires_at: Millis,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let mut shard = self.shard(key);
        match shard.records.get_mut(key) {
            Some(stored) if !stored.is_expired(now) => {
                // Neither moves backwards: a late touch from an older request
                // must not undo a longer timeout another request just saved.
                stored.last_access = stored.last_access.max(last_access);
                stored.expires_at = stored.expires_at.max(expires_at);
                Ok(true)
            }
            _ => Ok(false),
        }
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
                .filter(|(_, r)| r.is_expired(now) || r.last_access <= cutoff)
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                if budget == 0 {
                    cleanup.more = true;
                    return Ok(cleanup);
                }
                shard.records.remove(&k);
                budget -= 1;
                cleanup.removed += 1;
            }
        }
        Ok(cleanup)
    }
}
