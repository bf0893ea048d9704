//! The engine's handle on a server store: every call the engine makes goes
//! through it, and with the `metrics` feature each is timed into
//! `vishnu_store_seconds`. The timing wraps the store's own future in place,
//! so a call allocates nothing beyond what the store itself does.

use std::sync::Arc;
use std::time::Duration;

use crate::id::StoreKey;
use crate::record::{Millis, Record};
use crate::store::{Cleanup, SaveOutcome, SessionStore, StoreError};

/// A server store, as the engine calls it: through `*self.store`, not the
/// `Arc`'s own `SessionStore` impl, which would box every call's future once
/// more.
pub(crate) struct Metered {
    store: Arc<dyn SessionStore>,
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
    pub(crate) fn new(store: Arc<dyn SessionStore>) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            keys: timing::keys(store.kind()),
            store,
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

    /// [`SessionStore::load`].
    pub(crate) async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        self.timed(Op::Load, (*self.store).load(key)).await
    }

    /// [`SessionStore::create`].
    pub(crate) async fn create(&self, key: &StoreKey, record: &Record) -> Result<bool, StoreError> {
        self.timed(Op::Create, (*self.store).create(key, record))
            .await
    }

    /// [`SessionStore::save`].
    pub(crate) async fn save(
        &self,
        key: &StoreKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        self.timed(Op::Save, (*self.store).save(key, record, expected_version))
            .await
    }

    /// [`SessionStore::delete`].
    pub(crate) async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.timed(Op::Delete, (*self.store).delete(key)).await
    }

    /// [`SessionStore::touch`].
    pub(crate) async fn touch(
        &self,
        key: &StoreKey,
        last_access: Millis,
        expires_at: Millis,
    ) -> Result<bool, StoreError> {
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
