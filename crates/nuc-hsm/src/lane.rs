//! A lane of HSM sessions of its own, for one kind of work that outsiders can cause at will
//! (OCSP responses, a nonce making each one a fresh signature): a fixed number of sessions and
//! a bounded queue in front of them, so that this work never takes more than its share of the
//! token, never piles up, and never touches the sessions issuance signs with.
//!
//! It owns the admission rule only: when every session is busy and the queue is full, a call
//! is refused at once with [`HsmError::Saturated`]. It must never open a session beyond its
//! fixed number, nor make a caller wait when the queue is full.

use std::sync::{Condvar, Mutex};

use cryptoki::session::Session;

use crate::pool::{HsmError, HsmKey, sign_on};

/// Signing on a fixed set of sessions of its own, behind a bounded queue.
pub struct HsmLane {
    sessions: Bounded<Session>,
}

impl std::fmt::Debug for HsmLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmLane")
            .field("sessions", &self.sessions.size)
            .field("queue", &self.sessions.max_waiting)
            .finish()
    }
}

impl HsmLane {
    pub(crate) fn new(sessions: Vec<Session>, queue: usize) -> Self {
        Self {
            sessions: Bounded::new(sessions, queue),
        }
    }

    /// [`crate::Hsm::sign`] on one of this lane's sessions; [`HsmError::Saturated`] at once
    /// when all are busy and the queue is full.
    pub fn sign(&self, key: &HsmKey, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.sessions
            .run(|s| sign_on(s, key, data))
            .map_err(|Full| HsmError::Saturated {
                sessions: self.sessions.size,
                queue: self.sessions.max_waiting,
            })?
    }
}

/// Items handed out one caller at a time, with at most `max_waiting` callers waiting for one.
pub(crate) struct Bounded<T> {
    state: Mutex<State<T>>,
    freed: Condvar,
    max_waiting: usize,
    size: usize,
}

struct State<T> {
    free: Vec<T>,
    waiting: usize,
}

/// Every item is in use and `max_waiting` callers already wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

impl<T> Bounded<T> {
    pub(crate) fn new(items: Vec<T>, max_waiting: usize) -> Self {
        Self {
            size: items.len(),
            state: Mutex::new(State {
                free: items,
                waiting: 0,
            }),
            freed: Condvar::new(),
            max_waiting,
        }
    }

    /// Runs `f` on an item of its own: at once when one is free, after a wait when the queue
    /// has room, never when it has none.
    pub(crate) fn run<R>(&self, f: impl FnOnce(&T) -> R) -> Result<R, Full> {
        let item = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.free.is_empty() && (st.waiting >= self.max_waiting || self.size == 0) {
                return Err(Full);
            }
            st.waiting += 1;
            let item = loop {
                if let Some(item) = st.free.pop() {
                    break item;
                }
                st = self.freed.wait(st).unwrap_or_else(|p| p.into_inner());
            };
            st.waiting -= 1;
            item
        };
        // The item goes back even when `f` panics, so that the lane never shrinks.
        let held = Held {
            lane: self,
            item: Some(item),
        };
        Ok(f(held.item()))
    }
}

/// An item out of its lane, returned when dropped.
struct Held<'a, T> {
    lane: &'a Bounded<T>,
    /// Always `Some` until dropped.
    item: Option<T>,
}

impl<T> Held<'_, T> {
    fn item(&self) -> &T {
        match &self.item {
            Some(item) => item,
            None => unreachable!("an item is held until drop"),
        }
    }
}

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            let mut st = self.lane.state.lock().unwrap_or_else(|p| p.into_inner());
            st.free.push(item);
            drop(st);
            self.lane.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;

    use super::*;

    /// Waits until `n` callers are queued.
    fn until_waiting(b: &Bounded<u32>, n: usize) {
        while b.state.lock().unwrap().waiting < n {
            std::thread::yield_now();
        }
    }

    #[test]
    fn saturated_lane_refuses_at_once_instead_of_queueing() {
        // One item, a queue of one: the holder, one waiter, then refusals.
        let lane = Arc::new(Bounded::new(vec![7u32], 1));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (held_tx, held_rx) = mpsc::channel::<()>();
        let holder = {
            let lane = lane.clone();
            std::thread::spawn(move || {
                lane.run(|_| {
                    held_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                })
            })
        };
        held_rx.recv().unwrap();
        let waiter = {
            let lane = lane.clone();
            std::thread::spawn(move || lane.run(|v| *v))
        };
        until_waiting(&lane, 1);
        for _ in 0..100 {
            assert_eq!(lane.run(|v| *v), Err(Full), "a full queue refuses at once");
        }
        release_tx.send(()).unwrap();
        assert_eq!(holder.join().unwrap(), Ok(()));
        assert_eq!(waiter.join().unwrap(), Ok(7), "the queued caller is served");
        assert_eq!(lane.run(|v| *v + 1), Ok(8), "the item came back");
        assert_eq!(lane.state.lock().unwrap().waiting, 0);
    }

    #[test]
    fn no_queue_and_no_items() {
        let lane = Bounded::new(vec![1u32], 0);
        assert_eq!(lane.run(|v| lane.run(|w| v + w)), Ok(Err(Full)));
        let empty: Bounded<u32> = Bounded::new(vec![], 8);
        assert_eq!(empty.run(|v| *v), Err(Full));
    }

    #[test]
    fn item_returns_after_a_panic() {
        let lane = Bounded::new(vec![1u32], 0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lane.run(|_| panic!("inside"))
        }));
        assert!(r.is_err());
        assert_eq!(lane.run(|v| *v), Ok(1));
    }
}
