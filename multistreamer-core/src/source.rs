//! The [`Source`] trait: a pulled stream of [`MediaItem`]s, and [`publish_source`], which
//! feeds any source into the hub.
//!
//! The RTMP ingest publishes straight from its connection task (no extra queue hop);
//! pulled inputs (RTSP cameras, HLS, files) implement `Source` and use `publish_source`.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;

use futures_core::Stream;

use crate::error::Result;
use crate::hub::Publisher;
use crate::media::MediaItem;

/// A pulled source of media. Dropping it cancels it.
pub trait Source: Stream<Item = Result<MediaItem>> + Send + Unpin {}

impl<T: Stream<Item = Result<MediaItem>> + Send + Unpin> Source for T {}

/// Pulls `source` to its end, publishing every item. Returns the source's error, if any.
pub async fn publish_source<S: Source + ?Sized>(source: &mut S, publisher: &Publisher) -> Result<()> {
    loop {
        let next = poll_fn(|cx| Pin::new(&mut *source).poll_next(cx)).await;
        match next {
            None => return Ok(()),
            Some(Err(e)) => return Err(e),
            Some(Ok(MediaItem::Info(info))) => publisher.set_info(Arc::clone(&info)),
            Some(Ok(MediaItem::Packet(p))) => publisher.send(p),
        }
    }
}
