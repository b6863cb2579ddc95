//! `multistreamer`: command-line restreaming.
//!
//! This binary is a thin assembly of `multistreamer-core`; it prints status lines on
//! stdout and logs on stderr. One module per subcommand; the argument groups shared by
//! several subcommands live in `args`.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a CLI talks to its user

mod args;
#[cfg(feature = "media")]
mod capture;
#[cfg(feature = "media")]
mod load;
#[cfg(feature = "media")]
mod record;
mod relay;
#[cfg(feature = "media")]
mod render;
mod status;
#[cfg(feature = "media")]
mod transcode;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing::error;
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
    Relay(Box<relay::RelayArgs>),
    /// Transcode a file or URL into a ladder of renditions, one file per rung.
    #[command(after_help = "EXAMPLES:\n  \
        multistreamer transcode --input talk.mp4 --ladder 1080p,720p,480p --out-dir renditions/\n  \
        multistreamer transcode --input in.mkv --ladder 720p@30:3000k,480p --preset ultrafast --out-dir out/")]
    #[cfg(feature = "media")]
    Transcode(transcode::TranscodeArgs),
    /// Accept RTMP publishers and record them: the original packets (crash-safe fragmented
    /// MP4) or, with --raw, uncompressed video + PCM.
    #[command(after_help = "EXAMPLES:\n  \
        multistreamer record --listen rtmp://0.0.0.0:1935/live --out recordings/ --segment 3600\n  \
        multistreamer record --listen rtmp://0.0.0.0:1935/live/talk --out /fast-disk --raw")]
    #[cfg(feature = "media")]
    Record(record::RecordCmdArgs),
    /// Show the machine's load (CPU, memory, disks, network, GPUs) every second.
    #[cfg(feature = "media")]
    Load(load::LoadArgs),
    /// Capture a webinar page: its chat as metadata (chat.jsonl) and the presenter window as
    /// video (presenter.mp4), until Ctrl-C or --duration.
    #[command(after_help = "EXAMPLES:\n  \
        multistreamer capture --url https://example.org/room --out talk/ --duration 2h \\\n      \
        --chat-selector '#chat' --chat-author-selector .author --chat-text-selector .text \\\n      \
        --presenter-selector '#speaker video'\n  \
        multistreamer capture --url 'https://www.youtube.com/watch?v=ID' --profile youtube --out yt/\n  \
        multistreamer capture --from-mtslink-session 7654321 --mtslink-token KEY --out lecture/")]
    #[cfg(feature = "media")]
    Capture(Box<capture::CaptureArgs>),
    /// Render a capture with its source video into one MP4: the video with its audio, the
    /// presenter window and the chat as it scrolled, in sync.
    #[command(after_help = "EXAMPLES:\n  \
        multistreamer render --capture talk/ --video recordings/talk.mp4 --out talk.mp4\n  \
        multistreamer render --capture talk/ --video talk.mp4 --layout overlay --size 1280x720 --offset -1.5")]
    #[cfg(feature = "media")]
    Render(render::RenderArgs),
}

/// Why a command failed: its arguments (exit code 2, like clap's own errors) or at run
/// time (exit code 1).
#[derive(Debug)]
pub enum CliError {
    Usage(String),
    Failed(String),
}

impl CliError {
    fn exit(self) -> ExitCode {
        let (message, code) = match self {
            CliError::Usage(m) => (m, 2),
            CliError::Failed(m) => (m, 1),
        };
        eprintln!("error: {message}");
        ExitCode::from(code)
    }
}

fn main() -> ExitCode {
    multistreamer_core::malloc::bound_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("MULTISTREAMER_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(|| multistreamer_core::log_writer::LossyStderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    std::panic::set_hook(Box::new(|info| {
        error!(panic = %info, "internal error (contained to one task)");
    }));
    let command = Cli::parse().command;
    let threads = match &command {
        Command::Relay(args) => args.threads,
        // Blocking libav work: no async runtime needed.
        #[cfg(feature = "media")]
        Command::Transcode(_) | Command::Render(_) => 0,
        #[cfg(feature = "media")]
        Command::Record(_) | Command::Load(_) => 1,
        #[cfg(feature = "media")]
        Command::Capture(_) => 2,
    };
    let command = match command {
        #[cfg(feature = "media")]
        Command::Transcode(args) => {
            return transcode::transcode(args).map_or_else(CliError::exit, |()| ExitCode::SUCCESS);
        }
        #[cfg(feature = "media")]
        Command::Render(args) => return render::render(args).map_or_else(CliError::exit, |()| ExitCode::SUCCESS),
        other => other,
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
        Err(e) => return CliError::Failed(format!("cannot start the runtime: {e}")).exit(),
    };
    let result = runtime.block_on(async {
        match command {
            Command::Relay(args) => relay::relay(*args).await,
            #[cfg(feature = "media")]
            Command::Record(args) => record::record(args).await,
            #[cfg(feature = "media")]
            Command::Load(args) => load::load(args).await,
            #[cfg(feature = "media")]
            Command::Capture(args) => capture::capture(*args).await,
            #[cfg(feature = "media")]
            Command::Transcode(_) | Command::Render(_) => Ok(()),
        }
    });
    result.map_or_else(CliError::exit, |()| ExitCode::SUCCESS)
}
