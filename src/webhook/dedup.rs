//! Remembering delivered `Msg-Id`s for a window, in bounded memory.
//!
//! A `Msg-Id` goes through three states: unknown, in flight (its first delivery is in the inner
//! service), delivered (the inner service answered 2xx). A retry of a delivered id is answered
//! by the layer; a retry of an id in flight waits for the first delivery to end; a delivery that
//! fails (an error, a non-2xx answer, or a future dropped half-way) forgets the id, so Douyin's
//! retry reaches the inner service. Ids are kept as their SHA-256 (32 bytes whatever the header's
//! length), in insertion order, and dropped after the window or, past the capacity, oldest first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

type Key = [u8; 32];

/// The shared table of the `Msg-Id`s seen.
pub(crate) struct Dedup {
    window: Duration,
    capacity: usize,
    state: Mutex<State>,
}

impl std::fmt::Debug for Dedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedup")
            .field("window", &self.window)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    next_seq: u64,
    entries: HashMap<Key, Entry>,
    /// `(key, seq, inserted)` in insertion order; a record whose `seq` no longer matches the
    /// entry is stale (the id was forgotten and seen again) and is skipped.
    order: VecDeque<(Key, u64, Instant)>,
}

struct Entry {
    seq: u64,
    status: Status,
}

enum Status {
    /// The first delivery is running; waiters subscribe and wake when the sender is dropped.
    InFlight(watch::Sender<()>),
    Delivered,
}

/// What to do with a delivery.
pub(crate) enum Claim {
    /// The first delivery of this id (or a retry of a failed one): run it, then finish the
    /// ticket.
    Run(Ticket),
    /// Delivered already, within the window.
    Duplicate,
    /// Another delivery of this id is running: wait for it, then claim again.
    Wait(watch::Receiver<()>),
}

impl Dedup {
    pub(crate) fn new(capacity: usize, window: Duration) -> Self {
        Self {
            window,
            capacity,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every point a panic could occur (none is expected):
        // a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims `msg_id` for a delivery.
    pub(crate) fn claim(self: &Arc<Self>, msg_id: &[u8]) -> Claim {
        let key: Key = Sha256::digest(msg_id).into();
        let now = Instant::now();
        let mut state = self.lock();
        state.expire(now, self.window);
        if let Some(entry) = state.entries.get(&key) {
            return match &entry.status {
                Status::Delivered => Claim::Duplicate,
                Status::InFlight(tx) => Claim::Wait(tx.subscribe()),
            };
        }
        while state.entries.len() >= self.capacity.max(1) {
            if !state.evict_oldest() {
                break;
            }
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        let (tx, _) = watch::channel(());
        state.entries.insert(
            key,
            Entry {
                seq,
                status: Status::InFlight(tx),
            },
        );
        state.order.push_back((key, seq, now));
        state.compact(self.capacity);
        Claim::Run(Ticket {
            dedup: Arc::clone(self),
            key,
            seq,
            finished: false,
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl State {
    /// Drops the records older than the window (and their entries, if still theirs).
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some(&(key, seq, at)) = self.order.front() {
            if now.saturating_duration_since(at) < window {
                break;
            }
            self.order.pop_front();
            self.remove_if(key, seq);
        }
    }

    /// Drops the oldest live entry; `false` if there was none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((key, seq, _)) = self.order.pop_front() {
            if self.remove_if(key, seq) {
                return true;
            }
        }
        false
    }

    fn remove_if(&mut self, key: Key, seq: u64) -> bool {
        if self.entries.get(&key).is_some_and(|e| e.seq == seq) {
            self.entries.remove(&key);
            true
        } else {
            false
        }
    }

    /// Keeps the order queue within a small multiple of the capacity when forgotten ids leave
    /// stale records behind.
    fn compact(&mut self, capacity: usize) {
        if self.order.len() > 2 * capacity.max(1) + 16 {
            let entries = &self.entries;
            self.order
                .retain(|(key, seq, _)| entries.get(key).is_some_and(|e| e.seq == *seq));
        }
    }
}

/// The right to run the first delivery of an id. Dropped without [`Ticket::finish`] (the
/// delivery's future was dropped, or panicked), it forgets the id.
pub(crate) struct Ticket {
    dedup: Arc<Dedup>,
    key: Key,
    seq: u64,
    finished: bool,
}

impl Ticket {
    /// Ends the delivery: `delivered` marks the id delivered for the rest of its window,
    /// otherwise the id is forgotten so a retry runs. Waiters wake either way.
    pub(crate) fn finish(mut self, delivered: bool) {
        self.finished = true;
        let mut state = self.dedup.lock();
        if delivered {
            if let Some(entry) = state.entries.get_mut(&self.key) {
                if entry.seq == self.seq {
                    entry.status = Status::Delivered; // drops the sender: waiters wake
                }
            }
        } else {
            state.remove_if(self.key, self.seq);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            self.dedup.lock().remove_if(self.key, self.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(claim: Claim) -> Ticket {
        match claim {
            Claim::Run(t) => t,
            Claim::Duplicate => panic!("expected Run, got Duplicate"),
            Claim::Wait(_) => panic!("expected Run, got Wait"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn delivered_ids_are_duplicates_until_the_window_ends() {
        let d = Arc::new(Dedup::new(10, Duration::from_secs(60)));
        run(d.claim(b"a")).finish(true);
        assert!(matches!(d.claim(b"a"), Claim::Duplicate));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(matches!(d.claim(b"a"), Claim::Duplicate));
        tokio::time::advance(Duration::from_secs(1)).await;
        run(d.claim(b"a")).finish(true);
        assert_eq!(d.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_or_dropped_deliveries_are_forgotten() {
        let d = Arc::new(Dedup::new(10, Duration::from_secs(60)));
        run(d.claim(b"a")).finish(false);
        let t = run(d.claim(b"a"));
        drop(t);
        run(d.claim(b"a")).finish(true);
        assert!(matches!(d.claim(b"a"), Claim::Duplicate));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_in_flight_waits_for_the_first() {
        let d = Arc::new(Dedup::new(10, Duration::from_secs(60)));
        let first = run(d.claim(b"a"));
        let Claim::Wait(mut rx) = d.claim(b"a") else {
            panic!("expected Wait");
        };
        first.finish(true);
        assert!(rx.changed().await.is_err(), "the waiter wakes");
        assert!(matches!(d.claim(b"a"), Claim::Duplicate));

        let second = run(d.claim(b"b"));
        let Claim::Wait(mut rx) = d.claim(b"b") else {
            panic!("expected Wait");
        };
        second.finish(false);
        assert!(rx.changed().await.is_err(), "the waiter wakes");
        run(d.claim(b"b")).finish(true);
    }

    #[tokio::test(start_paused = true)]
    async fn capacity_bounds_memory_oldest_first() {
        let d = Arc::new(Dedup::new(3, Duration::from_secs(3600)));
        for id in [b"1", b"2", b"3", b"4"] {
            run(d.claim(id)).finish(true);
        }
        assert_eq!(d.len(), 3);
        // "1" was evicted, "2".."4" are remembered.
        assert!(matches!(d.claim(b"4"), Claim::Duplicate));
        assert!(matches!(d.claim(b"2"), Claim::Duplicate));
        run(d.claim(b"1")).finish(true);
        assert!(matches!(d.claim(b"3"), Claim::Duplicate));
        assert_eq!(d.len(), 3);
        // A stale ticket of an evicted id changes nothing.
        let t = run(d.claim(b"x"));
        for id in [b"5", b"6", b"7"] {
            run(d.claim(id)).finish(true);
        }
        t.finish(true);
        assert!(matches!(d.claim(b"x"), Claim::Run(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn forgotten_ids_leave_a_bounded_queue() {
        let d = Arc::new(Dedup::new(4, Duration::from_secs(3600)));
        for _ in 0..1000 {
            run(d.claim(b"flaky")).finish(false);
        }
        assert!(d.lock().order.len() <= 2 * 4 + 17);
        assert_eq!(d.len(), 0);
    }
}
