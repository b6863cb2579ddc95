//! `make bench-rtsp`: the RTSP push ingest (ANNOUNCE/RECORD over TCP) and the SRT ingest
//! (MPEG-TS callers) relayed to RTMP, side by side with the ffmpeg CLI doing the same job, and
//! with our RTMP ingest for scale.
//!
//! For each N (default 1 and 10), N ffmpeg publishers send the same 1080p30 clip (6 Mbit/s
//! H.264 + AAC, looped, `-re`) and every stream is relayed to 3 destinations on nginx-rtmp:
//!
//! * **multistreamer, RTSP in**: one `multistreamer relay --listen rtsp://…` process for all
//!   N streams (`ffmpeg … -f rtsp -rtsp_transport tcp rtsp://…/live/sK`);
//! * **ffmpeg CLI, RTSP in**: what an operator without a server does — one
//!   `ffmpeg -rtsp_flags listen -i rtsp://… -c copy -f tee "[f=flv]…|[f=flv]…|[f=flv]…"`
//!   process per stream, each on its own port; their CPU is summed;
//! * **multistreamer, SRT in**: `multistreamer relay --listen srt://…`, publishers
//!   `ffmpeg … -f mpegts srt://…?streamid=live/sK` (120 ms SRT latency);
//! * **ffmpeg CLI, SRT in**: `ffmpeg -i srt://…?mode=listener` with three `-c copy -f flv`
//!   outputs (`tee` cannot reset the TS codec tags FLV refuses), one process per stream;
//! * **multistreamer, RTMP in**: the same relay with RTMP publishers (the relay benchmark's
//!   path), so the RTSP and SRT ingests' own cost shows.
//!
//! `--protocols rtsp,srt` (the default) picks the ingests compared.
//!
//! MediaMTX, the usual RTSP server to compare with, is not in this machine's package
//! registries (Debian 12, PyPI, npm), so it is not in the table.
//!
//! Reported per system and N: CPU-seconds per stream-minute over a window after a warm-up
//! (utime + stime from /proc/PID/stat), peak RSS (summed over processes for the CLI), and as a
//! content check the video packets ffprobe reads in 3 s from the first stream's first
//! destination on nginx-rtmp (≈ 90 when the relay delivers 30 fps).
//!
//! `cargo run --release -p multistreamer-benches --bin bench-rtsp -- --counts 1,10 --seconds 20`
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

#[path = "../proc.rs"]
mod proc;
use proc::{
    clk_tck, free_port, kill, make_relay_clip, probe_live, proc_cpu_ticks, proc_hwm_kb, start_nginx, wait_port,
};

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq)]
enum System {
    OursRtsp,
    FfmpegRtsp,
    OursSrt,
    FfmpegSrt,
    OursRtmp,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::OursRtsp => "multistreamer, RTSP push in",
            System::FfmpegRtsp => "ffmpeg CLI (listen + tee), RTSP push in",
            System::OursSrt => "multistreamer, SRT in",
            System::FfmpegSrt => "ffmpeg CLI (listener, 3 outputs), SRT in",
            System::OursRtmp => "multistreamer, RTMP in",
        }
    }
}

/// Whether something listens on TCP `port` (from /proc/net/tcp, without connecting: an
/// ffmpeg RTSP listener accepts exactly one connection).
fn listening(port: u16) -> bool {
    let suffix = format!(":{port:04X}");
    fs::read_to_string("/proc/net/tcp").unwrap_or_default().lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // sl local_address rem_address st …; st 0A is LISTEN
        f.get(1).is_some_and(|a| a.ends_with(&suffix)) && f.get(3) == Some(&"0A")
    })
}

/// Whether a UDP socket is bound to `port` (an SRT listener), from /proc/net/udp.
fn udp_bound(port: u16) -> bool {
    let suffix = format!(":{port:04X}");
    fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1).is_some_and(|a| a.ends_with(&suffix)))
}

fn wait_udp(port: u16) {
    for _ in 0..200 {
        if udp_bound(port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing bound to UDP {port}");
}

fn wait_listening(port: u16) {
    for _ in 0..200 {
        if listening(port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

fn publisher(clip: &Path, url: &str) -> Child {
    let mut c = Command::new("ffmpeg");
    c.args(["-loglevel", "error", "-re", "-stream_loop", "-1", "-i"]).arg(clip).args(["-c", "copy"]);
    if url.starts_with("rtsp://") {
        c.args(["-f", "rtsp", "-rtsp_transport", "tcp", url]);
    } else if url.starts_with("srt://") {
        c.args(["-f", "mpegts", url]);
    } else {
        c.args(["-f", "flv", url]);
    }
    c.stdin(Stdio::null()).stdout(Stdio::null()).spawn().expect("ffmpeg")
}

struct Row {
    cpu_per_stream_min: f64,
    rss_mb: f64,
    probed: usize,
}

fn run_case(sys: System, n: usize, clip: &Path, dir: &Path, bin: &Path, warm: Duration, window: Duration) -> Row {
    let nginx_port = free_port();
    let nginx = start_nginx(&dir.join("nginx"), nginx_port, "application app { live on; }");
    let dest = |k: &str, j: usize| format!("rtmp://127.0.0.1:{nginx_port}/app/{k}_{j}");
    let mut servers = Vec::new();
    let mut pubs = Vec::new();
    match sys {
        System::OursRtsp | System::OursRtmp | System::OursSrt => {
            let port = free_port();
            let listen = match sys {
                System::OursRtsp => format!("rtsp://127.0.0.1:{port}/live"),
                System::OursSrt => format!("srt://127.0.0.1:{port}"),
                _ => format!("rtmp://127.0.0.1:{port}/live"),
            };
            let mut cmd = Command::new(bin);
            cmd.args(["relay", "--listen", &listen]);
            for j in 1..=3 {
                cmd.args(["--to", &dest("{key}", j)]);
            }
            cmd.args(["--status-interval", "0", "--grace", "0"])
                .env("MULTISTREAMER_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(fs::File::create(dir.join("multistreamer.log")).unwrap());
            servers.push(cmd.spawn().expect("multistreamer (cargo build --release -p multistreamer-cli)"));
            if sys == System::OursSrt {
                wait_udp(port);
            } else {
                wait_port(port);
            }
            for i in 0..n {
                let url = match sys {
                    System::OursRtsp => format!("rtsp://127.0.0.1:{port}/live/s{i}"),
                    System::OursSrt => format!("srt://127.0.0.1:{port}?streamid=live/s{i}"),
                    _ => format!("rtmp://127.0.0.1:{port}/live/s{i}"),
                };
                pubs.push(publisher(clip, &url));
            }
        }
        System::FfmpegSrt => {
            for i in 0..n {
                let port = free_port();
                let key = format!("s{i}");
                let mut server = Command::new("ffmpeg");
                server.args(["-loglevel", "error", "-i"]).arg(format!("srt://127.0.0.1:{port}?mode=listener"));
                // three outputs of one demuxer, as `tee` would do, but `tee` keeps the TS
                // stream-type tags, which FLV refuses: each output lets its muxer choose
                for j in 1..=3 {
                    server.args(["-map", "0", "-c", "copy", "-tag:v", "0", "-tag:a", "0", "-f", "flv", &dest(&key, j)]);
                }
                let server = server.stdin(Stdio::null()).stdout(Stdio::null()).spawn().expect("ffmpeg");
                servers.push(server);
                wait_udp(port);
                pubs.push(publisher(clip, &format!("srt://127.0.0.1:{port}")));
            }
        }
        System::FfmpegRtsp => {
            for i in 0..n {
                let port = free_port();
                let key = format!("s{i}");
                let tee = (1..=3).map(|j| format!("[f=flv]{}", dest(&key, j))).collect::<Vec<_>>().join("|");
                let server = Command::new("ffmpeg")
                    .args(["-loglevel", "error", "-rtsp_flags", "listen", "-f", "rtsp", "-i"])
                    .arg(format!("rtsp://127.0.0.1:{port}/live/{key}"))
                    .args(["-c", "copy", "-map", "0", "-f", "tee", &tee])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("ffmpeg");
                servers.push(server);
                wait_listening(port);
                pubs.push(publisher(clip, &format!("rtsp://127.0.0.1:{port}/live/{key}")));
            }
        }
    }
    std::thread::sleep(warm);
    let cpu = |servers: &[Child]| servers.iter().map(|c| proc_cpu_ticks(c.id())).sum::<u64>();
    let c0 = cpu(&servers);
    std::thread::sleep(window);
    let c1 = cpu(&servers);
    let rss_kb: u64 = servers.iter().map(|c| proc_hwm_kb(c.id())).sum();
    let probed = probe_live(&dest("s0", 1));
    for p in pubs {
        kill(p);
    }
    for s in servers {
        kill(s);
    }
    kill(nginx);
    let stream_minutes = n as f64 * window.as_secs_f64() / 60.0;
    Row {
        cpu_per_stream_min: c1.saturating_sub(c0) as f64 / clk_tck() / stream_minutes,
        rss_mb: rss_kb as f64 / 1024.0,
        probed,
    }
}

fn main() {
    let mut counts = vec![1usize, 10];
    let mut seconds = 20u64;
    let mut protocols = vec!["rtsp".to_string(), "srt".to_string()];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--counts" => counts = args.next().unwrap_or_default().split(',').filter_map(|v| v.parse().ok()).collect(),
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(20),
            "--protocols" => protocols = args.next().unwrap_or_default().split(',').map(str::to_string).collect(),
            other => {
                eprintln!(
                    "unknown argument {other}; usage: bench-rtsp [--counts 1,10] [--seconds 20] [--protocols rtsp,srt]"
                );
                std::process::exit(2);
            }
        }
    }
    let bin = std::env::current_exe().unwrap().with_file_name("multistreamer");
    let dir = std::env::temp_dir().join("multistreamer-bench-rtsp");
    fs::create_dir_all(&dir).unwrap();
    let clip = make_relay_clip(&dir.join("in-1080p30-10s.mp4"));
    let (warm, window) = (Duration::from_secs(5), Duration::from_secs(seconds));
    println!(
        "bench-rtsp: {} cores, 1080p30 6 Mbit/s H.264 + AAC, each stream -> 3 RTMP destinations (nginx-rtmp), {seconds} s window after {} s warm-up",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        warm.as_secs()
    );
    println!();
    println!(
        "| publishers | system | CPU-s / stream-min | peak RSS (MB) | video packets read in 3 s at a destination |"
    );
    println!("|---:|---|---:|---:|---:|");
    for &n in &counts {
        for proto in &protocols {
            let (theirs, ours) = match proto.as_str() {
                "rtsp" => (System::FfmpegRtsp, System::OursRtsp),
                "srt" => (System::FfmpegSrt, System::OursSrt),
                other => {
                    eprintln!("unknown protocol {other}: rtsp or srt");
                    std::process::exit(2);
                }
            };
            let mut rows = Vec::new();
            for sys in [theirs, ours] {
                let r = run_case(sys, n, &clip, &dir, &bin, warm, window);
                println!("| {n} | {} | {:.3} | {:.1} | {} |", sys.name(), r.cpu_per_stream_min, r.rss_mb, r.probed);
                rows.push(r);
            }
            println!(
                "| {n} | ratio multistreamer / ffmpeg CLI ({} in) | {:.2}× | {:.2}× | |",
                proto.to_uppercase(),
                rows[1].cpu_per_stream_min / rows[0].cpu_per_stream_min,
                rows[1].rss_mb / rows[0].rss_mb
            );
        }
        let r = run_case(System::OursRtmp, n, &clip, &dir, &bin, warm, window);
        println!(
            "| {n} | {} | {:.3} | {:.1} | {} |",
            System::OursRtmp.name(),
            r.cpu_per_stream_min,
            r.rss_mb,
            r.probed
        );
    }
}
