//! The engine's handle on a server store: every call the engine makes goes
//! through it, and with the `metrics` feature each is timed into
//! `vishnu_store_seconds`. The timing wraps the store's own future in place,
//! so a call allocates nothing beyond what the store itself does.
//!
//! Records pass through it shared (`Arc<Record>`). The [`MemoryStore`] keeps
//! them that way: the engine calls it directly, with no boxed future, and a
//! read or a save copies no record. Any other store gets and gives owned
//! records through [`SessionStore`], as its trait says.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::id::StoreKey;
use crate::record::{Millis, Record};
use crate::store::memory::MemoryStore;
use crate::store::{Cleanup, SaveOutcome, SessionStore, StoreError};

/// A server store, as the engine calls it: through `*self.store`, not the
/// `Arc`'s own `SessionStore` impl, which would box every call's future once
/// more.
pub(crate) struct Metered {
    store: Arc<dyn SessionStore>,
    /// The same store, when it is a [`MemoryStore`]: called directly.
    memory: Option<MemoryStore>,
    /// The engine and the memory store both read the system clock: a load
    /// takes one reading for both.
    one_clock: bool,
    #[cfg(feature = "metrics")]
    keys: [metrics::Key; 6],
}

/// A store call: an index into [`Metered`]'s keys.
#[derive(Clone, Copy)]
enum Op {
    Load,
    Create,
    Save,
    Delete,
    Touch,
    DeleteExpired,
}

#[cfg(feature = "metrics")]
mod timing {
    use metrics::{Key, Label, Level, Metadata};

    /// The `op` label of each [`Op`](super::Op), in its order.
    const OPS: [&str; 6] = [
        "load",
        "create",
        "save",
        "delete",
        "touch",
        "delete_expired",
    ];

    /// What `histogram!` would pass along: this module, at level INFO.
    static METADATA: Metadata<'static> =
        Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

    /// Each operation's histogram key, labels included, built once: the
    /// `histogram!` macro would build (and allocate) it on every call.
    pub(super) fn keys(store: &'static str) -> [Key; 6] {
        OPS.map(|op| {
            Key::from_parts(
                "vishnu_store_seconds",
                vec![Label::new("op", op), Label::new("store", store)],
            )
        })
    }

    /// Records the time since `started` under `key`. The clock is read only
    /// when a recorder takes the value: the no-op recorder (none installed)
    /// never asks for it.
    pub(super) fn record(key: &Key, started: std::time::Instant) {
        metrics::with_recorder(|r| r.register_histogram(key, &METADATA)).record(Since(started));
    }

    /// The seconds since an instant, read from the clock when converted.
    struct Since(std::time::Instant);

    impl metrics::IntoF64 for Since {
        fn into_f64(self) -> f64 {
            self.0.elapsed().as_secs_f64()
        }
    }
}

impl Metered {
    /// `memory` is `store` itself when that is a [`MemoryStore`];
    /// `system_clock`, whether the engine reads the [`SystemClock`](crate::SystemClock).
    pub(crate) fn new(
        store: Arc<dyn SessionStore>,
        memory: Option<MemoryStore>,
        system_clock: bool,
    ) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            keys: timing::keys(store.kind()),
            store,
            one_clock: system_clock && memory.as_ref().is_some_and(MemoryStore::on_system_clock),
            memory,
        }
    }

    #[cfg(feature = "metrics")]
    async fn timed<T>(&self, op: Op, call: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let out = call.await;
        timing::record(&self.keys[op as usize], started);
        out
    }

    #[cfg(not(feature = "metrics"))]
    async fn timed<T>(&self, _: Op, call: impl std::future::Future<Output = T>) -> T {
        call.await
    }

    /// [`SessionStore::load`], and `clock`'s reading when the record was
    /// read: after a server's answer; with the memory store, the one reading
    /// the store checks expiry against too, when both read the system clock.
    pub(crate) async fn load_at(
        &self,
        key: &StoreKey,
        clock: &dyn Clock,
    ) -> Result<(Option<Arc<Record>>, Millis), StoreError> {
        if let Some(m) = &self.memory {
            return self
                .timed(Op::Load, async {
                    let now = clock.now_millis();
                    let found = if self.one_clock {
                        m.load_shared_at(key, now)
                    } else {
                        m.load_shared(key)
                    };
                    Ok((found, now))
                })
                .await;
        }
        let loaded = self.timed(Op::Load, (*self.store).load(key)).await?;
        Ok((loaded.map(Arc::new), clock.now_millis()))
    }

    /// [`SessionStore::load`].
    pub(crate) async fn load(&self, key: &StoreKey) -> Result<Option<Arc<Record>>, StoreError> {
        if let Some(m) = &self.memory {
            return self.timed(Op::Load, async { Ok(m.load_shared(key)) }).await;
        }
        let loaded = self.timed(Op::Load, (*self.store).load(key)).await?;
        Ok(loaded.map(Arc::new))
    }

    /// [`SessionStore::create`].
    pub(crate) async fn create(
        &self,
        key: &StoreKey,
        record: &Arc<Record>,
    ) -> Result<bool, StoreError> {
        if let Some(m) = &self.memory {
            return self
                .timed(Op::Create, async { Ok(m.create_shared(key, record)) })
                .await;
        }
        self.timed(Op::Create, (*self.store).create(key, record))
            .await
    }

    /// [`SessionStore::save`] of a record drafted at `now`, a reading of the
    /// engine's clock: the memory store checks expiry against it when both
    /// read the system clock, rather than reading the clock again.
    pub(crate) async fn save_at(
        &self,
        key: &StoreKey,
        record: &Arc<Record>,
        expected_version: u64,
        now: Millis,
    ) -> Result<SaveOutcome, StoreError> {
        match &self.memory {
            Some(m) if self.one_clock => {
                self.timed(Op::Save, async {
                    Ok(m.save_shared_at(key, record, expected_version, now))
                })
                .await
            }
            _ => self.save(key, record, expected_version).await,
        }
    }

    /// [`SessionStore::save`].
    pub(crate) async fn save(
        &self,
        key: &StoreKey,
        record: &Arc<Record>,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        if let Some(m) = &self.memory {
            return self
                .timed(Op::Save, async {
                    Ok(m.save_shared(key, record, expected_version))
                })
                .await;
        }
        self.timed(Op::Save, (*self.store).save(key, record, expected_version))
            .await
    }

    /// [`SessionStore::delete`].
    pub(crate) async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        if let Some(m) = &self.memory {
            return self
                .timed(Op::Delete, async {
                    m.delete_now(key);
                    Ok(())
                })
                .await;
        }
        self.timed(Op::Delete, (*self.store).delete(key)).await
    }

    /// [`SessionStore::touch`].
    pub(crate) async fn touch(
        &self,
        key: &StoreKey,
        last_access: Millis,
        expires_at: Millis,
    ) -> Result<bool, StoreError> {
        if let Some(m) = &self.memory {
            return self
                .timed(Op::Touch, async {
                    Ok(m.touch_now(key, last_access, expires_at))
                })
                .await;
        }
        self.timed(Op::Touch, (*self.store).touch(key, last_access, expires_at))
            .await
    }

    /// [`SessionStore::delete_expired`].
    pub(crate) async fn delete_expired(
        &self,
        now: Millis,
        dormant_for: Duration,
        limit: usize,
    ) -> Result<Cleanup, StoreError> {
        self.timed(
            Op::DeleteExpired,
            (*self.store).delete_expired(now, dormant_for, limit),
        )
        .await
    }
}
