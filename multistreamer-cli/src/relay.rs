//! `multistreamer relay` (and the ingest part of `record`): ingest → ladder → destinations,
//! recording and HLS, with status lines until a signal or the end of `--input`.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use multistreamer_core::hls::{HlsPullOptions, VariantChoice, VodMode};
use multistreamer_core::hub::SlowSinkPolicy;
use multistreamer_core::relay::{DestinationTemplate, Relay, RelayConfig};
use multistreamer_core::rtmp::{EnhancedRtmp, RtmpScheme, RtmpUrl, UrlError};
use multistreamer_core::rtsp::PullTransport;
use multistreamer_core::signal::shutdown_signal;
use multistreamer_core::source::{InputUrl, PullHandle, PullOptions};
use tracing::{info, warn};

use crate::CliError;
#[cfg(feature = "media")]
use crate::args::RecordArgs;
use crate::args::{IngestArgs, seconds};
use crate::status::{StatusPrinter, status_lines};

/// A pulled input instead of (or besides) publishers.
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// Pull this source instead of waiting for a publisher: an RTSP camera
    /// (rtsp://user:pass@host/path) or an HLS playlist (https://…/index.m3u8, live or VOD).
    /// It reconnects by itself when the source drops.
    #[arg(long, value_name = "URL")]
    input: Option<InputUrl>,

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
    input_variant: VariantChoice,

    /// Play an HLS VOD playlist in a loop instead of once.
    #[arg(long)]
    input_loop: bool,
}

#[derive(Args, Debug)]
pub struct RelayArgs {
    #[command(flatten)]
    pub ingest: IngestArgs,

    /// A destination: rtmp[s]://HOST[:PORT]/APP/KEY. Repeat for more. `{key}` is replaced
    /// by the publisher's stream key. Keys with `?` and `&` are sent as written (quote them).
    /// `RUNG=URL` (e.g. 720p=rtmp://…) sends that rendition of --ladder instead of the source.
    #[arg(long = "to", value_name = "[RUNG=]URL")]
    to: Vec<String>,

    #[command(flatten)]
    input: InputArgs,

    /// Write every stream as HLS under DIR (DIR/KEY/index.m3u8 lists the source and the
    /// renditions of --ladder; DIR/KEY/VARIANT/ holds a sliding window of MPEG-TS segments).
    #[arg(long, value_name = "DIR")]
    hls_out: Option<PathBuf>,

    /// Target HLS segment length in seconds (cut at the next keyframe).
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = hls_segment)]
    hls_segment: Duration,

    /// Segments listed in each HLS media playlist.
    #[arg(long, value_name = "N", default_value_t = 6)]
    hls_window: usize,

    /// Transcode every stream into these renditions (e.g. 1080p,720p,480p or
    /// 1280x720@30:3000k), decoded once and encoded once per rung whatever the number of
    /// destinations; send a rung to a destination with --to RUNG=URL.
    #[cfg(feature = "media")]
    #[arg(long, value_name = "LADDER")]
    ladder: Option<String>,

    #[cfg(feature = "media")]
    #[command(flatten)]
    encoder: crate::transcode::EncoderArgs,

    #[cfg(feature = "media")]
    #[command(flatten)]
    pub record: RecordArgs,

    /// Packets a destination may fall behind before its slow-destination policy applies.
    #[arg(long, value_name = "PACKETS", default_value_t = 1024)]
    queue: usize,

    /// What to do with a destination that cannot keep up: drop-to-keyframe or disconnect.
    #[arg(long, value_name = "POLICY", default_value = "drop-to-keyframe")]
    slow_policy: SlowSinkPolicy,

    /// Extra CA certificate (PEM) to trust for rtmps:// destinations (repeatable).
    #[arg(long = "ca-file", value_name = "PEM")]
    ca_files: Vec<PathBuf>,

    /// HEVC/AV1 sources go over Enhanced RTMP only to RTMP destinations that list the codec
    /// in their connect reply, and to YouTube (`negotiate`, the default); a legacy server
    /// is refused with the reason. `assume` sends them to every RTMP destination (for a
    /// server known to take them that does not say so).
    #[arg(long, value_name = "MODE", default_value = "negotiate")]
    enhanced_rtmp: EnhancedRtmp,

    /// Worker threads. 1 (the default) runs everything on one event loop, which costs the
    /// least CPU per stream; 0 uses one thread per core for many streams or TLS-heavy loads.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,

    /// Seconds between status updates (0 = no status lines).
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = seconds)]
    status_interval: Duration,
}

fn hls_segment(s: &str) -> Result<Duration, String> {
    let d = seconds(s)?;
    if !(0.5..=60.0).contains(&d.as_secs_f64()) {
        return Err("expected 0.5 to 60 seconds".into());
    }
    Ok(d)
}

/// The ingest part of a relay: listen addresses, keys, grace period.
pub struct Ingest {
    pub config: RelayConfig,
    pub listen: RtmpUrl,
}

/// `rtsp://HOST[:PORT]/APP[/KEY]` read with the RTMP URL parser (same shape), port 8554 by default.
/// A listen URL. Port 0 asks the system for a free port: the relay logs the address it got
/// ("publish to rtmp://HOST:PORT/…"). Destination URLs never take port 0.
fn parse_listen(url: &str) -> Result<RtmpUrl, String> {
    let (scheme, rest) = url.split_once("://").ok_or("not a URL")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    match authority.strip_suffix(":0") {
        Some(host) => {
            let mut u: RtmpUrl = format!("{scheme}://{host}:1/{path}").parse().map_err(|e: UrlError| e.to_string())?;
            u.port = 0;
            Ok(u)
        }
        None => url.parse().map_err(|e: UrlError| e.to_string()),
    }
}

fn parse_rtsp_listen(url: &str) -> Result<RtmpUrl, String> {
    let rest = url.strip_prefix("rtsp://").ok_or("not an rtsp:// URL")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:8554")
    };
    parse_listen(&format!("rtmp://{authority}/{path}"))
}

/// `srt://HOST:PORT[?latency=MS]` → (host, port, latency).
fn parse_srt_listen(url: &str) -> Result<(String, u16, Option<Duration>), String> {
    let rest = url.strip_prefix("srt://").ok_or("not an srt:// URL")?;
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.trim_end_matches('/');
    let (host, port) = authority.rsplit_once(':').ok_or("no port (srt://ADDR:PORT)")?;
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let mut latency = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("latency", v)) => {
                let ms: u64 = v.parse().map_err(|_| format!("latency={v}: milliseconds expected"))?;
                latency = Some(Duration::from_millis(ms));
            }
            Some(("passphrase", _)) => {
                return Err(
                    "give the passphrase with --srt-passphrase (or its environment variable), not in the URL".into()
                );
            }
            _ => return Err(format!("`{pair}`: only latency=MS is taken here")),
        }
    }
    Ok((host, port, latency))
}

fn resolve(url: &RtmpUrl) -> Result<SocketAddr, String> {
    (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
        .next()
        .ok_or_else(|| format!("{} resolves to no address", url.host))
}

/// Checks the ingest arguments and makes the relay's base configuration.
pub fn ingest_config(args: &IngestArgs) -> Result<Ingest, String> {
    let (mut rtmp_listen, mut rtsp_listen): (Option<RtmpUrl>, Option<RtmpUrl>) = (None, None);
    let mut srt_listen = None;
    for l in &args.listen {
        if l.starts_with("srt://") {
            srt_listen = Some(parse_srt_listen(l).map_err(|e| format!("--listen {l}: {e}"))?);
        } else if l.starts_with("rtsp://") {
            rtsp_listen = Some(parse_rtsp_listen(l).map_err(|e| format!("--listen {l}: {e}"))?);
        } else {
            let u = parse_listen(l).map_err(|e| format!("--listen {l}: {e}"))?;
            if u.scheme != RtmpScheme::Rtmp {
                return Err(
                    "--listen must be an rtmp://, rtsp:// or srt:// URL (terminate TLS in front of the relay for rtmps)"
                        .into(),
                );
            }
            rtmp_listen = Some(u);
        }
    }
    let srt_as_rtmp = match &srt_listen {
        // SRT alone: the application is `live` (stream ids name APP/KEY or KEY)
        Some((host, port, _)) => Some(parse_listen(&format!("rtmp://{host}:{port}/live"))?),
        None => None,
    };
    let listen = rtmp_listen.clone().or_else(|| rtsp_listen.clone()).or(srt_as_rtmp).ok_or("--listen: no URL")?;
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
    if let Some((host, port, latency)) = &srt_listen {
        let url = RtmpUrl { host: host.clone(), port: *port, ..listen.clone() };
        config.srt = Some(resolve(&url)?);
        config.srt_options.app = listen.app.clone();
        if let Some(l) = latency {
            config.srt_options.latency = *l;
        }
    }
    if let Some(p) = &args.srt_passphrase {
        if !(10..=79).contains(&p.len()) {
            return Err("--srt-passphrase: 10 to 79 characters".into());
        }
        config.srt_options.passphrase = Some(p.clone());
    }
    if let Some(c) = &args.rtsp_credentials {
        let (user, pass) = c.split_once(':').ok_or("--rtsp-credentials: expected USER:PASSWORD")?;
        config.rtsp_options.credentials = Some((user.to_string(), pass.to_string()));
    }
    // Only explicit rtsp:// listen URLs: RTSP only.
    config.rtmp_enabled = rtmp_listen.is_some();
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
    }
    config.keys = (!keys.is_empty()).then_some(keys);
    config.hub.grace_period = args.grace;
    Ok(Ingest { config, listen })
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

/// Every output of the relay, checked.
fn relay_config(args: &RelayArgs) -> Result<Ingest, String> {
    let mut ingest = ingest_config(&args.ingest)?;
    let config = &mut ingest.config;
    #[cfg(feature = "media")]
    if let Some(spec) = &args.ladder {
        let ladder = args.encoder.ladder(spec)?;
        let options = args.encoder.options(multistreamer_core::transcode::Overload::DropFrames)?;
        info!(ladder = %ladder, preset = %options.preset, "transcoding every stream");
        config.ladder = Some((ladder, options));
    }
    let single_key = config.keys.as_ref().is_some_and(|k| k.len() == 1);
    for (i, to) in args.to.iter().enumerate() {
        let (rung, url) = split_rung(to);
        let base = if url.starts_with("srt://") {
            let parsed = multistreamer_core::srt::SrtUrl::parse(url).map_err(|e| format!("--to: {e}"))?;
            format!("srt://{}:{}", parsed.host, parsed.port)
        } else {
            let parsed: RtmpUrl = url.parse().map_err(|e| format!("--to {}: {e}", redact_arg(url)))?;
            format!("{}:{}/{}", parsed.host, parsed.port, parsed.app)
        };
        let name = match rung {
            Some(r) => format!("{base}#{} ({r})", i + 1),
            None => format!("{base}#{}", i + 1),
        };
        let t =
            DestinationTemplate::parse(&name, url).map_err(|e| e.to_string())?.with_rendition(rung.map(str::to_string));
        if !t.is_per_key() && !single_key {
            warn!(destination = %t.name, "this destination has no {{key}}: every accepted stream is sent to the same URL");
        }
        config.destinations.push(t);
    }
    #[cfg(feature = "media")]
    {
        config.record = args.record.config();
    }
    if let Some(dir) = &args.hls_out {
        config.hls = Some(multistreamer_core::hls::HlsOptions {
            segment_duration: args.hls_segment,
            window: args.hls_window.max(2),
            dir: Some(dir.clone()),
            serve_from_memory: false,
        });
    }
    #[cfg(feature = "media")]
    let records = config.record.is_some();
    #[cfg(not(feature = "media"))]
    let records = false;
    if config.destinations.is_empty() && !records && config.hls.is_none() {
        warn!("no --to destinations: streams are accepted but go nowhere");
    }
    config.hub.queue_capacity = args.queue.max(2);
    config.destination.subscribe.policy = args.slow_policy;
    config.push.tls.extra_ca_files = args.ca_files.clone();
    config.push.enhanced = args.enhanced_rtmp;
    config.push.tls.connector().map_err(|e| e.to_string())?;
    config.validate().map_err(|e| format!("--to: {e}"))?;
    Ok(ingest)
}

/// `relay`: checks every argument (usage errors), then runs until a signal or the end of
/// `--input`.
pub async fn relay(args: RelayArgs) -> Result<(), CliError> {
    let ingest = relay_config(&args).map_err(CliError::Usage)?;
    if let Some(dir) = &args.hls_out {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| CliError::Failed(format!("--hls-out {}: {e}", dir.display())))?;
    }
    let input = args.input.input.as_ref().map(|url| (&args.input, url));
    run(ingest, input, args.status_interval).await
}

/// Runs a checked configuration (of `relay` or `record`) until a signal or the end of the
/// pulled input, printing status lines every `status_interval` (zero: none).
pub async fn run(
    ingest: Ingest,
    input: Option<(&InputArgs, &InputUrl)>,
    status_interval: Duration,
) -> Result<(), CliError> {
    let rtmp_enabled = ingest.config.rtmp_enabled;
    let relay = Relay::start(ingest.config).await.map_err(|e| CliError::Failed(e.to_string()))?;
    let pull_cancel = tokio_util::sync::CancellationToken::new();
    let pull = match input {
        Some((args, url)) => Some(start_input(&relay, args, url, pull_cancel.clone())?),
        None => None,
    };
    let listen = &ingest.listen;
    let shown_key = if listen.key.is_empty() { "<KEY>".to_string() } else { listen.key.clone() };
    if rtmp_enabled {
        info!("publish to rtmp://{}/{}/{}", relay.local_addr(), listen.app, shown_key);
    }
    if let Some(a) = relay.rtsp_addr() {
        info!("publish to rtsp://{a}/{}/{} (RTSP over TCP)", listen.app, shown_key);
    }
    if let Some(a) = relay.srt_addr() {
        info!("publish to srt://{a}?streamid=#!::r={}/{},m=publish (MPEG-TS over SRT)", listen.app, shown_key);
    }
    let interval = (!status_interval.is_zero()).then_some(status_interval);
    let mut status = StatusPrinter::new();
    let mut ticker = tokio::time::interval(interval.unwrap_or(Duration::from_secs(3600)));
    // One signal future for the whole loop: a SIGTERM during a status tick is not lost.
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        let input_done = async {
            match &pull {
                Some(p) => p.finished().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut signal => break,
            // a VOD (or a live playlist that ended) played to its end: finish like ffmpeg would
            _ = input_done => {
                info!("the input ended; shutting down");
                break;
            }
            _ = ticker.tick(), if interval.is_some() => status.print(status_lines(&relay, pull.as_ref())),
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
    args: &InputArgs,
    input: &InputUrl,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<PullHandle, CliError> {
    let hls = matches!(input, InputUrl::Hls(_));
    let key = args.input_key.clone().unwrap_or_else(|| {
        let segments = input.path_segments();
        // HLS: `…/KEY/index.m3u8` names the stream by its directory
        let pick = if hls && segments.last().is_some_and(|s| s.ends_with(".m3u8")) {
            segments.len().checked_sub(2).map(|i| segments[i].clone())
        } else {
            segments.last().cloned()
        };
        pick.unwrap_or_else(|| if hls { "hls".into() } else { "camera".into() })
    });
    if key.contains('@') {
        return Err(CliError::Usage("--input-key may not contain '@'".into()));
    }
    let options = PullOptions {
        rtsp_transport: if args.input_udp { PullTransport::Udp } else { PullTransport::Tcp },
        hls: HlsPullOptions {
            variant: args.input_variant.clone(),
            vod: if args.input_loop { VodMode::Loop } else { VodMode::Once },
            ..HlsPullOptions::default()
        },
    };
    let handle = input.spawn(relay.hub().clone(), key.clone(), &options, cancel).map_err(|e| match e.kind() {
        multistreamer_core::ErrorKind::Config => CliError::Usage(format!("--input: {e}")),
        _ => CliError::Failed(format!("--input: {e}")),
    })?;
    info!(url = %input, key = %key, "pulling {}", if hls { "HLS" } else { "RTSP" });
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::{parse_listen, parse_rtsp_listen};

    #[test]
    fn listen_urls_may_ask_for_any_free_port() {
        let any = parse_listen("rtmp://127.0.0.1:0/live").expect("port 0 listens anywhere");
        assert_eq!((any.host.as_str(), any.port, any.app.as_str()), ("127.0.0.1", 0, "live"));
        assert_eq!(parse_listen("rtmp://0.0.0.0:1935/live/key").expect("fixed").port, 1935);
        assert_eq!(parse_rtsp_listen("rtsp://127.0.0.1:0/live").expect("rtsp, port 0").port, 0);
        assert_eq!(parse_rtsp_listen("rtsp://127.0.0.1/live").expect("rtsp default").port, 8554);
        assert!(parse_listen("rtmp://127.0.0.1:99999/live").is_err());
        assert!(parse_listen("127.0.0.1:0").is_err());
    }
}
