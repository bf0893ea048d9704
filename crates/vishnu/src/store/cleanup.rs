//! [`spawn_cleanup`]: a background task that sweeps expired and dormant records.
//!
//! Stores without native expiry (SQL, and the memory store when it must stay small) keep
//! expired rows until something deletes them. Loads already ignore them; this task reclaims
//! the space.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::clock::{Clock, SystemClock};
use crate::record::Millis;
use crate::store::{Cleanup, SessionStore, StoreError};

/// Shortest period accepted, so that a zero `every` cannot spin.
const MIN_PERIOD: Duration = Duration::from_millis(10);

/// Spawns a tokio task that, every `every` (the first time at once), removes the records that
/// are expired or were not used for `dormant_for`, in batches of `limit`, until the store says
/// there are no more. Errors are logged (with `tracing`) and retried at the next tick.
///
/// The task runs until the returned handle is aborted or the runtime shuts down. It must be
/// called inside a tokio runtime. Note that `dormant_for` counts from each record's
/// `last_access`: a zero `dormant_for` removes every record.
///
/// ```no_run
/// # async fn run(config: vishnu::Config) {
/// use std::time::Duration;
///
/// let cleanup = vishnu::spawn_cleanup(
///     config.store().clone(),
///     Duration::from_secs(60),     // every minute
///     Duration::from_secs(86_400), // forget sessions unused for a day
///     1_000,                       // rows per DELETE, to keep transactions short
/// );
/// // at shutdown:
/// cleanup.abort();
/// # }
/// ```
pub fn spawn_cleanup(
    store: Arc<dyn SessionStore>,
    every: Duration,
    dormant_for: Duration,
    limit: usize,
) -> JoinHandle<()> {
    spawn_cleanup_with_clock(store, Arc::new(SystemClock), every, dormant_for, limit)
}

/// [`spawn_cleanup`] with the time taken from `clock`: use the engine's clock
/// (what [`Engine::spawn_cleanup`](crate::Engine::spawn_cleanup) does), so
/// that cleanup and the engine agree on what has expired.
pub fn spawn_cleanup_with_clock(
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    every: Duration,
    dormant_for: Duration,
    limit: usize,
) -> JoinHandle<()> {
    spawn_sweeps(clock, every, limit, move |now, limit| {
        let store = store.clone();
        async move { store.delete_expired(now, dormant_for, limit).await }
    })
}

/// The task behind [`spawn_cleanup_with_clock`] (and
/// [`Engine::spawn_cleanup`](crate::Engine::spawn_cleanup)): every `every`,
/// `delete(now, limit)` in batches until a batch says there is no more.
pub(crate) fn spawn_sweeps<F, Fut>(
    clock: Arc<dyn Clock>,
    every: Duration,
    limit: usize,
    delete: F,
) -> JoinHandle<()>
where
    F: Fn(Millis, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Cleanup, StoreError>> + Send,
{
    let every = every.max(MIN_PERIOD);
    let limit = limit.max(1);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            sweep(&*clock, limit, &delete).await;
        }
    })
}

/// Deletes batches until the store reports no more, or fails, or stops making progress.
async fn sweep<F, Fut>(clock: &dyn Clock, limit: usize, delete: &F)
where
    F: Fn(Millis, usize) -> Fut,
    Fut: Future<Output = Result<Cleanup, StoreError>>,
{
    let mut removed = 0u64;
    loop {
        match delete(clock.now_millis(), limit).await {
            Ok(batch) => {
                removed += batch.removed;
                // A batch that removed nothing yet claims more (rows locked by another
                // sweeper, say) would loop hot: leave them for the next tick.
                if !batch.more || batch.removed == 0 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            Err(error) => {
                tracing::warn!(%error, removed, "session cleanup failed; retrying at the next tick");
                return;
            }
        }
    }
    if removed > 0 {
        tracing::debug!(removed, "session cleanup removed expired records");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;
    use crate::record::{Millis, Record};
    use crate::store::memory::MemoryStore;
    use serde_json::Map;

    #[tokio::test]
    async fn removes_expired_records_in_batches_and_keeps_live_ones() {
        let store = Arc::new(MemoryStore::new());
        let now = SystemClock.now_millis();
        for i in 0..25u8 {
            let key = SessionId::from_bytes([i; 16]).store_key();
            // Created long ago and expired, except the last five.
            let expires_at = if i < 20 { now - 1_000 } else { now + 60_000 };
            let record = Record::new(Map::new(), now - 5_000, expires_at);
            assert!(store.create(&key, &record).await.expect("create"));
        }
        let task = spawn_cleanup(
            store.clone(),
            Duration::from_secs(3600),
            Duration::from_secs(3600),
            3,
        );
        for _ in 0..200 {
            if store.len() == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        task.abort();
        assert_eq!(
            store.len(),
            5,
            "one tick removes every expired record, batch by batch"
        );
    }

    /// A clock a day ahead of the system's.
    struct Ahead;
    impl Clock for Ahead {
        fn now_millis(&self) -> Millis {
            SystemClock.now_millis() + 86_400_000
        }
    }

    #[tokio::test]
    async fn cleanup_asks_the_clock_it_is_given() {
        let store = Arc::new(MemoryStore::new());
        let now = SystemClock.now_millis();
        let key = SessionId::from_bytes([1; 16]).store_key();
        // Live by the system clock, expired by a clock a day ahead.
        let record = Record::new(Map::new(), now, now + 3_600_000);
        assert!(store.create(&key, &record).await.expect("create"));
        let delete = |now, limit| store.delete_expired(now, Duration::from_secs(7 * 86_400), limit);
        sweep(&SystemClock, 10, &delete).await;
        assert_eq!(store.len(), 1, "live by the system clock");
        let task = spawn_cleanup_with_clock(
            store.clone(),
            Arc::new(Ahead),
            Duration::from_secs(3600),
            Duration::from_secs(7 * 86_400),
            10,
        );
        for _ in 0..200 {
            if store.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        task.abort();
        assert!(store.is_empty(), "expired by the clock it was given");
    }
}
