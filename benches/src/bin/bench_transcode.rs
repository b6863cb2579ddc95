//! `make bench-transcode`: the same generated 1080p30 clip through Multistreamer's ladder
//! (`multistreamer transcode`, one decode, parallel rung encoders) and through the ffmpeg CLI
//! doing the identical ladder (`split` + `scale` + one libx264 per rung, same preset,
//! bitrates, VBV, keyframe placement, profile; audio copied), side by side in one run.
//! Prints frames per second, CPU-seconds (children's utime+stime from /proc/self/stat) and
//! the throughput ratio, and how many real-time 1080p30 ladders that throughput amounts to.
//!
//! `--experiments` instead compares ways of running the ladder on one preset (`--presets`,
//! first value): the ladder with libx264's frame threads (the default), with slice threads,
//! with one thread per rung, with each rung scaled from the next larger one
//! (`--cascade-scaling`), and the ffmpeg CLI scaling every rung from the source against
//! scaling each rung from the next higher one (a cascade: 480p from the 720p picture). For
//! each it reports throughput, CPU and, per rung, the bitrate reached and the quality against
//! the source (SSIM and PSNR of the rung against the source scaled to the rung's size with
//! lanczos, every frame).
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

#[path = "../proc.rs"]
mod proc;
use proc::{count_frames, timed};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use multistreamer_core::ladder::Ladder;

const FPS: u32 = 30;
const GOP_S: u32 = 2;

fn make_clip(dir: &Path, seconds: u32) -> PathBuf {
    let path = dir.join(format!("in-1080p30-{seconds}s.mp4"));
    if path.exists() {
        return path;
    }
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=1920x1080:rate={FPS}"))
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-b:v", "8M", "-pix_fmt", "yuv420p", "-c:a", "aac"])
        .arg(&path)
        .status()
        .expect("ffmpeg (make deps-test)");
    assert!(st.success(), "cannot generate the clip");
    path
}

struct Run {
    wall_s: f64,
    cpu_s: f64,
    frames: u64,
}

fn run_ffmpeg(clip: &Path, out: &Path, ladder: &Ladder, preset: &str) -> Run {
    run_ffmpeg_graph(clip, out, ladder, preset, false)
}

/// The CLI's ladder; `cascade`: each rung scaled from the next higher rung's picture instead
/// of from the source.
fn run_ffmpeg_graph(clip: &Path, out: &Path, ladder: &Ladder, preset: &str, cascade: bool) -> Run {
    let plan = ladder.plan(1920, 1080, Some(f64::from(FPS)));
    let n = plan.rungs.len();
    let mut graph = String::new();
    if cascade {
        // [0:v] -> scale rung 0 -> split (out 0, next) -> scale rung 1 -> split …
        let mut input = "[0:v]".to_string();
        for (i, r) in plan.rungs.iter().enumerate() {
            if i > 0 {
                graph.push(';');
            }
            if i + 1 < n {
                graph.push_str(&format!("{input}scale={}:{},split=2[o{i}][c{i}]", r.width, r.height));
                input = format!("[c{i}]");
            } else {
                graph.push_str(&format!("{input}scale={}:{}[o{i}]", r.width, r.height));
            }
        }
    } else {
        graph.push_str(&format!("[0:v]split={n}"));
        for i in 0..n {
            graph.push_str(&format!("[s{i}]"));
        }
        for (i, r) in plan.rungs.iter().enumerate() {
            graph.push_str(&format!(";[s{i}]scale={}:{}[o{i}]", r.width, r.height));
        }
    }
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-loglevel", "error", "-y", "-i"]).arg(clip).args(["-filter_complex", &graph]);
    let gop = GOP_S * FPS;
    for (i, r) in plan.rungs.iter().enumerate() {
        let b = r.bitrate_kbps;
        cmd.args(["-map", &format!("[o{i}]"), "-map", "0:a", "-c:v", "libx264", "-preset", preset])
            .args(["-profile:v", "high", "-pix_fmt", "yuv420p", "-b:v", &format!("{b}k")])
            .args(["-force_key_frames", &format!("expr:gte(t,n_forced*{GOP_S})")])
            .args([
                "-x264-params",
                &format!(
                    "keyint={}:min-keyint={gop}:scenecut=0:open-gop=0:vbv-maxrate={b}:vbv-bufsize={}",
                    gop * 2,
                    b * 2
                ),
            ])
            .args(["-c:a", "copy"])
            .arg(out.join(format!("{}.mp4", r.name)));
    }
    let (wall_s, cpu_s) = timed(cmd);
    let frames = plan.rungs.iter().map(|r| count_frames(&out.join(format!("{}.mp4", r.name)))).sum();
    Run { wall_s, cpu_s, frames }
}

fn run_ours(bin: &Path, clip: &Path, out: &Path, ladder: &Ladder, preset: &str) -> Run {
    run_ours_with(bin, clip, out, ladder, preset, &[])
}

fn run_ours_with(bin: &Path, clip: &Path, out: &Path, ladder: &Ladder, preset: &str, extra: &[&str]) -> Run {
    let mut cmd = Command::new(bin);
    cmd.arg("transcode").arg("--input").arg(clip).args(["--ladder", &ladder.to_string(), "--preset", preset]);
    cmd.args(extra);
    cmd.args(["--gop", &GOP_S.to_string()]).arg("--out-dir").arg(out).env("MULTISTREAMER_LOG", "warn");
    let (wall_s, cpu_s) = timed(cmd);
    let plan = ladder.plan(1920, 1080, Some(f64::from(FPS)));
    let frames = plan.rungs.iter().map(|r| count_frames(&out.join(format!("{}.mp4", r.name)))).sum();
    Run { wall_s, cpu_s, frames }
}

/// SSIM (all planes) and PSNR (average, dB) of `rung` against the source scaled to
/// `w`×`h` with lanczos, over every frame.
fn quality(rung: &Path, source: &Path, w: u32, h: u32) -> (f64, f64) {
    let graph =
        format!("[1:v]scale={w}:{h}:flags=lanczos,split=2[r1][r2];[0:v]split=2[d1][d2];[d1][r1]ssim;[d2][r2]psnr");
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(rung)
        .arg("-i")
        .arg(source)
        .args(["-lavfi", &graph, "-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let log = String::from_utf8_lossy(&out.stderr);
    let after = |key: &str| -> f64 {
        log.lines()
            .filter_map(|l| l.split_once(key).map(|(_, r)| r))
            .next_back()
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    (after(" All:"), after(" average:"))
}

/// Video bitrate of a file in kbit/s, from the stream's own figure.
fn video_kbps(file: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=bit_rate", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().map_or(f64::NAN, |b| b / 1000.0)
}

/// `--experiments`: threading and scaling variants of the ladder on one preset.
fn experiments(bin: &Path, clip: &Path, dir: &Path, ladder: &Ladder, preset: &str, runs: usize, seconds: u32) {
    type Variant<'a> = (&'a str, Box<dyn Fn(&Path) -> Run + 'a>);
    let variants: Vec<Variant<'_>> = vec![
        ("ladder, libx264 frame threads (default)", Box::new(|o| run_ours_with(bin, clip, o, ladder, preset, &[]))),
        (
            "ladder, libx264 slice threads",
            Box::new(|o| run_ours_with(bin, clip, o, ladder, preset, &["--sliced-threads"])),
        ),
        (
            "ladder, each rung scaled from the next larger rung (--cascade-scaling)",
            Box::new(|o| run_ours_with(bin, clip, o, ladder, preset, &["--cascade-scaling"])),
        ),
        (
            "ladder, 1 libx264 thread per rung",
            Box::new(|o| run_ours_with(bin, clip, o, ladder, preset, &["--encoder-threads", "1"])),
        ),
        (
            "ffmpeg CLI, every rung scaled from the source",
            Box::new(|o| run_ffmpeg_graph(clip, o, ladder, preset, false)),
        ),
        (
            "ffmpeg CLI, each rung scaled from the next higher rung",
            Box::new(|o| run_ffmpeg_graph(clip, o, ladder, preset, true)),
        ),
    ];
    let plan = ladder.plan(1920, 1080, Some(f64::from(FPS)));
    let source_frames = f64::from(seconds * FPS);
    let rung_cols: Vec<String> = plan.rungs.iter().map(|r| format!("{} kbit/s · SSIM · PSNR dB", r.name)).collect();
    println!("| variant ({preset}) | wall (s) | source fps | CPU-s | {} |", rung_cols.join(" | "));
    println!("|---|---:|---:|---:|{}", "---:|".repeat(plan.rungs.len()));
    for (i, (name, run)) in variants.iter().enumerate() {
        let out = dir.join(format!("out-experiment-{i}"));
        let mut results = Vec::new();
        for _ in 0..runs {
            let _ = fs::remove_dir_all(&out);
            fs::create_dir_all(&out).unwrap();
            results.push(run(&out));
        }
        let wall = median(results.iter().map(|r| r.wall_s).collect());
        let cpu = median(results.iter().map(|r| r.cpu_s).collect());
        let cells: Vec<String> = plan
            .rungs
            .iter()
            .map(|r| {
                let file = out.join(format!("{}.mp4", r.name));
                let (ssim, psnr) = quality(&file, clip, r.width, r.height);
                format!("{:.0} · {ssim:.4} · {psnr:.2}", video_kbps(&file))
            })
            .collect();
        println!("| {name} | {wall:.2} | {:.1} | {cpu:.2} | {} |", source_frames / wall, cells.join(" | "));
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut seconds = 20u32;
    let mut presets = vec!["veryfast".to_string(), "ultrafast".to_string()];
    let mut runs = 3usize;
    let mut ladder_spec = "1080p,720p,480p".to_string();
    let mut experiment = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(20),
            "--presets" => presets = args.next().unwrap_or_default().split(',').map(str::to_string).collect(),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(3).max(1),
            "--ladder" => ladder_spec = args.next().unwrap_or_default(),
            "--experiments" => experiment = true,
            other => {
                eprintln!(
                    "unknown argument {other}; usage: bench-transcode [--seconds 20] [--presets veryfast,ultrafast] [--runs 3] [--ladder 1080p,720p,480p] [--experiments]"
                );
                std::process::exit(2);
            }
        }
    }
    let ladder: Ladder = ladder_spec.parse().unwrap_or_else(|e| {
        eprintln!("--ladder: {e}");
        std::process::exit(2)
    });
    let bin = std::env::current_exe().unwrap().with_file_name("multistreamer");
    let dir = std::env::temp_dir().join("multistreamer-bench-transcode");
    fs::create_dir_all(&dir).unwrap();
    let clip = make_clip(&dir, seconds);
    let ffmpeg_version = Command::new("ffmpeg")
        .arg("-version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
        .unwrap_or_default();
    let source_frames = u64::from(seconds * FPS);
    println!(
        "bench-transcode: {} cores, {seconds} s of 1080p{FPS} H.264+AAC -> ladder {ladder}, GOP {GOP_S} s, median of {runs} runs; {ffmpeg_version}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!();
    if experiment {
        experiments(&bin, &clip, &dir, &ladder, &presets[0], runs, seconds);
        return;
    }
    println!(
        "| preset | system | wall (s) | source fps | CPU-s | CPU-ms / source frame | frames out | throughput vs ffmpeg | real-time 1080p{FPS} ladders |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for preset in &presets {
        let (mut ff, mut ms) = (Vec::new(), Vec::new());
        for i in 0..runs {
            // alternate the order so neither side always runs on a warmer machine
            let out_ff = dir.join("out-ffmpeg");
            let out_ms = dir.join("out-multistreamer");
            for d in [&out_ff, &out_ms] {
                let _ = fs::remove_dir_all(d);
                fs::create_dir_all(d).unwrap();
            }
            if i % 2 == 0 {
                ff.push(run_ffmpeg(&clip, &out_ff, &ladder, preset));
                ms.push(run_ours(&bin, &clip, &out_ms, &ladder, preset));
            } else {
                ms.push(run_ours(&bin, &clip, &out_ms, &ladder, preset));
                ff.push(run_ffmpeg(&clip, &out_ff, &ladder, preset));
            }
        }
        let ff_wall = median(ff.iter().map(|r| r.wall_s).collect());
        let ms_wall = median(ms.iter().map(|r| r.wall_s).collect());
        for (name, runs, wall) in [("ffmpeg CLI", &ff, ff_wall), ("multistreamer", &ms, ms_wall)] {
            let cpu = median(runs.iter().map(|r| r.cpu_s).collect());
            let fps = source_frames as f64 / wall;
            let ratio = if name == "ffmpeg CLI" { "1.00x".to_string() } else { format!("{:.2}x", ff_wall / ms_wall) };
            println!(
                "| {preset} | {name} | {wall:.2} | {fps:.1} | {cpu:.2} | {:.1} | {} | {ratio} | {:.2} |",
                cpu * 1000.0 / source_frames as f64,
                runs[0].frames,
                fps / f64::from(FPS)
            );
        }
    }
    println!();
    println!(
        "throughput = source frames / wall time; real-time ladders = throughput / {FPS} fps (how many live 1080p{FPS} inputs this machine could transcode at once, CPU-bound)."
    );
}
