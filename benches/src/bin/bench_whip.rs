//! `make bench-whip`: the server's WHIP ingest (WebRTC: ICE, DTLS, SRTP, RTP reassembly,
//! Opus → AAC) beside its RTMP ingest, in the same run, each stream relayed to 3 RTMP
//! destinations on nginx-rtmp.
//!
//! For each N (default 1 and 5), a fresh `multistreamer-server` gets N streams of 3
//! destinations each, then N publishers of the same 1080p30 clip (6 Mbit/s H.264; its AAC
//! re-encoded to 96 kbit/s Opus for WebRTC):
//!
//! * **WHIP in**: publishers on the WebRTC stack the server uses (its client side, in this
//!   process: ICE controlling, DTLS client, RTP packetization), the offer POSTed to
//!   `/whip/live` with the stream key as Bearer token, the clip's H.264 access units and
//!   20 ms Opus packets sent in real time, looped;
//! * **RTMP in**: `ffmpeg -re -stream_loop -1 -i clip -c copy -f flv` per stream.
//!
//! No peer is measured beside it: the ffmpeg CLI of Debian 12 has no WHIP, and MediaMTX is
//! not in this machine's package registries.
//!
//! Reported per ingest and N: the server's CPU-seconds per stream-minute over a window after
//! a warm-up (utime + stime from /proc/PID/stat), its peak RSS, and as a content check the
//! video packets ffprobe reads in 3 s from the first stream's first destination (≈ 90 when
//! 30 fps arrive).
//!
//! `cargo run --release -p multistreamer-benches --bin bench-whip -- --counts 1,5 --seconds 20`
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

#[path = "../proc.rs"]
mod proc;
use proc::{clk_tck, free_port, kill, make_relay_clip, probe_live, proc_cpu_ticks, proc_hwm_kb, start_nginx};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use multistreamer_test_support::{WhipMedia, WhipPublisher, http_text as http};
use serde_json::{Value, json};

const PASSWORD: &str = "bench-password-1";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ingest {
    Whip,
    Rtmp,
}

/// The server under test, signed in.
struct Server {
    child: Child,
    http: u16,
    cookie: String,
    csrf: String,
}

impl Server {
    fn start(bin: &Path, dir: &Path) -> Server {
        let out = dir.join("server.out");
        let child = Command::new(bin)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--http", "127.0.0.1:0", "--rtmp", "127.0.0.1:0", "--rtsp", "127.0.0.1:0", "--srt", "127.0.0.1:0"])
            .args(["--whip-udp", "127.0.0.1:0"])
            .env("MULTISTREAMER_ADMIN_PASSWORD", PASSWORD)
            .env("MULTISTREAMER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(dir.join("server.log")).unwrap())
            .spawn()
            .expect("multistreamer-server (cargo build --release -p multistreamer-server)");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            let text = fs::read_to_string(&out).unwrap_or_default();
            let port = text
                .split("http://127.0.0.1:")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .and_then(|p| p.parse::<u16>().ok());
            if let (true, Some(p)) = (text.contains("  Data:"), port) {
                break p;
            }
            assert!(Instant::now() < deadline, "the server did not start: {text}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let login = json!({"username": "admin", "password": PASSWORD}).to_string();
        let (status, head, body) = http(port, "POST", "/api/login", &[("Content-Type", "application/json")], &login);
        assert_eq!(status, 200, "{body}");
        let cookie = head
            .lines()
            .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
            .and_then(|c| c.split(';').next())
            .unwrap()
            .to_string();
        let csrf = serde_json::from_str::<Value>(&body).unwrap()["csrf_token"].as_str().unwrap().to_string();
        Server { child, http: port, cookie, csrf }
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let headers = [("Content-Type", "application/json"), ("Cookie", &self.cookie), ("X-CSRF-Token", &self.csrf)];
        let (status, _, text) = http(self.http, "POST", path, &headers, &body.to_string());
        assert!(status == 200 || status == 201, "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

struct Row {
    cpu_per_stream_min: f64,
    rss_mb: f64,
    probed: usize,
}

fn run_case(ingest: Ingest, n: usize, clip: &Path, media: &WhipMedia, dir: &Path, bin: &Path, window: Duration) -> Row {
    let case_dir = dir.join(format!("{}-{n}", if ingest == Ingest::Whip { "whip" } else { "rtmp" }));
    let _ = fs::remove_dir_all(&case_dir);
    fs::create_dir_all(&case_dir).unwrap();
    let nginx_port = free_port();
    let nginx = start_nginx(&case_dir.join("nginx"), nginx_port, "application app { live on; }");
    let dest = |i: usize, j: usize| format!("rtmp://127.0.0.1:{nginx_port}/app/s{i}_{j}");
    let server = Server::start(bin, &case_dir);
    let stop = Arc::new(AtomicBool::new(false));
    let mut ffmpegs = Vec::new();
    let mut threads = Vec::new();
    for i in 0..n {
        let s = server.post("/api/streams", json!({"name": format!("s{i}")}));
        let id = s["id"].as_i64().unwrap();
        for j in 1..=3 {
            server
                .post(&format!("/api/streams/{id}/destinations"), json!({"name": format!("d{j}"), "url": dest(i, j)}));
        }
        match ingest {
            Ingest::Rtmp => ffmpegs.push(
                Command::new("ffmpeg")
                    .args(["-loglevel", "error", "-re", "-stream_loop", "-1", "-i"])
                    .arg(clip)
                    .args(["-c", "copy", "-f", "flv", s["rtmp_url"].as_str().unwrap()])
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("ffmpeg"),
            ),
            Ingest::Whip => {
                let (mut publisher, offer) = WhipPublisher::offer();
                let bearer = format!("Bearer {}", s["key"].as_str().unwrap());
                let headers = [("Content-Type", "application/sdp"), ("Authorization", bearer.as_str())];
                let (status, _, answer) = http(server.http, "POST", "/whip/live", &headers, &offer);
                assert_eq!(status, 201, "{answer}");
                publisher.accept(&answer);
                let (media, stop) = (media.clone(), Arc::clone(&stop));
                threads.push(std::thread::spawn(move || publisher.run(&media, usize::MAX, &stop)));
            }
        }
    }
    std::thread::sleep(Duration::from_secs(5));
    let pid = server.child.id();
    let c0 = proc_cpu_ticks(pid);
    std::thread::sleep(window);
    let c1 = proc_cpu_ticks(pid);
    let rss_kb = proc_hwm_kb(pid);
    let probed = probe_live(&dest(0, 1));
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| _ = t.join());
    ffmpegs.into_iter().for_each(kill);
    kill(server.child);
    kill(nginx);
    let stream_minutes = n as f64 * window.as_secs_f64() / 60.0;
    Row {
        cpu_per_stream_min: c1.saturating_sub(c0) as f64 / clk_tck() / stream_minutes,
        rss_mb: rss_kb as f64 / 1024.0,
        probed,
    }
}

fn main() {
    let mut counts = vec![1usize, 5];
    let mut seconds = 20u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--counts" => counts = args.next().unwrap_or_default().split(',').filter_map(|v| v.parse().ok()).collect(),
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(20),
            other => {
                eprintln!("unknown argument {other}; usage: bench-whip [--counts 1,5] [--seconds 20]");
                std::process::exit(2);
            }
        }
    }
    let bin: PathBuf = std::env::current_exe().unwrap().with_file_name("multistreamer-server");
    let dir = std::env::temp_dir().join("multistreamer-bench-whip");
    fs::create_dir_all(&dir).unwrap();
    let clip = make_relay_clip(&dir.join("in-1080p30-10s.mp4"));
    let media = WhipMedia::from_clip(&clip, 30, &dir);
    let window = Duration::from_secs(seconds);
    println!(
        "bench-whip: {} cores, 1080p30 6 Mbit/s H.264 (+ AAC over RTMP, Opus over WHIP), each stream -> 3 RTMP destinations (nginx-rtmp), {seconds} s window after 5 s warm-up",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!();
    println!(
        "| publishers | server ingest | CPU-s / stream-min | peak RSS (MB) | video packets read in 3 s at a destination |"
    );
    println!("|---:|---|---:|---:|---:|");
    for &n in &counts {
        let mut rows = Vec::new();
        for (ingest, name) in [(Ingest::Rtmp, "RTMP in"), (Ingest::Whip, "WHIP in")] {
            let r = run_case(ingest, n, &clip, &media, &dir, &bin, window);
            println!("| {n} | {name} | {:.3} | {:.1} | {} |", r.cpu_per_stream_min, r.rss_mb, r.probed);
            rows.push(r);
        }
        println!(
            "| {n} | ratio WHIP / RTMP | {:.2}× | {:.2}× | |",
            rows[1].cpu_per_stream_min / rows[0].cpu_per_stream_min,
            rows[1].rss_mb / rows[0].rss_mb
        );
    }
}
