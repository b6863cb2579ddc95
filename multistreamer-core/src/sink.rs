//! The [`Sink`] trait: where a stream goes (an RTMP destination, later HLS and files), and
//! the [`Connector`] that opens one, so supervisors can be tested with other peers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::Result;
use crate::media::MediaItem;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A connected output for one stream.
///
/// Contract (what the destination supervisor does):
/// * [`Sink::enqueue`] serializes items, in stream order, into the sink's output buffer
///   (an [`MediaItem::Info`] precedes packets that depend on it). It does no I/O.
/// * [`Sink::poll_flush`] writes the buffer; it returns `Ready` once everything is on the
///   wire, with the number of bytes written since the last completed flush. The driver
///   does not enqueue again before a flush completed.
/// * [`Sink::poll_peer`] reads and handles what the peer sends (acknowledgements, pings,
///   errors) while the driver waits for items; answers are queued for the next flush.
///
/// The poll-based shape lets the driver run without a heap allocation per item.
pub trait Sink: Send {
    fn enqueue(&mut self, items: &[MediaItem]) -> Result<()>;

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<u64>>;

    fn poll_peer(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>>;

    /// Ends the stream gracefully (flush, unpublish, close, drain).
    fn finish(&mut self) -> BoxFuture<'_, Result<()>>;
}

/// Opens [`Sink`]s to one destination (used by the reconnecting supervisor).
pub trait Connector: Send + Sync {
    /// Connects and gets ready to receive items.
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Sink>>>;

    /// A human-readable, secret-free description (for logs and status lines).
    fn describe(&self) -> String;
}

/// Enqueues `items` and waits until they are written; returns the bytes written.
pub async fn send<S: Sink + ?Sized>(sink: &mut S, items: &[MediaItem]) -> Result<u64> {
    sink.enqueue(items)?;
    std::future::poll_fn(|cx| sink.poll_flush(cx)).await
}
