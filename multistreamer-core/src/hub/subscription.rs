//! The receiving side of a hub subscription.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::media::MediaItem;

/// Why a subscription stopped delivering items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionEnd {
    /// The stream ended (its publisher left for longer than the grace period, or shutdown).
    StreamEnded,
    /// The subscriber was detached for not keeping up ([`super::SlowSinkPolicy::Disconnect`]).
    TooSlow,
}

/// Counters of one subscriber, shared with the hub.
#[derive(Debug, Default)]
pub struct SubscriberStats {
    /// Packets not delivered to this subscriber.
    pub dropped: AtomicU64,
    /// Times the subscriber fell behind (each starts a drop-to-keyframe episode).
    pub drop_events: AtomicU64,
    end: AtomicU8,
}

impl SubscriberStats {
    pub(super) fn mark_end(&self, why: SubscriptionEnd) {
        let code = match why {
            SubscriptionEnd::StreamEnded => 1,
            SubscriptionEnd::TooSlow => 2,
        };
        let _ = self.end.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Why the subscription ended, once it has.
    pub fn end_reason(&self) -> Option<SubscriptionEnd> {
        match self.end.load(Ordering::Acquire) {
            1 => Some(SubscriptionEnd::StreamEnded),
            2 => Some(SubscriptionEnd::TooSlow),
            _ => None,
        }
    }
}

/// Items of one live stream: first the current info and the cached GOP, then live
/// packets. Ends (`None`) when the stream ends or the subscriber is detached; see
/// [`Subscription::end_reason`]. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    stream: String,
    backlog: VecDeque<MediaItem>,
    rx: mpsc::Receiver<MediaItem>,
    stats: std::sync::Arc<SubscriberStats>,
}

impl Subscription {
    pub(super) fn new(
        stream: String,
        backlog: Vec<MediaItem>,
        rx: mpsc::Receiver<MediaItem>,
        stats: std::sync::Arc<SubscriberStats>,
    ) -> Subscription {
        Subscription { stream, backlog: backlog.into(), rx, stats }
    }

    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    pub fn stats(&self) -> &std::sync::Arc<SubscriberStats> {
        &self.stats
    }

    /// The next item; `None` once the subscription is over. Cancel-safe.
    pub async fn recv(&mut self) -> Option<MediaItem> {
        if let Some(item) = self.backlog.pop_front() {
            return Some(item);
        }
        self.rx.recv().await
    }

    /// The next item if one is ready now.
    pub fn try_recv(&mut self) -> Option<MediaItem> {
        if let Some(item) = self.backlog.pop_front() {
            return Some(item);
        }
        self.rx.try_recv().ok()
    }

    /// Why the subscription ended (`None` while it runs).
    pub fn end_reason(&self) -> Option<SubscriptionEnd> {
        self.stats.end_reason()
    }
}

impl futures_core::Stream for Subscription {
    type Item = MediaItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<MediaItem>> {
        if let Some(item) = self.backlog.pop_front() {
            return Poll::Ready(Some(item));
        }
        self.rx.poll_recv(cx)
    }
}
