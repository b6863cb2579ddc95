//! What should run, as a pure function of the configuration and the live state: no I/O,
//! so every rule is unit-tested. The engine diffs the result against the running jobs.

use std::collections::{BTreeMap, HashSet};

use multistreamer_core::destination::DestinationUrl;
use multistreamer_core::ladder::Ladder;
use multistreamer_core::record::RecordingKind;
use multistreamer_core::rtmp::EnhancedRtmp;
use multistreamer_core::source::InputUrl;
use multistreamer_core::transcode::hub::rendition_stream;
use tracing::warn;

use crate::db::{BroadcastRow, DestinationRow, StreamRow};
use crate::platforms::monitor::MonitorSpec;

/// The hub name of a stream row.
pub fn hub_name(stream_id: i64) -> String {
    format!("stream-{stream_id}")
}

/// The hub stream that carries `rendition` of a stream (`None`: the source).
pub fn target_stream(stream_id: i64, rendition: Option<&str>) -> String {
    match rendition {
        None => hub_name(stream_id),
        Some(r) => rendition_stream(&hub_name(stream_id), r),
    }
}

/// What a stream records each time it is live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordMode {
    Off,
    On(RecordingKind),
}

impl std::str::FromStr for RecordMode {
    type Err = String;

    fn from_str(s: &str) -> Result<RecordMode, String> {
        match s {
            "off" | "" => Ok(RecordMode::Off),
            other => other.parse().map(RecordMode::On).map_err(|_| "expected off, original or raw".to_string()),
        }
    }
}

/// One destination, typed.
#[derive(Clone, Debug)]
pub struct DestinationConfig {
    pub id: i64,
    pub name: String,
    pub url: DestinationUrl,
    pub enabled: bool,
    pub rendition: Option<String>,
    /// HEVC/AV1 to an RTMP destination that does not announce Enhanced RTMP.
    pub enhanced_rtmp: EnhancedRtmp,
}

/// One stream's configuration, typed: what the database holds, parsed once.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    pub id: i64,
    pub name: String,
    pub ladder: Option<Ladder>,
    pub record: RecordMode,
    pub record_rendition: Option<String>,
    pub pull: Option<InputUrl>,
    pub destinations: Vec<DestinationConfig>,
    pub broadcasts: Vec<BroadcastConfig>,
}

/// A broadcast on a platform, as the monitor rule sees it.
#[derive(Clone, Debug)]
pub struct BroadcastConfig {
    pub id: i64,
    /// The state the platform last reported.
    pub state: String,
    pub monitor: MonitorSpec,
}

impl BroadcastConfig {
    pub fn from_row(b: &BroadcastRow) -> BroadcastConfig {
        BroadcastConfig {
            id: b.id,
            state: b.state.clone(),
            monitor: MonitorSpec {
                platform_id: b.platform_id,
                stream_id: b.stream_id,
                remote_id: b.remote_id.clone(),
                remote_stream_id: b.remote_stream_id.clone(),
                auto_live: b.auto_live,
                destinations: b.destination_id.into_iter().chain(b.backup_destination_id).collect(),
            },
        }
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl StreamConfig {
    /// Parses a stream's rows. A stored value that no longer parses (the API validates
    /// them, so only a hand-edited database has one) is logged and left out.
    pub fn from_rows(s: &StreamRow, dests: &[DestinationRow], broadcasts: &[BroadcastRow]) -> StreamConfig {
        let ladder = match s.ladder.as_str() {
            "" => None,
            spec => spec.parse().map_err(|e| warn!(stream_id = s.id, error = %e, "stored ladder is invalid")).ok(),
        };
        let record = s.record_mode.parse().unwrap_or_else(|e| {
            warn!(stream_id = s.id, error = %e, "stored record mode is invalid; not recording");
            RecordMode::Off
        });
        let pull = match s.pull_url.as_str() {
            "" => None,
            url => url.parse().map_err(|e| warn!(stream_id = s.id, error = %e, "stored pull URL is invalid")).ok(),
        };
        let destinations = dests
            .iter()
            .filter_map(|d| match d.url.parse::<DestinationUrl>() {
                Ok(url) => Some(DestinationConfig {
                    id: d.id,
                    name: d.name.clone(),
                    url,
                    enabled: d.enabled,
                    rendition: non_empty(&d.rendition),
                    // the API only stores valid modes; anything else reads as the default
                    enhanced_rtmp: d.enhanced_rtmp.parse().unwrap_or_default(),
                }),
                Err(e) => {
                    warn!(destination = d.id, error = %e, "stored destination URL is invalid");
                    None
                }
            })
            .collect();
        StreamConfig {
            id: s.id,
            name: s.name.clone(),
            ladder,
            record,
            record_rendition: non_empty(&s.record_rendition),
            pull,
            destinations,
            broadcasts: broadcasts.iter().map(BroadcastConfig::from_row).collect(),
        }
    }
}

/// What live state the rules look at.
#[derive(Debug, Default)]
pub struct LiveState {
    /// The streams in the hub (sources and renditions).
    pub hub_streams: HashSet<String>,
    /// Streams whose operator pressed "record now" for the current session.
    pub record_now: HashSet<i64>,
    /// With several nodes: the pulled streams this node runs (None: every one).
    pub pulls_here: Option<HashSet<i64>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LadderSpec {
    pub source: String,
    pub ladder: Ladder,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingSpec {
    /// The hub stream recorded (the source or a rendition).
    pub target: String,
    pub kind: RecordingKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationSpec {
    /// The hub stream sent (the source or a rendition).
    pub target: String,
    pub url: DestinationUrl,
    pub enhanced_rtmp: EnhancedRtmp,
}

/// Every job that should run, by kind, keyed by stream id (destinations by their id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub pulls: BTreeMap<i64, InputUrl>,
    pub ladders: BTreeMap<i64, LadderSpec>,
    pub recordings: BTreeMap<i64, RecordingSpec>,
    pub destinations: BTreeMap<i64, DestinationSpec>,
    /// Broadcast monitors, by broadcast id.
    pub monitors: BTreeMap<i64, MonitorSpec>,
}

/// The rules:
/// * a stream with a pull URL is pulled, live or not (the pull is what makes it live);
/// * a live stream with a ladder is transcoded;
/// * a stream records while its mode is not off or "record now" is on, while the hub
///   stream it records (the source or a rendition) exists;
/// * an enabled destination sends while the hub stream it sends exists (a rendition
///   outlives its source while the ladder drains);
/// * a broadcast that has not ended is monitored while its stream is live or while it is
///   on air on the platform (the platform's verdict matters after the stream stops too).
pub fn desired(streams: &[StreamConfig], live: &LiveState) -> Desired {
    let mut d = Desired::default();
    for s in streams {
        if let Some(url) = &s.pull
            && live.pulls_here.as_ref().is_none_or(|here| here.contains(&s.id))
        {
            d.pulls.insert(s.id, url.clone());
        }
        let source = hub_name(s.id);
        if let Some(ladder) = &s.ladder
            && live.hub_streams.contains(&source)
        {
            d.ladders.insert(s.id, LadderSpec { source: source.clone(), ladder: ladder.clone() });
        }
        let kind = match s.record {
            RecordMode::On(kind) => Some(kind),
            RecordMode::Off if live.record_now.contains(&s.id) => Some(RecordingKind::Original),
            RecordMode::Off => None,
        };
        let record_target = target_stream(s.id, s.record_rendition.as_deref());
        if let Some(kind) = kind
            && live.hub_streams.contains(&record_target)
        {
            d.recordings.insert(s.id, RecordingSpec { target: record_target, kind });
        }
        for dest in s.destinations.iter().filter(|x| x.enabled) {
            let target = target_stream(s.id, dest.rendition.as_deref());
            if live.hub_streams.contains(&target) {
                d.destinations.insert(
                    dest.id,
                    DestinationSpec { target, url: dest.url.clone(), enhanced_rtmp: dest.enhanced_rtmp },
                );
            }
        }
        let live = live.hub_streams.contains(&source);
        for b in &s.broadcasts {
            let ended = matches!(b.state.as_str(), "complete" | "revoked");
            let on_air = matches!(b.state.as_str(), "testStarting" | "testing" | "liveStarting" | "live");
            if !ended && (live || on_air) {
                d.monitors.insert(b.id, b.monitor.clone());
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(id: i64) -> StreamConfig {
        StreamConfig {
            id,
            name: format!("s{id}"),
            ladder: None,
            record: RecordMode::Off,
            record_rendition: None,
            pull: None,
            destinations: Vec::new(),
            broadcasts: Vec::new(),
        }
    }

    fn dest(id: i64, enabled: bool, rendition: Option<&str>) -> DestinationConfig {
        DestinationConfig {
            id,
            name: format!("d{id}"),
            url: format!("rtmp://127.0.0.1/live/k{id}").parse().expect("url"),
            enabled,
            rendition: rendition.map(String::from),
            enhanced_rtmp: EnhancedRtmp::Negotiate,
        }
    }

    fn live(names: &[&str]) -> LiveState {
        LiveState { hub_streams: names.iter().map(|s| s.to_string()).collect(), ..LiveState::default() }
    }

    #[test]
    fn with_several_nodes_a_node_pulls_only_the_streams_placed_on_it() {
        let mut s = stream(1);
        s.pull = Some("rtsp://cam/1".parse().expect("url"));
        let mut t = stream(2);
        t.pull = Some("rtsp://cam/2".parse().expect("url"));
        let live = LiveState { pulls_here: Some([2].into()), ..LiveState::default() };
        let d = desired(&[s, t], &live);
        assert_eq!(d.pulls.keys().copied().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn nothing_runs_for_a_stream_that_is_not_live_except_its_pull() {
        let mut s = stream(1);
        s.pull = Some("rtsp://cam/1".parse().expect("url"));
        s.ladder = Some("720p".parse().expect("ladder"));
        s.record = RecordMode::On(RecordingKind::Original);
        s.destinations.push(dest(10, true, None));
        let d = desired(&[s], &LiveState::default());
        assert_eq!(d.pulls.len(), 1);
        assert!(d.ladders.is_empty() && d.recordings.is_empty() && d.destinations.is_empty());
    }

    #[test]
    fn destinations_follow_their_stream_and_rendition() {
        let mut s = stream(1);
        s.ladder = Some("720p,480p".parse().expect("ladder"));
        s.destinations = vec![dest(10, true, None), dest(11, false, None), dest(12, true, Some("720p"))];
        let only_source = desired(std::slice::from_ref(&s), &live(&["stream-1"]));
        assert_eq!(only_source.destinations.keys().collect::<Vec<_>>(), [&10], "the rendition is not up yet");
        assert_eq!(only_source.ladders[&1].source, "stream-1");
        let both = desired(std::slice::from_ref(&s), &live(&["stream-1", "stream-1@720p"]));
        assert_eq!(both.destinations.keys().collect::<Vec<_>>(), [&10, &12], "disabled 11 never runs");
        assert_eq!(both.destinations[&12].target, "stream-1@720p");
        let draining = desired(&[s], &live(&["stream-1@720p"]));
        assert!(draining.ladders.is_empty(), "the source ended: no new ladder");
        assert_eq!(draining.destinations.keys().collect::<Vec<_>>(), [&12], "the rendition still drains");
    }

    #[test]
    fn recordings_follow_the_mode_record_now_and_the_rendition() {
        let mut s = stream(1);
        let mut state = live(&["stream-1"]);
        assert!(desired(std::slice::from_ref(&s), &state).recordings.is_empty(), "off");
        state.record_now.insert(1);
        let d = desired(std::slice::from_ref(&s), &state);
        assert_eq!(d.recordings[&1], RecordingSpec { target: "stream-1".into(), kind: RecordingKind::Original });
        s.record = RecordMode::On(RecordingKind::Raw);
        s.record_rendition = Some("480p".into());
        assert!(desired(std::slice::from_ref(&s), &state).recordings.is_empty(), "the rendition is not up");
        state.hub_streams.insert("stream-1@480p".into());
        let d = desired(&[s], &state);
        assert_eq!(d.recordings[&1], RecordingSpec { target: "stream-1@480p".into(), kind: RecordingKind::Raw });
    }

    #[test]
    fn broadcasts_are_monitored_while_live_or_on_air_until_they_end() {
        let mut s = stream(1);
        let b = |id: i64, state: &str| BroadcastConfig {
            id,
            state: state.into(),
            monitor: MonitorSpec {
                platform_id: 1,
                stream_id: 1,
                remote_id: format!("b{id}"),
                remote_stream_id: format!("s{id}"),
                auto_live: false,
                destinations: vec![],
            },
        };
        s.broadcasts = vec![b(1, "ready"), b(2, "live"), b(3, "complete")];
        let offline = desired(std::slice::from_ref(&s), &LiveState::default());
        assert_eq!(offline.monitors.keys().collect::<Vec<_>>(), [&2], "an idle stream: only what is on air");
        let live = desired(&[s], &live(&["stream-1"]));
        assert_eq!(live.monitors.keys().collect::<Vec<_>>(), [&1, &2], "an ended broadcast is never polled");
    }

    #[test]
    fn record_modes_are_typed_and_unknown_ones_refused() {
        assert_eq!("off".parse(), Ok(RecordMode::Off));
        assert_eq!("raw".parse(), Ok(RecordMode::On(RecordingKind::Raw)));
        assert_eq!("original".parse(), Ok(RecordMode::On(RecordingKind::Original)));
        assert!("sometimes".parse::<RecordMode>().is_err(), "no longer silently original");
    }
}
