//! `multistreamer`: command-line restreaming.
//!
//! This binary is a thin assembly of `multistreamer-core`; it prints status lines on
//! stdout and logs on stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a CLI talks to its user

mod transcode;

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use multistreamer_core::hub::SlowSinkPolicy;
use multistreamer_core::relay::{DestinationStatus, DestinationTemplate, Relay, RelayConfig};
use multistreamer_core::rtmp::{RtmpScheme, RtmpUrl};
use multistreamer_core::signal::shutdown_signal;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "multistreamer",
    version,
    about = "Take one live stream in and send it everywhere.",
    long_about = "Take one live stream in and send it everywhere.\n\n\
        Publish to Multistreamer with OBS or ffmpeg over RTMP, and it relays the stream, \
        unchanged, to every destination you list (YouTube, webinar.ru, Twitch, any RTMP or \
        RTMPS URL). Each destination reconnects by itself and never disturbs the others."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Accept an RTMP publisher and relay it to one or more destinations.
    #[command(after_help = "EXAMPLES:\n  \
        # OBS publishes to rtmp://THIS-HOST:1935/live/mykey; relay to YouTube and a second server\n  \
        multistreamer relay --listen rtmp://0.0.0.0:1935/live/mykey \\\n      \
        --to rtmp://a.rtmp.youtube.com/live2/xxxx-xxxx-xxxx-xxxx \\\n      \
        --to rtmps://live-api-s.facebook.com:443/rtmp/FB-123?s_bl=1\n\n  \
        # Many publishers: any key under /live; each goes to YouTube under its own key\n  \
        multistreamer relay --listen rtmp://0.0.0.0:1935/live --key alice --key bob \\\n      \
        --to 'rtmp://a.rtmp.youtube.com/live2/{key}'")]
    Relay(Box<RelayArgs>),
    /// Transcode a file or URL into a ladder of renditions, one file per rung.
    #[command(after_help = "EXAMPLES:\n  \
        multistreamer transcode --input talk.mp4 --ladder 1080p,720p,480p --out-dir renditions/\n  \
        multistreamer transcode --input in.mkv --ladder 720p@30:3000k,480p --preset ultrafast --out-dir out/")]
    Transcode(transcode::TranscodeArgs),
    /// Accept RTMP publishers and record them: the original packets (crash-safe fragmented
    /// MP4) or, with --raw, uncompressed video + PCM.
    #[command(after_help = "EXAMPLES:\n  \
        multistreamer record --listen rtmp://0.0.0.0:1935/live --out recordings/ --segment 3600\n  \
        multistreamer record --listen rtmp://0.0.0.0:1935/live/talk --out /fast-disk --raw")]
    Record(RecordCmdArgs),
    /// Show the machine's load (CPU, memory, disks, network, GPUs) every second.
    Load(LoadArgs),
}

#[derive(Args, Debug)]
struct LoadArgs {
    /// Seconds between samples.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    interval: f64,
    /// Stop after this many samples (0 = until Ctrl-C).
    #[arg(long, value_name = "N", default_value_t = 0)]
    count: u64,
}

/// Recording while relaying.
#[derive(Args, Debug, Clone, Default)]
struct RecordArgs {
    /// Record every stream into this directory (fragmented MP4, the packets as published).
    #[arg(long = "record", value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Record uncompressed (raw video + PCM in NUT) instead; the disk is checked first.
    #[arg(long = "record-raw")]
    raw: bool,
    /// Record this rendition of --ladder instead of the source.
    #[arg(long = "record-rendition", value_name = "RUNG")]
    rendition: Option<String>,
    /// Start a new file every SECONDS (at a keyframe); 0 = one file per session.
    #[arg(long = "record-segment", value_name = "SECONDS", default_value_t = 0)]
    segment: u64,
    /// File names: {stream}, {date}, {time} (UTC) and {n} are replaced.
    #[arg(long = "record-template", value_name = "TEMPLATE", default_value = "{stream}-{date}-{time}")]
    template: String,
    /// Delete recordings older than this many hours (0 = keep).
    #[arg(long = "record-max-age", value_name = "HOURS", default_value_t = 0.0)]
    max_age_hours: f64,
    /// Delete the oldest recordings while the directory holds more than this many GB (0 = no limit).
    #[arg(long = "record-max-size", value_name = "GB", default_value_t = 0.0)]
    max_size_gb: f64,
}

impl RecordArgs {
    fn config(&self) -> Result<Option<multistreamer_core::relay::RecordConfig>, String> {
        use multistreamer_core::record::{RecordOptions, RecordingKind};
        let Some(dir) = &self.dir else { return Ok(None) };
        if !self.max_age_hours.is_finite() || self.max_age_hours < 0.0 {
            return Err("--record-max-age must be a number of hours ≥ 0".into());
        }
        if !self.max_size_gb.is_finite() || self.max_size_gb < 0.0 {
            return Err("--record-max-size must be a number of GB ≥ 0".into());
        }
        let mut options = RecordOptions::new(dir);
        options.template = self.template.clone();
        options.segment = (self.segment > 0).then(|| Duration::from_secs(self.segment));
        options.max_age = (self.max_age_hours > 0.0).then(|| Duration::from_secs_f64(self.max_age_hours * 3600.0));
        options.max_total_bytes = (self.max_size_gb > 0.0).then_some((self.max_size_gb * 1e9) as u64);
        let kind = if self.raw { RecordingKind::Raw } else { RecordingKind::Original };
        Ok(Some(multistreamer_core::relay::RecordConfig { kind, options, rendition: self.rendition.clone() }))
    }
}

#[derive(Args, Debug)]
struct RecordCmdArgs {
    /// Where publishers connect: rtmp://ADDR:PORT/APP[/KEY].
    #[arg(long, value_name = "URL", default_value = "rtmp://0.0.0.0:1935/live")]
    listen: String,
    /// Directory for the recordings.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Record uncompressed (raw video + PCM in NUT); the disk is checked first.
    #[arg(long)]
    raw: bool,
    /// Accept only this stream key (repeatable).
    #[arg(long = "key", value_name = "KEY")]
    keys: Vec<String>,
    /// Start a new file every SECONDS (at a keyframe); 0 = one file per session.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    segment: u64,
    /// File names: {stream}, {date}, {time} (UTC) and {n} are replaced.
    #[arg(long, value_name = "TEMPLATE", default_value = "{stream}-{date}-{time}")]
    template: String,
    /// Delete recordings older than this many hours (0 = keep).
    #[arg(long, value_name = "HOURS", default_value_t = 0.0)]
    max_age: f64,
    /// Delete the oldest recordings while the directory holds more than this many GB.
    #[arg(long, value_name = "GB", default_value_t = 0.0)]
    max_size: f64,
    /// Seconds a stream waits for its publisher to come back before its file is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    grace: f64,
}

/// `record` is the relay with no destinations and a recording.
fn record_as_relay(a: RecordCmdArgs) -> Result<RelayArgs, String> {
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        relay: RelayArgs,
    }
    let mut argv = vec!["relay".to_string(), "--listen".into(), a.listen, "--grace".into(), a.grace.to_string()];
    for k in a.keys {
        argv.extend(["--key".to_string(), k]);
    }
    let mut relay = <Wrap as clap::Parser>::try_parse_from(argv).map_err(|e| e.to_string())?.relay;
    relay.record = RecordArgs {
        dir: Some(a.out),
        raw: a.raw,
        rendition: None,
        segment: a.segment,
        template: a.template,
        max_age_hours: a.max_age,
        max_size_gb: a.max_size,
    };
    Ok(relay)
}

#[derive(Args, Debug)]
struct RelayArgs {
    /// Where publishers connect: rtmp://ADDR:PORT/APP[/KEY] and/or (repeat the flag)
    /// rtsp://ADDR:PORT/APP[/KEY] for RTSP pushes (ANNOUNCE/RECORD over TCP, port 8554 by
    /// default). Without KEY, any key under APP is accepted unless --key restricts it.
    #[arg(long, value_name = "URL", default_value = "rtmp://0.0.0.0:1935/live")]
    listen: Vec<String>,

    /// A destination: rtmp[s]://HOST[:PORT]/APP/KEY. Repeat for more. `{key}` is replaced
    /// by the publisher's stream key. Keys with `?` and `&` are sent as written (quote them).
    /// `RUNG=URL` (e.g. 720p=rtmp://…) sends that rendition of --ladder instead of the source.
    #[arg(long = "to", value_name = "[RUNG=]URL")]
    to: Vec<String>,

    /// Require these credentials (HTTP Basic) from RTSP publishers, besides the key:
    /// USER:PASSWORD (ffmpeg: rtsp://USER:PASSWORD@host:8554/live/KEY).
    #[arg(long, value_name = "USER:PASSWORD")]
    rtsp_credentials: Option<String>,

    /// Pull this source instead of waiting for a publisher: an RTSP camera
    /// (rtsp://user:pass@host/path) or an HLS playlist (https://…/index.m3u8, live or VOD).
    /// It reconnects by itself when the source drops.
    #[arg(long, value_name = "URL")]
    input: Option<String>,

    /// The stream key of --input (replaces {key} in --to); default: the URL's last path
    /// segment (for HLS, the directory holding the playlist).
    #[arg(long, value_name = "KEY")]
    input_key: Option<String>,

    /// Receive --input's RTP over UDP instead of interleaved TCP.
    #[arg(long)]
    input_udp: bool,

    /// Which variant of an HLS master playlist to pull: highest (default), lowest, 720p,
    /// 1280x720, a maximum bit rate (3000k) or text in the variant's URI.
    #[arg(long, value_name = "CHOICE", default_value = "highest")]
    input_variant: String,

    /// Play an HLS VOD playlist in a loop instead of once.
    #[arg(long)]
    input_loop: bool,

    /// Write every stream as HLS under DIR (DIR/KEY/index.m3u8 lists the source and the
    /// renditions of --ladder; DIR/KEY/VARIANT/ holds a sliding window of MPEG-TS segments).
    #[arg(long, value_name = "DIR")]
    hls_out: Option<PathBuf>,

    /// Target HLS segment length in seconds (cut at the next keyframe).
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    hls_segment: f64,

    /// Segments listed in each HLS media playlist.
    #[arg(long, value_name = "N", default_value_t = 6)]
    hls_window: usize,

    /// Transcode every stream into these renditions (e.g. 1080p,720p,480p or
    /// 1280x720@30:3000k), decoded once and encoded once per rung whatever the number of
    /// destinations; send a rung to a destination with --to RUNG=URL.
    #[arg(long, value_name = "LADDER")]
    ladder: Option<String>,

    #[command(flatten)]
    encoder: transcode::EncoderArgs,

    #[command(flatten)]
    record: RecordArgs,

    /// Accept only this stream key (repeatable).
    #[arg(long = "key", value_name = "KEY")]
    keys: Vec<String>,

    /// Seconds a stream waits for its publisher to come back before destinations close.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    grace: f64,

    /// Packets a destination may fall behind before its slow-destination policy applies.
    #[arg(long, value_name = "PACKETS", default_value_t = 1024)]
    queue: usize,

    /// What to do with a destination that cannot keep up: drop-to-keyframe or disconnect.
    #[arg(long, value_name = "POLICY", default_value = "drop-to-keyframe")]
    slow_policy: SlowSinkPolicy,

    /// Extra CA certificate (PEM) to trust for rtmps:// destinations (repeatable).
    #[arg(long = "ca-file", value_name = "PEM")]
    ca_files: Vec<PathBuf>,

    /// Worker threads. 1 (the default) runs everything on one event loop, which costs the
    /// least CPU per stream; 0 uses one thread per core for many streams or TLS-heavy loads.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,

    /// Seconds between status updates (0 = no status lines).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    status_interval: f64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("MULTISTREAMER_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    std::panic::set_hook(Box::new(|info| {
        error!(panic = %info, "internal error (contained to one task)");
    }));
    let cli = Cli::parse();
    let cli = match cli.command {
        Command::Transcode(args) => {
            // Blocking libav work: no async runtime needed.
            return match transcode::transcode(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Record(args) => match record_as_relay(args) {
            Ok(relay) => Cli { command: Command::Relay(Box::new(relay)) },
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        command => Cli { command },
    };
    let threads = match &cli.command {
        Command::Relay(args) => args.threads,
        Command::Load(_) | Command::Transcode(_) | Command::Record(_) => 1,
    };
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            b.worker_threads(threads);
        }
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Relay(args) => relay(*args).await,
            Command::Load(args) => load(args).await,
            Command::Transcode(_) | Command::Record(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// `rtsp://HOST[:PORT]/APP[/KEY]` read with the RTMP URL parser (same shape), port 8554 by default.
fn parse_rtsp_listen(url: &str) -> Result<RtmpUrl, String> {
    let rest = url.strip_prefix("rtsp://").ok_or("not an rtsp:// URL")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:8554")
    };
    format!("rtmp://{authority}/{path}").parse::<RtmpUrl>().map_err(|e| e.to_string())
}

async fn relay(args: RelayArgs) -> Result<(), String> {
    let mut rtmp_listen: Option<RtmpUrl> = None;
    let mut rtsp_listen: Option<RtmpUrl> = None;
    for l in &args.listen {
        if l.starts_with("rtsp://") {
            rtsp_listen = Some(parse_rtsp_listen(l).map_err(|e| format!("--listen {l}: {e}"))?);
        } else {
            let u: RtmpUrl = l.parse().map_err(|e| format!("--listen {l}: {e}"))?;
            if u.scheme != RtmpScheme::Rtmp {
                return Err(
                    "--listen must be an rtmp:// or rtsp:// URL (terminate TLS in front of the relay for rtmps)".into(),
                );
            }
            rtmp_listen = Some(u);
        }
    }
    // Only the default RTMP listen and an explicit rtsp:// one: RTSP only.
    let only_rtsp = rtsp_listen.is_some() && args.listen.iter().all(|l| l.starts_with("rtsp://"));
    let listen = match (&rtmp_listen, &rtsp_listen) {
        (Some(r), _) => r.clone(),
        (None, Some(r)) => r.clone(),
        (None, None) => return Err("--listen: no URL".into()),
    };
    if let (Some(a), Some(b)) = (&rtmp_listen, &rtsp_listen)
        && (a.app != b.app || a.key != b.key)
    {
        return Err("--listen: the rtmp:// and rtsp:// URLs must name the same application and key".into());
    }
    let addr = resolve(&listen)?;
    let mut config = RelayConfig::new(addr, &listen.app);
    if let Some(r) = &rtsp_listen {
        config.rtsp = Some(resolve(r)?);
    }
    if let Some(c) = &args.rtsp_credentials {
        let (user, pass) = c.split_once(':').ok_or("--rtsp-credentials: expected USER:PASSWORD")?;
        config.rtsp_options.credentials = Some((user.to_string(), pass.to_string()));
    }
    config.rtmp_enabled = !only_rtsp;
    let mut keys: HashSet<String> = args.keys.iter().cloned().collect();
    if !listen.key.is_empty() {
        keys.insert(listen.key.clone());
    }
    if keys.is_empty() {
        warn!(
            "OPEN INGEST: any stream key under /{} is accepted; anyone who can reach {} can publish. \
             Use --key or put the key in --listen to restrict it.",
            listen.app, addr
        );
        config.keys = None;
    } else {
        config.keys = Some(keys.clone());
    }
    if let Some(spec) = &args.ladder {
        let ladder = args.encoder.ladder(spec)?;
        let options = args.encoder.options(multistreamer_core::transcode::Overload::DropFrames)?;
        info!(ladder = %ladder, preset = %options.preset, "transcoding every stream");
        config.ladder = Some((ladder, options));
    }
    for (i, to) in args.to.iter().enumerate() {
        let (rung, url) = split_rung(to);
        let parsed: RtmpUrl = url.parse().map_err(|e| format!("--to {}: {e}", redact_arg(url)))?;
        let name = match rung {
            Some(r) => format!("{}:{}/{}#{} ({r})", parsed.host, parsed.port, parsed.app, i + 1),
            None => format!("{}:{}/{}#{}", parsed.host, parsed.port, parsed.app, i + 1),
        };
        let t =
            DestinationTemplate::parse(&name, url).map_err(|e| e.to_string())?.with_rendition(rung.map(str::to_string));
        if !t.is_per_key() && keys.len() != 1 {
            warn!(destination = %t.url, "this destination has no {{key}}: every accepted stream is sent to the same URL");
        }
        config.destinations.push(t);
    }
    config.record = args.record.config()?;
    if let Some(dir) = &args.hls_out {
        if !args.hls_segment.is_finite() || args.hls_segment < 0.5 || args.hls_segment > 60.0 {
            return Err("--hls-segment must be between 0.5 and 60 seconds".into());
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("--hls-out {}: {e}", dir.display()))?;
        config.hls = Some(multistreamer_core::hls::HlsOptions {
            segment_duration: Duration::from_secs_f64(args.hls_segment),
            window: args.hls_window.max(2),
            dir: Some(dir.clone()),
            serve_from_memory: false,
        });
    }
    if config.destinations.is_empty() && config.record.is_none() && config.hls.is_none() {
        warn!("no --to destinations: streams are accepted but go nowhere");
    }
    if !args.grace.is_finite() || args.grace < 0.0 {
        return Err("--grace must be a number of seconds ≥ 0".into());
    }
    config.hub.grace_period = Duration::from_secs_f64(args.grace);
    config.hub.queue_capacity = args.queue.max(2);
    config.destination.subscribe.policy = args.slow_policy;
    config.push.tls.extra_ca_files = args.ca_files.clone();
    if let Err(e) = config.push.tls.connector() {
        return Err(e.to_string());
    }
    config.validate().map_err(|e| format!("--to: {e}"))?;

    let config_rtmp = config.rtmp_enabled;
    let relay = Relay::start(config).await.map_err(|e| e.to_string())?;
    let pull_cancel = tokio_util::sync::CancellationToken::new();
    let pull = match &args.input {
        Some(url) => Some(start_input(&relay, &args, url, pull_cancel.clone())?),
        None => None,
    };
    let shown_key = if listen.key.is_empty() { "<KEY>".to_string() } else { listen.key.clone() };
    if config_rtmp {
        info!("publish to rtmp://{}/{}/{}", relay.local_addr(), listen.app, shown_key);
    }
    if let Some(a) = relay.rtsp_addr() {
        info!("publish to rtsp://{a}/{}/{} (RTSP over TCP)", listen.app, shown_key);
    }

    let interval = (args.status_interval.is_finite() && args.status_interval > 0.0)
        .then(|| Duration::from_secs_f64(args.status_interval));
    let mut status = StatusPrinter::new();
    let mut ticker = tokio::time::interval(interval.unwrap_or(Duration::from_secs(3600)));
    let mut input_check = tokio::time::interval(Duration::from_millis(500));
    // One signal future for the whole loop: a SIGTERM during a status tick is not lost.
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = input_check.tick(), if pull.is_some() => {
                // a VOD (or a live playlist that ended) played to its end: finish like ffmpeg would
                if pull.as_ref().is_some_and(|p| p.is_finished()) {
                    info!("the input ended; shutting down");
                    break;
                }
            }
            _ = ticker.tick() => {
                if interval.is_some() {
                    let mut lines: Vec<String> = relay.destinations().iter().map(format_status).collect();
                    if let Some(p) = &pull {
                        let st = p.status();
                        let mut line = format!("[{}] pull {}  {:<10} frames {}  reconnects {}", p.stream, p.url, st.state, st.frames, st.reconnects);
                        if let (Some(e), false) = (&st.last_error, st.state == "live") {
                            line.push_str("  last error: ");
                            line.push_str(e);
                        }
                        lines.push(line);
                    }
                    for (stream, input_dropped, rungs) in relay.renditions() {
                        if input_dropped > 0 {
                            lines.push(format!(
                                "[{stream}] ladder: {input_dropped} source packets dropped before decoding (machine too slow)"
                            ));
                        }
                        for r in rungs {
                            lines.push(format!(
                                "[{stream}] rendition {} {}x{}  {} frames  {} dropped  {}",
                                r.name,
                                r.width,
                                r.height,
                                r.frames_encoded,
                                r.frames_dropped,
                                human_bytes(r.bytes_out)
                            ));
                        }
                    }
                    for (stream, file, bytes, dropped) in relay.recordings() {
                        let file = file.map_or("(waiting for a keyframe)".to_string(), |f| f.display().to_string());
                        lines.push(format!(
                            "[{stream}] recording -> {file}  {}  {dropped} dropped",
                            human_bytes(bytes)
                        ));
                    }
                    status.print(lines);
                }
            }
        }
    }
    info!("shutting down");
    if let Some(p) = pull {
        p.stop().await;
    }
    relay.shutdown().await;
    Ok(())
}

/// Starts pulling `--input`: RTSP (a camera) or HLS (http/https playlist).
fn start_input(
    relay: &Relay,
    args: &RelayArgs,
    url: &str,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<multistreamer_core::source::PullHandle, String> {
    use multistreamer_core::hls::{HlsPullOptions, VodMode, spawn_hls_pull};
    use multistreamer_core::rtsp::{PullTransport, spawn_rtsp_pull, split_credentials};
    let hls = url.starts_with("http://") || url.starts_with("https://");
    let clean = if hls {
        url::Url::parse(url).map_err(|e| format!("--input: {e}"))?
    } else {
        split_credentials(url).map_err(|e| format!("--input: {e}"))?.0
    };
    let key = args.input_key.clone().unwrap_or_else(|| {
        let segments: Vec<&str> =
            clean.path_segments().map(|p| p.filter(|s| !s.is_empty()).collect()).unwrap_or_default();
        // HLS: `…/KEY/index.m3u8` names the stream by its directory
        let pick = if hls && segments.last().is_some_and(|s| s.ends_with(".m3u8")) {
            segments.len().checked_sub(2).map(|i| segments[i])
        } else {
            segments.last().copied()
        };
        pick.map(str::to_string).unwrap_or_else(|| if hls { "hls".into() } else { "camera".into() })
    });
    if key.contains('@') {
        return Err("--input-key may not contain '@'".into());
    }
    if hls {
        let options = HlsPullOptions {
            variant: args.input_variant.parse().map_err(|e| format!("--input-variant: {e}"))?,
            vod: if args.input_loop { VodMode::Loop } else { VodMode::Once },
            ..HlsPullOptions::default()
        };
        let handle =
            spawn_hls_pull(relay.hub().clone(), key.clone(), url, options, cancel).map_err(|e| e.to_string())?;
        info!(url = %handle.url, key = %key, "pulling HLS");
        Ok(handle)
    } else {
        let transport = if args.input_udp { PullTransport::Udp } else { PullTransport::Tcp };
        info!(url = %clean, key = %key, "pulling RTSP");
        spawn_rtsp_pull(relay.hub().clone(), key, url, transport, cancel).map_err(|e| e.to_string())
    }
}

async fn load(args: LoadArgs) -> Result<(), String> {
    use multistreamer_core::monitor::spawn_monitor;
    if !args.interval.is_finite() || args.interval < 0.1 {
        return Err("--interval must be at least 0.1 seconds".into());
    }
    let handle = spawn_monitor(Duration::from_secs_f64(args.interval), 2)?;
    let mut rx = handle.subscribe();
    let mut printed = 0u64;
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => return Ok(()),
            r = rx.changed() => if r.is_err() { return Ok(()) },
        }
        let s = rx.borrow_and_update().clone();
        let mb = |b: f64| b / 1_000_000.0;
        let mut line = format!(
            "cpu {:5.1}% | mem {:.1}/{:.1} GiB",
            s.cpu.total_percent,
            s.memory.used_bytes as f64 / 1073741824.0,
            s.memory.total_bytes as f64 / 1073741824.0
        );
        for d in &s.disks {
            line.push_str(&format!(
                " | {} r {:.1} w {:.1} MB/s",
                d.name,
                mb(d.read_bytes_per_s),
                mb(d.write_bytes_per_s)
            ));
        }
        for n in &s.networks {
            line.push_str(&format!(
                " | {} rx {:.1} tx {:.1} Mbit/s",
                n.interface,
                n.rx_bytes_per_s * 8.0 / 1e6,
                n.tx_bytes_per_s * 8.0 / 1e6
            ));
        }
        if s.gpus.is_empty() {
            line.push_str(&format!(" | {}", s.gpu_status.as_deref().unwrap_or("no GPU detected")));
        }
        for g in &s.gpus {
            line.push_str(&format!(" | {g}"));
        }
        println!("{line}");
        printed += 1;
        if args.count > 0 && printed >= args.count {
            return Ok(());
        }
    }
}

/// `720p=rtmp://…` → (Some("720p"), "rtmp://…"); a plain URL (even one whose key holds
/// `=`) → (None, url).
fn split_rung(to: &str) -> (Option<&str>, &str) {
    match to.split_once('=') {
        Some((rung, url)) if !rung.is_empty() && !rung.contains([':', '/', '?']) => (Some(rung), url),
        _ => (None, to),
    }
}

fn redact_arg(url: &str) -> String {
    url.parse::<RtmpUrl>().map(|u| u.to_string()).unwrap_or_else(|_| "<invalid URL>".into())
}

fn resolve(url: &RtmpUrl) -> Result<SocketAddr, String> {
    (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
        .next()
        .ok_or_else(|| format!("{} resolves to no address", url.host))
}

/// Prints one line per destination; on a terminal the lines are redrawn in place.
struct StatusPrinter {
    tty: bool,
    lines_drawn: usize,
    last: Vec<String>,
}

impl StatusPrinter {
    fn new() -> StatusPrinter {
        StatusPrinter { tty: std::io::stdout().is_terminal(), lines_drawn: 0, last: Vec::new() }
    }

    fn print(&mut self, lines: Vec<String>) {
        let mut out = std::io::stdout().lock();
        if self.tty {
            if self.lines_drawn > 0 {
                let _ = write!(out, "\x1b[{}A", self.lines_drawn);
            }
            for l in &lines {
                let _ = writeln!(out, "\x1b[2K{l}");
            }
            self.lines_drawn = lines.len();
        } else if lines != self.last {
            for l in &lines {
                let _ = writeln!(out, "{l}");
            }
        }
        let _ = out.flush();
        self.last = lines;
    }
}

fn format_status(s: &DestinationStatus) -> String {
    let st = &s.stats;
    let mut line = format!(
        "[{}] {} -> {}  {:<10} {:>8.1} kbit/s  sent {:>9}  drops {}  reconnects {}",
        s.stream,
        s.name,
        s.target,
        st.state.as_str(),
        st.bitrate_bps as f64 / 1000.0,
        human_bytes(st.bytes_sent),
        st.dropped,
        st.reconnects,
    );
    if let (Some(err), false) = (&st.last_error, st.state == multistreamer_core::destination::DestinationState::Live) {
        line.push_str("  last error: ");
        line.push_str(err);
    }
    line
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}
