//! The [`Sink`] trait: where a stream goes (an RTMP destination, later HLS and files), and
//! the [`Connector`] that opens one, so supervisors can be tested with other peers.

use std::future::Future;
use std::pin::Pin;

use crate::error::Result;
use crate::media::MediaItem;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A connected output for one stream.
///
/// Contract: the driver calls [`Sink::send`] with items in stream order (an
/// [`MediaItem::Info`] precedes packets that depend on it), never concurrently with
/// another call. [`Sink::poll_peer`] is cancel-safe and is raced against new items;
/// whatever it needs to answer is queued and written by the next `send` or `finish`.
pub trait Sink: Send {
    /// Writes a batch of items; returns the bytes put on the wire. Not cancel-safe.
    fn send<'a>(&'a mut self, items: &'a [MediaItem]) -> BoxFuture<'a, Result<u64>>;

    /// Waits for input from the peer and handles it (acknowledgements, pings, errors).
    /// Returns an error when the peer closed or refused the stream.
    fn poll_peer(&mut self) -> BoxFuture<'_, Result<()>>;

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
