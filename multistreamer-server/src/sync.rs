//! Locking helper shared by the server's modules.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, carrying on past poisoning: a panic while a lock was held is confined to one
/// request or job, and the state it guards (counters, caches) is at worst stale.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
