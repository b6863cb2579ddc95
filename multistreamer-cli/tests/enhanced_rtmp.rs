//! HEVC and AV1 end to end with real peers: ffmpeg encodes (libx265, SVT-AV1) and
//! publishes over SRT (HEVC in MPEG-TS) or serves an fMP4 HLS playlist (AV1); the relay
//! sends them over Enhanced RTMP to a second relay (an Enhanced RTMP ingest, which records
//! them) and to nginx-rtmp (a legacy server, which must be refused with the reason while
//! the other destinations carry on, and which gets the ladder's H.264 rendition instead:
//! HEVC and AV1 are decoded like H.264).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use multistreamer_test_support::*;

/// A clip with `video` (ffmpeg encoder options) and AAC 48 kHz audio, keyframes every 30 frames.
fn make_clip_with(path: &Path, seconds: u32, video: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string(), "-pix_fmt", "yuv420p"])
        .args(video)
        .args(["-c:a", "aac", "-b:a", "96k", "-ac", "2"])
        .arg(path)
        .env("SVT_LOG", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("ffmpeg must be installed (make deps-test)");
    assert!(status.success(), "ffmpeg failed to generate the test clip");
}

/// `info=0`: x265 otherwise puts its version SEI in the `hvcC` record, which ffmpeg's TS
/// muxer repeats in front of every keyframe; the relay keeps in-band SEI (it belongs to
/// the access unit), so the TS round trip would no longer equal the MP4's samples.
const HEVC: &[&str] = &[
    "-c:v",
    "libx265",
    "-preset",
    "ultrafast",
    "-x265-params",
    "keyint=30:min-keyint=30:info=0:log-level=error",
    "-tag:v",
    "hvc1",
];
const AV1: &[&str] = &["-c:v", "libsvtav1", "-preset", "12", "-g", "30"];

fn subdir(tmp: &TempDir, name: &str) -> PathBuf {
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The far relay, in `TMP/far`: an RTMP ingest that records what it gets. Returns its
/// directory, the process (its log dumped if the test fails) and its RTMP port.
fn start_far_relay(tmp: &TempDir) -> (PathBuf, RelayProcess, DumpOnPanic, u16) {
    let dir = subdir(tmp, "far");
    let args = ["--listen", "rtmp://127.0.0.1:0/live", "--grace", "0", "--record"].map(String::from);
    let mut args = args.to_vec();
    args.push(dir.join("rec").display().to_string());
    let relay = RelayProcess::start(&dir, 0, &args);
    let dump = DumpOnPanic(&relay);
    let port = relay.bound_port("rtmp").expect("the far relay logs its RTMP port");
    (dir, relay, dump, port)
}

fn recordings(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("rec")).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default()
}

/// The far relay recorded the clip's video bit for bit (and its audio), with the codec
/// and size of the source; nginx-rtmp got no video; the near relay said why.
fn assert_enhanced_only(
    far: &RelayProcess,
    far_dir: &Path,
    near: &RelayProcess,
    nginx: &Nginx,
    clip: &Path,
    fourcc: &str,
) {
    assert!(
        far.wait_for_log("recording stopped", 1, Duration::from_secs(30)),
        "the far relay never finished its recording"
    );
    let recs = recordings(far_dir);
    assert_eq!(recs.len(), 1, "{recs:?}");
    let codec = if fourcc == "hvc1" { "hevc" } else { "av1" };
    let streams = probe_streams(&recs[0]);
    assert!(
        streams
            .iter()
            .any(|s| s.contains(&format!("codec_name={codec}")) && s.contains("width=320") && s.contains("height=240")),
        "{streams:?}"
    );
    assert_eq!(packet_hashes(&recs[0], "v"), packet_hashes(clip, "v"), "{codec} access units differ after the relay");
    let audio = packet_hashes(&recs[0], "a");
    let src_audio = packet_hashes(clip, "a");
    assert!(audio.len() + 3 >= src_audio.len(), "{} of {} AAC frames", audio.len(), src_audio.len());
    assert_eq!(find_run(&src_audio, &audio), Some(0), "AAC frames changed or out of order");
    let (frames, errors) = decode_video(&recs[0]);
    assert_eq!(frames.len(), packet_hashes(clip, "v").len(), "every recorded picture decodes: {errors}");

    // the legacy destination: refused with the reason, nothing of the video sent
    let log = near.log_text();
    assert!(
        log.contains(&format!("not sending {fourcc} video: the destination did not announce Enhanced RTMP")),
        "the refusal names its reason"
    );
    for rec in nginx.recordings_of("cam") {
        let streams = probe_streams(&rec);
        assert!(!streams.iter().any(|s| s.contains("codec_type=video")), "nginx-rtmp got video: {streams:?}");
    }
    // the far relay learnt the codec from the Enhanced RTMP sequence start
    assert!(far.log_text().contains(&format!("codec={codec} 320x240")), "the far relay did not configure {codec}");

    // what a legacy server can take instead: the ladder's H.264 rendition of the source
    let rung = only_recording(nginx, "lowcam");
    let streams = probe_streams(&rung);
    assert!(streams.iter().any(|s| s.contains("codec_name=h264") && s.contains("height=240")), "{streams:?}");
    let (frames, errors) = decode_video(&rung);
    assert!(errors.is_empty(), "{errors}");
    let source = packet_hashes(clip, "v").len();
    assert!(frames.len() * 10 >= source * 9, "{} of {source} pictures in the H.264 rendition", frames.len());
}

/// The HLS output of `dir` (a source's directory): the source variant in fMP4 segments
/// holding the clip's video access units bit for bit (read back by ffmpeg), the master
/// playlist naming the codec and the H.264 rendition beside it.
fn assert_hls_fmp4(dir: &Path, clip: &Path, codec: &str) {
    let master = std::fs::read_to_string(dir.join("index.m3u8")).expect("master playlist");
    assert!(master.contains(codec) && master.contains("avc1."), "{master}");
    let media = std::fs::read_to_string(dir.join("source/index.m3u8")).expect("media playlist");
    assert!(
        media.contains("#EXT-X-MAP:URI=\"init-") && media.contains(".m4s") && media.contains("#EXT-X-ENDLIST"),
        "{media}"
    );
    let playlist = dir.join("source/index.m3u8");
    assert_eq!(packet_hashes(&playlist, "v"), packet_hashes(clip, "v"), "HLS fMP4 segments changed the video");
}

/// The near relay's destinations: the far relay (Enhanced RTMP), nginx-rtmp (legacy) with
/// the source, and nginx-rtmp with an H.264 rendition (decoded from HEVC/AV1).
fn destinations(far_port: u16, nginx: &Nginx) -> Vec<String> {
    let mut args = vec!["--ladder".to_string(), "240p".into(), "--preset".into(), "ultrafast".into()];
    args.extend(to_args(&[
        format!("rtmp://127.0.0.1:{far_port}/live/{{key}}"),
        format!("rtmp://127.0.0.1:{}/app/{{key}}", nginx.port),
        format!("240p=rtmp://127.0.0.1:{}/app/low{{key}}", nginx.port),
    ]));
    args
}

#[test]
fn hevc_over_srt_goes_out_over_enhanced_rtmp_bit_identical_and_a_legacy_server_is_refused() {
    let tmp = TempDir::new("ertmp-hevc");
    let clip = tmp.join("in.mp4");
    make_clip_with(&clip, 4, HEVC);
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let (far_dir, far, _far_dump, far_port) = start_far_relay(&tmp);
    let near_dir = subdir(&tmp, "near");
    let mut args: Vec<String> =
        ["--listen", "rtmp://127.0.0.1:0/live", "--listen", "srt://127.0.0.1:0", "--grace", "0"]
            .map(String::from)
            .to_vec();
    args.extend(destinations(far_port, &nginx));
    // and an SRT destination (ffmpeg listening): HEVC in MPEG-TS again
    let received = tmp.join("srt-out.ts");
    let (srt_out, mut listener) = ffmpeg_srt_listener(&received, "");
    args.extend(to_args(&[format!("srt://127.0.0.1:{srt_out}?streamid=out")]));
    // and HLS: HEVC in fMP4 segments
    let hls = tmp.join("hls");
    args.extend(["--hls-out".to_string(), hls.display().to_string(), "--hls-segment".into(), "1".into()]);
    let near = RelayProcess::start(&near_dir, 0, &args);
    let _near_dump = DumpOnPanic(&near);
    let srt = near.bound_port("srt").expect("the relay logs its SRT port");

    let mut publisher = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-re", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-f", "mpegts", &format!("srt://127.0.0.1:{srt}?streamid=live/cam&linger=2")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    assert!(wait_child(&mut publisher, Duration::from_secs(60)).is_some_and(|s| s.success()), "SRT publisher failed");
    near.wait_destinations_closed(3);
    assert!(near.log_text().contains("tracks=hevc 320x240"), "HEVC read from the transport stream");
    assert!(wait_child(&mut listener, Duration::from_secs(15)).is_some(), "the SRT destination never closed");
    assert!(probe_streams(&received).iter().any(|s| s.contains("codec_name=hevc")), "no HEVC at the SRT destination");
    let (pictures, errors) = decode_video(&received);
    assert!(errors.trim().is_empty(), "{errors}");
    assert_eq!(pictures, decode_video(&clip).0, "the SRT destination got other pictures");
    assert_hls_fmp4(&hls.join("cam"), &clip, "hvc1.");
    assert_enhanced_only(&far, &far_dir, &near, &nginx, &clip, "hvc1");
}

#[test]
fn av1_from_an_fmp4_playlist_goes_out_over_enhanced_rtmp_bit_identical() {
    let tmp = TempDir::new("ertmp-av1");
    let clip = tmp.join("in.mp4");
    make_clip_with(&clip, 4, AV1);
    make_hls_vod(&clip, &tmp.join("www/a"), &["-hls_segment_type", "fmp4"]);
    let http = HttpServer::start(&tmp.join("www"));
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let (far_dir, far, _far_dump, far_port) = start_far_relay(&tmp);
    let mut extra = vec!["--input".to_string(), http.url("a/index.m3u8"), "--input-key".into(), "cam".into()];
    extra.extend(destinations(far_port, &nginx));
    let near_dir = subdir(&tmp, "near");
    let hls = tmp.join("hls");
    extra.extend(["--hls-out".to_string(), hls.display().to_string(), "--hls-segment".into(), "1".into()]);
    let (near, _near_dump) = start_relay(&near_dir, "live", &extra);
    near.wait_destinations_closed(2);
    assert_enhanced_only(&far, &far_dir, &near, &nginx, &clip, "av01");
    assert_hls_fmp4(&hls.join("cam"), &clip, "av01.");
}

#[test]
fn an_hevc_camera_pulled_over_rtsp_goes_out_over_enhanced_rtmp() {
    let tmp = TempDir::new("ertmp-rtsp");
    let cam_port = free_port();
    // gst-rtsp-server with x265, as many IP cameras send
    let mut camera = python_peer("rtsp_server.py", cam_port, &[std::ffi::OsStr::new("h265")]);
    let (far_dir, far, _far_dump, far_port) = start_far_relay(&tmp);
    let near_dir = subdir(&tmp, "near");
    let mut extra = vec!["--input".to_string(), format!("rtsp://127.0.0.1:{cam_port}/cam"), "--input-key".into()];
    extra.push("cam".into());
    extra.extend(to_args(&[format!("rtmp://127.0.0.1:{far_port}/live/{{key}}")]));
    let (mut near, _near_dump) = start_relay(&near_dir, "live", &extra);
    assert!(near.wait_for_log("RTSP pull live", 1, Duration::from_secs(30)), "the camera never went live");
    assert!(far.wait_for_log("codec=hevc 320x240", 1, Duration::from_secs(20)), "HEVC did not reach the far relay");
    // until 120 pictures came from the camera (the relay's status line counts them)
    let pulled = || {
        let status = near.status_text();
        let line = status.lines().rev().find(|l| l.contains("] pull rtsp://")).unwrap_or("").to_string();
        line.split("frames ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse::<u64>().ok())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while pulled().unwrap_or(0) < 120 {
        assert!(std::time::Instant::now() < deadline, "the camera's pictures stopped at {:?}", pulled());
        std::thread::sleep(Duration::from_millis(200));
    }
    near.terminate();
    let _ = camera.kill();
    let _ = camera.wait();
    assert!(
        far.wait_for_log("recording stopped", 1, Duration::from_secs(30)),
        "the far relay never finished its recording"
    );
    let recs = recordings(&far_dir);
    assert_eq!(recs.len(), 1, "{recs:?}");
    let streams = probe_streams(&recs[0]);
    assert!(streams.iter().any(|s| s.contains("codec_name=hevc") && s.contains("width=320")), "{streams:?}");
    let (frames, errors) = decode_video(&recs[0]);
    assert!(errors.trim().is_empty(), "{errors}");
    assert!(frames.len() >= 90, "{} of the 120 or more pictures pulled reached the recording", frames.len());
}

#[test]
fn ffmpeg_pushes_hevc_over_rtsp_and_it_goes_on_bit_identical() {
    let tmp = TempDir::new("ertmp-rtsp-push");
    let clip = tmp.join("in.mp4");
    make_clip_with(&clip, 4, HEVC);
    let (far_dir, far, _far_dump, far_port) = start_far_relay(&tmp);
    let near_dir = subdir(&tmp, "near");
    let extra = to_args(&[format!("rtmp://127.0.0.1:{far_port}/live/{{key}}")]);
    let (near, _near_dump, port) = start_rtsp_relay(&near_dir, &extra);
    // ffmpeg's RTP packetizer: parameter sets in sprop-vps/sps/pps, FUs for large units
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-re", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-rtsp_transport", "tcp", "-f", "rtsp"])
        .arg(format!("rtsp://127.0.0.1:{port}/live/cam"))
        .status()
        .unwrap();
    assert!(st.success());
    near.wait_destinations_closed(1);
    assert!(
        far.wait_for_log("recording stopped", 1, Duration::from_secs(30)),
        "the far relay never finished its recording"
    );
    let recs = recordings(&far_dir);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert!(probe_streams(&recs[0]).iter().any(|s| s.contains("codec_name=hevc") && s.contains("width=320")));
    // every access unit as published (RTP's NAL units normalised back to length-prefixed)
    assert_eq!(packet_hashes(&recs[0], "v"), packet_hashes(&clip, "v"), "HEVC changed through RTSP");
    // AAC in order; the last few frames may stay behind at the two hops' teardown
    // (ffmpeg's last RTP packet, the recorder's last fragment)
    let audio = packet_hashes(&recs[0], "a");
    let src_audio = packet_hashes(&clip, "a");
    assert!(audio.len() + 6 >= src_audio.len(), "{} of {} AAC frames", audio.len(), src_audio.len());
    assert_eq!(find_run(&src_audio, &audio), Some(0), "AAC frames changed or out of order");
}

#[test]
fn an_enhanced_rtmp_publisher_is_taken_first_class_and_sent_on_bit_identical() {
    // the publisher is the test support's own (OBS's tag layout), not the relay's push code
    for (name, video) in [("hevc", HEVC), ("av1", AV1)] {
        let tmp = TempDir::new(&format!("ertmp-in-{name}"));
        let clip = tmp.join("in.mp4");
        make_clip_with(&clip, 3, video);
        let track = read_video(&clip);
        let (far_dir, far, _far_dump, far_port) = start_far_relay(&tmp);
        let near_dir = subdir(&tmp, "near");
        let mut extra = to_args(&[format!("rtmp://127.0.0.1:{far_port}/live/{{key}}")]);
        extra.extend(["--record".to_string(), near_dir.join("rec").display().to_string()]);
        let (near, _near_dump) = start_relay(&near_dir, "live", &extra);
        publish_enhanced(near.port, "live", "cam", &track);
        near.wait_destinations_closed(1);
        let codec = if name == "hevc" { "hevc" } else { "av1" };
        assert!(near.log_text().contains(&format!("codec={codec} 320x240")), "the ingest did not parse {codec}");
        // recorded by the relay itself and by the relay it sent the stream to
        assert!(near.wait_for_log("recording stopped", 1, Duration::from_secs(20)));
        assert!(far.wait_for_log("recording stopped", 1, Duration::from_secs(20)));
        for dir in [&near_dir, &far_dir] {
            let recs = recordings(dir);
            assert_eq!(recs.len(), 1, "{recs:?}");
            assert!(probe_streams(&recs[0]).iter().any(|s| s.contains(&format!("codec_name={codec}"))));
            assert_eq!(packet_hashes(&recs[0], "v"), packet_hashes(&clip, "v"), "{codec} changed in {}", dir.display());
        }
    }
}
