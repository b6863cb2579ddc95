//! The original stream, not re-encoded, in fragmented MP4 (one-second fragments, written
//! through at once), so a killed process leaves a playable file.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::{RecordOptions, RecordedFile, Recorder, RecordingStats, apply_retention, tracks_changed};
use crate::error::Result;
use crate::media::{MediaInfo, MediaItem, Packet, Timestamp, TrackKind};
use crate::transcode::file::FileWriter;

/// Muxer settings that make the MP4 readable at any moment: an empty `moov` up front, a
/// `moof`+`mdat` fragment at least every second (and at keyframes), every write flushed;
/// the metadata below kept in the `moov`.
const FRAGMENTED_MP4: [(&str, &str); 3] = [
    ("movflags", "frag_keyframe+empty_moov+default_base_moof+use_metadata_tags"),
    ("frag_duration", "1000000"),
    ("flush_packets", "1"),
];

/// The metadata key holding the wall time of a recording's first packet (RFC 3339 UTC with
/// milliseconds): what pairs a recording with a webinar capture of the same time.
pub const START_TAG: &str = "multistreamer_start";

struct OpenFile {
    writer: FileWriter,
    path: PathBuf,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    video_frames: u64,
    /// A write failed: the file may end inside a fragment.
    failed: bool,
}

/// Writes the stream's packets unchanged; see the module documentation.
pub struct RemuxRecorder {
    stream: String,
    options: RecordOptions,
    stats: Arc<RecordingStats>,
    info: Option<Arc<MediaInfo>>,
    file: Option<OpenFile>,
    files: Vec<RecordedFile>,
    n: u32,
    /// Audio that came before the first video keyframe (written once the file opens).
    pre_roll: Vec<Packet>,
}

impl std::fmt::Debug for RemuxRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemuxRecorder").field("stream", &self.stream).field("dir", &self.options.dir).finish()
    }
}

impl RemuxRecorder {
    pub fn new(stream: &str, options: RecordOptions, stats: Arc<RecordingStats>) -> RemuxRecorder {
        RemuxRecorder {
            stream: stream.to_string(),
            options,
            stats,
            info: None,
            file: None,
            files: Vec::new(),
            n: 0,
            pre_roll: Vec::new(),
        }
    }

    fn open(&mut self) -> Result<()> {
        let Some(info) = self.info.clone() else { return Ok(()) };
        self.n += 1;
        // a file opens on the packet it starts with: now is that packet's wall time
        let start = SystemTime::now();
        let path = self.options.path_for(&self.stream, start, self.n, "mp4");
        let created = super::NewFile::new(&path);
        let mut writer = FileWriter::create_with(&path, &FRAGMENTED_MP4)?;
        writer.set_metadata(START_TAG, &crate::clock::rfc3339_millis(start));
        writer.set_metadata("creation_time", &crate::clock::rfc3339_millis(start));
        writer.write_info(&info)?;
        created.keep();
        info!(path = %path.display(), "recording to a new file");
        self.stats.file_opened(path.clone());
        apply_retention(&self.options, "mp4", Some(&path));
        self.file = Some(OpenFile { writer, path, first: None, last: None, video_frames: 0, failed: false });
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        let Some(mut f) = self.file.take() else { return Ok(()) };
        let result = f.writer.finish();
        let duration = match (f.first, f.last) {
            (Some(a), Some(b)) => Duration::from_millis((b.as_millis() - a.as_millis()).max(0) as u64),
            _ => Duration::ZERO,
        };
        let mut bytes = f.writer.bytes_written();
        if result.is_err() || f.failed {
            // a write failed midway (a full disk): end the file on its last whole fragment
            match super::trim::trim_incomplete_tail(&f.path) {
                Ok(Some(len)) => {
                    warn!(path = %f.path.display(), bytes = len, "cut back to the last complete fragment");
                    bytes = len;
                }
                Ok(None) => {}
                Err(e) => warn!(path = %f.path.display(), error = %e, "cannot check the file's last fragment"),
            }
        }
        let done = RecordedFile { bytes, path: f.path, duration, video_frames: f.video_frames };
        self.stats.file_done(done.clone());
        self.files.push(done);
        result
    }

    fn has_video(&self) -> bool {
        self.info.as_ref().is_some_and(|i| i.video().is_some())
    }

    fn on_packet(&mut self, p: &Packet) -> Result<()> {
        let is_video_key = p.kind == TrackKind::Video && p.keyframe;
        // A file starts on a keyframe (when there is video) so it decodes from its start.
        if self.file.is_none() {
            if self.has_video() && !is_video_key {
                if p.kind == TrackKind::Audio && self.pre_roll.len() < 64 {
                    self.pre_roll.push(p.clone());
                }
                return Ok(());
            }
            self.open()?;
            for a in std::mem::take(&mut self.pre_roll) {
                self.write_packet(&a)?;
            }
        } else if let (Some(segment), true) = (self.options.segment, is_video_key) {
            let elapsed =
                self.file.as_ref().and_then(|f| f.first).map_or(0, |first| p.dts.as_millis() - first.as_millis());
            if elapsed >= segment.as_millis() as i64 {
                self.close()?;
                self.open()?;
            }
        }
        self.write_packet(p)
    }

    fn write_packet(&mut self, p: &Packet) -> Result<()> {
        let Some(f) = self.file.as_mut() else { return Ok(()) };
        let before = f.writer.bytes_written();
        if let Err(e) = f.writer.write_packet(p) {
            f.failed = true;
            return Err(e);
        }
        f.first.get_or_insert(p.dts);
        f.last = Some(f.last.map_or(p.dts, |l| l.max(p.dts)));
        if p.kind == TrackKind::Video {
            f.video_frames += 1;
            self.stats.video_frames.fetch_add(1, Ordering::Relaxed);
        }
        let after = f.writer.bytes_written();
        self.stats.bytes_written.fetch_add(after.saturating_sub(before), Ordering::Relaxed);
        Ok(())
    }
}

impl Recorder for RemuxRecorder {
    fn write(&mut self, item: &MediaItem) -> Result<()> {
        match item {
            MediaItem::Info(info) => {
                let changed = tracks_changed(self.info.as_deref(), info);
                self.info = Some(Arc::clone(info));
                if changed && self.file.is_some() {
                    // New codec parameters (another resolution…): a new file, since an MP4
                    // cannot change them mid-file.
                    self.close()?;
                }
                Ok(())
            }
            MediaItem::Packet(p) => self.on_packet(p),
        }
    }

    fn finish(&mut self) -> Result<Vec<RecordedFile>> {
        self.close()?;
        Ok(self.files.clone())
    }
}
