//! The transcoding ladder against real peers: ffmpeg makes and publishes the input,
//! nginx-rtmp receives renditions, ffprobe/ffmpeg check sizes, profiles, frame counts,
//! keyframe alignment and that the output decodes.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use multistreamer_test_support::*;

fn multistreamer(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_multistreamer"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("multistreamer binary")
}

/// One value of the first video stream's `stream=…` entries.
fn video_field(file: &Path, field: &str) -> String {
    probe_value(file, "v:0", &format!("stream={field}"))
}

/// Decodes the whole file: (decoded video frames, ffmpeg's error output).
fn decode(file: &Path) -> (usize, String) {
    let (md5s, errors) = decode_video(file);
    (md5s.len(), errors)
}

/// (pts in seconds, keyframe) of every video packet.
fn video_packets(file: &Path) -> Vec<(f64, bool)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,dts_time,flags"])
        .args(["-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            Some((cols.first()?.parse().ok()?, cols.get(2)?.starts_with('K')))
        })
        .collect()
}

/// DTS (seconds) of every video packet.
fn video_dts(file: &Path) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=dts_time", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

#[test]
fn file_ladder_gives_three_renditions_with_aligned_keyframes() {
    let tmp = TempDir::new("ladder-file");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 5, "1920x1080");
    let out_dir = tmp.join("out");
    let out = multistreamer(&[
        "transcode",
        "--input",
        clip.to_str().unwrap(),
        "--ladder",
        "1080p,720p,480p",
        "--out-dir",
        out_dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "transcode failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let input_frames = packet_hashes(&clip, "v").len();
    assert_eq!(input_frames, 150);
    let input_duration: f64 = video_field(&clip, "duration").parse().unwrap();
    let mut key_times: Vec<Vec<f64>> = Vec::new();
    for (name, w, h) in [("1080p", "1920", "1080"), ("720p", "1280", "720"), ("480p", "854", "480")] {
        let file = out_dir.join(format!("{name}.mp4"));
        assert_eq!(video_field(&file, "codec_name"), "h264", "{name}");
        assert_eq!(video_field(&file, "profile"), "High", "{name}");
        assert_eq!(video_field(&file, "pix_fmt"), "yuv420p", "{name}");
        assert_eq!((video_field(&file, "width"), video_field(&file, "height")), (w.into(), h.into()), "{name}");
        assert_eq!(video_field(&file, "avg_frame_rate"), "30/1", "{name}");
        let duration: f64 = video_field(&file, "duration").parse().unwrap();
        assert!((duration - input_duration).abs() <= 1.0 / 30.0 + 1e-6, "{name}: {duration} s vs {input_duration} s");
        let (frames, errors) = decode(&file);
        assert_eq!(frames, input_frames, "{name}: every frame encoded");
        assert!(errors.is_empty(), "{name} decodes with errors: {errors}");
        let keys: Vec<f64> = video_packets(&file).into_iter().filter(|(_, k)| *k).map(|(t, _)| t).collect();
        key_times.push(keys);
        // AAC source audio is passed through untouched.
        assert_eq!(packet_hashes(&file, "a"), packet_hashes(&clip, "a"), "{name}: audio packets differ");
        assert!(stdout.contains(&format!("{name}: {w}x{h}")), "{stdout}");
    }
    // A keyframe every 2 s on the same timestamps in every rung.
    assert_eq!(key_times[0].len(), 3, "{key_times:?}");
    assert!((key_times[0][1] - key_times[0][0] - 2.0).abs() < 0.04, "{key_times:?}");
    assert_eq!(key_times[0], key_times[1]);
    assert_eq!(key_times[0], key_times[2]);
}

/// SSIM (all planes) of `file`'s video against `reference` scaled to `w`×`h`.
fn ssim_against(file: &Path, reference: &Path, w: u32, h: u32) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(file)
        .arg("-i")
        .arg(reference)
        .args(["-lavfi", &format!("[1:v]scale={w}:{h}:flags=lanczos[r];[0:v][r]ssim"), "-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let log = String::from_utf8_lossy(&out.stderr);
    log.lines()
        .filter_map(|l| l.split_once(" All:").map(|(_, r)| r))
        .next_back()
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no SSIM in {log}"))
}

/// `--cascade-scaling`: the 480p rung is scaled from the 720p rung's picture. The ladder is
/// listed smallest first, so the feeder comes after the rung it feeds (the end of the
/// stream must still drain both). Every frame is encoded, keyframes stay aligned and the
/// picture matches the source.
#[test]
fn cascade_scaling_feeds_a_smaller_rung_from_a_larger_one() {
    let tmp = TempDir::new("ladder-cascade");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 5, "1920x1080");
    let out_dir = tmp.join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_multistreamer"))
        .args(["transcode", "--input", clip.to_str().unwrap(), "--ladder", "480p,720p", "--cascade-scaling"])
        .args(["--out-dir", out_dir.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .env("MULTISTREAMER_LOG", "info")
        .output()
        .expect("multistreamer binary");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "transcode failed: {log}");
    assert!(
        log.lines().any(|l| l.contains("scaled from a larger rung") && l.contains("480p") && l.contains("720p")),
        "the 480p rung is fed by the 720p rung: {log}"
    );
    let input_frames = packet_hashes(&clip, "v").len();
    let mut key_times = Vec::new();
    for (name, w, h) in [("480p", 854, 480), ("720p", 1280, 720)] {
        let file = out_dir.join(format!("{name}.mp4"));
        assert_eq!((video_field(&file, "width"), video_field(&file, "height")), (w.to_string(), h.to_string()));
        let (frames, errors) = decode(&file);
        assert_eq!(frames, input_frames, "{name}: every frame encoded");
        assert!(errors.is_empty(), "{name} decodes with errors: {errors}");
        let ssim = ssim_against(&file, &clip, w, h);
        assert!(ssim > 0.95, "{name}: SSIM {ssim} against the source");
        key_times.push(video_packets(&file).into_iter().filter(|(_, k)| *k).map(|(t, _)| t).collect::<Vec<f64>>());
    }
    assert_eq!(key_times[0].len(), 3, "{key_times:?}");
    assert_eq!(key_times[0], key_times[1], "keyframes on the same frames of both rungs");
}

#[test]
fn rungs_above_the_source_are_skipped_unless_upscaling_is_asked() {
    let tmp = TempDir::new("ladder-skip");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 2, "1280x720");
    let skip_dir = tmp.join("skip");
    let out = multistreamer(&[
        "transcode",
        "--input",
        clip.to_str().unwrap(),
        "--ladder",
        "1080p,360p",
        "--preset",
        "ultrafast",
        "--out-dir",
        skip_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1080p: skipped"));
    assert!(!skip_dir.join("1080p.mp4").exists());
    assert_eq!(video_field(&skip_dir.join("360p.mp4"), "width"), "640");

    let up_dir = tmp.join("up");
    let out = multistreamer(&[
        "transcode",
        "--input",
        clip.to_str().unwrap(),
        "--ladder",
        "1080p",
        "--upscale",
        "--preset",
        "ultrafast",
        "--out-dir",
        up_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = up_dir.join("1080p.mp4");
    assert_eq!((video_field(&file, "width"), video_field(&file, "height")), ("1920".into(), "1080".into()));
    assert_eq!(decode(&file).0, 60);

    // Bad ladders are refused before any work, naming the problem.
    let out = multistreamer(&["transcode", "--input", "x.mp4", "--ladder", "720", "--out-dir", "/tmp/never"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rendition \"720\""));
}

#[test]
fn relay_sends_a_rendition_to_one_destination_and_the_source_to_another() {
    let tmp = TempDir::new("ladder-relay");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 6, "1280x720");
    let a = Nginx::start(&tmp.join("nginx-a"), free_port(), "app");
    let b = Nginx::start(&tmp.join("nginx-b"), free_port(), "src");
    // superfast: B-frames and High profile, as the default preset has, at a fraction of the cost.
    let mut extra = vec!["--ladder".to_string(), "360p".into(), "--preset".into(), "superfast".into()];
    extra.extend(to_args(&[
        format!("360p=rtmp://127.0.0.1:{}/app/{{key}}", a.port),
        format!("rtmp://127.0.0.1:{}/src/{{key}}", b.port),
    ]));
    let (relay, _dump) = start_relay(tmp.path(), "live/k1", &extra);
    publish_to_end(&clip, &relay.url("live/k1"));
    relay.wait_destinations_closed(2);
    // The source, untouched.
    assert_same_packets(&only_recording(&b, "k1"), &clip);
    // The rendition: 640x360 H.264 with the source's AAC, decodable, monotonic.
    let rec = only_recording(&a, "k1");
    assert_eq!((video_field(&rec, "width"), video_field(&rec, "height")), ("640".into(), "360".into()));
    assert_eq!(video_field(&rec, "profile"), "High");
    let (frames, errors) = decode(&rec);
    assert!(errors.is_empty(), "the rendition decodes with errors: {errors}");
    assert!(frames >= 90, "only {frames} of 180 frames arrived");
    let dts = video_dts(&rec);
    assert!(dts.windows(2).all(|w| w[1] > w[0]), "video DTS not increasing");
    let audio = packet_hashes(&rec, "a");
    assert!(find_run(&packet_hashes(&clip, "a"), &audio[..audio.len().min(100)]).is_some(), "audio not passed through");
    assert!(relay.status_text().contains("rendition 360p 640x360"), "{}", relay.status_text());
}

#[test]
fn publisher_changing_resolution_keeps_the_rendition_going_with_monotonic_timestamps() {
    let tmp = TempDir::new("ladder-resize");
    let first = tmp.join("a.mp4");
    let second = tmp.join("b.mp4");
    make_clip(&first, 3, "640x360");
    make_clip(&second, 3, "426x240");
    let a = Nginx::start(&tmp.join("nginx-a"), free_port(), "app");
    let mut extra = vec!["--ladder".to_string(), "240p".into(), "--preset".into(), "ultrafast".into()];
    extra.extend(["--grace".to_string(), "5".into()]);
    extra.extend(to_args(&[format!("240p=rtmp://127.0.0.1:{}/app/{{key}}", a.port)]));
    let (relay, _dump) = start_relay(tmp.path(), "live/k2", &extra);
    // The publisher reconnects with another resolution within the grace period: a new
    // sequence header on the same stream.
    publish_to_end(&first, &relay.url("live/k2"));
    publish_to_end(&second, &relay.url("live/k2"));
    assert!(relay.wait_for_log("decoder re-created", 1, Duration::from_secs(10)), "no resolution change seen");
    relay.wait_destinations_closed(1);
    let rec = only_recording(&a, "k2");
    assert_eq!((video_field(&rec, "width"), video_field(&rec, "height")), ("426".into(), "240".into()));
    let dts = video_dts(&rec);
    assert!(dts.windows(2).all(|w| w[1] > w[0]), "video DTS not increasing across the change");
    let (frames, errors) = decode(&rec);
    assert!(errors.is_empty(), "{errors}");
    assert!(frames >= 120, "only {frames} of 180 frames");
    assert!(dts.last().copied().unwrap_or(0.0) > 5.0, "the second part is missing: {:?}", dts.last());
}

#[test]
fn mp3_source_audio_is_encoded_to_aac_in_the_renditions() {
    let tmp = TempDir::new("ladder-mp3");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 3, "640x360");
    let a = Nginx::start(&tmp.join("nginx-a"), free_port(), "app");
    let mut extra = vec!["--ladder".to_string(), "240p".into(), "--preset".into(), "ultrafast".into()];
    extra.extend(to_args(&[format!("240p=rtmp://127.0.0.1:{}/app/{{key}}", a.port)]));
    let (relay, _dump) = start_relay(tmp.path(), "live/k3", &extra);
    let mut ff = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-re", "-i"])
        .arg(&clip)
        .args(["-c:v", "copy", "-c:a", "libmp3lame", "-ar", "44100", "-f", "flv"])
        .arg(relay.url("live/k3"))
        .spawn()
        .expect("ffmpeg");
    let st = wait_child(&mut ff, Duration::from_secs(60)).expect("publisher finished");
    assert!(st.success());
    relay.wait_destinations_closed(1);
    thread::sleep(Duration::from_millis(200));
    let rec = only_recording(&a, "k3");
    let streams = probe_streams(&rec);
    assert!(streams.iter().any(|s| s.contains("codec_name=aac") && s.contains("sample_rate=44100")), "{streams:?}");
    // The AAC decodes to about the published duration of sound.
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0", "-count_packets", "-show_entries", "stream=nb_read_packets"])
        .args(["-of", "default=nw=1:nk=1"])
        .arg(&rec)
        .output()
        .expect("ffprobe");
    let packets: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    // 3 s at 44.1 kHz in 1024-sample frames ≈ 129 packets
    assert!(packets >= 100, "only {packets} AAC packets");
}

#[test]
fn an_encoder_that_cannot_keep_up_drops_frames_and_the_source_relay_is_untouched() {
    let tmp = TempDir::new("ladder-overload");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 6, "640x360");
    let a = Nginx::start(&tmp.join("nginx-a"), free_port(), "app");
    let b = Nginx::start(&tmp.join("nginx-b"), free_port(), "src");
    // 4K with the slowest preset cannot run in real time on any machine; zerolatency keeps
    // libx264 from buffering, so the test ends with the clip.
    let mut extra: Vec<String> = ["--ladder", "2160p", "--upscale", "--preset", "veryslow", "--tune", "zerolatency"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    extra.extend(to_args(&[
        format!("2160p=rtmp://127.0.0.1:{}/app/{{key}}", a.port),
        format!("rtmp://127.0.0.1:{}/src/{{key}}", b.port),
    ]));
    let (relay, _dump) = start_relay(tmp.path(), "live/k4", &extra);
    publish_to_end(&clip, &relay.url("live/k4"));
    relay.wait_destinations_closed(2);
    // The source still reaches its destination bit for bit.
    assert_same_packets(&only_recording(&b, "k4"), &clip);
    // The rung dropped frames before encoding, said so, and what it sent is clean.
    let status = relay.status_text();
    let dropped: Vec<u64> = status
        .lines()
        .filter(|l| l.contains("rendition 2160p"))
        .filter_map(|l| l.split("frames").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(dropped.iter().any(|&d| d > 0), "no dropped frames reported: {status}");
    let rec = only_recording(&a, "k4");
    assert_eq!(video_field(&rec, "width"), "3840");
    let (frames, errors) = decode(&rec);
    assert!(errors.is_empty(), "{errors}");
    assert!(frames > 0 && frames < 180, "{frames} frames");
    let dts = video_dts(&rec);
    assert!(dts.windows(2).all(|w| w[1] > w[0]), "video DTS not increasing");
}
