//! Blocking stages: work that is CPU- or disk-bound (a transcoder, a recorder) runs on a
//! thread of its own, fed from a hub subscription through a bounded queue, so it never
//! stalls the async workers that carry the live streams. One runner serves every kind.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, warn};

use crate::error::{Error, ErrorKind, Result};
use crate::hub::{Hub, SlowSinkPolicy, SubscribeOptions, SubscriberStats, forward_to_thread};
use crate::media::MediaItem;

/// A stage fed items in stream order on its own thread.
pub trait BlockingStage: Send + 'static {
    /// Takes one item; an error stops the stage (it is then finished).
    fn push(&mut self, item: MediaItem) -> Result<()>;
    /// Flushes and closes: encoders drained, files finalised.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Where a stage reads from and how it is named.
#[cfg_attr(not(feature = "libav"), allow(dead_code))]
pub(crate) struct StageInput {
    /// The hub stream it is fed from.
    pub stream: String,
    /// Its thread's name.
    pub thread: String,
    /// Items queued before it drops to the next keyframe.
    pub queue: usize,
    /// Its task's tracing span.
    pub span: Span,
}

/// A running stage: the task forwarding the subscription, and the subscription's stats.
#[cfg_attr(not(feature = "libav"), allow(dead_code))]
pub(crate) struct StageTask {
    pub task: JoinHandle<()>,
    pub input: Arc<Mutex<Option<Arc<SubscriberStats>>>>,
}

/// Runs `stage` on its own thread, subscribed to `input.stream` (dropping to the next
/// keyframe when it cannot keep up), until the stream ends or `cancel` fires. `on_end`
/// gets the first error, on the stage's thread, once the stage is finished.
#[cfg_attr(not(feature = "libav"), allow(dead_code))] // the built-in stages need libav
pub(crate) fn spawn_stage(
    hub: Hub,
    input: StageInput,
    stage: Box<dyn BlockingStage>,
    cancel: CancellationToken,
    on_end: impl FnOnce(Option<String>) + Send + 'static,
) -> Result<StageTask> {
    let StageInput { stream, thread: thread_name, queue, span } = input;
    let (tx, rx) = mpsc::channel::<MediaItem>(64);
    let thread = std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || on_end(run(stage, rx)))
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start a stage thread: {e}")))?;
    let input: Arc<Mutex<Option<Arc<SubscriberStats>>>> = Arc::default();
    let opts = SubscribeOptions { policy: SlowSinkPolicy::DropToKeyframe, queue_capacity: Some(queue) };
    let forward = forward_to_thread(hub, stream, opts, Arc::clone(&input), cancel, tx, thread);
    let task = tokio::spawn(forward.instrument(span));
    Ok(StageTask { task, input })
}

/// Feeds `stage` until its input ends or it fails, then finishes it; returns the first error.
#[cfg_attr(not(feature = "libav"), allow(dead_code))]
fn run(mut stage: Box<dyn BlockingStage>, mut rx: mpsc::Receiver<MediaItem>) -> Option<String> {
    let mut failed = None;
    while let Some(item) = rx.blocking_recv() {
        if let Err(e) = stage.push(item) {
            warn!(error = %e, "stage stopped");
            failed = Some(e.to_string());
            break;
        }
    }
    drop(rx);
    if let Err(e) = stage.finish() {
        warn!(error = %e, "finishing the stage failed");
        failed.get_or_insert(e.to_string());
    }
    failed
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::hub::HubOptions;

    struct Counting {
        seen: Arc<AtomicUsize>,
        fail_at: usize,
        finished: Arc<AtomicUsize>,
    }

    impl BlockingStage for Counting {
        fn push(&mut self, _item: MediaItem) -> Result<()> {
            if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
                return Err(Error::new(ErrorKind::Media, "encoder broke"));
            }
            Ok(())
        }

        fn finish(self: Box<Self>) -> Result<()> {
            self.finished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_stage_gets_every_item_is_finished_once_and_reports_its_first_error() {
        for fail_at in [usize::MAX, 5] {
            let hub = Hub::new(HubOptions { grace_period: Duration::ZERO, ..Default::default() });
            let publisher = hub.publish("s").expect("publish");
            let (seen, finished) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let stage = Counting { seen: Arc::clone(&seen), fail_at, finished: Arc::clone(&finished) };
            let (end_tx, end_rx) = std::sync::mpsc::channel();
            let input = StageInput { stream: "s".into(), thread: "test-stage".into(), queue: 64, span: Span::none() };
            let t = spawn_stage(hub.clone(), input, Box::new(stage), CancellationToken::new(), move |e| {
                end_tx.send(e).expect("send")
            })
            .expect("spawn");
            while lock_is_none(&t.input) {
                tokio::task::yield_now().await;
            }
            for i in 0..10 {
                publisher.send(crate::hub::tests::video(i * 40, true));
            }
            drop(publisher);
            t.task.await.expect("task");
            let error = end_rx.recv_timeout(Duration::from_secs(5)).expect("ended");
            assert_eq!(finished.load(Ordering::SeqCst), 1);
            if fail_at == 5 {
                assert_eq!((seen.load(Ordering::SeqCst), error.as_deref()), (5, Some("encoder broke")));
            } else {
                assert_eq!((seen.load(Ordering::SeqCst), error), (10, None));
            }
        }
    }

    fn lock_is_none(m: &Mutex<Option<Arc<SubscriberStats>>>) -> bool {
        crate::sync::lock(m).is_none()
    }
}
