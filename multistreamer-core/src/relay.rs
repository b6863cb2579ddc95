//! The assembled relay: RTMP ingest → hub → one supervised destination per template for
//! every stream that goes live.
//!
//! Shutdown is ordered: stop the ingest (no new publishers, current ones disconnected),
//! end the streams (each destination delivers what it has queued, unpublishes and
//! closes gracefully), then wait for the destinations.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Connector;
use crate::destination::DestinationUrl;
use crate::destination::{DestinationHandle, DestinationOptions, DestinationSnapshot, spawn_destination};
use crate::engine::JobSet;
use crate::error::{Error, ErrorKind, Result};
use crate::hub::{Hub, HubEvent, HubOptions};
use crate::rtmp::{RtmpIngest, RtmpIngestOptions, RtmpPushOptions, RtmpUrl, StaticKeys};
use crate::sync::lock;

/// A destination for every stream; `{key}` in the URL's key is replaced by the stream key.
#[derive(Clone)]
pub struct DestinationTemplate {
    pub name: String,
    /// `rtmp://`, `rtmps://` or `srt://`; `{key}` in the key (the SRT stream id) is the
    /// publisher's key.
    pub url: DestinationUrl,
    /// The rendition of the ladder sent there (`720p`); `None` sends the source as is.
    pub rendition: Option<String>,
    /// Opens the destination instead of an RTMP push to `url` (another protocol, a test
    /// peer); `url` then only names it in status lines.
    pub connector: Option<Arc<dyn Connector>>,
}

impl std::fmt::Debug for DestinationTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationTemplate")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("rendition", &self.rendition)
            .field("custom_connector", &self.connector.is_some())
            .finish()
    }
}

impl DestinationTemplate {
    pub fn parse(name: &str, url: &str) -> Result<DestinationTemplate> {
        let url: DestinationUrl = url.parse().map_err(|e: Error| e.context(format!("destination {name:?}")))?;
        Ok(DestinationTemplate { name: name.to_string(), url, rendition: None, connector: None })
    }

    /// A destination opened by `connector` (the same for every stream).
    pub fn with_connector(name: &str, connector: Arc<dyn Connector>) -> DestinationTemplate {
        let url = DestinationUrl::Rtmp(RtmpUrl {
            scheme: crate::rtmp::RtmpScheme::Rtmp,
            host: "custom".into(),
            port: 1935,
            explicit_port: false,
            app: String::new(),
            key: String::new(),
        });
        DestinationTemplate { name: name.to_string(), url, rendition: None, connector: Some(connector) }
    }

    /// Sends rendition `rung` of the ladder instead of the source.
    pub fn with_rendition(mut self, rung: Option<String>) -> DestinationTemplate {
        self.rendition = rung;
        self
    }

    /// Whether the URL depends on the publisher's key.
    pub fn is_per_key(&self) -> bool {
        self.url.is_per_key()
    }
}

/// Everything the relay needs.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// The RTMP ingest address.
    pub listen: SocketAddr,
    /// Whether to run the RTMP ingest (off when only RTSP is listened to).
    pub rtmp_enabled: bool,
    /// The RTSP push ingest address (`rtsp://ADDR/APP/KEY`), if any.
    pub rtsp: Option<SocketAddr>,
    #[cfg(feature = "rtsp")]
    pub rtsp_options: crate::rtsp::RtspIngestOptions,
    /// The SRT ingest address (callers name `APP/KEY` or `KEY` in their `streamid`), if any.
    pub srt: Option<SocketAddr>,
    #[cfg(feature = "srt")]
    pub srt_options: crate::srt::SrtIngestOptions,
    pub app: String,
    /// Accepted stream keys; `None` accepts any key under `app`.
    pub keys: Option<HashSet<String>>,
    pub destinations: Vec<DestinationTemplate>,
    pub hub: HubOptions,
    pub ingest: RtmpIngestOptions,
    pub push: RtmpPushOptions,
    pub destination: DestinationOptions,
    /// How long shutdown waits for destinations to flush.
    pub shutdown_timeout: Duration,
    /// Serve (and with a directory, write) every stream as HLS.
    #[cfg(feature = "hls")]
    pub hls: Option<crate::hls::HlsOptions>,
    /// Transcode every stream into this ladder; destinations pick a rung by name.
    #[cfg(feature = "libav")]
    pub ladder: Option<(crate::ladder::Ladder, crate::transcode::TranscodeOptions)>,
    /// Record every stream (or one rendition of it) while it is relayed.
    #[cfg(feature = "libav")]
    pub record: Option<RecordConfig>,
}

/// What the relay records.
#[cfg(feature = "libav")]
#[derive(Clone, Debug)]
pub struct RecordConfig {
    pub kind: crate::record::RecordingKind,
    pub options: crate::record::RecordOptions,
    /// Record this rendition of the ladder instead of the source.
    pub rendition: Option<String>,
}

impl RelayConfig {
    pub fn new(listen: SocketAddr, app: &str) -> RelayConfig {
        RelayConfig {
            listen,
            rtmp_enabled: true,
            rtsp: None,
            #[cfg(feature = "rtsp")]
            rtsp_options: crate::rtsp::RtspIngestOptions::default(),
            srt: None,
            #[cfg(feature = "srt")]
            srt_options: crate::srt::SrtIngestOptions { app: app.to_string(), ..Default::default() },
            app: app.to_string(),
            keys: None,
            destinations: Vec::new(),
            hub: HubOptions::default(),
            ingest: RtmpIngestOptions::default(),
            push: RtmpPushOptions::default(),
            destination: DestinationOptions::default(),
            shutdown_timeout: Duration::from_secs(10),
            #[cfg(feature = "hls")]
            hls: None,
            #[cfg(feature = "libav")]
            ladder: None,
            #[cfg(feature = "libav")]
            record: None,
        }
    }

    /// Checks that every destination's (and the recording's) rendition is a rung of the ladder.
    pub fn validate(&self) -> Result<()> {
        #[cfg(feature = "libav")]
        if let Some(rung) = self.record.as_ref().and_then(|r| r.rendition.as_ref())
            && self.ladder.as_ref().is_none_or(|(l, _)| l.get(rung).is_none())
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!("the recording wants rendition {rung:?}, which the ladder does not have"),
            ));
        }
        for d in &self.destinations {
            let Some(rung) = &d.rendition else { continue };
            #[cfg(feature = "libav")]
            if self.ladder.as_ref().is_some_and(|(l, _)| l.get(rung).is_some()) {
                continue;
            }
            return Err(Error::new(
                ErrorKind::Config,
                format!("destination {:?} wants rendition {rung:?}, which the ladder does not have", d.name),
            ));
        }
        Ok(())
    }
}

/// The status of one destination of one stream.
#[derive(Clone, Debug)]
pub struct DestinationStatus {
    pub stream: String,
    pub name: String,
    /// The URL with its key masked.
    pub target: String,
    pub stats: DestinationSnapshot,
}

/// What the relay runs for one stream, keyed by hub stream (destinations by (stream,
/// template index)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayDesired {
    pub destinations: BTreeMap<(String, usize), DestinationUrl>,
    /// Sources transcoded.
    pub ladders: BTreeMap<String, ()>,
    /// Hub streams recorded (a source or a rendition).
    pub recordings: BTreeMap<String, ()>,
}

/// The relay's rules, over the streams in the hub: every source gets the ladder (when one
/// is configured) and each destination template whose rendition is `None`; each
/// `KEY@RUNG` rendition gets the templates that asked for that rung; the recording
/// follows its rendition choice the same way.
pub fn relay_desired(config: &RelayConfig, streams: &[String]) -> RelayDesired {
    let mut d = RelayDesired::default();
    for stream in streams {
        // `KEY@RUNG` is a rendition published by a ladder; any other stream is a source.
        let (key, rendition) = match stream.rsplit_once('@') {
            Some((key, rung)) => (key, Some(rung)),
            None => (stream.as_str(), None),
        };
        #[cfg(feature = "libav")]
        {
            if rendition.is_none() && config.ladder.is_some() {
                d.ladders.insert(stream.clone(), ());
            }
            if config.record.as_ref().is_some_and(|r| r.rendition.as_deref() == rendition) {
                d.recordings.insert(stream.clone(), ());
            }
        }
        for (i, t) in config.destinations.iter().enumerate() {
            if t.rendition.as_deref() == rendition {
                d.destinations.insert((stream.clone(), i), t.url.with_key_template(key));
            }
        }
    }
    d
}

#[derive(Debug, Default)]
struct RelayJobs {
    destinations: JobSet<(String, usize), DestinationUrl, DestinationHandle>,
    #[cfg(feature = "libav")]
    ladders: JobSet<String, (), crate::transcode::hub::LadderHandle>,
    #[cfg(feature = "libav")]
    recordings: JobSet<String, (), crate::record::RecordingHandle>,
}

type Jobs = Arc<Mutex<RelayJobs>>;

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    hub: Hub,
    local_addr: SocketAddr,
    rtsp_addr: Option<SocketAddr>,
    srt_addr: Option<SocketAddr>,
    jobs: Jobs,
    config: Arc<RelayConfig>,
    ingest_cancel: CancellationToken,
    dest_cancel: CancellationToken,
    ingest_task: JoinHandle<()>,
    watcher: JoinHandle<()>,
    shutdown_timeout: Duration,
    #[cfg(feature = "hls")]
    hls: Option<crate::hls::HlsServer>,
}

impl Relay {
    /// Binds the ingest and starts serving.
    pub async fn start(config: RelayConfig) -> Result<Relay> {
        config.validate()?;
        let hub = Hub::new(config.hub.clone());
        let auth = Arc::new(StaticKeys { app: config.app.clone(), keys: config.keys.clone() });
        let ingest_cancel = CancellationToken::new();
        let dest_cancel = CancellationToken::new();
        #[cfg_attr(not(feature = "rtsp"), allow(unused_mut))]
        let mut rtsp_addr = None;
        let rtsp_task: Option<JoinHandle<()>> = match config.rtsp {
            #[cfg(feature = "rtsp")]
            Some(addr) => {
                let rtsp = crate::rtsp::RtspIngest::bind(addr, hub.clone(), auth.clone(), config.rtsp_options.clone())
                    .await
                    .map_err(|e| e.context(format!("RTSP ingest on {addr}")))?;
                rtsp_addr = Some(rtsp.local_addr()?);
                Some(tokio::spawn(rtsp.run(ingest_cancel.clone())))
            }
            #[cfg(not(feature = "rtsp"))]
            Some(_) => {
                return Err(Error::new(ErrorKind::Config, "RTSP ingest: built without the `rtsp` feature"));
            }
            None => None,
        };
        #[cfg_attr(not(feature = "srt"), allow(unused_mut))]
        let mut srt_addr = None;
        let srt_task: Option<JoinHandle<()>> = match config.srt {
            #[cfg(feature = "srt")]
            Some(addr) => {
                let srt = crate::srt::SrtIngest::bind(addr, hub.clone(), auth.clone(), config.srt_options.clone())
                    .await
                    .map_err(|e| e.context(format!("SRT ingest on {addr}")))?;
                srt_addr = Some(srt.local_addr());
                Some(tokio::spawn(srt.run(ingest_cancel.clone())))
            }
            #[cfg(not(feature = "srt"))]
            Some(_) => {
                return Err(Error::new(ErrorKind::Config, "SRT ingest: built without the `srt` feature"));
            }
            None => None,
        };
        let (local_addr, rtmp_task) = if config.rtmp_enabled {
            let ingest = RtmpIngest::bind(config.listen, hub.clone(), auth, config.ingest.clone()).await?;
            let local_addr = ingest.local_addr()?;
            (local_addr, Some(tokio::spawn(ingest.run(ingest_cancel.clone()))))
        } else {
            (config.listen, None)
        };
        let ingest_task = tokio::spawn(async move {
            for t in [rtmp_task, rtsp_task, srt_task].into_iter().flatten() {
                let _ = t.await;
            }
        });
        let (wake_tx, wake) = tokio::sync::mpsc::unbounded_channel();
        let jobs: Jobs = Arc::new(Mutex::new(RelayJobs {
            #[cfg(feature = "libav")]
            ladders: JobSet::new().with_on_stopped(move || _ = wake_tx.send(())),
            ..RelayJobs::default()
        }));
        #[cfg(not(feature = "libav"))]
        drop(wake_tx);
        let config = Arc::new(config);
        #[cfg(feature = "hls")]
        let hls = config.hls.clone().map(|o| crate::hls::HlsServer::start(hub.clone(), o, dest_cancel.clone()));
        let watcher = tokio::spawn(watch(hub.clone(), Arc::clone(&config), jobs.clone(), wake, dest_cancel.clone()));
        info!(addr = %local_addr, app = %config.app, destinations = config.destinations.len(), "relay listening");
        Ok(Relay {
            hub,
            local_addr,
            rtsp_addr,
            srt_addr,
            jobs,
            shutdown_timeout: config.shutdown_timeout,
            config,
            ingest_cancel,
            dest_cancel,
            ingest_task,
            watcher,
            #[cfg(feature = "hls")]
            hls,
        })
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The HLS output, when [`RelayConfig::hls`] asked for one.
    #[cfg(feature = "hls")]
    pub fn hls(&self) -> Option<&crate::hls::HlsServer> {
        self.hls.as_ref()
    }

    /// The address the ingest listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the RTSP ingest listens on, if it runs.
    pub fn rtsp_addr(&self) -> Option<SocketAddr> {
        self.rtsp_addr
    }

    /// The SRT ingest's bound address, if it runs.
    pub fn srt_addr(&self) -> Option<SocketAddr> {
        self.srt_addr
    }

    /// Every destination of every live stream.
    pub fn destinations(&self) -> Vec<DestinationStatus> {
        let jobs = lock(&self.jobs);
        let mut out: Vec<DestinationStatus> = jobs
            .destinations
            .running()
            .map(|((stream, i), url, d)| DestinationStatus {
                stream: stream.clone(),
                name: self.config.destinations.get(*i).map_or_else(|| d.name.clone(), |t| t.name.clone()),
                target: match self.config.destinations.get(*i).and_then(|t| t.connector.as_ref()) {
                    Some(c) => c.describe(),
                    None => url.to_string(),
                },
                stats: d.stats.snapshot(),
            })
            .collect();
        out.sort_by(|a, b| (&a.stream, &a.name).cmp(&(&b.stream, &b.name)));
        out
    }

    #[cfg(feature = "libav")]
    /// The renditions of every transcoded stream: (source stream, packets the decoder had to
    /// drop, rungs).
    pub fn renditions(&self) -> Vec<(String, u64, Vec<crate::transcode::RungSnapshot>)> {
        let jobs = lock(&self.jobs);
        jobs.ladders.running().map(|(s, _, l)| (s.clone(), l.input_dropped(), l.rungs())).collect()
    }

    /// Every running recording: (hub stream, file being written, bytes, frames dropped).
    #[cfg(feature = "libav")]
    pub fn recordings(&self) -> Vec<(String, Option<std::path::PathBuf>, u64, u64)> {
        use std::sync::atomic::Ordering;
        let jobs = lock(&self.jobs);
        jobs.recordings
            .running()
            .map(|(s, _, r)| {
                let dropped = r.stats.frames_dropped.load(Ordering::Relaxed) + r.input_dropped();
                (s.clone(), lock(&r.stats.current).clone(), r.stats.bytes_written.load(Ordering::Relaxed), dropped)
            })
            .collect()
    }

    /// Ordered shutdown: ingest, streams, destinations.
    pub async fn shutdown(self) {
        info!("shutting down: stopping ingest");
        self.ingest_cancel.cancel();
        let _ = self.ingest_task.await;
        info!("ending streams; destinations flush and close");
        self.hub.close();
        self.watcher.abort();
        #[cfg(feature = "hls")]
        if let Some(hls) = &self.hls {
            hls.join().await;
        }
        // Every job's stream has ended: they finish by themselves, the destinations last
        // (they deliver what the ladders and the source left them).
        let mut jobs = std::mem::take(&mut *lock(&self.jobs));
        #[cfg(feature = "libav")]
        {
            jobs.ladders.join_all(Duration::from_secs(3600)).await;
            jobs.recordings.join_all(Duration::from_secs(3600)).await;
        }
        if !jobs.destinations.join_all(self.shutdown_timeout).await {
            warn!("destinations did not finish in time; closing them");
            self.dest_cancel.cancel();
        }
        info!("relay stopped");
    }
}

async fn watch(
    hub: Hub,
    config: Arc<RelayConfig>,
    jobs: Jobs,
    mut wake: tokio::sync::mpsc::UnboundedReceiver<()>,
    cancel: CancellationToken,
) {
    let mut events = hub.events();
    // streams that started before we subscribed
    reconcile(&hub, &config, &jobs, &cancel);
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(HubEvent::StreamEnded(name)) => {
                    // Its jobs end by themselves once they delivered what they hold.
                    let mut j = lock(&jobs);
                    j.destinations.release(|(stream, _), _| *stream == name);
                    #[cfg(feature = "libav")]
                    {
                        j.ladders.release(|stream, _| *stream == name);
                        j.recordings.release(|stream, _| *stream == name);
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => warn!(missed = n, "relay fell behind on stream events; resynchronising"),
                Err(RecvError::Closed) => break,
            },
            Some(()) = wake.recv() => {}
        }
        reconcile(&hub, &config, &jobs, &cancel);
    }
}

/// Makes the relay's jobs match [`relay_desired`] for the streams now in the hub.
fn reconcile(hub: &Hub, config: &RelayConfig, jobs: &Jobs, cancel: &CancellationToken) {
    let want = relay_desired(config, &hub.stream_names());
    let mut jobs = lock(jobs);
    #[cfg(feature = "libav")]
    {
        if let Some((ladder, options)) = &config.ladder {
            let c = jobs.ladders.reconcile(&want.ladders, |stream, _| {
                crate::transcode::hub::spawn_ladder(
                    hub.clone(),
                    stream.clone(),
                    ladder.clone(),
                    options.clone(),
                    cancel.child_token(),
                )
                .map_err(|e| e.to_string())
            });
            for (stream, e) in c.failed {
                warn!(stream, error = %e, "cannot start the ladder; only the source is relayed");
            }
        }
        if let Some(rec) = &config.record {
            let c = jobs.recordings.reconcile(&want.recordings, |stream, _| {
                crate::record::spawn_recording(
                    hub.clone(),
                    stream.clone(),
                    rec.kind,
                    rec.options.clone(),
                    cancel.child_token(),
                )
                .map_err(|e| e.to_string())
            });
            for (stream, e) in c.failed {
                warn!(stream, error = %e, "cannot record this stream");
            }
        }
    }
    jobs.destinations.reconcile(&want.destinations, |(stream, i), url| {
        let connector: Arc<dyn Connector> = match config.destinations.get(*i).and_then(|t| t.connector.clone()) {
            Some(c) => c,
            None => url.connector(config.push.clone()),
        };
        let name = config.destinations.get(*i).map_or_else(String::new, |t| t.name.clone());
        Ok(spawn_destination(
            hub.clone(),
            stream.clone(),
            name,
            connector,
            config.destination.clone(),
            cancel.child_token(),
        ))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "srt")]
    #[test]
    fn an_srt_destination_takes_the_key_in_its_stream_id() {
        let t = DestinationTemplate::parse("srt", "srt://cdn.example:9000?streamid=#!::r=live/{key},m=publish")
            .expect("url");
        assert!(t.is_per_key());
        assert!(!DestinationTemplate::parse("one", "srt://cdn.example:9000?streamid=fixed").expect("url").is_per_key());
        let mut config = RelayConfig::new("127.0.0.1:1935".parse().expect("addr"), "live");
        config.destinations = vec![t];
        let d = relay_desired(&config, &["talk".to_string(), "demo".to_string()]);
        for key in ["talk", "demo"] {
            match &d.destinations[&(key.to_string(), 0)] {
                DestinationUrl::Srt(u) => {
                    assert_eq!(u.stream_id.as_deref(), Some(format!("#!::r=live/{key},m=publish").as_str()))
                }
                other => panic!("not SRT: {other:?}"),
            }
        }
    }

    #[test]
    fn each_stream_gets_the_templates_of_its_rendition_with_its_key() {
        let mut config = RelayConfig::new("127.0.0.1:1935".parse().expect("addr"), "live");
        let yt = DestinationTemplate::parse("yt", "rtmp://yt.example/live2/{key}").expect("url");
        let fixed = DestinationTemplate::parse("fixed", "rtmp://cdn.example/app/one").expect("url");
        let low = DestinationTemplate::parse("low", "rtmp://low.example/app/{key}-480").expect("url");
        config.destinations = vec![yt, fixed, low.with_rendition(Some("480p".into()))];
        let streams = ["talk".to_string(), "talk@480p".to_string(), "demo".to_string()];
        let d = relay_desired(&config, &streams);
        let keys: Vec<(&str, usize)> = d.destinations.keys().map(|(s, i)| (s.as_str(), *i)).collect();
        assert_eq!(keys, [("demo", 0), ("demo", 1), ("talk", 0), ("talk", 1), ("talk@480p", 2)]);
        let key = |s: &str, i: usize| match &d.destinations[&(s.to_string(), i)] {
            DestinationUrl::Rtmp(u) => u.key.clone(),
            #[cfg(feature = "srt")]
            DestinationUrl::Srt(u) => u.stream_id.clone().unwrap_or_default(),
        };
        assert_eq!(key("talk", 0), "talk");
        assert_eq!(key("talk@480p", 2), "talk-480", "the source's key, not the rung's");
        assert!(d.ladders.is_empty() && d.recordings.is_empty(), "no ladder or recording configured");
        assert_eq!(relay_desired(&config, &[]), RelayDesired::default());
        #[cfg(feature = "libav")]
        {
            config.ladder = Some(("480p".parse().expect("ladder"), crate::transcode::TranscodeOptions::default()));
            let options = crate::record::RecordOptions::new("/rec");
            let kind = crate::record::RecordingKind::Original;
            config.record = Some(RecordConfig { kind, options, rendition: Some("480p".into()) });
            let d = relay_desired(&config, &streams);
            assert_eq!(d.ladders.keys().collect::<Vec<_>>(), ["demo", "talk"], "sources only");
            assert_eq!(d.recordings.keys().collect::<Vec<_>>(), ["talk@480p"], "the chosen rendition");
        }
    }
}
