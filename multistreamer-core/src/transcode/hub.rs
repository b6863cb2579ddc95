//! Renditions as hub streams: a ladder subscribes to a source stream and publishes each
//! rung back into the hub as `SOURCE@RUNG` (e.g. `mykey@720p`), so destinations, recorders
//! and HLS output pick the source or any rung with the same mechanism.

use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn};

use super::{LadderTranscoder, RenditionOutput, RungSnapshot, TranscodeOptions, TranscodeStats, Transcoder};
use crate::error::Result;
use crate::hub::{Hub, Publisher, SubscriberStats};
use crate::ladder::Ladder;
use crate::media::{MediaInfo, Packet};
use crate::stage::{StageInput, spawn_stage};
use crate::sync::lock;

/// Source items the ladder may have waiting before it drops to the next keyframe.
const INPUT_QUEUE: usize = 300;

/// The separator between a source stream's name and a rendition's.
pub const RENDITION_SEPARATOR: char = '@';

/// The hub name of rendition `rung` of stream `source`.
pub fn rendition_stream(source: &str, rung: &str) -> String {
    format!("{source}{RENDITION_SEPARATOR}{rung}")
}

/// Splits a hub name into (source, rendition) when it names a rendition.
pub fn split_rendition(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once(RENDITION_SEPARATOR)
}

struct HubOutput {
    publisher: Publisher,
}

impl RenditionOutput for HubOutput {
    fn info(&mut self, info: Arc<MediaInfo>) -> Result<()> {
        self.publisher.set_info(info);
        Ok(())
    }

    fn packet(&mut self, packet: Packet) -> Result<()> {
        self.publisher.send(packet);
        Ok(())
    }
}

/// A running ladder for one source stream.
pub struct LadderHandle {
    source: String,
    stats: Arc<TranscodeStats>,
    input: Arc<Mutex<Option<Arc<SubscriberStats>>>>,
    error: Arc<Mutex<Option<String>>>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl fmt::Debug for LadderHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LadderHandle").field("source", &self.source).finish()
    }
}

impl LadderHandle {
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn rungs(&self) -> Vec<RungSnapshot> {
        self.stats.rungs()
    }

    pub fn stats(&self) -> &Arc<TranscodeStats> {
        &self.stats
    }

    /// Source packets the decoder could not take in time (dropped to the next keyframe
    /// before decoding, so the renditions stay close to live).
    pub fn input_dropped(&self) -> u64 {
        lock(&self.input).as_ref().map_or(0, |s| s.dropped.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Why the ladder stopped, if it failed (unsupported codec, encoder error).
    pub fn error(&self) -> Option<String> {
        lock(&self.error).clone()
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until the ladder has drained and its rendition streams have ended.
    pub async fn join(self) {
        let _ = self.task.await;
    }

    /// Stops transcoding now; resolves once the renditions have ended.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

impl crate::engine::Job for LadderHandle {
    /// A new ladder publishes the same rendition names: the old one must be gone first.
    const EXCLUSIVE: bool = true;

    fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    fn error(&self) -> Option<String> {
        LadderHandle::error(self)
    }

    fn stop(self) -> crate::sink::BoxFuture<'static, ()> {
        Box::pin(LadderHandle::stop(self))
    }

    fn join(self) -> crate::sink::BoxFuture<'static, ()> {
        Box::pin(LadderHandle::join(self))
    }
}

/// Transcodes hub stream `source` into `ladder`, publishing `source@rung` streams. Stops
/// when the source ends or `cancel` fires; the rendition streams end with it.
pub fn spawn_ladder(
    hub: Hub,
    source: String,
    ladder: Ladder,
    options: TranscodeOptions,
    cancel: CancellationToken,
) -> Result<LadderHandle> {
    let factory_hub = hub.clone();
    let factory_source = source.clone();
    let transcoder = LadderTranscoder::new(
        ladder,
        options,
        Box::new(move |plan| {
            let publisher = factory_hub.publish(&rendition_stream(&factory_source, &plan.name))?;
            Ok(Box::new(HubOutput { publisher }) as Box<dyn RenditionOutput>)
        }),
    )?;
    spawn_transcoder(hub, source, Box::new(transcoder), cancel)
}

/// Runs any [`Transcoder`] (the ladder, a pass-through, a GPU one) on hub stream `source`
/// on its own thread. The transcoder publishes its outputs itself.
pub fn spawn_transcoder(
    hub: Hub,
    source: String,
    transcoder: Box<dyn Transcoder>,
    cancel: CancellationToken,
) -> Result<LadderHandle> {
    let stats = transcoder.stats();
    let error: Arc<Mutex<Option<String>>> = Arc::default();
    let thread_error = Arc::clone(&error);
    let span = info_span!("ladder", stream = %source);
    // About 4 s of a 30 fps stream with audio: a decoder that cannot keep up drops to the
    // next keyframe rather than letting the renditions fall minutes behind.
    let input = StageInput { stream: source.clone(), thread: format!("decode-{source}"), queue: INPUT_QUEUE, span };
    let stage = spawn_stage(hub, input, transcoder, cancel.clone(), move |failed| {
        if let Some(e) = &failed {
            warn!(error = %e, "transcoding stopped; the source is still relayed");
        }
        info!("ladder stopped");
        *lock(&thread_error) = failed;
    })?;
    Ok(LadderHandle { source, stats, input: stage.input, error, cancel, task: stage.task })
}
