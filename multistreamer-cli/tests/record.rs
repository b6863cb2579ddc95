//! Recording against real peers: ffmpeg publishes, the relay records (and relays), ffprobe
//! and ffmpeg's framemd5 check what is on disk.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use multistreamer_test_support::*;

fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == ext)).collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `multistreamer record` on a free port; returns the child and its port.
fn start_recorder(dir: &Path, out: &Path, extra: &[&str]) -> (Child, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_multistreamer"))
        .arg("record")
        .args(["--listen", &format!("rtmp://127.0.0.1:{port}/live"), "--out"])
        .arg(out)
        .args(["--grace", "0"])
        .args(extra)
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(dir.join("record.status")).unwrap())
        .stderr(std::fs::File::create(dir.join("record.log")).unwrap())
        .spawn()
        .expect("multistreamer binary");
    assert!(wait_for_port(port, Duration::from_secs(15)), "recorder did not listen");
    (child, port)
}

fn wait_for_file(dir: &Path, ext: &str, timeout: Duration) -> PathBuf {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(f) = files_with_ext(dir, ext).into_iter().next() {
            return f;
        }
        assert!(Instant::now() < deadline, "no .{ext} file appeared in {}", dir.display());
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn records_20_s_bit_identical_while_a_destination_fails_and_reconnects() {
    let before = std::time::SystemTime::now();
    let tmp = TempDir::new("record-relay");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 20, "640x360");
    let rec_dir = tmp.join("rec");
    let good = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let dead_port = free_port(); // nothing listens there: that destination keeps retrying
    let mut extra = to_args(&[
        format!("rtmp://127.0.0.1:{}/app/{{key}}", good.port),
        format!("rtmp://127.0.0.1:{dead_port}/app/{{key}}"),
    ]);
    extra.extend(["--record".to_string(), rec_dir.display().to_string()]);
    let (relay, _dump) = start_relay(tmp.path(), "live/show", &extra);
    publish_to_end(&clip, &relay.url("live/show"));
    assert!(relay.wait_for_log("recording file closed", 1, Duration::from_secs(20)), "the recording was not closed");
    let files = files_with_ext(&rec_dir, "mp4");
    assert_eq!(files.len(), 1, "{files:?}");
    let rec = &files[0];
    assert!(rec.file_name().unwrap().to_str().unwrap().starts_with("show-"), "{rec:?}");
    // Every packet as published, bit for bit, video and audio.
    assert_same_packets(rec, &clip);
    let dur: f64 = probe_value(rec, "v:0", "stream=duration").parse().unwrap();
    let src: f64 = probe_value(&clip, "v:0", "stream=duration").parse().unwrap();
    assert!((dur - src).abs() <= 1.0 / 30.0 + 1e-6, "{dur} s recorded for {src} s published");
    // The wall time of the first packet is in the file (a webinar capture pairs with it).
    let start = probe_value(rec, "v:0", "format_tags=multistreamer_start");
    let start_ms = multistreamer_core::clock::parse_rfc3339_millis(&start).unwrap_or(0);
    let before_ms = before.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(start_ms >= before_ms && start_ms < before_ms + 60_000, "start {start:?}");
    // The failing destination was retrying the whole time, and the good one got everything.
    assert!(relay.log_text().contains("retrying") || relay.status_text().contains("retrying"));
    assert_same_packets(&only_recording(&good, "show"), &clip);
}

#[test]
fn a_recorder_killed_mid_stream_leaves_a_playable_file() {
    let tmp = TempDir::new("record-kill");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 16, "640x360");
    let out = tmp.join("rec");
    let (mut recorder, port) = start_recorder(tmp.path(), &out, &[]);
    let mut ff = publish(&clip, &format!("rtmp://127.0.0.1:{port}/live/cam"));
    let file = wait_for_file(&out, "mp4", Duration::from_secs(10));
    thread::sleep(Duration::from_millis(10_500));
    recorder.kill().unwrap(); // SIGKILL: no trailer, no cleanup
    let _ = recorder.wait();
    let _ = ff.kill();
    let _ = ff.wait();
    let got = packet_hashes(&file, "v");
    let all = packet_hashes(&clip, "v");
    assert!(got.len() >= 270, "only {} frames (9 s = 270) survived the kill", got.len());
    assert_eq!(&all[..got.len()], &got[..], "the surviving packets are the stream's first ones, intact");
    // ffmpeg decodes what is there.
    let decoded = decode_video(&file).0;
    assert!(decoded.len() >= 270, "{} frames decode", decoded.len());
    let status = Command::new("ffprobe").args(["-v", "error"]).arg(&file).stdout(Stdio::null()).status().unwrap();
    assert!(status.success(), "ffprobe cannot open the file");
}

#[test]
fn raw_recording_holds_the_decoded_frames_uncompressed() {
    let tmp = TempDir::new("record-raw");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 4, "320x240");
    let out = tmp.join("raw");
    let (mut recorder, port) = start_recorder(tmp.path(), &out, &["--raw"]);
    publish_to_end(&clip, &format!("rtmp://127.0.0.1:{port}/live/raw1"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = tmp.join("record.log");
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("recording file closed") {
        assert!(Instant::now() < deadline, "{}", std::fs::read_to_string(&log).unwrap_or_default());
        thread::sleep(Duration::from_millis(100));
    }
    let _ = recorder.kill();
    let _ = recorder.wait();
    let files = files_with_ext(&out, "nut");
    assert_eq!(files.len(), 1, "{files:?}");
    let rec = &files[0];
    assert_eq!(probe_value(rec, "v:0", "stream=codec_name"), "rawvideo");
    assert_eq!(probe_value(rec, "v:0", "stream=pix_fmt"), "yuv420p");
    assert_eq!(probe_value(rec, "a:0", "stream=codec_name"), "pcm_s16le");
    // Decoding the recording gives exactly the frames decoding the source gives.
    let source = decode_video(&clip).0;
    let recorded = decode_video(rec).0;
    assert_eq!(source.len(), 120);
    assert_eq!(recorded, source, "raw frames differ from the decoded source");
    // Uncompressed: width × height × 1.5 bytes per frame.
    let sizes = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=size", "-of", "csv=p=0"])
        .arg(rec)
        .output()
        .unwrap();
    let sizes: Vec<u64> =
        String::from_utf8_lossy(&sizes.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(sizes.len(), 120);
    assert!(sizes.iter().all(|&s| s == 320 * 240 * 3 / 2), "{:?}", &sizes[..3]);
    let file_size = std::fs::metadata(rec).unwrap().len();
    assert!(file_size >= 120 * 320 * 240 * 3 / 2, "{file_size} bytes");
}

#[test]
fn a_rendition_of_the_ladder_can_be_recorded() {
    let tmp = TempDir::new("record-rendition");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 4, "640x360");
    let rec_dir = tmp.join("rec");
    let extra: Vec<String> = ["--ladder", "240p", "--preset", "superfast", "--record-rendition", "240p", "--record"]
        .iter()
        .map(|s| s.to_string())
        .chain([rec_dir.display().to_string()])
        .collect();
    let (relay, _dump) = start_relay(tmp.path(), "live/lad", &extra);
    publish_to_end(&clip, &relay.url("live/lad"));
    assert!(relay.wait_for_log("recording file closed", 1, Duration::from_secs(20)), "the recording was not closed");
    let files = files_with_ext(&rec_dir, "mp4");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].file_name().unwrap().to_str().unwrap().starts_with("lad@240p-"), "{files:?}");
    assert_eq!(probe_value(&files[0], "v:0", "stream=width"), "426");
    assert!(decode_video(&files[0]).0.len() >= 100, "most of the 120 frames");
}

#[test]
fn segments_cut_on_keyframes_hold_every_packet_once() {
    let tmp = TempDir::new("record-segments");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 7, "320x240");
    let out = tmp.join("rec");
    let (mut recorder, port) = start_recorder(tmp.path(), &out, &["--segment", "2", "--template", "{stream}-{n}"]);
    publish_to_end(&clip, &format!("rtmp://127.0.0.1:{port}/live/seg"));
    let log = tmp.join("record.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&log).unwrap_or_default().matches("recording file closed").count() < 4 {
        assert!(Instant::now() < deadline, "{}", std::fs::read_to_string(&log).unwrap_or_default());
        thread::sleep(Duration::from_millis(100));
    }
    let _ = recorder.kill();
    let _ = recorder.wait();
    let files = files_with_ext(&out, "mp4");
    let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().to_string()).collect();
    assert_eq!(names, ["seg-1.mp4", "seg-2.mp4", "seg-3.mp4", "seg-4.mp4"], "2 s segments of a 7 s stream");
    let mut joined = Vec::new();
    for f in &files {
        assert_eq!(video_keyframes(f).first(), Some(&true), "{f:?} starts on a keyframe");
        joined.extend(packet_hashes(f, "v"));
    }
    assert_eq!(joined, packet_hashes(&clip, "v"), "the segments together are the stream, nothing lost or doubled");
}
