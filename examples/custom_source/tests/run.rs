//! The example against real peers: a 3 s clip looped twice, transcoded to 240p, received by
//! nginx-rtmp; ffprobe checks the result.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use multistreamer_test_support::*;

#[test]
fn a_looped_clip_arrives_at_240p_with_rising_timestamps() {
    let tmp = TempDir::new("example-custom-source");
    let clip = tmp.join("clip.mp4");
    make_clip(&clip, 3, "640x360");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let url = format!("rtmp://127.0.0.1:{}/app/channel", nginx.port);
    let mut child = Command::new(env!("CARGO_BIN_EXE_custom_source"))
        .arg(&clip)
        .args(["2", &url])
        .env("MULTISTREAMER_LOG", "warn")
        .spawn()
        .unwrap();
    let status = wait_child(&mut child, Duration::from_secs(60)).expect("the example ends after its loops");
    assert!(status.success(), "{status}");
    let rec = only_recording(&nginx, "channel");
    let streams = probe_streams(&rec);
    assert!(streams.iter().any(|s| s.contains("width=426") && s.contains("height=240")), "{streams:?}");
    assert!(streams.iter().any(|s| s.contains("codec_name=aac")), "{streams:?}");
    let (frames, errors) = decode_video(&rec);
    assert!(errors.is_empty(), "{errors}");
    assert!(frames.len() >= 160, "{} of the 180 frames of two loops", frames.len());
    let dts: Vec<f64> =
        probe_value(&rec, "v", "packet=dts_time").lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert!(dts.windows(2).all(|w| w[0] < w[1]), "timestamps rise across the loop");
    assert!(dts.last().unwrap() - dts[0] > 5.0, "two 3 s loops span about 6 s: {:?}", (dts[0], dts.last()));
}
