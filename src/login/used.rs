//! The states already used for a callback, so each works once.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use crate::sync::lock;

/// The most states remembered at once. Each lives only until its cookie expires (10 minutes by
/// default); past this bound the oldest is forgotten early (its authorization code still works
/// only once at Douyin).
pub(crate) const MAX_REMEMBERED: usize = 100_000;

/// States used for a callback, each remembered until its cookie would have expired.
#[derive(Debug, Default)]
pub(crate) struct UsedStates {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    set: HashSet<String>,
    /// `(expires, state)` in the order they were used.
    order: VecDeque<(u64, String)>,
}

impl UsedStates {
    /// Marks `state` (whose cookie expires at `expires`) as used at `now`; `false` if it was
    /// already.
    pub(crate) fn first_use(&self, state: &str, expires: u64, now: u64) -> bool {
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        while let Some((at, _)) = inner.order.front() {
            if *at > now && inner.order.len() < MAX_REMEMBERED {
                break;
            }
            if let Some((_, old)) = inner.order.pop_front() {
                inner.set.remove(&old);
            }
        }
        if !inner.set.insert(state.to_owned()) {
            return false;
        }
        inner.order.push_back((expires, state.to_owned()));
        true
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.inner).set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_used_once() {
        let used = UsedStates::default();
        assert!(used.first_use("a", 100, 10));
        assert!(!used.first_use("a", 100, 11));
        assert!(used.first_use("b", 100, 11));
        assert!(!used.first_use("b", 100, 99));
    }

    #[test]
    fn expired_states_are_forgotten() {
        let used = UsedStates::default();
        assert!(used.first_use("a", 100, 10));
        assert!(used.first_use("b", 200, 10));
        assert_eq!(used.len(), 2);
        // At 100 the first cookie is dead: its state is dropped, the other kept.
        assert!(used.first_use("c", 300, 100));
        assert_eq!(used.len(), 2);
        assert!(!used.first_use("b", 200, 101));
    }

    #[test]
    fn the_memory_is_bounded() {
        let used = UsedStates::default();
        for i in 0..MAX_REMEMBERED + 10 {
            assert!(used.first_use(&i.to_string(), u64::MAX, 0));
        }
        assert_eq!(used.len(), MAX_REMEMBERED);
        // The newest are still refused a second time.
        assert!(!used.first_use(&(MAX_REMEMBERED + 9).to_string(), u64::MAX, 0));
    }
}
