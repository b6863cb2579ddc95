//! A builder for the common cases: inputs (pulled URLs or your own [`Source`]s) → optional
//! ladder → RTMP destinations, recording and HLS, in a few lines. It assembles the same
//! [`Relay`] the CLI runs (without its ingest unless [`Pipeline::listen_rtmp`] asks for
//! one) and publishes the inputs into its hub.
//!
//! ```no_run
//! # async fn run() -> multistreamer_core::Result<()> {
//! use multistreamer_core::pipeline::Pipeline;
//! let running = Pipeline::new()
//!     .pull("talk", "https://cdn.example/talk/index.m3u8")?
//!     .to("youtube", "rtmp://a.rtmp.youtube.com/live2/SECRET")?
//!     .start()
//!     .await?;
//! running.run_to_end().await; // a VOD playlist plays once; a live one until stopped
//! # Ok(()) }
//! ```

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use crate::engine::Job;
use crate::error::{Error, ErrorKind, Result};
use crate::relay::{DestinationTemplate, Relay, RelayConfig};
use crate::sink::Connector;
use crate::source::{InputUrl, PullHandle, PullOptions, Source, SourceHandle, spawn_source};

type SourceStarter = Box<dyn FnOnce(crate::hub::Hub, CancellationToken) -> Result<SourceHandle> + Send>;

enum Input {
    Pull(String, InputUrl),
    Source(String, SourceStarter),
}

/// What to run; see the module documentation.
pub struct Pipeline {
    config: RelayConfig,
    inputs: Vec<Input>,
    pull_options: PullOptions,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("config", &self.config).field("inputs", &self.inputs.len()).finish()
    }
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline::new()
    }
}

impl Pipeline {
    /// No inputs, no outputs, no ingest.
    pub fn new() -> Pipeline {
        let mut config = RelayConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), "live");
        config.rtmp_enabled = false;
        Pipeline { config, inputs: Vec::new(), pull_options: PullOptions::default() }
    }

    /// Also accept RTMP publishers at `rtmp://ADDR/APP/KEY` (any key).
    pub fn listen_rtmp(mut self, addr: SocketAddr, app: &str) -> Pipeline {
        self.config.listen = addr;
        self.config.app = app.to_string();
        self.config.rtmp_enabled = true;
        self
    }

    /// Pulls `url` (RTSP camera or HLS playlist) as stream `stream`.
    pub fn pull(mut self, stream: &str, url: &str) -> Result<Pipeline> {
        let url: InputUrl = url.parse()?;
        self.inputs.push(Input::Pull(stream.to_string(), url));
        Ok(self)
    }

    /// How pulled inputs are read (RTSP transport, HLS variant, VOD looping).
    pub fn pull_options(mut self, options: PullOptions) -> Pipeline {
        self.pull_options = options;
        self
    }

    /// Publishes your own `source` as stream `stream`.
    pub fn source<S: Source + 'static>(mut self, stream: &str, source: S) -> Pipeline {
        let name = stream.to_string();
        let start: SourceStarter = Box::new(move |hub, cancel| spawn_source(hub, &name, source, cancel));
        self.inputs.push(Input::Source(stream.to_string(), start));
        self
    }

    /// Sends every stream's source to `url` (`{key}` is replaced by the stream's name).
    pub fn to(mut self, name: &str, url: &str) -> Result<Pipeline> {
        self.config.destinations.push(DestinationTemplate::parse(name, url)?);
        Ok(self)
    }

    /// Sends rendition `rung` of the ladder to `url`.
    pub fn to_rendition(mut self, rung: &str, name: &str, url: &str) -> Result<Pipeline> {
        let t = DestinationTemplate::parse(name, url)?.with_rendition(Some(rung.to_string()));
        self.config.destinations.push(t);
        Ok(self)
    }

    /// Sends every stream's source through your own connector.
    pub fn to_connector(mut self, name: &str, connector: std::sync::Arc<dyn Connector>) -> Pipeline {
        self.config.destinations.push(DestinationTemplate::with_connector(name, connector));
        self
    }

    /// Transcodes every stream into `ladder` (`1080p,720p,480p`, `426x240@15:400k`, …).
    #[cfg(feature = "libav")]
    pub fn ladder(mut self, ladder: &str) -> Result<Pipeline> {
        let ladder: crate::ladder::Ladder =
            ladder.parse().map_err(|e: String| Error::new(ErrorKind::Config, format!("ladder: {e}")))?;
        self.config.ladder = Some((ladder, crate::transcode::TranscodeOptions::default()));
        Ok(self)
    }

    /// Records every stream's source into `dir`.
    #[cfg(feature = "libav")]
    pub fn record(mut self, kind: crate::record::RecordingKind, dir: impl Into<std::path::PathBuf>) -> Pipeline {
        let options = crate::record::RecordOptions::new(dir);
        self.config.record = Some(crate::relay::RecordConfig { kind, options, rendition: None });
        self
    }

    /// Everything else (HLS output, hub and destination options, …).
    pub fn config_mut(&mut self) -> &mut RelayConfig {
        &mut self.config
    }

    /// Starts the outputs, then the inputs.
    pub async fn start(self) -> Result<RunningPipeline> {
        if self.inputs.is_empty() && !self.config.rtmp_enabled {
            return Err(Error::new(ErrorKind::Config, "the pipeline has no input"));
        }
        let mut names = std::collections::HashSet::new();
        for input in &self.inputs {
            let (Input::Pull(name, _) | Input::Source(name, _)) = input;
            if name.is_empty() || name.contains('@') || !names.insert(name.as_str()) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("input stream name {name:?} is empty, holds '@' or is used twice"),
                ));
            }
        }
        let relay = Relay::start(self.config).await?;
        let cancel = CancellationToken::new();
        let mut pulls = Vec::new();
        let mut sources = Vec::new();
        for input in self.inputs {
            match input {
                Input::Pull(stream, url) => {
                    pulls.push(url.spawn(relay.hub().clone(), stream, &self.pull_options, cancel.child_token())?)
                }
                Input::Source(_, start) => sources.push(start(relay.hub().clone(), cancel.child_token())?),
            }
        }
        Ok(RunningPipeline { relay, pulls, sources, cancel })
    }
}

/// A started [`Pipeline`].
#[derive(Debug)]
pub struct RunningPipeline {
    relay: Relay,
    pulls: Vec<PullHandle>,
    sources: Vec<SourceHandle>,
    cancel: CancellationToken,
}

impl RunningPipeline {
    /// The relay: its hub, destination and recording status.
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// Whether every input has ended (VOD pulls played, sources exhausted).
    pub fn inputs_finished(&self) -> bool {
        self.pulls.iter().all(PullHandle::is_finished) && self.sources.iter().all(SourceHandle::is_finished)
    }

    /// Why inputs failed, by stream.
    pub fn input_errors(&self) -> Vec<(String, String)> {
        let pulls = self.pulls.iter().filter_map(|p| Job::error(p).map(|e| (p.stream.clone(), e)));
        let sources = self.sources.iter().filter_map(|s| s.error().map(|e| (s.stream.clone(), e)));
        pulls.chain(sources).collect()
    }

    /// Waits until every input has ended, then shuts down in order (streams end, the
    /// ladder drains, recordings close, destinations deliver everything and unpublish).
    /// Live inputs never end by themselves: see [`RunningPipeline::run_until`]. Returns why
    /// inputs failed, by stream (empty when every input ended cleanly).
    pub async fn run_to_end(self) -> Vec<(String, String)> {
        self.run_until(std::future::pending::<()>()).await
    }

    /// Like [`RunningPipeline::run_to_end`], or until `stop` resolves (Ctrl-C, a timer)
    /// if that comes first. A pipeline whose only input is its RTMP ingest runs until `stop`.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()>) -> Vec<(String, String)> {
        let only_ingest = self.pulls.is_empty() && self.sources.is_empty();
        let inputs = async {
            if only_ingest {
                // An ingest has no end of its own: run until `stop`.
                std::future::pending::<()>().await;
            }
            for p in &self.pulls {
                p.finished().await;
            }
            for s in &self.sources {
                s.finished().await;
            }
        };
        tokio::select! {
            _ = inputs => {}
            _ = stop => {}
        }
        let errors = self.input_errors();
        self.shutdown().await;
        errors
    }

    /// Stops the inputs now, then shuts down in order.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for p in self.pulls {
            p.stop().await;
        }
        for s in self.sources {
            s.stop().await;
        }
        self.relay.shutdown().await;
    }
}
