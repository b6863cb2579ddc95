//! Locking helpers shared by the crate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use tokio_util::sync::CancellationToken;

/// Locks `m`, carrying on past poisoning. A panic while a lock is held is confined to one
/// task (a connection, a destination); its state is at worst stale for that one stream,
/// so the rest of the process keeps serving rather than propagating the poison.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A [`CancellationToken`] watched from a hot loop: polling it is one atomic load and an
/// [`AtomicWaker`] registration, where polling the token's own `cancelled()` future locks
/// its mutex (twice per packet in a destination's loop, issue 16's profile). A small task,
/// asleep until the token fires, sets the flag; it is aborted when the watch is dropped.
/// Needs a Tokio runtime.
#[derive(Debug)]
pub(crate) struct CancelWatch {
    inner: Arc<WatchInner>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct WatchInner {
    fired: AtomicBool,
    waker: AtomicWaker,
}

impl CancelWatch {
    pub(crate) fn new(token: CancellationToken) -> CancelWatch {
        let inner = Arc::new(WatchInner::default());
        let setter = inner.clone();
        let task = tokio::spawn(async move {
            token.cancelled().await;
            setter.fired.store(true, Ordering::Release);
            setter.waker.wake();
        });
        CancelWatch { inner, task }
    }

    pub(crate) fn poll_fired(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.fired.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.inner.waker.register(cx.waker());
        if self.inner.fired.load(Ordering::Acquire) { Poll::Ready(()) } else { Poll::Pending }
    }

    /// Completes once the token is cancelled.
    pub(crate) async fn fired(&self) {
        std::future::poll_fn(|cx| self.poll_fired(cx)).await
    }
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_once_the_token_is_cancelled_and_not_before() {
        let token = CancellationToken::new();
        let watch = CancelWatch::new(token.clone());
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), watch.fired()).await;
        assert!(waiting.is_err(), "fired before the token was cancelled");
        let waiter = tokio::spawn(async move { watch.fired().await });
        tokio::task::yield_now().await;
        token.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the watch woke its waiter")
            .expect("join");
        // a token cancelled before the watch exists
        let watch = CancelWatch::new(token.clone());
        tokio::time::timeout(std::time::Duration::from_secs(5), watch.fired()).await.expect("fired at once");
    }
}
