//! `make bench-hls`: HLS in and out, side by side with the peers in one run.
//!
//! * **Output**: N publishers send the same 1080p30 clip in real time to nginx-rtmp with
//!   `hls on` and to `multistreamer relay --hls-out` at once (2 s segments, a 6-segment
//!   window on both); the CPU time (utime + stime from /proc/PID/stat over the middle of the
//!   run) and peak RSS of each server are compared, and both outputs are checked to be
//!   readable HLS.
//! * **Pull**: N copies of an HLS VOD of the clip (TS, 2 s segments, served by Python's
//!   http.server) are pulled and relayed to nginx-rtmp, by N `multistreamer relay --input`
//!   processes and by N `ffmpeg -re -i URL -c copy -f flv` processes, one group after the
//!   other; the CPU time of each group is compared.
//!
//! `cargo run --release -p multistreamer-benches --bin bench-hls -- --streams 4 --seconds 30`
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

#[path = "../proc.rs"]
mod proc;
use proc::{children_cpu_s, clk_tck, free_port, proc_cpu_ticks, proc_hwm_kb, start_nginx, wait_port};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn make_clip(dir: &Path, seconds: u32) -> PathBuf {
    let path = dir.join(format!("in-1080p30-{seconds}s.mp4"));
    if path.exists() {
        return path;
    }
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-b:v", "6M", "-g", "60", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "128k"])
        .arg(&path)
        .status()
        .expect("ffmpeg (make deps-test)");
    assert!(st.success(), "cannot generate the clip");
    path
}

fn publish(clip: &Path, url: &str) -> Child {
    Command::new("ffmpeg")
        .args(["-loglevel", "error", "-re", "-i"])
        .arg(clip)
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("ffmpeg")
}

fn kill(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// Video packets ffmpeg reads from a playlist (0 when it cannot read it).
fn count_video(playlist: &Path) -> usize {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries", "stream=nb_read_packets"])
        .args(["-of", "csv=p=0"])
        .arg(playlist)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).lines().next().and_then(|l| l.trim().parse().ok()).unwrap_or(0)
}

struct Usage {
    cpu_s_per_stream_min: f64,
    rss_mb: f64,
}

fn output_case(dir: &Path, clip: &Path, bin: &Path, streams: usize, seconds: u64) -> (Usage, Usage, usize, usize) {
    let nginx_hls = dir.join("out-nginx-hls");
    let ours_hls = dir.join("out-ours-hls");
    for d in [&nginx_hls, &ours_hls] {
        let _ = fs::remove_dir_all(d);
        fs::create_dir_all(d).unwrap();
    }
    let nginx_port = free_port();
    let app = format!(
        "application live {{ live on; hls on; hls_path {}; hls_fragment 2s; hls_playlist_length 12s; }}",
        nginx_hls.display()
    );
    let nginx = start_nginx(&dir.join("nginx-out"), nginx_port, &app);
    let ours_port = free_port();
    let ours = Command::new(bin)
        .args(["relay", "--listen", &format!("rtmp://127.0.0.1:{ours_port}/live"), "--hls-out"])
        .arg(&ours_hls)
        .args(["--hls-segment", "2", "--hls-window", "6", "--status-interval", "0", "--grace", "0"])
        .env("MULTISTREAMER_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("multistreamer (cargo build --release -p multistreamer-cli)");
    wait_port(ours_port);
    let mut pubs = Vec::new();
    for i in 0..streams {
        pubs.push(publish(clip, &format!("rtmp://127.0.0.1:{nginx_port}/live/s{i}")));
        pubs.push(publish(clip, &format!("rtmp://127.0.0.1:{ours_port}/live/s{i}")));
    }
    // measure the middle of the run
    let warm = Duration::from_secs(4);
    let window = Duration::from_secs(seconds.saturating_sub(8).max(4));
    std::thread::sleep(warm);
    let (c0n, c0o) = (proc_cpu_ticks(nginx.id()), proc_cpu_ticks(ours.id()));
    std::thread::sleep(window);
    let (c1n, c1o) = (proc_cpu_ticks(nginx.id()), proc_cpu_ticks(ours.id()));
    let (hn, ho) = (proc_hwm_kb(nginx.id()), proc_hwm_kb(ours.id()));
    let nginx_frames = count_video(&nginx_hls.join("s0.m3u8"));
    let ours_frames = count_video(&ours_hls.join("s0/source/index.m3u8"));
    for p in pubs {
        kill(p);
    }
    kill(nginx);
    kill(ours);
    let minutes = streams as f64 * window.as_secs_f64() / 60.0;
    let usage = |c0: u64, c1: u64, hwm: u64| Usage {
        cpu_s_per_stream_min: (c1 - c0) as f64 / clk_tck() / minutes,
        rss_mb: hwm as f64 / 1024.0,
    };
    (usage(c0n, c1n, hn), usage(c0o, c1o, ho), nginx_frames, ours_frames)
}

fn pull_case(dir: &Path, clip: &Path, bin: &Path, streams: usize) -> (f64, f64, f64) {
    let www = dir.join("www");
    let vod = www.join("vod");
    if !vod.join("index.m3u8").exists() {
        fs::create_dir_all(&vod).unwrap();
        let st = Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-i"])
            .arg(clip)
            .args(["-c", "copy", "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod"])
            .arg(vod.join("index.m3u8"))
            .status()
            .unwrap();
        assert!(st.success());
    }
    let http_port = free_port();
    let http = Command::new("python3")
        .args(["-m", "http.server", &http_port.to_string(), "--bind", "127.0.0.1", "--directory"])
        .arg(&www)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    wait_port(http_port);
    let nginx_port = free_port();
    let nginx = start_nginx(&dir.join("nginx-pull"), nginx_port, "application app { live on; }");
    let url = format!("http://127.0.0.1:{http_port}/vod/index.m3u8");
    let run_group = |make: &dyn Fn(usize) -> Command| -> (f64, f64) {
        let cpu0 = children_cpu_s();
        let t0 = Instant::now();
        let children: Vec<Child> = (0..streams).map(|i| make(i).spawn().expect("spawn")).collect();
        for mut c in children {
            let st = c.wait().unwrap();
            assert!(st.success(), "a puller failed");
        }
        (children_cpu_s() - cpu0, t0.elapsed().as_secs_f64())
    };
    let (ours_cpu, ours_wall) = run_group(&|i| {
        let mut c = Command::new(bin);
        c.args(["relay", "--listen", &format!("rtmp://127.0.0.1:{}/live", free_port())])
            .args(["--input", &url, "--input-key", &format!("ours{i}")])
            .args(["--to", &format!("rtmp://127.0.0.1:{nginx_port}/app/{{key}}")])
            .args(["--status-interval", "0", "--grace", "0"])
            .env("MULTISTREAMER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // the relay keeps listening after the VOD ends; stop it once the pull finished
        c
    });
    let (ff_cpu, ff_wall) = run_group(&|i| {
        let mut c = Command::new("ffmpeg");
        c.args(["-loglevel", "error", "-re", "-i", &url, "-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://127.0.0.1:{nginx_port}/app/ff{i}"))
            .stdin(Stdio::null());
        c
    });
    kill(nginx);
    kill(http);
    (ours_cpu, ff_cpu, ours_wall.max(ff_wall))
}

fn main() {
    let mut streams = 4usize;
    let mut seconds = 30u32;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--streams" => streams = args.next().and_then(|v| v.parse().ok()).unwrap_or(4),
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(30),
            other => {
                eprintln!("unknown argument {other}; usage: bench-hls [--streams 4] [--seconds 30]");
                std::process::exit(2);
            }
        }
    }
    let bin = std::env::current_exe().unwrap().with_file_name("multistreamer");
    let dir = std::env::temp_dir().join("multistreamer-bench-hls");
    fs::create_dir_all(&dir).unwrap();
    let clip = make_clip(&dir, seconds);
    println!(
        "bench-hls: {} cores, {streams} streams of a {seconds} s 1080p30 clip (6 Mbit/s H.264 + AAC)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let (nginx, ours, nginx_frames, ours_frames) = output_case(&dir, &clip, &bin, streams, u64::from(seconds));
    println!();
    println!("HLS output (RTMP in → 2 s TS segments, 6-segment window):");
    println!("| server | CPU-s / stream-min | peak RSS (MB) | frames ffprobe reads from stream 0's playlist |");
    println!("|---|---:|---:|---:|");
    println!("| nginx-rtmp `hls on` | {:.3} | {:.1} | {nginx_frames} |", nginx.cpu_s_per_stream_min, nginx.rss_mb);
    println!("| multistreamer `--hls-out` | {:.3} | {:.1} | {ours_frames} |", ours.cpu_s_per_stream_min, ours.rss_mb);
    println!("CPU ratio multistreamer / nginx-rtmp: {:.2}×", ours.cpu_s_per_stream_min / nginx.cpu_s_per_stream_min);
    let (ours_cpu, ff_cpu, wall) = pull_case(&dir, &clip, &bin, streams);
    println!();
    println!("HLS pull (VOD over HTTP → RTMP to nginx-rtmp, real time, {wall:.0} s):");
    println!("| puller | CPU-s total for {streams} streams | CPU-s / stream-min |");
    println!("|---|---:|---:|");
    let per = |cpu: f64| cpu / (streams as f64 * f64::from(seconds) / 60.0);
    println!("| ffmpeg -re -i URL -c copy -f flv | {ff_cpu:.2} | {:.3} |", per(ff_cpu));
    println!("| multistreamer relay --input URL | {ours_cpu:.2} | {:.3} |", per(ours_cpu));
    println!("CPU ratio multistreamer / ffmpeg: {:.2}×", ours_cpu / ff_cpu);
}
