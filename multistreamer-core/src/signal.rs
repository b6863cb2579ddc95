//! Waiting for the operator to stop the process.

use std::future::Future;

/// Resolves on Ctrl-C (SIGINT) or, on Unix, SIGTERM (what `systemctl stop` and `docker stop`
/// send), so binaries can run their ordered shutdown.
///
/// The handlers are installed when this is *called*, not when the future is first polled:
/// create it once, before the loop that waits on it, and keep polling the same future
/// (`tokio::pin!`); a signal that arrives between two polls is then never lost.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, int) {
                (Some(mut term), Some(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (Some(mut one), None) | (None, Some(mut one)) => {
                    one.recv().await;
                }
                (None, None) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
