//! Timestamps that wrap on the wire, through every output: an RTSP push whose 32-bit RTP
//! timestamps (90 kHz: 13.3 hours) wrap mid-stream, and an HLS pull whose 33-bit MPEG-TS
//! timestamps (26.5 hours) do. Each is relayed to nginx-rtmp, recorded and written as HLS;
//! in all three the decode times rise by one frame at a time across the wrap: no gap, no
//! jump, nothing lost. (RTMP's own 32-bit millisecond wrap: `multistreamer-core`'s
//! `timestamp_wrap` test.)
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use multistreamer_test_support::*;

/// The relay's arguments: one nginx-rtmp destination, a recording and an HLS output.
fn outputs(tmp: &TempDir, nginx: &Nginx) -> Vec<String> {
    let mut args = to_args(&[format!("rtmp://127.0.0.1:{}/app/{{key}}", nginx.port)]);
    for (flag, value) in [
        ("--record", tmp.join("rec").display().to_string()),
        ("--hls-out", tmp.join("hls").display().to_string()),
        ("--hls-segment", "1".into()),
        ("--hls-window", "60".into()),
    ] {
        args.extend([flag.to_string(), value]);
    }
    args
}

/// The HLS output's segments of `key` joined in playlist order into one file.
fn joined_hls(tmp: &TempDir, key: &str) -> PathBuf {
    let dir = tmp.join("hls").join(key).join("source");
    let playlist = fs::read_to_string(dir.join("index.m3u8")).unwrap();
    let mut all = Vec::new();
    for name in playlist.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        all.extend(fs::read(dir.join(name.trim())).unwrap());
    }
    let out = tmp.join(&format!("{key}-hls.ts"));
    fs::write(&out, all).unwrap();
    out
}

/// The only file the relay recorded.
fn only_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// Every video decode time one frame (1/30 s, 33 or 34 ms rounded) after the one before,
/// and the clip's every frame there.
fn assert_one_frame_apart(file: &Path, what: &str, frames: usize) {
    let dts = video_dts_ms(file);
    let steps: Vec<(usize, i64)> =
        dts.windows(2).map(|w| w[1] - w[0]).enumerate().filter(|(_, d)| !(33..=34).contains(d)).collect();
    assert!(steps.is_empty(), "{what}: steps other than one frame (index, ms): {steps:?}");
    assert_eq!(dts.len(), frames, "{what}: video packets");
    let (decoded, errors) = decode_video(file);
    assert_eq!(decoded.len(), frames, "{what}: {errors}");
}

#[test]
fn rtp_timestamps_wrapping_32_bits_stay_continuous_in_relay_recording_and_hls() {
    let tmp = TempDir::new("wrap-rtp");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 10, "320x240");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let (relay, _dump, port) = start_rtsp_relay(tmp.path(), &outputs(&tmp, &nginx));
    // the first timestamp 4 s of video (7.5 s of 48 kHz audio) before the wrap
    let proxy = RtpShift::start(port, u32::MAX - 4 * 90_000 + 1);
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-re", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-rtsp_transport", "tcp", "-f", "rtsp"])
        .arg(format!("rtsp://127.0.0.1:{}/live/wrap", proxy.port))
        .status()
        .unwrap();
    assert!(st.success());
    relay.wait_destinations_closed(1);
    assert!(relay.wait_for_log("HLS output ended", 1, Duration::from_secs(30)), "the HLS output did not end");
    assert!(proxy.wrapped(0) && proxy.wrapped(2), "the RTP timestamps did not wrap on the wire");

    let frames = packet_hashes(&clip, "v").len();
    let sent = only_recording(&nginx, "wrap");
    assert_eq!(packet_hashes(&sent, "v"), packet_hashes(&clip, "v"), "video packets differ");
    assert_one_frame_apart(&sent, "nginx-rtmp", frames);
    assert_one_frame_apart(&only_file(&tmp.join("rec")), "recording", frames);
    assert_one_frame_apart(&joined_hls(&tmp, "wrap"), "HLS output", frames);
    // audio crossed the wrap too (7.5 s in): every AAC frame, in order, but for the last
    // RTP packet, which ffmpeg's muxer keeps (it packs up to 5 frames in one)
    let audio = packet_hashes(&sent, "a");
    let src_audio = packet_hashes(&clip, "a");
    assert!(audio.len() + 5 >= src_audio.len(), "{} of {} AAC frames", audio.len(), src_audio.len());
    assert_eq!(find_run(&src_audio, &audio), Some(0));
}

#[test]
fn mpeg_ts_timestamps_wrapping_33_bits_stay_continuous_in_relay_recording_and_hls() {
    let tmp = TempDir::new("wrap-ts");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 10, "320x240");
    // a VOD playlist whose timestamps start 4 s before 2³³ / 90 kHz (95443.7 s)
    make_hls_vod(&clip, &tmp.join("www/cam"), &["-output_ts_offset", "95439.7"]);
    let segments: Vec<String> = fs::read_to_string(tmp.join("www/cam/index.m3u8"))
        .unwrap()
        .lines()
        .filter(|l| l.ends_with(".ts"))
        .map(String::from)
        .collect();
    let first_pts = |name: &str| -> i64 {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts", "-of", "csv=p=0"])
            .arg(tmp.join("www/cam").join(name))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).min().unwrap()
    };
    let wrap = 1i64 << 33;
    // (ffprobe shows timestamps just below the wrap as negative)
    let first = first_pts(&segments[0]);
    assert!(first > wrap - 5 * 90_000 || (-5 * 90_000..0).contains(&first), "{first}: not near the wrap");
    assert!(first_pts(segments.last().unwrap()) < 10 * 90_000, "the playlist's timestamps did not wrap");
    let http = HttpServer::start(&tmp.join("www"));
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let mut args = vec!["--input".to_string(), http.url("cam/index.m3u8")];
    args.extend(outputs(&tmp, &nginx));
    let (relay, _dump) = start_relay(tmp.path(), "live", &args);
    relay.wait_destinations_closed(1);
    assert!(relay.wait_for_log("HLS output ended", 1, Duration::from_secs(30)), "the HLS output did not end");

    let frames = packet_hashes(&clip, "v").len();
    let sent = only_recording(&nginx, "cam");
    assert_same_packets(&sent, &clip);
    assert_one_frame_apart(&sent, "nginx-rtmp", frames);
    assert_one_frame_apart(&only_file(&tmp.join("rec")), "recording", frames);
    assert_one_frame_apart(&joined_hls(&tmp, "cam"), "HLS output", frames);
}
