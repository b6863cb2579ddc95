//! GStreamer's rtspclientsink as a second, independent RTSP publisher. In a test binary of
//! its own: GStreamer live pipelines are sensitive to the machine being loaded by the other
//! publishers' tests running at the same time.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::process::{Command, Stdio};
use std::time::Duration;

use multistreamer_test_support::*;

#[test]
fn gstreamer_rtspclientsink_pushes_as_a_second_client() {
    if Command::new("gst-inspect-1.0")
        .arg("rtspclientsink")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_or(true, |s| !s.success())
    {
        panic!("GStreamer's rtspclientsink is missing (make deps-test installs gstreamer1.0-rtsp)");
    }
    let tmp = TempDir::new("rtsp-gst");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let (relay, _dump, port) =
        start_rtsp_relay(tmp.path(), &to_args(&[format!("rtmp://127.0.0.1:{}/app/{{key}}", nginx.port)]));
    let pipeline = format!(
        "videotestsrc num-buffers=120 is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! x264enc tune=zerolatency key-int-max=30 ! h264parse ! rtspclientsink name=s location=rtsp://127.0.0.1:{port}/live/gst protocols=tcp \
         audiotestsrc num-buffers=180 is-live=true ! audio/x-raw,rate=48000,channels=2 ! avenc_aac ! aacparse ! s."
    );
    let gst_log = tmp.join("gst.log");
    let mut gst = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&gst_log).unwrap())
        .spawn()
        .unwrap();
    // rtspclientsink sometimes stays connected after its sources' EOS (a GStreamer race:
    // it sits in its receive loop instead of tearing down); by then it has sent everything,
    // so closing it ends the session like a TEARDOWN would.
    if let Some(st) = wait_child(&mut gst, Duration::from_secs(20)) {
        let log = std::fs::read_to_string(&gst_log).unwrap_or_default();
        // Another GStreamer race at the end (about 1 run in 8 here): the sink shuts its side
        // of the connection after EOS, the server closes, and the sink's TEARDOWN then fails
        // with "Received end-of-file". Everything was sent by then (checked below); any other
        // error fails the test.
        let teardown_race = log.contains("Could not send message. (Received end-of-file)");
        assert!(st.success() || teardown_race, "gst-launch failed ({st}):\n{log}");
    }
    relay.wait_destinations_closed(1);
    let rec = only_recording(&nginx, "gst");
    let streams = probe_streams(&rec);
    assert!(streams.iter().any(|s| s.contains("codec_name=h264") && s.contains("width=320")), "{streams:?}");
    assert!(streams.iter().any(|s| s.contains("codec_name=aac")), "{streams:?}");
    let frames = packet_hashes(&rec, "v").len();
    assert!(frames >= 100, "{frames} of 120 frames");
}
