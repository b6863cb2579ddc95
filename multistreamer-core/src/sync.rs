//! Locking helpers shared by the crate.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, carrying on past poisoning. A panic while a lock is held is confined to one
/// task (a connection, a destination); its state is at worst stale for that one stream,
/// so the rest of the process keeps serving rather than propagating the poison.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
