//! RTSP push ingest against real publishers (ffmpeg, GStreamer), relayed to nginx-rtmp,
//! and malformed peers.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use multistreamer_test_support::*;

/// (pts seconds) of the first packet of each stream type.
fn first_pts(file: &std::path::Path, stream: &str) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream, "-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().trim_end_matches(',').parse().ok())
        .unwrap()
}

#[test]
fn ffmpeg_pushes_over_rtsp_and_the_stream_is_relayed_bit_identical() {
    let tmp = TempDir::new("rtsp-ffmpeg");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 6, "640x360");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let mut extra = to_args(&[format!("rtmp://127.0.0.1:{}/app/{{key}}", nginx.port)]);
    extra.extend(["--rtsp-credentials".to_string(), "pub:s3cret".into()]);
    let (relay, _dump, port) = start_rtsp_relay(tmp.path(), &extra);
    // without the credentials: refused
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "quiet", "-t", "1", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-rtsp_transport", "tcp", "-f", "rtsp"])
        .arg(format!("rtsp://127.0.0.1:{port}/live/cam1"))
        .status()
        .unwrap();
    assert!(!st.success(), "a push without credentials was accepted");
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-re", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-rtsp_transport", "tcp", "-f", "rtsp"])
        .arg(format!("rtsp://pub:s3cret@127.0.0.1:{port}/live/cam1"))
        .status()
        .unwrap();
    assert!(st.success());
    relay.wait_destinations_closed(1);
    let rec = only_recording(&nginx, "cam1");
    let streams = probe_streams(&rec);
    assert!(streams.iter().any(|s| s.contains("codec_name=h264") && s.contains("width=640")), "{streams:?}");
    assert!(streams.iter().any(|s| s.contains("codec_name=aac") && s.contains("sample_rate=48000")), "{streams:?}");
    // Every video access unit as published (RTP's Annex B → AVCC normalised back).
    assert_eq!(packet_hashes(&rec, "v"), packet_hashes(&clip, "v"));
    // AAC frames come through unchanged, in order (ffmpeg may keep its last RTP packet).
    let audio = packet_hashes(&rec, "a");
    let src_audio = packet_hashes(&clip, "a");
    assert!(audio.len() + 3 >= src_audio.len(), "{} of {} AAC frames", audio.len(), src_audio.len());
    assert_eq!(find_run(&src_audio, &audio), Some(0));
    let offset = (first_pts(&rec, "v") - first_pts(&rec, "a")).abs();
    assert!(offset <= 0.05, "A/V start offset {offset} s");
    assert!(relay.log_text().contains("RTSP publisher recording"));
}

fn rtsp_exchange(port: u16, requests: &[&[u8]]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for r in requests {
        let _ = s.write_all(r);
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn announce(port: u16, key: &str, sdp: &str) -> Vec<u8> {
    format!(
        "ANNOUNCE rtsp://127.0.0.1:{port}/live/{key} RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:streamid=0\r\n";

#[test]
fn malformed_rtsp_peers_are_disconnected_with_a_reason_and_a_good_publisher_carries_on() {
    let tmp = TempDir::new("rtsp-bad");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 8, "320x240");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let (relay, _dump, port) =
        start_rtsp_relay(tmp.path(), &to_args(&[format!("rtmp://127.0.0.1:{}/app/{{key}}", nginx.port)]));
    let mut good = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-re", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-rtsp_transport", "tcp", "-f", "rtsp"])
        .arg(format!("rtsp://127.0.0.1:{port}/live/good"))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));

    // not RTSP at all
    let reply = rtsp_exchange(port, &[b"\x00\x01garbage that is not a request\r\n\r\n"]);
    assert!(reply.contains("400"), "{reply}");
    // an SDP without a clock rate
    let bad_sdp = SDP.replace("H264/90000", "H264");
    let reply = rtsp_exchange(port, &[&announce(port, "k1", &bad_sdp)]);
    assert!(reply.contains("400"), "{reply}");
    // interleaved data on a channel nobody set up, with the largest possible length
    let mut frame = vec![b'$', 9, 0xFF, 0xFF];
    frame.extend(std::iter::repeat_n(0u8, 65535));
    let _ = rtsp_exchange(port, &[&announce(port, "k2", SDP), &frame]);
    // RTP with a payload type that was not announced
    let setup = format!(
        "SETUP rtsp://127.0.0.1:{port}/live/k3/streamid=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n\r\n"
    );
    let record = format!("RECORD rtsp://127.0.0.1:{port}/live/k3 RTSP/1.0\r\nCSeq: 3\r\nSession: x\r\n\r\n");
    let mut rtp = vec![b'$', 0, 0, 14, 0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    rtp.extend_from_slice(&[0x65, 0x88]);
    let reply = rtsp_exchange(port, &[&announce(port, "k3", SDP), setup.as_bytes(), record.as_bytes(), &rtp]);
    assert!(reply.contains("RTSP/1.0 200"), "{reply}");
    // UDP is declined with 461 (clients retry over TCP)
    let udp = format!(
        "SETUP rtsp://127.0.0.1:{port}/live/k4/streamid=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n"
    );
    let reply = rtsp_exchange(port, &[&announce(port, "k4", SDP), udp.as_bytes()]);
    assert!(reply.contains("461"), "{reply}");
    // a key with '@' is refused (reserved for renditions)
    let reply = rtsp_exchange(port, &[&announce(port, "k5@720p", SDP)]);
    assert!(reply.contains("403"), "{reply}");

    assert!(wait_child(&mut good, Duration::from_secs(30)).is_some_and(|s| s.success()));
    relay.wait_destinations_closed(1);
    let log = relay.log_text();
    for reason in [
        "malformed RTSP request",
        "ANNOUNCE: SDP",
        "interleaved data on channel 9",
        "RTP payload type 111",
        "stream keys may not contain '@'",
    ] {
        assert!(log.contains(reason), "no {reason:?} in the log");
    }
    assert_eq!(
        packet_hashes(&only_recording(&nginx, "good"), "v"),
        packet_hashes(&clip, "v"),
        "the good publisher was untouched"
    );
}

/// gst-rtsp-server (Python bindings from Debian) serving a live stream at /cam.
struct RtspServer(std::process::Child);

impl RtspServer {
    fn start(port: u16) -> RtspServer {
        RtspServer(python_peer("rtsp_server.py", port, &[]))
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_pulled_camera_is_relayed_and_the_pull_reconnects_when_the_camera_restarts() {
    let tmp = TempDir::new("rtsp-pull");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let cam_port = free_port();
    let server = RtspServer::start(cam_port);
    let mut extra = vec![
        "--input".to_string(),
        format!("rtsp://viewer:secret@127.0.0.1:{cam_port}/cam"),
        "--grace".into(),
        "10".into(),
    ];
    extra.extend(to_args(&[format!("rtmp://127.0.0.1:{}/app/{{key}}", nginx.port)]));
    let (relay, _dump) = start_relay(tmp.path(), "live", &extra);
    assert!(relay.wait_for_log("RTSP pull live", 1, Duration::from_secs(20)), "never went live");
    std::thread::sleep(Duration::from_secs(3));
    // the camera goes away and comes back
    drop(server);
    assert!(relay.wait_for_log("RTSP pull lost; reconnecting", 1, Duration::from_secs(30)), "the drop was not noticed");
    let _server = RtspServer::start(cam_port);
    assert!(relay.wait_for_log("RTSP pull live", 2, Duration::from_secs(30)), "the pull did not reconnect");
    std::thread::sleep(Duration::from_secs(3));
    // the destination stayed on one broadcast through the camera's restart
    let recs = nginx.recordings_of("cam");
    assert_eq!(recs.len(), 1, "{:?}", nginx.recordings());
    let status = relay.status_text();
    assert!(status.contains("pull rtsp://127.0.0.1"), "{status}");
    assert!(!status.contains("secret") && !relay.log_text().contains("secret"), "credentials are never shown");
    let frames = packet_hashes(&recs[0], "v").len();
    assert!(frames >= 120, "{frames} frames over two camera sessions");
    assert!(probe_streams(&recs[0]).iter().any(|s| s.contains("codec_name=aac")));
}
