//! `multistreamer-server`: the engine as a long-running service with an HTTP API, SQLite
//! state, accounts and live system load.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a service binary reports to its operator

mod api;
mod auth;
mod cluster;
mod db;
mod engine;
mod error;
mod http_serve;
mod metrics;
mod platforms;
mod sync;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use multistreamer_core::monitor::{MonitorHandle, spawn_monitor};
use multistreamer_core::rtmp::RtmpIngestOptions;
use multistreamer_core::signal::shutdown_signal;
use multistreamer_core::transcode::TranscodeOptions;
use multistreamer_core::whip::WhipOptions;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use crate::auth::LoginLimiter;
use crate::engine::{Engine, EngineConfig};
use crate::error::AppError;
use crate::platforms::{PlatformConfig, Platforms};

/// Command line; each flag also reads an environment variable, and any flag not given falls
/// back to the config file (`--config`), then to the default.
#[derive(Parser, Debug)]
#[command(
    name = "multistreamer-server",
    version,
    about = "Multistreamer server: RTMP ingest, relay engine, HTTP API, web UI"
)]
struct Cli {
    /// TOML file with any of: data_dir, database_url, node_id, advertise_host, http, rtmp, rtsp, srt, app, public_rtmp_url, public_rtsp_url,
    /// public_srt_url, whip_udp, whip_candidates,
    /// transcode_preset, transcode_encoder_threads, transcode_cascade_scaling, public_url,
    /// youtube_client_id, youtube_client_secret,
    /// youtube_api_base, google_oauth_base, google_auth_url, mtslink_api_base.
    #[arg(long, env = "MULTISTREAMER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for the database and other state [default: ./data].
    #[arg(long, env = "MULTISTREAMER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The database: postgres://USER:PASSWORD@HOST/DB for several nodes sharing one
    /// configuration (docs/design/scale-out.md) [default: the SQLite file DATA_DIR/multistreamer.db].
    #[arg(long, env = "MULTISTREAMER_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// This node's id among the nodes of one database [default: HOSTNAME-HTTPPORT].
    #[arg(long, env = "MULTISTREAMER_NODE_ID")]
    node_id: Option<String>,
    /// The host other nodes and clients reach this node at (its addresses in /api/nodes)
    /// [default: the HTTP address's, or 127.0.0.1 when it is unspecified].
    #[arg(long, env = "MULTISTREAMER_ADVERTISE_HOST")]
    advertise_host: Option<String>,
    /// HTTP address for the web UI and API [default: 127.0.0.1:8080].
    #[arg(long, env = "MULTISTREAMER_HTTP")]
    http: Option<SocketAddr>,
    /// RTMP ingest address [default: 0.0.0.0:1935].
    #[arg(long, env = "MULTISTREAMER_RTMP")]
    rtmp: Option<SocketAddr>,
    /// RTMP application publishers use [default: live].
    #[arg(long, env = "MULTISTREAMER_APP")]
    app: Option<String>,
    /// The ingest URL shown to users, without the key (default: rtmp://HOST:PORT/APP from --rtmp,
    /// with an unspecified address shown as 127.0.0.1).
    #[arg(long, env = "MULTISTREAMER_PUBLIC_RTMP_URL")]
    public_rtmp_url: Option<String>,
    /// RTSP push ingest address (ANNOUNCE/RECORD over TCP) [default: 0.0.0.0:8554].
    #[arg(long, env = "MULTISTREAMER_RTSP")]
    rtsp: Option<SocketAddr>,
    /// The RTSP ingest URL shown to users, without the key (default: from --rtsp).
    #[arg(long, env = "MULTISTREAMER_PUBLIC_RTSP_URL")]
    public_rtsp_url: Option<String>,
    /// SRT ingest address (UDP; MPEG-TS callers, the key in the stream id) [default: 0.0.0.0:9000].
    #[arg(long, env = "MULTISTREAMER_SRT")]
    srt: Option<SocketAddr>,
    /// The SRT ingest URL shown to users, without the stream id: srt://HOST:PORT (default: from --srt).
    #[arg(long, env = "MULTISTREAMER_PUBLIC_SRT_URL")]
    public_srt_url: Option<String>,
    /// WHIP media address (UDP; WebRTC publishers, one port for every session). An
    /// unspecified address binds this machine's outgoing address and loopback
    /// [default: 0.0.0.0:8189].
    #[arg(long, env = "MULTISTREAMER_WHIP_UDP")]
    whip_udp: Option<SocketAddr>,
    /// Addresses WHIP publishers are told to send media to (ICE candidates), comma-separated:
    /// the public address behind NAT that forwards the --whip-udp port (default: the bound ones).
    #[arg(long, env = "MULTISTREAMER_WHIP_CANDIDATES", value_delimiter = ',')]
    whip_candidates: Option<Vec<std::net::IpAddr>>,
    /// HTTP connections beyond this many are closed at accept [default: 1024].
    #[arg(long, env = "MULTISTREAMER_HTTP_MAX_CONNECTIONS")]
    http_max_connections: Option<usize>,
    /// Seconds a client has to send a request's headers [default: 15].
    #[arg(long, env = "MULTISTREAMER_HTTP_HEADER_TIMEOUT")]
    http_header_timeout: Option<u64>,
    /// RTMP connections beyond this many are refused [default: 1024].
    #[arg(long, env = "MULTISTREAMER_RTMP_MAX_CONNECTIONS")]
    rtmp_max_connections: Option<usize>,
    /// RTMP connections from one address that are not publishing yet (handshake, connect)
    /// beyond this many are refused, so a flood from one host cannot lock publishers out
    /// [default: 32].
    #[arg(long, env = "MULTISTREAMER_RTMP_MAX_PENDING_PER_ADDRESS")]
    rtmp_max_pending_per_address: Option<usize>,
    /// libx264 preset of the streams' ladders: ultrafast … veryslow [default: veryfast].
    /// Faster presets fit more renditions on a machine at some cost in quality per bit.
    #[arg(long, env = "MULTISTREAMER_TRANSCODE_PRESET")]
    transcode_preset: Option<String>,
    /// libx264 threads per rendition (0 = automatic) [default: 0]. On a machine with no more
    /// cores than renditions, 1 spends less CPU for the same throughput.
    #[arg(long, env = "MULTISTREAMER_TRANSCODE_ENCODER_THREADS")]
    transcode_encoder_threads: Option<usize>,
    /// Scale each rendition from the next larger one instead of the source: less CPU,
    /// slightly softer lower renditions [default: false].
    #[arg(long, env = "MULTISTREAMER_TRANSCODE_CASCADE_SCALING")]
    transcode_cascade_scaling: Option<bool>,
    /// The URL browsers reach this server at (https://…): enables connecting YouTube
    /// accounts by redirect (authorization code + PKCE) besides the device flow.
    #[arg(long, env = "MULTISTREAMER_PUBLIC_URL")]
    public_url: Option<String>,
    /// Google OAuth client id for YouTube accounts (else: Settings → Platforms in the UI).
    #[arg(long, env = "MULTISTREAMER_YOUTUBE_CLIENT_ID")]
    youtube_client_id: Option<String>,
    /// Google OAuth client secret.
    #[arg(long, env = "MULTISTREAMER_YOUTUBE_CLIENT_SECRET", hide_env_values = true)]
    youtube_client_secret: Option<String>,
    /// YouTube Data API base [default: https://www.googleapis.com/youtube/v3].
    #[arg(long, env = "MULTISTREAMER_YOUTUBE_API_BASE")]
    youtube_api_base: Option<String>,
    /// Google OAuth base serving /token, /device/code, /revoke [default: https://oauth2.googleapis.com].
    #[arg(long, env = "MULTISTREAMER_GOOGLE_OAUTH_BASE")]
    google_oauth_base: Option<String>,
    /// Google's consent page [default: https://accounts.google.com/o/oauth2/v2/auth].
    #[arg(long, env = "MULTISTREAMER_GOOGLE_AUTH_URL")]
    google_auth_url: Option<String>,
    /// MTS Link (webinar.ru) UserAPI base [default: https://userapi.mts-link.ru/v3].
    #[arg(long, env = "MULTISTREAMER_MTSLINK_API_BASE")]
    mtslink_api_base: Option<String>,
}

/// The config file; unknown keys are an error, so typos do not pass silently.
#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    node_id: Option<String>,
    advertise_host: Option<String>,
    http: Option<SocketAddr>,
    rtmp: Option<SocketAddr>,
    app: Option<String>,
    public_rtmp_url: Option<String>,
    rtsp: Option<SocketAddr>,
    public_rtsp_url: Option<String>,
    srt: Option<SocketAddr>,
    public_srt_url: Option<String>,
    whip_udp: Option<SocketAddr>,
    whip_candidates: Option<Vec<std::net::IpAddr>>,
    rtmp_max_connections: Option<usize>,
    rtmp_max_pending_per_address: Option<usize>,
    http_max_connections: Option<usize>,
    http_header_timeout: Option<u64>,
    transcode_preset: Option<String>,
    transcode_encoder_threads: Option<usize>,
    transcode_cascade_scaling: Option<bool>,
    public_url: Option<String>,
    youtube_client_id: Option<String>,
    youtube_client_secret: Option<String>,
    youtube_api_base: Option<String>,
    google_oauth_base: Option<String>,
    google_auth_url: Option<String>,
    mtslink_api_base: Option<String>,
}

/// This node as `GET /api/nodes` shows it.
#[derive(Debug)]
pub struct NodeInfo {
    pub id: String,
    pub addrs: cluster::NodeAddrs,
    pub started_at: i64,
}

/// `HOSTNAME-HTTPPORT`: unique among nodes on different machines and on one machine.
fn default_node_id(http_port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{http_port}")
}

/// The settings in force.
#[derive(Debug)]
struct Args {
    data_dir: PathBuf,
    /// None: the embedded SQLite file in the data directory.
    database_url: Option<String>,
    node_id: Option<String>,
    advertise_host: Option<String>,
    http: SocketAddr,
    rtmp: SocketAddr,
    app: String,
    public_rtmp_url: Option<String>,
    rtsp: SocketAddr,
    public_rtsp_url: Option<String>,
    srt: SocketAddr,
    public_srt_url: Option<String>,
    whip_udp: SocketAddr,
    whip_candidates: Vec<std::net::IpAddr>,
    rtmp_limits: RtmpIngestOptions,
    http_limits: http_serve::HttpLimits,
    transcode: TranscodeOptions,
    platforms: PlatformConfig,
}

/// A base URL: http(s), no trailing slash.
fn base_url(what: &str, value: String) -> Result<String, String> {
    let u = url::Url::parse(&value).map_err(|e| format!("{what}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("{what}: expected an http(s) URL"));
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// The public URL: https, or http on this machine (Google accepts loopback redirects).
fn public_url(value: String) -> Result<String, String> {
    let v = base_url("public_url", value)?;
    let u = url::Url::parse(&v).map_err(|e| format!("public_url: {e}"))?;
    let loopback = matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if u.scheme() != "https" && !loopback {
        return Err("public_url: Google redirects only to https:// (or to this machine)".into());
    }
    Ok(v)
}

impl Cli {
    fn resolve(self) -> Result<Args, String> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        Ok(Args {
            data_dir: self.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./data")),
            database_url: self.database_url.or(file.database_url).filter(|u| !u.is_empty()),
            node_id: self.node_id.or(file.node_id).filter(|n| !n.is_empty()),
            advertise_host: self.advertise_host.or(file.advertise_host).filter(|h| !h.is_empty()),
            http: self.http.or(file.http).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            rtmp: self.rtmp.or(file.rtmp).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 1935))),
            app: self.app.or(file.app).unwrap_or_else(|| "live".to_string()),
            public_rtmp_url: self.public_rtmp_url.or(file.public_rtmp_url),
            rtsp: self.rtsp.or(file.rtsp).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8554))),
            public_rtsp_url: self.public_rtsp_url.or(file.public_rtsp_url),
            srt: self.srt.or(file.srt).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 9000))),
            public_srt_url: self.public_srt_url.or(file.public_srt_url),
            whip_udp: self.whip_udp.or(file.whip_udp).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8189))),
            whip_candidates: self.whip_candidates.or(file.whip_candidates).unwrap_or_default(),
            rtmp_limits: {
                let mut o = RtmpIngestOptions::default();
                if let Some(n) = self.rtmp_max_connections.or(file.rtmp_max_connections) {
                    o.max_connections = n.max(1);
                }
                if let Some(n) = self.rtmp_max_pending_per_address.or(file.rtmp_max_pending_per_address) {
                    o.max_pending_per_address = n.max(1);
                }
                o
            },
            http_limits: {
                let mut l = http_serve::HttpLimits::default();
                if let Some(n) = self.http_max_connections.or(file.http_max_connections) {
                    l.max_connections = n.max(1);
                }
                if let Some(s) = self.http_header_timeout.or(file.http_header_timeout) {
                    l.header_timeout = Duration::from_secs(s.max(1));
                }
                l
            },
            transcode: {
                let mut t = TranscodeOptions::default();
                if let Some(p) = self.transcode_preset.or(file.transcode_preset) {
                    t.preset = p;
                }
                if let Some(n) = self.transcode_encoder_threads.or(file.transcode_encoder_threads) {
                    t.encoder_threads = n;
                }
                if let Some(c) = self.transcode_cascade_scaling.or(file.transcode_cascade_scaling) {
                    t.cascade_scaling = c;
                }
                t.validate().map_err(|e| format!("transcode_preset: {e}"))?;
                t
            },
            platforms: {
                let d = PlatformConfig::default();
                let base = |what: &str, flag: Option<String>, file: Option<String>, default: String| {
                    base_url(what, flag.or(file).unwrap_or(default))
                };
                PlatformConfig {
                    youtube_client_id: self
                        .youtube_client_id
                        .or(file.youtube_client_id)
                        .filter(|s| !s.trim().is_empty()),
                    youtube_client_secret: self.youtube_client_secret.or(file.youtube_client_secret),
                    youtube_api_base: base(
                        "youtube_api_base",
                        self.youtube_api_base,
                        file.youtube_api_base,
                        d.youtube_api_base,
                    )?,
                    google_oauth_base: base(
                        "google_oauth_base",
                        self.google_oauth_base,
                        file.google_oauth_base,
                        d.google_oauth_base,
                    )?,
                    google_auth_url: base(
                        "google_auth_url",
                        self.google_auth_url,
                        file.google_auth_url,
                        d.google_auth_url,
                    )?,
                    mtslink_api_base: base(
                        "mtslink_api_base",
                        self.mtslink_api_base,
                        file.mtslink_api_base,
                        d.mtslink_api_base,
                    )?,
                    public_url: self.public_url.or(file.public_url).map(public_url).transpose()?,
                }
            },
        })
    }
}

/// Shared state of the HTTP handlers.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // holds handles, nothing worth printing
pub struct AppState {
    pub db: db::Db,
    /// This node: its id and addresses (`GET /api/nodes`).
    pub node: Arc<NodeInfo>,
    pub engine: Arc<Engine>,
    pub monitor: MonitorHandle,
    pub login_limiter: Arc<LoginLimiter>,
    /// A valid hash to verify against for unknown users (constant-time-ish sign-in).
    pub dummy_hash: Arc<String>,
    /// `rtmp://HOST:PORT/APP`
    pub public_rtmp: Arc<String>,
    /// `rtsp://HOST:PORT/APP`, when the RTSP ingest runs
    pub public_rtsp: Arc<Option<String>>,
    /// `srt://HOST:PORT`, when the SRT ingest runs
    pub public_srt: Arc<Option<String>>,
    /// The application in ingest URLs and SRT stream ids.
    pub app: Arc<String>,
    /// Connected YouTube and MTS Link accounts.
    pub platforms: Arc<Platforms>,
    /// Renders of captures (progress, result).
    pub renders: Arc<api::Renders>,
    /// Presenter videos fetched from a platform after the fact.
    pub fetches: Arc<api::Fetches>,
    /// Playback tokens of the streams (the `/play/…` links).
    pub tokens: Arc<api::TokenMap>,
    /// Fires when the server shuts down: long-lived responses (the live feeds) end then,
    /// so an open dashboard never holds the shutdown up.
    pub shutdown: CancellationToken,
}

fn main() -> ExitCode {
    multistreamer_core::malloc::bound_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("MULTISTREAMER_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .with_writer(|| multistreamer_core::log_writer::LossyStderr)
        .init();
    let args = match Cli::parse().resolve() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<(), AppError> {
    tokio::fs::create_dir_all(&args.data_dir)
        .await
        .map_err(|e| AppError::internal(format!("cannot create data directory {}: {e}", args.data_dir.display())))?;
    // a data directory that cannot be written is said plainly, before SQLite's own words
    let probe = args.data_dir.join(".write-test");
    tokio::fs::write(&probe, b"").await.map_err(|e| {
        AppError::internal(format!("the data directory {} cannot be written: {e}", args.data_dir.display()))
    })?;
    let _ = tokio::fs::remove_file(&probe).await;
    let database_url =
        args.database_url.clone().unwrap_or_else(|| db::sqlite_url(&args.data_dir.join("multistreamer.db")));
    let db = db::open(&database_url).await?;
    let node_id = args.node_id.clone().unwrap_or_else(|| default_node_id(args.http.port()));
    let cluster = match db::Backend::of_url(&database_url)? {
        db::Backend::Postgres => {
            db::set_node_id(&node_id);
            Some(cluster::Cluster::new(db.clone(), database_url.clone(), node_id.clone()))
        }
        db::Backend::Sqlite => None,
    };
    let first_login = bootstrap_admin(&db).await?;

    let platforms = Arc::new(Platforms::new(db.clone(), args.platforms.clone(), &args.data_dir)?);
    let cancel = CancellationToken::new();
    let config = EngineConfig {
        rtmp: args.rtmp,
        app: args.app.clone(),
        transcode: args.transcode.clone(),
        recordings_dir: args.data_dir.join("recordings"),
        captures_dir: args.data_dir.join("captures"),
        rtsp: Some(args.rtsp),
        srt: Some(args.srt),
        whip: Some(WhipOptions {
            udp: args.whip_udp,
            candidates: args.whip_candidates.clone(),
            app: args.app.clone(),
            ..WhipOptions::default()
        }),
        rtmp_limits: args.rtmp_limits.clone(),
        cluster: cluster.clone(),
    };
    let engine = Engine::start(db.clone(), config, Arc::clone(&platforms), cancel.clone()).await?;
    let monitor = spawn_monitor(Duration::from_secs(1), 300).map_err(|e| AppError::internal(e.to_string()))?;
    let public_rtmp = args.public_rtmp_url.clone().unwrap_or_else(|| {
        let mut addr = engine.rtmp_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
        }
        format!("rtmp://{addr}/{}", args.app)
    });
    let http_shutdown = CancellationToken::new();
    // the HTTP listener first: its port is part of the node's addresses
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .map_err(|e| AppError::internal(format!("cannot listen for HTTP on {}: {e}", args.http)))?;
    let http_addr = listener.local_addr().map_err(|e| AppError::internal(e.to_string()))?;
    let host = args.advertise_host.clone().unwrap_or_else(|| {
        if http_addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { http_addr.ip().to_string() }
    });
    let host_port = |addr: Option<SocketAddr>| addr.map(|a| format!("{host}:{}", a.port()));
    let node = Arc::new(NodeInfo {
        id: node_id.clone(),
        addrs: cluster::NodeAddrs {
            http_url: format!("http://{}", host_port(Some(http_addr)).unwrap_or_default()),
            rtmp_url: format!("rtmp://{}/{}", host_port(Some(engine.rtmp_addr)).unwrap_or_default(), args.app),
            rtsp_url: host_port(engine.rtsp_addr).map(|h| format!("rtsp://{h}/{}", args.app)).unwrap_or_default(),
            srt_url: host_port(engine.srt_addr).map(|h| format!("srt://{h}")).unwrap_or_default(),
        },
        started_at: db::now(),
    });
    let cluster_cancel = CancellationToken::new();
    let mut cluster_task = None;
    if let Some(c) = &cluster {
        c.register(node.addrs.clone()).await?;
        cluster_task = Some(tokio::spawn(Arc::clone(c).run(engine.clone(), monitor.clone(), cluster_cancel.clone())));
        tokio::spawn(Arc::clone(c).listen(engine.clone(), cluster_cancel.clone()));
    }
    let state = AppState {
        node,
        shutdown: http_shutdown.clone(),
        platforms,
        renders: Arc::default(),
        fetches: Arc::default(),
        tokens: Arc::default(),
        db: db.clone(),
        engine: engine.clone(),
        monitor,
        login_limiter: Arc::new(LoginLimiter::new(5, Duration::from_secs(60))),
        dummy_hash: Arc::new(auth::hash_password_off_thread("not a real password".into()).await?),
        public_rtmp: Arc::new(public_rtmp.trim_end_matches('/').to_string()),
        public_srt: Arc::new(args.public_srt_url.clone().map(|u| u.trim_end_matches('/').to_string()).or_else(|| {
            engine.srt_addr.map(|mut a| {
                if a.ip().is_unspecified() {
                    a.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
                }
                format!("srt://{a}")
            })
        })),
        app: Arc::new(args.app.clone()),
        public_rtsp: Arc::new(args.public_rtsp_url.clone().map(|u| u.trim_end_matches('/').to_string()).or_else(
            || {
                engine.rtsp_addr.map(|mut a| {
                    if a.ip().is_unspecified() {
                        a.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
                    }
                    format!("rtsp://{a}/{}", args.app)
                })
            },
        )),
    };

    // Installed before the address is printed: a signal sent as soon as the server is up is
    // never lost.
    let signal = shutdown_signal();
    // One write, whose failure (stdout on a full disk) is logged instead of panicking.
    let mut banner = String::new();
    macro_rules! say {
        ($($arg:tt)*) => {{
            let _ = writeln!(banner, $($arg)*);
        }};
    }
    say!("Multistreamer is running.");
    say!("  Web UI and API: http://{http_addr}/");
    say!("  RTMP ingest:    {}/<stream key>", state.public_rtmp);
    if let Some(rtsp) = state.public_rtsp.as_ref() {
        say!("  RTSP ingest:    {rtsp}/<stream key>");
    }
    if let Some(srt) = state.public_srt.as_ref() {
        say!("  SRT ingest:     {srt}?streamid=#!::r={}/<stream key>,m=publish", args.app);
    }
    if let Some(whip) = &engine.whip {
        let media: Vec<String> = whip.local_addrs().iter().map(ToString::to_string).collect();
        say!(
            "  WHIP ingest:    http://{http_addr}/whip/{} (Bearer token: the stream key; media over UDP {})",
            args.app,
            media.join(", ")
        );
    }
    match &first_login {
        Some(FirstLogin { password, generated: true }) => {
            say!("  First login:    user admin, password {password}  (shown once; change it with POST /api/password)")
        }
        Some(FirstLogin { generated: false, .. }) => {
            say!("  First login:    user admin, password from MULTISTREAMER_ADMIN_PASSWORD")
        }
        None => say!("  Sign in with your existing account."),
    }
    say!("  Database:       {}", db::redacted_url(&database_url));
    if cluster.is_some() {
        say!("  Node:           {node_id} (shares the database with the nodes in /api/nodes)");
    }
    say!("  Data:           {}", args.data_dir.display());
    if let Err(e) = std::io::Write::write_all(&mut std::io::stdout().lock(), banner.as_bytes()) {
        warn!(error = %e, "the start-up banner (addresses, first login) could not be printed to stdout");
    }

    let app = api::router(state);
    // On a signal the HTTP side ends first (live feeds included), then the engine's ordered
    // shutdown runs: ingest, streams, recordings, destinations.
    let shutdown = http_shutdown.clone();
    http_serve::serve(listener, app, args.http_limits, async move {
        signal.await;
        shutdown.cancel();
    })
    .await;
    // leases released first: a publisher reconnecting through the balancer is taken at once
    cluster_cancel.cancel();
    if let Some(task) = cluster_task {
        let _ = task.await;
    }
    info!("shutting down: ingest, streams, destinations");
    engine.shutdown().await;
    db.close().await;
    info!("server stopped");
    Ok(())
}

struct FirstLogin {
    password: String,
    generated: bool,
}

/// On an empty database, creates the `admin` user with the password from
/// `MULTISTREAMER_ADMIN_PASSWORD` or a random one.
async fn bootstrap_admin(db: &db::Db) -> Result<Option<FirstLogin>, AppError> {
    if db::user_count(db).await? > 0 {
        return Ok(None);
    }
    let (password, generated) = match std::env::var("MULTISTREAMER_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => (auth::random_password()?, true),
    };
    let hash = auth::hash_password_off_thread(password.clone()).await?;
    // Nodes sharing one database may start together: the one that loses the race finds the
    // account made.
    if !db::create_first_user(db, "admin", &hash).await? {
        return Ok(None);
    }
    info!("created the first account: admin");
    Ok(Some(FirstLogin { password, generated }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("ms-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("server.toml");
        std::fs::write(&file, "data_dir = \"/srv/ms\"\nhttp = \"0.0.0.0:9000\"\napp = \"in\"\n").expect("write");
        let cli = Cli::parse_from([
            "multistreamer-server",
            "--config",
            file.to_str().expect("path"),
            "--http",
            "127.0.0.1:7000",
        ]);
        let args = cli.resolve().expect("valid");
        assert_eq!(args.data_dir, PathBuf::from("/srv/ms"));
        assert_eq!(args.http, SocketAddr::from(([127, 0, 0, 1], 7000)));
        assert_eq!(args.rtmp, SocketAddr::from(([0, 0, 0, 0], 1935)));
        assert_eq!(args.app, "in");
        assert_eq!(args.transcode.preset, "veryfast");
        assert!(!args.transcode.cascade_scaling && args.transcode.encoder_threads == 0);
        std::fs::write(&file, "transcode_encoder_threads = 1\ntranscode_cascade_scaling = true\n").expect("write");
        let args = Cli::parse_from(["multistreamer-server", "--config", file.to_str().expect("path")]).resolve();
        let t = args.expect("valid").transcode;
        assert_eq!((t.encoder_threads, t.cascade_scaling), (1, true));
        std::fs::write(&file, "transcode_preset = \"warp\"\n").expect("write");
        let err = Cli::parse_from(["multistreamer-server", "--config", file.to_str().expect("path")]).resolve();
        assert!(err.is_err_and(|e| e.contains("preset")), "a bad preset is refused at start-up");
        std::fs::write(&file, "htpp = \"0.0.0.0:9000\"\n").expect("write");
        let err = Cli::parse_from(["multistreamer-server", "--config", file.to_str().expect("path")]).resolve();
        assert!(err.is_err_and(|e| e.contains("htpp")), "unknown keys are refused");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
