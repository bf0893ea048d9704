//! Turns: one process's writes to one session take turns (see
//! `engine::persist`), so that concurrent requests of one session do not
//! only retry each other's compare-and-set until one gives up.
//!
//! A turn belongs to the session, not to a stripe of sessions: the sessions
//! are spread over 1 024 shards of a small map, each entry the lock of one
//! session that is writing (or waiting to), made when its first write
//! arrives and dropped when its last one leaves. With striped locks instead,
//! two of 64 sessions saving at once share a stripe about twice per 64
//! (64·63/2/1 024), and one waits for the other's whole store round trip:
//! that wait was the longest part of the write latency's tail.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::id::StoreKey;

/// How many shards the sessions' turns are spread over.
const SHARDS: usize = 1024;

/// The sessions of one shard that are writing: each one's key digest bits
/// and lock; and one lock nobody holds, kept for the next write, so that an
/// uncontended save allocates none.
#[derive(Default)]
struct Shard {
    writing: Vec<(u64, Arc<AsyncMutex<()>>)>,
    spare: Option<Arc<AsyncMutex<()>>>,
}

/// The turns of every session this process is writing.
pub(crate) struct Turns {
    shards: Box<[Mutex<Shard>]>,
}

/// A session's turn, held while its write runs.
pub(crate) struct Turn<'a> {
    // Dropped first: the lock is released before the ticket is given back.
    _held: OwnedMutexGuard<()>,
    _ticket: Ticket<'a>,
}

/// A place in a session's line: the entry lives while someone holds one.
pub(crate) struct Ticket<'a> {
    turns: &'a Turns,
    digest: u64,
    lock: Arc<AsyncMutex<()>>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut shard = self.turns.shard(self.digest);
        // The shard's copy and this one: nobody else holds or waits.
        if Arc::strong_count(&self.lock) == 2 {
            shard
                .writing
                .retain(|(_, lock)| !Arc::ptr_eq(lock, &self.lock));
            // Unlocked (a turn releases its guard before its ticket) and
            // referenced by nobody else: safe to hand to the next writer.
            if shard.spare.is_none() {
                shard.spare = Some(self.lock.clone());
            }
        }
    }
}

impl Default for Turns {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Turns {
    fn shard(&self, digest: u64) -> MutexGuard<'_, Shard> {
        let index = usize::try_from(digest % SHARDS as u64).unwrap_or(0);
        // The shard is only touched in short sections that cannot panic.
        self.shards[index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place in the line of the session under `key`.
    pub(crate) fn ticket(&self, key: &StoreKey) -> Ticket<'_> {
        let digest = key.digest_bits();
        let mut shard = self.shard(digest);
        let lock = match shard.writing.iter().find(|(d, _)| *d == digest) {
            Some((_, lock)) => lock.clone(),
            None => {
                let lock = shard
                    .spare
                    .take()
                    .unwrap_or_else(|| Arc::new(AsyncMutex::new(())));
                shard.writing.push((digest, lock.clone()));
                lock
            }
        };
        Ticket {
            turns: self,
            digest,
            lock,
        }
    }

    /// The session's turn at once, or the ticket to wait with.
    pub(crate) fn try_take<'a>(&'a self, key: &StoreKey) -> Result<Turn<'a>, Ticket<'a>> {
        let ticket = self.ticket(key);
        match ticket.lock.clone().try_lock_owned() {
            Ok(held) => Ok(Turn {
                _held: held,
                _ticket: ticket,
            }),
            Err(_) => Err(ticket),
        }
    }

    /// The session's turn, when the writes before it are done.
    pub(crate) async fn take<'a>(&'a self, key: &StoreKey) -> Turn<'a> {
        match self.try_take(key) {
            Ok(turn) => turn,
            Err(ticket) => ticket.wait().await,
        }
    }
}

impl<'a> Ticket<'a> {
    /// Waits for the turn. Dropped while waiting, the ticket leaves the line.
    pub(crate) async fn wait(self) -> Turn<'a> {
        let held = self.lock.clone().lock_owned().await;
        Turn {
            _held: held,
            _ticket: self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;

    fn key() -> StoreKey {
        SessionId::generate().expect("rng").store_key()
    }

    /// Two keys in the same shard.
    fn neighbours() -> (StoreKey, StoreKey) {
        let a = key();
        loop {
            let b = key();
            if b.digest_bits() % SHARDS as u64 == a.digest_bits() % SHARDS as u64 {
                return (a, b);
            }
        }
    }

    fn entries(turns: &Turns, key: &StoreKey) -> usize {
        turns.shard(key.digest_bits()).writing.len()
    }

    #[test]
    fn a_session_waits_for_its_own_writes_only() {
        let turns = Turns::default();
        let (a, b) = neighbours();
        let first = turns.try_take(&a).ok().expect("free");
        assert!(turns.try_take(&a).is_err(), "a's second write waits");
        let other = turns
            .try_take(&b)
            .ok()
            .expect("b shares a's shard, not its turn");
        assert_eq!(entries(&turns, &a), 2);
        drop(first);
        let again = turns.try_take(&a).ok().expect("a's turn is free again");
        drop((again, other));
        assert_eq!(entries(&turns, &a), 0, "no entry outlives its writes");
    }

    #[test]
    fn a_finished_writes_lock_serves_the_next_write_of_its_shard() {
        let turns = Turns::default();
        let (a, b) = neighbours();
        let first = turns.try_take(&a).ok().expect("free");
        // Its address only: a copy of the `Arc` would keep the lock in use.
        let lock = Arc::as_ptr(&first._ticket.lock);
        drop(first);
        let second = turns.try_take(&b).ok().expect("the kept lock is free");
        assert_eq!(Arc::as_ptr(&second._ticket.lock), lock, "no new lock");
        let third = turns.try_take(&a).ok().expect("a does not wait for b");
        assert_ne!(Arc::as_ptr(&third._ticket.lock), lock, "b's lock is b's");
        assert_eq!(entries(&turns, &a), 2);
    }

    #[tokio::test]
    async fn a_waiter_gets_the_turn_and_a_dropped_waiter_leaves_no_entry() {
        let turns = Turns::default();
        let a = key();
        let first = turns.try_take(&a).ok().expect("free");
        let ticket = turns.try_take(&a).err().expect("taken");
        let waiting = ticket.wait();
        let mut waiting = Box::pin(waiting);
        assert!(
            futures_util::poll!(waiting.as_mut()).is_pending(),
            "waits while the first write runs"
        );
        drop(first);
        let second = waiting.await;
        assert_eq!(entries(&turns, &a), 1);
        drop(second);
        assert_eq!(entries(&turns, &a), 0);

        let first = turns.try_take(&a).ok().expect("free");
        let abandoned = turns.try_take(&a).err().expect("taken");
        drop(abandoned);
        let mut timed_out = Box::pin(turns.take(&a));
        assert!(futures_util::poll!(timed_out.as_mut()).is_pending());
        drop(timed_out);
        drop(first);
        assert_eq!(
            entries(&turns, &a),
            0,
            "an abandoned wait leaves nothing behind"
        );
        let _ = turns.take(&a).await;
    }
}
