//! The assembled relay: RTMP ingest → hub → one supervised destination per template for
//! every stream that goes live.
//!
//! Shutdown is ordered: stop the ingest (no new publishers, current ones disconnected),
//! end the streams (each destination delivers what it has queued, unpublishes and
//! closes gracefully), then wait for the destinations.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::destination::{DestinationHandle, DestinationOptions, DestinationSnapshot, spawn_destination};
use crate::error::{Error, ErrorKind, Result};
use crate::hub::{Hub, HubEvent, HubOptions};
use crate::rtmp::{RtmpConnector, RtmpIngest, RtmpIngestOptions, RtmpPushOptions, RtmpUrl, StaticKeys};
use crate::sync::lock;

/// A destination for every stream; `{key}` in the URL's key is replaced by the stream key.
#[derive(Clone, Debug)]
pub struct DestinationTemplate {
    pub name: String,
    pub url: RtmpUrl,
    /// The rendition of the ladder sent there (`720p`); `None` sends the source as is.
    pub rendition: Option<String>,
}

impl DestinationTemplate {
    pub fn parse(name: &str, url: &str) -> Result<DestinationTemplate> {
        let url: RtmpUrl =
            url.parse().map_err(|e| Error::new(ErrorKind::Config, format!("destination {name:?}: {e}")))?;
        if url.key.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("destination {name:?} has no stream key (expected rtmp://HOST/APP/KEY)"),
            ));
        }
        Ok(DestinationTemplate { name: name.to_string(), url, rendition: None })
    }

    /// Sends rendition `rung` of the ladder instead of the source.
    pub fn with_rendition(mut self, rung: Option<String>) -> DestinationTemplate {
        self.rendition = rung;
        self
    }

    /// Whether the URL depends on the publisher's key.
    pub fn is_per_key(&self) -> bool {
        self.url.key.contains("{key}")
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
    pub rtsp_options: crate::rtsp::RtspIngestOptions,
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
            rtsp_options: crate::rtsp::RtspIngestOptions::default(),
            app: app.to_string(),
            keys: None,
            destinations: Vec::new(),
            hub: HubOptions::default(),
            ingest: RtmpIngestOptions::default(),
            push: RtmpPushOptions::default(),
            destination: DestinationOptions::default(),
            shutdown_timeout: Duration::from_secs(10),
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

type Active = Arc<Mutex<HashMap<String, Vec<(String, DestinationHandle)>>>>;
#[cfg(feature = "libav")]
#[derive(Clone, Debug, Default)]
struct Ladders {
    ladders: Arc<Mutex<HashMap<String, crate::transcode::hub::LadderHandle>>>,
    recordings: Arc<Mutex<HashMap<String, crate::record::RecordingHandle>>>,
}
/// Without libav there is no transcoding: nothing to keep.
#[cfg(not(feature = "libav"))]
#[derive(Clone, Debug, Default)]
struct Ladders;

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    hub: Hub,
    local_addr: SocketAddr,
    rtsp_addr: Option<SocketAddr>,
    active: Active,
    #[cfg_attr(not(feature = "libav"), allow(dead_code))]
    ladders: Ladders,
    ingest_cancel: CancellationToken,
    dest_cancel: CancellationToken,
    ingest_task: JoinHandle<()>,
    watcher: JoinHandle<()>,
    shutdown_timeout: Duration,
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
        let mut rtsp_addr = None;
        let rtsp_task = match config.rtsp {
            Some(addr) => {
                let rtsp = crate::rtsp::RtspIngest::bind(addr, hub.clone(), auth.clone(), config.rtsp_options.clone())
                    .await
                    .map_err(|e| e.context(format!("RTSP ingest on {addr}")))?;
                rtsp_addr = Some(rtsp.local_addr()?);
                Some(tokio::spawn(rtsp.run(ingest_cancel.clone())))
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
            for t in [rtmp_task, rtsp_task].into_iter().flatten() {
                let _ = t.await;
            }
        });
        let active: Active = Arc::default();
        let ladders: Ladders = Default::default();
        let hls = config.hls.clone().map(|o| crate::hls::HlsServer::start(hub.clone(), o, dest_cancel.clone()));
        let watcher =
            tokio::spawn(watch(hub.clone(), config.clone(), active.clone(), ladders.clone(), dest_cancel.clone()));
        info!(addr = %local_addr, app = %config.app, destinations = config.destinations.len(), "relay listening");
        Ok(Relay {
            hub,
            local_addr,
            rtsp_addr,
            active,
            ladders,
            ingest_cancel,
            dest_cancel,
            ingest_task,
            watcher,
            shutdown_timeout: config.shutdown_timeout,
            hls,
        })
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The HLS output, when [`RelayConfig::hls`] asked for one.
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

    /// Every destination of every live stream.
    pub fn destinations(&self) -> Vec<DestinationStatus> {
        let active = lock(&self.active);
        let mut out = Vec::new();
        for (stream, dests) in active.iter() {
            for (target, d) in dests {
                out.push(DestinationStatus {
                    stream: stream.clone(),
                    name: d.name.clone(),
                    target: target.clone(),
                    stats: d.stats.snapshot(),
                });
            }
        }
        out.sort_by(|a, b| (&a.stream, &a.name).cmp(&(&b.stream, &b.name)));
        out
    }

    #[cfg(feature = "libav")]
    /// The renditions of every transcoded stream: (source stream, packets the decoder had to
    /// drop, rungs).
    pub fn renditions(&self) -> Vec<(String, u64, Vec<crate::transcode::RungSnapshot>)> {
        let ladders = lock(&self.ladders.ladders);
        let mut out: Vec<_> = ladders.iter().map(|(s, l)| (s.clone(), l.input_dropped(), l.rungs())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every running recording: (hub stream, file being written, bytes, frames dropped).
    #[cfg(feature = "libav")]
    pub fn recordings(&self) -> Vec<(String, Option<std::path::PathBuf>, u64, u64)> {
        use std::sync::atomic::Ordering;
        let recs = lock(&self.ladders.recordings);
        let mut out: Vec<_> = recs
            .iter()
            .map(|(s, r)| {
                let dropped = r.stats.frames_dropped.load(Ordering::Relaxed) + r.input_dropped();
                (s.clone(), lock(&r.stats.current).clone(), r.stats.bytes_written.load(Ordering::Relaxed), dropped)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Ordered shutdown: ingest, streams, destinations.
    pub async fn shutdown(self) {
        info!("shutting down: stopping ingest");
        self.ingest_cancel.cancel();
        let _ = self.ingest_task.await;
        info!("ending streams; destinations flush and close");
        self.hub.close();
        self.watcher.abort();
        if let Some(hls) = &self.hls {
            hls.join().await;
        }
        #[cfg(feature = "libav")]
        {
            let ladders: Vec<_> = lock(&self.ladders.ladders).drain().map(|(_, l)| l).collect();
            for l in ladders {
                l.join().await;
            }
            let recordings: Vec<_> = lock(&self.ladders.recordings).drain().map(|(_, r)| r).collect();
            for r in recordings {
                r.join().await;
            }
        }
        let handles: Vec<DestinationHandle> =
            lock(&self.active).drain().flat_map(|(_, v)| v.into_iter().map(|(_, h)| h)).collect();
        let wait_all = async {
            for h in handles {
                h.join().await;
            }
        };
        if tokio::time::timeout(self.shutdown_timeout, wait_all).await.is_err() {
            warn!("destinations did not finish in time; closing them");
            self.dest_cancel.cancel();
        }
        info!("relay stopped");
    }
}

async fn watch(hub: Hub, config: RelayConfig, active: Active, ladders: Ladders, cancel: CancellationToken) {
    let mut events = hub.events();
    // streams that started before we subscribed
    for name in hub.stream_names() {
        stream_started(&hub, &config, &active, &ladders, &cancel, &name);
    }
    loop {
        match events.recv().await {
            Ok(HubEvent::StreamStarted(name)) => stream_started(&hub, &config, &active, &ladders, &cancel, &name),
            Ok(HubEvent::StreamEnded(name)) => {
                // The destinations stop by themselves once their subscription ends;
                // forget them after they have closed.
                #[cfg(feature = "libav")]
                let ladder = (lock(&ladders.ladders).remove(&name), lock(&ladders.recordings).remove(&name));
                #[cfg(not(feature = "libav"))]
                let ladder: Option<()> = None;
                let handles = lock(&active).remove(&name).unwrap_or_default();
                tokio::spawn(async move {
                    #[cfg(feature = "libav")]
                    {
                        if let Some(l) = ladder.0 {
                            l.join().await;
                        }
                        if let Some(r) = ladder.1 {
                            r.join().await;
                        }
                    }
                    #[cfg(not(feature = "libav"))]
                    let _ = ladder;
                    for (_, h) in handles {
                        h.join().await;
                    }
                });
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => {
                warn!(missed = n, "relay fell behind on stream events; resynchronising");
                for name in hub.stream_names() {
                    stream_started(&hub, &config, &active, &ladders, &cancel, &name);
                }
            }
            Err(RecvError::Closed) => break,
        }
    }
}

fn stream_started(
    hub: &Hub,
    config: &RelayConfig,
    active: &Active,
    ladders: &Ladders,
    cancel: &CancellationToken,
    stream: &str,
) {
    // `KEY@RUNG` is a rendition published by a ladder: it feeds the destinations that
    // asked for that rung; any other stream is a source.
    let (key, rendition) = match stream.rsplit_once('@') {
        Some((key, rung)) => (key, Some(rung)),
        None => (stream, None),
    };
    #[cfg(feature = "libav")]
    if let Some(rec) = config.record.as_ref().filter(|r| r.rendition.as_deref() == rendition) {
        let mut recordings = lock(&ladders.recordings);
        if recordings.get(stream).is_none_or(|r| r.is_finished()) {
            match crate::record::spawn_recording(
                hub.clone(),
                stream.to_string(),
                rec.kind,
                rec.options.clone(),
                cancel.child_token(),
            ) {
                Ok(h) => {
                    recordings.insert(stream.to_string(), h);
                }
                Err(e) => warn!(stream, error = %e, "cannot record this stream"),
            }
        }
    }
    #[cfg(feature = "libav")]
    if let (None, Some((ladder, options))) = (rendition, &config.ladder) {
        let mut ladders = lock(&ladders.ladders);
        if ladders.get(stream).is_none_or(|l| l.is_finished()) {
            match crate::transcode::hub::spawn_ladder(
                hub.clone(),
                stream.to_string(),
                ladder.clone(),
                options.clone(),
                cancel.child_token(),
            ) {
                Ok(h) => {
                    ladders.insert(stream.to_string(), h);
                }
                Err(e) => warn!(stream, error = %e, "cannot start the ladder; only the source is relayed"),
            }
        }
    }
    #[cfg(not(feature = "libav"))]
    let _ = ladders;
    start_destinations(hub, config, active, cancel, stream, key, rendition);
}

fn start_destinations(
    hub: &Hub,
    config: &RelayConfig,
    active: &Active,
    cancel: &CancellationToken,
    stream: &str,
    key: &str,
    rendition: Option<&str>,
) {
    let mut active = lock(active);
    let entry = active.entry(stream.to_string()).or_default();
    entry.retain(|(_, h)| !h.is_finished());
    if !entry.is_empty() {
        return;
    }
    for t in config.destinations.iter().filter(|t| t.rendition.as_deref() == rendition) {
        let url = t.url.with_key_template(key);
        let target = url.to_string();
        let connector = Arc::new(RtmpConnector::new(url, config.push.clone()));
        let handle = spawn_destination(
            hub.clone(),
            stream.to_string(),
            t.name.clone(),
            connector,
            config.destination.clone(),
            cancel.child_token(),
        );
        entry.push((target, handle));
    }
}
