//! `multistreamer render`: a capture (chat, presenter) and a source video generated here,
//! rendered into one MP4, checked by content: the length and the audio are the source's,
//! the chat panel changes when a message is due and nothing else does, the presenter tile
//! shows the presenter video.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use multistreamer_core::render::{LayoutKind, geometry};
use multistreamer_test_support::*;

fn ffmpeg(args: &[&str]) {
    let st = Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args).status().unwrap();
    assert!(st.success(), "ffmpeg {args:?}");
}

/// Frame `n` of `file` as grey levels (one byte a pixel).
fn grey_frame(file: &Path, n: u32) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-vf", &format!("select=eq(n\\,{n})"), "-vframes", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// The mean absolute difference of two grey frames inside (or outside) a rectangle.
fn diff(a: &[u8], b: &[u8], width: u32, area: (u32, u32, u32, u32), inside: bool) -> f64 {
    let (x, y, w, h) = area;
    let (mut sum, mut n) = (0u64, 0u64);
    for (i, (pa, pb)) in a.iter().zip(b).enumerate() {
        let (px, py) = (i as u32 % width, i as u32 / width);
        let within = px >= x && px < x + w && py >= y && py < y + h;
        if within == inside {
            sum += u64::from(pa.abs_diff(*pb));
            n += 1;
        }
    }
    sum as f64 / n.max(1) as f64
}

#[test]
fn a_capture_renders_with_its_source_in_sync() {
    let tmp = TempDir::new("render");
    let src = tmp.join("source.mp4");
    // a still picture (so that only the chat changes between two frames) and a tone
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=0x336699:s=1280x720:r=30:d=8",
        "-f",
        "lavfi",
        "-i",
        "sine=f=440:d=8",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "30",
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
    let cap = tmp.join("cap");
    std::fs::create_dir_all(&cap).unwrap();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "smptebars=s=640x360:r=30:d=8",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        cap.join("presenter.mp4").to_str().unwrap(),
    ]);
    // the capture started half a second after the source; messages at 2 s and 4 s of it
    std::fs::write(
        cap.join("capture.json"),
        r##"{"version":1,"url":"http://127.0.0.1/room","profile":"generic",
            "selectors":{"chat_container":"#chat","chat_item":"","chat_author":"","chat_text":"","presenter":"#p"},
            "started_at":"2026-12-02T10:00:00.500Z","viewport":[1280,720],
            "files":{"chat":"chat.jsonl","presenter":"presenter.mp4"},"presenter_start_ms":0,
            "counters":{"chat_messages":2,"presenter_frames":240,"presenter_fps":30.0,"page_loads":1,
                        "browser_restarts":0,"duration_ms":8000}}"##,
    )
    .unwrap();
    std::fs::write(
        cap.join("chat.jsonl"),
        concat!(
            r#"{"t_ms":2000,"at":"2026-12-02T10:00:02.500Z","id":"1","author":"Анна","text":"Привет всем! 🎉👍","source":"page","kind":"message"}"#,
            "\n",
            r#"{"t_ms":4000,"at":"2026-12-02T10:00:04.500Z","id":"2","author":"Bob","text":"<b>not bold</b> 😀","source":"page","kind":"message"}"#,
            "\n",
            "{\"t_ms\":5000,\"cut by a crash",
        ),
    )
    .unwrap();
    let out = tmp.join("rendered.mp4");
    let run = Command::new(workspace_bin("multistreamer"))
        .args(["render", "--capture"])
        .arg(&cap)
        .arg("--video")
        .arg(&src)
        .arg("--out")
        .arg(&out)
        .args(["--size", "1280x720", "--preset", "ultrafast", "--ass"])
        .arg(tmp.join("chat.ass"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("source start from metadata"), "{stdout}");
    // the ASS export: message 1 at 2.5 s of the output
    let ass = std::fs::read_to_string(tmp.join("chat.ass")).unwrap();
    assert!(ass.contains("Dialogue: 1,0:00:02.50,") && ass.contains("Привет всем! 🎉👍"), "{ass}");

    // the source's length (every frame), its audio packet for packet, the chosen size
    let frames = |f: &Path| probe_value(f, "v", "stream=nb_frames");
    assert_eq!(frames(&out), frames(&src));
    assert_eq!(probe_value(&out, "v", "stream=width"), "1280");
    assert_eq!(probe_value(&out, "v", "stream=height"), "720");
    assert_eq!(packet_hashes(&out, "a"), packet_hashes(&src, "a"), "the source's own audio");

    // message 1 is due at 2.5 s of the output (frame 75): frames 66 and 84 differ in the
    // chat panel only
    let g = geometry(LayoutKind::Side, (1280, 720), (1280, 720), Some((640, 360)));
    let chat = (g.chat.x, g.chat.y, g.chat.w, g.chat.h);
    let (before, after) = (grey_frame(&out, 66), grey_frame(&out, 84));
    let inside = diff(&before, &after, 1280, chat, true);
    let outside = diff(&before, &after, 1280, chat, false);
    assert!(inside > 1.0 && outside < 0.5, "chat panel changed by {inside:.2}, the rest by {outside:.2}");
    // and nothing changes between two frames with no message due
    let (a, b) = (grey_frame(&out, 100), grey_frame(&out, 120));
    assert!(diff(&a, &b, 1280, chat, true) < 0.5, "the panel is still without a new message");

    // the presenter tile shows the presenter video
    let tile = g.presenter.unwrap();
    let psnr = Command::new("ffmpeg")
        .args(["-v", "info", "-i"])
        .arg(&out)
        .arg("-i")
        .arg(cap.join("presenter.mp4"))
        .args([
            "-filter_complex",
            &format!(
                "[0:v]crop={}:{}:{}:{},trim=start_frame=150:end_frame=160,setpts=PTS-STARTPTS[a];\
                 [1:v]scale={}:{},trim=start_frame=135:end_frame=145,setpts=PTS-STARTPTS[b];[a][b]psnr",
                tile.w, tile.h, tile.x, tile.y, tile.w, tile.h
            ),
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&psnr.stderr);
    let average: f64 = log
        .split("average:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no PSNR in: {log}"));
    assert!(average > 30.0, "presenter tile PSNR {average:.1} dB");
}

/// A stopped render (the server shutting down) ends at once and leaves no partial file.
#[test]
fn a_stopped_render_leaves_no_partial_output() {
    let tmp = TempDir::new("render-stop");
    let src = tmp.join("source.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:s=320x240:r=30:d=2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        src.to_str().unwrap(),
    ]);
    let cap = tmp.join("cap");
    std::fs::create_dir_all(&cap).unwrap();
    std::fs::write(
        cap.join("capture.json"),
        r#"{"version":1,"url":"http://x/","profile":"generic","selectors":{"chat_container":"","chat_item":"","chat_author":"","chat_text":"","presenter":""},"started_at":"2026-12-02T10:00:00.000Z","viewport":[320,240],"files":{"chat":"chat.jsonl"},"counters":{"chat_messages":0,"presenter_frames":0,"presenter_fps":0.0,"page_loads":1,"browser_restarts":0,"duration_ms":0}}"#,
    )
    .unwrap();
    let out = tmp.join("out.mp4");
    let mut o = multistreamer_core::render::RenderOptions::new(&cap, &src, &out);
    o.size = (320, 240);
    o.cancel = Some(std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)));
    let r = multistreamer_core::render::render(&o, |_| {});
    assert!(r.is_err_and(|e| e.kind() == multistreamer_core::error::ErrorKind::Shutdown));
    assert!(!out.exists(), "no partial output");
}
