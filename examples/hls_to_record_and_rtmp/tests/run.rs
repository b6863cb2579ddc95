//! The example against real peers: ffmpeg's HLS muxer writes a VOD, a Python HTTP server
//! serves it, nginx-rtmp receives; both the recording and what nginx got must be the
//! clip's packets, bit for bit.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use multistreamer_test_support::*;

#[test]
fn an_hls_vod_is_recorded_and_relayed_bit_identical() {
    let tmp = TempDir::new("example-hls");
    let clip = tmp.join("clip.mp4");
    make_clip(&clip, 4, "320x240");
    make_hls_vod(&clip, &tmp.join("www/talk"), &[]);
    let http = HttpServer::start(&tmp.join("www"));
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let rec_dir = tmp.join("rec");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hls_to_record_and_rtmp"))
        .arg(http.url("talk/index.m3u8"))
        .arg(&rec_dir)
        .arg(format!("rtmp://127.0.0.1:{}/app/talk", nginx.port))
        .env("MULTISTREAMER_LOG", "warn")
        .spawn()
        .unwrap();
    let status = wait_child(&mut child, Duration::from_secs(60)).expect("the example ends with the VOD");
    assert!(status.success(), "{status}");
    let recorded: Vec<_> = std::fs::read_dir(&rec_dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_same_packets(&recorded[0], &clip);
    assert_same_packets(&only_recording(&nginx, "talk"), &clip);
}
