//! `multistreamer-server`: the engine as a long-running service.
//!
//! Today it runs the RTMP ingest and the hub with relay destinations given on the command
//! line; the HTTP API, web UI and SQLite state are being built on top of this (see the
//! README's status section). The flags below are the stable interface.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a service binary reports to its operator

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use multistreamer_core::relay::{DestinationTemplate, Relay, RelayConfig};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(name = "multistreamer-server", version, about = "Multistreamer server: RTMP ingest and relay engine")]
struct Args {
    /// Directory for the database, recordings and other state.
    #[arg(long, env = "MULTISTREAMER_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// HTTP address for the web UI and API (reserved; the UI is not built yet).
    #[arg(long, env = "MULTISTREAMER_HTTP", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// RTMP ingest address.
    #[arg(long, env = "MULTISTREAMER_RTMP", default_value = "0.0.0.0:1935")]
    rtmp: SocketAddr,
    /// RTMP application publishers use.
    #[arg(long, default_value = "live")]
    app: String,
    /// Relay every stream to this URL (`{key}` = the publisher's key); repeatable.
    #[arg(long = "to", value_name = "URL")]
    to: Vec<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("MULTISTREAMER_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .init();
    let args = Args::parse();
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

async fn run(args: Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", args.data_dir.display()))?;
    let mut config = RelayConfig::new(args.rtmp, &args.app);
    for (i, url) in args.to.iter().enumerate() {
        config
            .destinations
            .push(DestinationTemplate::parse(&format!("destination-{}", i + 1), url).map_err(|e| e.to_string())?);
    }
    warn!("open ingest: any stream key under /{} is accepted until accounts and stream keys arrive", args.app);
    let relay = Relay::start(config).await.map_err(|e| e.to_string())?;
    println!("Multistreamer is running.");
    println!("  RTMP ingest: rtmp://{}/{}/<any-key>", relay.local_addr(), args.app);
    println!("  Data directory: {}", args.data_dir.display());
    println!("  Web UI: not available yet (reserved address http://{})", args.http);
    println!("Press Ctrl-C to stop.");
    let _ = tokio::signal::ctrl_c().await;
    info!("shutting down");
    relay.shutdown().await;
    Ok(())
}
