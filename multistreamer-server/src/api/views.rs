//! What the API answers: one `Serialize` type per schema of `assets/openapi.json` (core's
//! status types — load samples, rendition and pull status — serialize as they are, through
//! its `serde` feature). The API test suite validates every JSON response it receives
//! against that file, so a field added here or in those types and not documented there (or
//! the other way round) fails the tests.

use multistreamer_core::destination::DestinationSnapshot;
use multistreamer_core::hls::VariantSummary;
use multistreamer_core::source::PullStatus;
use multistreamer_core::transcode::RungSnapshot;
use serde::{Deserialize, Serialize};

use crate::db::{DestinationRow, SessionRow};
use crate::engine::RecordingStatus;

/// `Stream`.
#[derive(Debug, Serialize)]
pub struct StreamView {
    pub id: i64,
    pub name: String,
    pub key: String,
    pub rtmp_url: String,
    pub rtsp_url: Option<String>,
    /// `srt://HOST:PORT?streamid=#!::r=APP/KEY,m=publish`, when the SRT ingest runs.
    pub srt_url: Option<String>,
    /// The passphrase SRT publishers encrypt with; empty: none.
    pub srt_passphrase: String,
    /// `/whip/APP` on this server, when the WHIP ingest runs: WebRTC publishers POST their
    /// offer there with the stream key as the Bearer token.
    pub whip_path: Option<String>,
    pub pull_url: String,
    pub hls_url: String,
    pub hls_play_path: String,
    /// `live`, `pull`, renditions, recording, HLS variants.
    #[serde(flatten)]
    pub jobs: LiveJobs,
    /// The node running the stream while it is live (several nodes on one database), else null.
    pub node: Option<String>,
    pub created_at: i64,
    pub ladder: String,
    pub rendition_names: Vec<String>,
    pub record_mode: String,
    pub record_rendition: String,
    pub destinations: Vec<DestinationView>,
    pub sessions: Vec<SessionView>,
}

/// The live state of a stream's jobs as the API shows it: made where the stream runs and,
/// with several nodes, stored with its lease for the others to show.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LiveSnapshot {
    pub jobs: LiveJobs,
    /// Running destinations by id.
    pub destinations: std::collections::HashMap<i64, DestinationLive>,
}

/// The parts of `Stream` that come from its running jobs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LiveJobs {
    pub live: bool,
    pub pull: Option<PullView>,
    pub renditions: Vec<RungSnapshot>,
    pub skipped_renditions: Vec<String>,
    pub ladder_error: Option<String>,
    pub ladder_input_dropped: u64,
    pub recording: RecordingStatus,
    pub hls_variants: Vec<HlsVariantView>,
}

impl LiveSnapshot {
    pub fn new(live: bool, st: &crate::engine::StreamState, hls_variants: &[VariantSummary]) -> LiveSnapshot {
        LiveSnapshot {
            jobs: LiveJobs {
                live,
                pull: st.pull.as_ref().map(PullView::from),
                renditions: st.renditions.clone(),
                skipped_renditions: st.skipped_renditions.clone(),
                ladder_error: st.ladder_error.clone(),
                ladder_input_dropped: st.ladder_input_dropped,
                recording: st.recording.clone(),
                hls_variants: hls_variants.iter().map(Into::into).collect(),
            },
            destinations: st.destinations.iter().map(|(id, s)| (*id, DestinationLive::from(s))).collect(),
        }
    }
}

/// `Stream.pull`: the state of a pulled input.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PullView {
    pub state: String,
    pub last_error: Option<String>,
    pub reconnects: u64,
    pub frames: u64,
}

impl From<&PullStatus> for PullView {
    fn from(p: &PullStatus) -> PullView {
        PullView {
            state: p.state.to_string(),
            last_error: p.last_error.clone(),
            reconnects: p.reconnects,
            frames: p.frames,
        }
    }
}

/// The counters of a running destination.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DestinationLive {
    pub state: String,
    pub bitrate_bps: u64,
    pub bytes_sent: u64,
    pub reconnects: u64,
    pub failed_connects: u64,
    pub dropped: u64,
    pub last_error: Option<String>,
}

impl From<&DestinationSnapshot> for DestinationLive {
    fn from(s: &DestinationSnapshot) -> DestinationLive {
        DestinationLive {
            state: s.state.as_str().to_string(),
            bitrate_bps: s.bitrate_bps,
            bytes_sent: s.bytes_sent,
            reconnects: s.reconnects,
            failed_connects: s.failed_connects,
            dropped: s.dropped,
            last_error: s.last_error.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HlsVariantView {
    pub name: String,
    pub codecs: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub segments: usize,
    pub ended: bool,
}

impl From<&VariantSummary> for HlsVariantView {
    fn from(v: &VariantSummary) -> HlsVariantView {
        HlsVariantView {
            name: v.name.clone(),
            codecs: v.codecs.clone(),
            width: v.resolution.map(|r| r.0),
            height: v.resolution.map(|r| r.1),
            bandwidth: v.peak_bps,
            average_bandwidth: v.average_bps,
            segments: v.segments,
            ended: v.ended,
        }
    }
}

/// One publishing session of a stream.
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub bytes_in: i64,
}

impl From<&SessionRow> for SessionView {
    fn from(&(started_at, ended_at, bytes_in): &SessionRow) -> SessionView {
        SessionView { started_at, ended_at, bytes_in }
    }
}

/// `Destination`.
#[derive(Debug, Serialize)]
pub struct DestinationView {
    pub id: i64,
    pub name: String,
    /// The URL with its key masked.
    pub url: String,
    pub enabled: bool,
    pub rendition: String,
    pub enhanced_rtmp: String,
    /// `state` and the counters.
    #[serde(flatten)]
    pub live: DestinationLive,
}

impl DestinationView {
    pub fn new(d: &DestinationRow, stats: Option<&DestinationLive>, masked_url: String) -> DestinationView {
        let idle = if d.enabled { "idle" } else { "off" };
        DestinationView {
            id: d.id,
            name: d.name.clone(),
            url: masked_url,
            enabled: d.enabled,
            rendition: if d.rendition.is_empty() { "source".into() } else { d.rendition.clone() },
            enhanced_rtmp: d.enhanced_rtmp.clone(),
            live: stats.cloned().unwrap_or(DestinationLive {
                state: idle.into(),
                bitrate_bps: 0,
                bytes_sent: 0,
                reconnects: 0,
                failed_connects: 0,
                dropped: 0,
                last_error: None,
            }),
        }
    }
}

/// `Recording`.
#[derive(Debug, Serialize)]
pub struct RecordingView {
    pub id: i64,
    pub stream_id: Option<i64>,
    pub stream: String,
    pub kind: String,
    pub file: Option<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub bytes: i64,
    pub duration_ms: i64,
    /// Still being written.
    pub recording: bool,
    pub download_url: String,
}

/// `Login` (also `GET /api/me`).
#[derive(Debug, Serialize)]
pub struct LoginView {
    pub username: String,
    pub csrf_token: String,
}

/// `Capture`: a webinar capture of a stream.
#[derive(Debug, Serialize)]
pub struct CaptureView {
    pub id: i64,
    pub stream_id: i64,
    pub name: String,
    /// The page, its query's values masked.
    pub url: String,
    pub profile: String,
    /// `running`, `stopping` (closing its files), `converting` (after the fact: the
    /// platform prepares the presenter video), `finished` or `failed`.
    pub state: String,
    pub error: Option<String>,
    /// While running: the last problem met (a page that did not open, …).
    pub last_error: Option<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub chat_messages: u64,
    pub presenter_frames: u64,
    pub presenter_fps: f64,
    pub duration_ms: u64,
    pub files: Vec<CaptureFileView>,
    /// The last render of this capture since the server started.
    pub render: Option<super::captures::RenderStatus>,
    /// After the fact, while `converting`: the platform's progress.
    pub fetch: Option<super::captures::FetchStatus>,
}

#[derive(Debug, Serialize)]
pub struct CaptureFileView {
    pub name: String,
    pub bytes: u64,
    pub url: String,
}

/// `Platform`: a connected account (its credentials never leave the server).
#[derive(Debug, Serialize)]
pub struct PlatformView {
    pub id: i64,
    /// `youtube` or `mtslink`.
    pub kind: String,
    pub name: String,
    /// `connected`, `reconnect_needed` or `error`.
    pub state: String,
    pub last_error: Option<String>,
}

impl From<&crate::db::PlatformRow> for PlatformView {
    fn from(p: &crate::db::PlatformRow) -> PlatformView {
        PlatformView {
            id: p.id,
            kind: p.kind.clone(),
            name: p.name.clone(),
            state: p.state.clone(),
            last_error: p.last_error.clone(),
        }
    }
}

/// `Broadcast`: a YouTube broadcast or an MTS Link webinar session fed by a stream.
#[derive(Debug, Serialize)]
pub struct BroadcastView {
    pub id: i64,
    pub stream_id: i64,
    pub platform_id: i64,
    /// `youtube` or `mtslink`.
    pub platform: String,
    pub platform_name: String,
    pub remote_id: String,
    pub title: String,
    pub state: String,
    pub watch_url: String,
    pub destination_id: Option<i64>,
    pub backup_destination_id: Option<i64>,
    pub auto_live: bool,
    pub last_error: Option<String>,
    pub health: Option<crate::platforms::Health>,
    pub created_at: i64,
}
