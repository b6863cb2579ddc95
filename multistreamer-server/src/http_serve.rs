//! The HTTP server loop: hyper's HTTP/1 for each connection, with a deadline for a
//! request's headers (a client that sends them slowly, or never, is cut off instead of
//! holding its connection forever) and a cap on open connections. A shutdown stops
//! accepting, lets requests in flight finish and waits for the connections to close.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

/// Limits of the HTTP side.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// A request's headers must arrive within this long.
    pub header_timeout: Duration,
    /// Connections beyond this many are closed at accept.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits { header_timeout: Duration::from_secs(15), max_connections: 1024 }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains the connections.
pub async fn serve(listener: TcpListener, app: Router, limits: HttpLimits, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let stop = CancellationToken::new();
    // every connection task holds a clone; the loop waits for all of them to drop it
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut last_refusal: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            if last_refusal.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                warn!(%peer, limit = limits.max_connections, "refusing HTTP connections: connection limit reached");
                last_refusal = Some(Instant::now());
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
        let (stop, done) = (stop.clone(), done_tx.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "HTTP connection ended");
            }
            drop((slot, done));
        });
    }
    stop.cancel();
    drop(done_tx);
    let _ = done_rx.recv().await;
}
