//! HLS in and out against real peers: ffmpeg's HLS muxer (TS, fMP4, AES-128) served by a
//! local HTTP server and pulled into nginx-rtmp; our own HLS output read back by ffmpeg;
//! misbehaving servers.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use multistreamer_test_support::*;

/// Packets of one stream type (`v` or `a`) ffprobe reads from a file.
fn count_packets(file: &Path, stream: &str) -> usize {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream, "-show_entries", "packet=pts", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count()
}

/// Video DTS (in the file's timebase) of every packet.
fn video_dts(file: &Path) -> Vec<i64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=dts", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().trim_end_matches(',').parse().ok()).collect()
}

fn assert_rising(dts: &[i64]) {
    for w in dts.windows(2) {
        assert!(w[1] > w[0], "DTS not rising: {} then {}", w[0], w[1]);
    }
}

/// The `.ts` files of a directory, by the number in their name.
fn ts_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ts"))
        .collect();
    v.sort_by_key(|p| {
        let stem = p.file_stem().unwrap().to_string_lossy().to_string();
        stem.trim_start_matches(|c: char| !c.is_ascii_digit()).parse::<u64>().unwrap_or(0)
    });
    v
}

fn pull_args(input: &str, nginx: &Nginx) -> Vec<String> {
    vec![
        "--input".into(),
        input.into(),
        "--input-key".into(),
        "cam".into(),
        "--to".into(),
        format!("rtmp://127.0.0.1:{}/app/{{key}}", nginx.port),
    ]
}

#[test]
fn live_ts_playlist_from_ffmpeg_is_relayed_with_every_frame() {
    let tmp = TempDir::new("hls-live");
    let live = tmp.join("www/live");
    fs::create_dir_all(&live).unwrap();
    let http = HttpServer::start(&tmp.join("www"));
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    // a live encoder: 8 s in real time, 1 s segments, a sliding window of 4
    let mut encoder = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "8"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-bf", "2", "-c:a", "aac", "-ac", "2"])
        .args(["-f", "hls", "-hls_time", "1", "-hls_list_size", "4"])
        .arg(live.join("index.m3u8"))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !live.join("index.m3u8").exists() {
        assert!(Instant::now() < deadline, "ffmpeg wrote no playlist");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut relay, _dump) = start_relay(tmp.path(), "live", &pull_args(&http.url("live/index.m3u8"), &nginx));
    assert!(wait_child(&mut encoder, Duration::from_secs(30)).is_some_and(|s| s.success()), "encoder failed");
    relay.wait_destinations_closed(1);
    assert!(relay.log_text().contains("HLS input finished"), "the pull did not end with the playlist");
    // like ffmpeg, the relay exits once its only input ended
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.is_running() {
        assert!(Instant::now() < deadline, "the relay kept running after its input ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rec = only_recording(&nginx, "cam");
    let streams = probe_streams(&rec);
    assert!(streams.iter().any(|s| s.contains("codec_name=h264") && s.contains("width=320")), "{streams:?}");
    assert!(streams.iter().any(|s| s.contains("codec_name=aac") && s.contains("sample_rate=48000")), "{streams:?}");
    let segments = ts_files(&live);
    assert!(segments.len() >= 7, "{segments:?}");
    let published_video: usize = segments.iter().map(|s| count_packets(s, "v")).sum();
    let published_audio: usize = segments.iter().map(|s| count_packets(s, "a")).sum();
    assert_eq!(count_packets(&rec, "v"), published_video, "every published video frame arrives");
    assert_eq!(count_packets(&rec, "a"), published_audio, "every published audio frame arrives");
    assert_rising(&video_dts(&rec));
    let (frames, errors) = decode_video(&rec);
    assert_eq!(frames.len(), published_video, "every frame decodes: {errors}");
}

#[test]
fn discontinuity_sequence_jump_and_pts_wrap_keep_timestamps_monotonic() {
    let tmp = TempDir::new("hls-jumps");
    let www = tmp.join("www");
    let dir = www.join("j");
    fs::create_dir_all(&dir).unwrap();
    let clip = tmp.join("clip.mp4");
    make_clip(&clip, 8, "320x240");
    // s0..s7: one continuous encode; d0..d2: another, whose timestamps start just before
    // the 33-bit PTS wrap (95443.7 s) and cross it.
    make_hls_vod(&clip, &tmp.join("a"), &["-hls_segment_filename", &format!("{}/s%d.ts", dir.display())]);
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=880:sample_rate=48000", "-t", "3"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-c:a", "aac", "-ac", "2"])
        .args(["-output_ts_offset", "95442.5", "-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod"])
        .args(["-hls_segment_filename", &format!("{}/d%d.ts", dir.display())])
        .arg(tmp.join("d.m3u8"))
        .status()
        .unwrap();
    assert!(st.success());
    let write = |text: String| {
        fs::write(dir.join("tmp.m3u8"), text).unwrap();
        fs::rename(dir.join("tmp.m3u8"), dir.join("index.m3u8")).unwrap();
    };
    let entries = |names: &[&str]| names.iter().map(|n| format!("#EXTINF:1.0,\n{n}.ts\n")).collect::<String>();
    let head = |seq: u32| format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:{seq}\n");
    write(format!("{}{}", head(0), entries(&["s0", "s1", "s2"])));
    let http = HttpServer::start(&www);
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let (relay, _dump) = start_relay(tmp.path(), "live", &pull_args(&http.url("j/index.m3u8"), &nginx));
    assert!(relay.wait_for_log("HLS pull live", 1, Duration::from_secs(20)));
    // s3 and s4 leave the window before the relay could fetch them
    write(format!("{}{}", head(5), entries(&["s5", "s6", "s7"])));
    assert!(relay.wait_for_log("segments left the playlist", 1, Duration::from_secs(20)), "no sequence jump seen");
    write(format!(
        "{}{}#EXT-X-DISCONTINUITY\n{}#EXT-X-ENDLIST\n",
        head(6),
        entries(&["s6", "s7"]),
        entries(&["d0", "d1", "d2"])
    ));
    relay.wait_destinations_closed(1);
    let rec = only_recording(&nginx, "cam");
    let fetched = ["s0", "s1", "s2", "s5", "s6", "s7", "d0", "d1", "d2"];
    let expected: usize = fetched.iter().map(|n| count_packets(&dir.join(format!("{n}.ts")), "v")).sum();
    assert_eq!(count_packets(&rec, "v"), expected);
    let dts = video_dts(&rec);
    assert_rising(&dts);
    // the jump and the discontinuity are closed up: ~9 s of media, not minutes or a day
    let span_ms = dts.last().unwrap() - dts.first().unwrap();
    assert!(span_ms < 12_000, "timeline spans {span_ms} ms");
    let (frames, errors) = decode_video(&rec);
    assert_eq!(frames.len(), expected, "{errors}");
}

#[test]
fn fmp4_playlist_is_relayed_bit_identical() {
    let tmp = TempDir::new("hls-fmp4");
    let clip = tmp.join("clip.mp4");
    make_clip(&clip, 5, "320x240");
    make_hls_vod(&clip, &tmp.join("www/f"), &["-hls_segment_type", "fmp4"]);
    assert!(fs::read_to_string(tmp.join("www/f/index.m3u8")).unwrap().contains("#EXT-X-MAP"));
    let http = HttpServer::start(&tmp.join("www"));
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let (relay, _dump) = start_relay(tmp.path(), "live", &pull_args(&http.url("f/index.m3u8"), &nginx));
    relay.wait_destinations_closed(1);
    assert_same_packets(&only_recording(&nginx, "cam"), &clip);
}

#[test]
fn byte_range_segments_are_fetched_with_or_without_server_range_support() {
    let tmp = TempDir::new("hls-ranges");
    let clip = tmp.join("clip.mp4");
    make_clip(&clip, 4, "320x240");
    // one file, each segment a byte range of it (`#EXT-X-BYTERANGE`)
    make_hls_vod(&clip, &tmp.join("www/ranged"), &["-hls_flags", "single_file"]);
    let playlist = fs::read_to_string(tmp.join("www/ranged/index.m3u8")).unwrap();
    assert!(playlist.contains("#EXT-X-BYTERANGE"), "{playlist}");
    fs::create_dir_all(tmp.join("www/norange")).unwrap();
    for f in ["index.m3u8", "index.ts"] {
        fs::copy(tmp.join("www/ranged").join(f), tmp.join("www/norange").join(f)).unwrap();
    }
    let http = HttpServer::start(&tmp.join("www"));
    for dir in ["ranged", "norange"] {
        let nginx = Nginx::start(&tmp.join(&format!("nginx-{dir}")), free_port(), "app");
        let relay_dir = tmp.join(&format!("relay-{dir}"));
        fs::create_dir_all(&relay_dir).unwrap();
        let (relay, _dump) =
            start_relay(&relay_dir, "live", &pull_args(&http.url(&format!("{dir}/index.m3u8")), &nginx));
        relay.wait_destinations_closed(1);
        assert_same_packets(&only_recording(&nginx, "cam"), &clip);
    }
}

#[test]
fn aes128_encrypted_playlist_is_decrypted() {
    let tmp = TempDir::new("hls-aes");
    let clip = tmp.join("clip.mp4");
    make_clip(&clip, 5, "320x240");
    let dir = tmp.join("www/e");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("enc.key"), (0u8..16).map(|i| i.wrapping_mul(37) ^ 0x5A).collect::<Vec<u8>>()).unwrap();
    // no IV line: the media sequence number is the IV (RFC 8216 §5.2)
    fs::write(tmp.join("keyinfo"), format!("enc.key\n{}\n", dir.join("enc.key").display())).unwrap();
    make_hls_vod(&clip, &dir, &["-hls_key_info_file", tmp.join("keyinfo").to_str().unwrap()]);
    let playlist = fs::read_to_string(dir.join("index.m3u8")).unwrap();
    assert!(playlist.contains("METHOD=AES-128"), "{playlist}");
    let first_segment = ts_files(&dir).into_iter().next().unwrap();
    assert_ne!(fs::read(&first_segment).unwrap()[0], 0x47, "the segments are encrypted");
    let http = HttpServer::start(&tmp.join("www"));
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let (relay, _dump) = start_relay(tmp.path(), "live", &pull_args(&http.url("e/index.m3u8"), &nginx));
    relay.wait_destinations_closed(1);
    assert_same_packets(&only_recording(&nginx, "cam"), &clip);
}

#[test]
fn hls_output_with_a_ladder_is_read_back_by_ffmpeg() {
    let tmp = TempDir::new("hls-out");
    let clip = tmp.join("clip.mp4");
    make_clip(&clip, 6, "640x360");
    let out = tmp.join("hls");
    let extra: Vec<String> =
        ["--hls-out", out.to_str().unwrap(), "--hls-segment", "1", "--ladder", "240p", "--preset", "ultrafast"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let (relay, _dump) = start_relay(tmp.path(), "live", &extra);
    publish_to_end(&clip, &relay.url("live/show"));
    assert!(relay.wait_for_log("HLS output ended", 2, Duration::from_secs(30)), "outputs did not end");
    let master = fs::read_to_string(out.join("show/index.m3u8")).unwrap();
    assert!(master.contains("source/index.m3u8") && master.contains("240p/index.m3u8"), "{master}");
    assert!(master.contains("RESOLUTION=640x360") && master.contains("RESOLUTION=426x240"), "{master}");
    assert!(master.contains("CODECS=\"avc1.") && master.contains("mp4a.40.2"), "{master}");
    assert!(master.contains("BANDWIDTH="), "{master}");
    let source = out.join("show/source/index.m3u8");
    let playlist = fs::read_to_string(&source).unwrap();
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    // every segment starts on a keyframe and is valid TS
    let segments = ts_files(&out.join("show/source"));
    assert!(segments.len() >= 5, "{segments:?}");
    for s in &segments {
        assert_eq!(video_keyframes(s).first(), Some(&true), "{} starts without a keyframe", s.display());
    }
    // ffmpeg reads the whole playlist without an error, and the pictures are the clip's
    let (frames, errors) = decode_video(&source);
    assert!(errors.trim().is_empty(), "ffmpeg complained: {errors}");
    assert_eq!(frames, decode_video(&clip).0, "decoded frames differ from the clip's");
    assert_eq!(count_packets(&source, "a"), count_packets(&clip, "a"));
    let rung = out.join("show/240p/index.m3u8");
    let (rung_frames, errors) = decode_video(&rung);
    assert!(errors.trim().is_empty(), "ffmpeg complained about the rung: {errors}");
    assert!(rung_frames.len() >= 170, "{} frames in the 240p rung", rung_frames.len());
    // (ffprobe lists an HLS stream under its program too)
    assert_eq!(probe_value(&rung, "v:0", "stream=height").lines().next(), Some("240"));
    // the master playlist itself opens (ffmpeg picks the variants)
    let streams = probe_streams(&out.join("show/index.m3u8"));
    assert!(streams.iter().filter(|s| s.contains("codec_name=h264")).count() >= 2, "{streams:?}");
}

#[test]
fn bad_hls_inputs_are_refused_with_a_reason_and_other_streams_carry_on() {
    let tmp = TempDir::new("hls-bad");
    let www = tmp.join("www");
    for d in ["html", "nots", "missing"] {
        fs::create_dir_all(www.join(d)).unwrap();
    }
    fs::write(www.join("html/index.m3u8"), "<html><body>Service unavailable</body></html>").unwrap();
    fs::write(www.join("nots/index.m3u8"), "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\na.ts\n#EXT-X-ENDLIST\n")
        .unwrap();
    fs::write(www.join("nots/a.ts"), "this is not a transport stream\n".repeat(20)).unwrap();
    fs::write(
        www.join("missing/index.m3u8"),
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\ngone0.ts\n#EXTINF:1.0,\ngone1.ts\n#EXTINF:1.0,\ngone2.ts\n",
    )
    .unwrap();
    let http = HttpServer::start(&www);
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let cases = [
        ("html/index.m3u8", "not an M3U8 playlist"),
        ("nots/index.m3u8", "not MPEG-TS"),
        ("missing/index.m3u8", "HTTP 404"),
        ("redirect-loop/index.m3u8", "too many redirects"),
        ("huge/index.m3u8", "larger than 4096 KiB"),
    ];
    let mut relays = Vec::new();
    for (i, (path, _)) in cases.iter().enumerate() {
        let dir = tmp.join(&format!("relay{i}"));
        fs::create_dir_all(&dir).unwrap();
        relays.push(start_relay(&dir, "live", &pull_args(&http.url(path), &nginx)));
    }
    // meanwhile a real publisher on the relay with the endless playlist is relayed untouched
    let clip = tmp.join("clip.mp4");
    make_clip(&clip, 3, "320x240");
    publish_to_end(&clip, &relays[4].0.url("live/other"));
    for (i, (path, reason)) in cases.iter().enumerate() {
        let relay = &mut relays[i].0;
        assert!(relay.wait_for_log(reason, 1, Duration::from_secs(30)), "{path}: no {reason:?} in the log");
        assert!(relay.wait_for_log("reconnecting", 1, Duration::from_secs(20)), "{path}: no retry");
        assert!(relay.is_running(), "{path}: the relay exited");
        let log = relay.log_text();
        assert!(!log.contains("panicked") && !log.contains("internal error"), "{path}: {log}");
    }
    relays[4].0.wait_destinations_closed(1);
    assert_same_packets(&only_recording(&nginx, "other"), &clip);
}

/// A library user reads a playlist as a plain `Source` (no hub, no server) and writes it to
/// a file: every video and audio packet of the clip comes out bit-identical, in order.
#[test]
fn an_hls_playlist_read_as_a_source_by_library_code_is_bit_identical() {
    use multistreamer_core::hls::{HlsPullOptions, HlsSource};
    use multistreamer_core::media::MediaItem;
    use multistreamer_core::source::{from_reader, next};
    use multistreamer_core::transcode::file::FileWriter;

    let tmp = TempDir::new("hls-source");
    let clip = tmp.join("clip.mp4");
    make_clip(&clip, 4, "320x240");
    make_hls_vod(&clip, &tmp.join("www/f"), &["-hls_segment_type", "fmp4"]);
    let http = HttpServer::start(&tmp.join("www"));
    let out = tmp.join("out.mp4");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (infos, packets) = rt.block_on(async {
        let options = HlsPullOptions { paced: false, ..Default::default() };
        let mut source = from_reader(HlsSource::open(&http.url("f/index.m3u8"), options).unwrap());
        let mut file = FileWriter::create(&out).unwrap();
        let (mut infos, mut packets) = (0, 0);
        while let Some(item) = next(&mut source).await.unwrap() {
            match item {
                MediaItem::Info(info) => {
                    infos += 1;
                    file.write_info(&info).unwrap();
                }
                MediaItem::Packet(p) => {
                    packets += 1;
                    file.write_packet(&p).unwrap();
                }
            }
        }
        file.finish().unwrap();
        (infos, packets)
    });
    assert!(infos >= 1, "the tracks were announced before the packets");
    assert!(packets > 100, "{packets} packets");
    assert_same_packets(&out, &clip);
}
