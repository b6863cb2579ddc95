//! `make bench-render`: the same composition — a 1080p30 source, a 720p presenter scaled into
//! a side tile, a chat of 5 messages a second (Cyrillic and emoji) in a panel, 1920×1080
//! H.264 veryfast with the source's audio copied — made by `multistreamer render` and by the
//! ffmpeg CLI (`scale` + `pad` + `overlay` for the presenter, the `ass` filter for the chat,
//! from the ASS that `multistreamer render --ass` exports for the same layout), side by side in
//! one run. Prints wall time, × real time, frames per second, CPU-seconds and the speed ratio.
//!
//! `bench-render [--seconds N]` (default 60).
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

#[path = "../proc.rs"]
mod proc;
use proc::{count_frames, timed};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use multistreamer_core::render::{LayoutKind, geometry};

fn ffmpeg(args: &[&str]) {
    let st = Command::new("ffmpeg").args(["-loglevel", "error", "-y"]).args(args).status().expect("ffmpeg");
    assert!(st.success(), "ffmpeg {args:?}");
}

/// Source, presenter and chat of `seconds`, in `dir` (made once).
fn inputs(dir: &Path, seconds: u32) -> (PathBuf, PathBuf) {
    let src = dir.join(format!("source-{seconds}s.mp4"));
    let cap = dir.join(format!("capture-{seconds}s"));
    if !src.exists() {
        let d = seconds.to_string();
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1920x1080:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            &d,
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-b:v",
            "6M",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-metadata",
            "multistreamer_start=2026-12-02T10:00:00.000Z",
            "-movflags",
            "use_metadata_tags",
            src.to_str().unwrap(),
        ]);
    }
    if !cap.join("capture.json").exists() {
        fs::create_dir_all(&cap).unwrap();
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=1280x720:rate=30",
            "-t",
            &seconds.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            cap.join("presenter.mp4").to_str().unwrap(),
        ]);
        let words =
            ["Добрый день", "great talk 👍", "вопрос по слайду 12", "🎉🎉", "thanks!", "а запись будет?", "😀 ok"];
        let mut chat = String::new();
        for i in 0..seconds * 5 {
            let text = format!("{} #{i}", words[i as usize % words.len()]);
            chat.push_str(&format!(
                "{{\"t_ms\":{},\"at\":\"\",\"id\":\"{i}\",\"author\":\"user{}\",\"text\":\"{text}\",\"source\":\"page\",\"kind\":\"message\"}}\n",
                i * 200,
                i % 17
            ));
        }
        fs::write(cap.join("chat.jsonl"), chat).unwrap();
        fs::write(
            cap.join("capture.json"),
            r#"{"version":1,"url":"http://127.0.0.1/","profile":"generic","selectors":{"chat_container":"","chat_item":"","chat_author":"","chat_text":"","presenter":""},"started_at":"2026-12-02T10:00:00.000Z","viewport":[1280,720],"files":{"chat":"chat.jsonl","presenter":"presenter.mp4"},"presenter_start_ms":0,"counters":{"chat_messages":0,"presenter_frames":0,"presenter_fps":30.0,"page_loads":1,"browser_restarts":0,"duration_ms":0}}"#,
        )
        .unwrap();
    }
    (src, cap)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u32 =
        args.iter().position(|a| a == "--seconds").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(60);
    let bin = std::env::current_exe().unwrap().with_file_name("multistreamer");
    let dir = std::env::temp_dir().join("ms-bench-render");
    fs::create_dir_all(&dir).unwrap();
    let (src, cap) = inputs(&dir, seconds);
    let ours = dir.join("ours.mp4");
    let theirs = dir.join("ffmpeg.mp4");
    let ass = dir.join("chat.ass");

    // Multistreamer (and the ASS of the same layout, for the CLI)
    let mut cmd = Command::new(&bin);
    cmd.args(["render", "--capture"]).arg(&cap).arg("--video").arg(&src).arg("--out").arg(&ours);
    cmd.args(["--size", "1920x1080", "--preset", "veryfast", "--ass"]).arg(&ass);
    let (ours_wall, ours_cpu) = timed(cmd);

    // the ffmpeg CLI: the same tiles, the chat burned in from that ASS
    let g = geometry(LayoutKind::Side, (1920, 1080), (1920, 1080), Some((1280, 720)));
    let tile = g.presenter.unwrap();
    let graph = format!(
        "[0:v]scale={vw}:{vh},pad=1920:1080:{vx}:{vy}[v];[1:v]scale={tw}:{th}[p];[v][p]overlay={tx}:{ty}[vp];[vp]ass={ass}[out]",
        vw = g.video.w,
        vh = g.video.h,
        vx = g.video.x,
        vy = g.video.y,
        tw = tile.w,
        th = tile.h,
        tx = tile.x,
        ty = tile.y,
        ass = ass.display()
    );
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-loglevel", "error", "-y", "-i"]).arg(&src).arg("-i").arg(cap.join("presenter.mp4"));
    cmd.args(["-filter_complex", &graph, "-map", "[out]", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast"]);
    cmd.args(["-crf", "21", "-g", "60", "-c:a", "copy", "-movflags", "+faststart"]).arg(&theirs);
    let (ff_wall, ff_cpu) = timed(cmd);

    let (fo, ft) = (count_frames(&ours), count_frames(&theirs));
    let secs = f64::from(seconds);
    println!("render of {seconds} s: 1080p30 source + 720p presenter + chat at 5 msg/s → 1920x1080 veryfast, 2 cores");
    println!("{:<26} {:>8} {:>10} {:>8} {:>8}", "", "wall s", "× realtime", "fps", "CPU-s");
    println!(
        "{:<26} {:>8.1} {:>10.2} {:>8.1} {:>8.1}",
        "multistreamer render",
        ours_wall,
        secs / ours_wall,
        fo as f64 / ours_wall,
        ours_cpu
    );
    println!(
        "{:<26} {:>8.1} {:>10.2} {:>8.1} {:>8.1}",
        "ffmpeg CLI (overlay + ass)",
        ff_wall,
        secs / ff_wall,
        ft as f64 / ff_wall,
        ff_cpu
    );
    println!("speed ratio (ffmpeg wall / ours wall): {:.2}", ff_wall / ours_wall);
}
