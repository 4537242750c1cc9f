//! Small synchronisation helpers.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, going on with the data when a panicking holder poisoned it: every critical
/// section of this crate leaves its data consistent at each step.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
