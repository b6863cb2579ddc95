//! SRT in and out against real peers: ffmpeg (libsrt) publishes MPEG-TS over SRT and
//! listens for our SRT destination; nginx-rtmp is the RTMP destination; a lossy UDP proxy
//! stands between publisher and relay.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use multistreamer_test_support::*;

/// The relay with an RTMP and an SRT ingest on free ports (`--grace 0`); returns the SRT port.
fn start_srt_relay(dir: &Path, extra: &[String]) -> (RelayProcess, DumpOnPanic, u16) {
    let mut args: Vec<String> =
        ["--listen", "rtmp://127.0.0.1:0/live", "--listen", "srt://127.0.0.1:0", "--grace", "0"]
            .map(String::from)
            .to_vec();
    args.extend(extra.iter().cloned());
    let relay = RelayProcess::start(dir, 0, &args);
    let port = relay.bound_port("srt").expect("the relay logs the SRT address it listens on");
    let dump = DumpOnPanic(&relay);
    (relay, dump, port)
}

/// `ffmpeg -re` sending `clip` as MPEG-TS over SRT (caller) to `url`. `linger`: libsrt
/// discards what it has not sent yet when a live-mode socket closes (the last ~100 ms).
fn publish_srt(clip: &Path, url: &str) -> Child {
    let url = format!("{url}&linger=2");
    Command::new("ffmpeg")
        .args(["-loglevel", "error", "-re", "-i"])
        .arg(clip)
        .args(["-c", "copy", "-f", "mpegts", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg")
}

fn srt_url(port: u16, params: &str) -> String {
    format!("srt://127.0.0.1:{port}?{params}")
}

/// Every video access unit as published; AAC frames in order (ffmpeg's TS muxer and the
/// nginx-rtmp recorder may each hold back the very last ones).
fn assert_relayed(rec: &Path, clip: &Path) {
    let streams = probe_streams(rec);
    assert!(streams.iter().any(|s| s.contains("codec_name=h264")), "{streams:?}");
    assert!(streams.iter().any(|s| s.contains("codec_name=aac") && s.contains("sample_rate=48000")), "{streams:?}");
    assert_eq!(packet_hashes(rec, "v"), packet_hashes(clip, "v"), "video access units differ after the TS round trip");
    let audio = packet_hashes(rec, "a");
    let src_audio = packet_hashes(clip, "a");
    let at = find_run(&src_audio, &audio);
    assert!(
        audio.len() + 3 >= src_audio.len(),
        "{} of {} AAC frames (the run starts at {at:?})",
        audio.len(),
        src_audio.len()
    );
    assert_eq!(at, Some(0), "AAC frames changed or out of order");
}

#[test]
fn ffmpeg_publishes_over_srt_and_the_stream_is_relayed_bit_identical() {
    let tmp = TempDir::new("srt-ffmpeg");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 6, "640x360");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let rec_dir = tmp.join("rec");
    let mut extra = to_args(&[format!("rtmp://127.0.0.1:{}/app/{{key}}", nginx.port)]);
    extra.extend(["--record".to_string(), rec_dir.display().to_string()]);
    let (relay, _dump, port) = start_srt_relay(tmp.path(), &extra);
    // the access-control form and the plain `app/key` form, at the same time
    let mut a = publish_srt(&clip, &srt_url(port, "streamid=#!::r=live/cam1,m=publish"));
    let mut b = publish_srt(&clip, &srt_url(port, "streamid=live/cam2"));
    for p in [&mut a, &mut b] {
        assert!(wait_child(p, Duration::from_secs(60)).is_some_and(|s| s.success()), "SRT publisher failed");
    }
    relay.wait_destinations_closed(2);
    for key in ["cam1", "cam2"] {
        assert_relayed(&only_recording(&nginx, key), &clip);
    }
    assert!(relay.log_text().contains("SRT stream readable"));
    // recorded like any other stream: the video as published
    assert!(relay.wait_for_log("recording stopped", 2, Duration::from_secs(20)));
    let recorded: Vec<_> = std::fs::read_dir(&rec_dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    for file in &recorded {
        assert_eq!(packet_hashes(file, "v"), packet_hashes(&clip, "v"), "{}", file.display());
    }
}

#[test]
fn srt_publishers_need_a_known_key_and_the_passphrase() {
    let tmp = TempDir::new("srt-auth");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 3, "320x240");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let mut extra = to_args(&[format!("rtmp://127.0.0.1:{}/app/{{key}}", nginx.port)]);
    extra.extend(["--key", "good", "--srt-passphrase", "correcthorsebattery"].map(String::from));
    let (relay, _dump, port) = start_srt_relay(tmp.path(), &extra);
    let refused = |params: &str| {
        let mut p = publish_srt(&clip, &srt_url(port, params));
        let st = wait_child(&mut p, Duration::from_secs(30));
        assert!(st.is_some_and(|s| !s.success()), "accepted: {params}");
    };
    refused("streamid=live/unknown&passphrase=correcthorsebattery");
    refused("streamid=live/good");
    refused("streamid=live/good&passphrase=wronghorsebattery");
    refused("streamid=#!::r=live/good,m=request&passphrase=correcthorsebattery");
    assert!(only_recordings_none(&nginx), "a refused publisher reached the destination");
    let mut ok = publish_srt(&clip, &srt_url(port, "streamid=live/good&passphrase=correcthorsebattery"));
    assert!(wait_child(&mut ok, Duration::from_secs(60)).is_some_and(|s| s.success()));
    relay.wait_destinations_closed(1);
    assert_relayed(&only_recording(&nginx, "good"), &clip);
    let log = relay.log_text();
    assert!(log.contains("unknown stream key"), "the refusal names its reason");
    assert!(log.contains("requires a passphrase and the caller's is missing or wrong"), "the refusal names its reason");
    assert!(log.contains("playback over SRT is not offered"), "the refusal names its reason");
    assert!(log.contains("encrypted=true"));
    assert!(!log.contains("correcthorse"), "the passphrase is never logged");
}

fn only_recordings_none(nginx: &Nginx) -> bool {
    nginx.recordings().is_empty()
}

#[test]
fn five_percent_packet_loss_within_the_latency_loses_no_frame() {
    let tmp = TempDir::new("srt-loss");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 6, "640x360");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let (relay, _dump, port) =
        start_srt_relay(tmp.path(), &to_args(&[format!("rtmp://127.0.0.1:{}/app/{{key}}", nginx.port)]));
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let proxy = UdpLoss::start(server, 0.05, 0x5EED);
    // 400 ms of latency (ffmpeg takes microseconds): time for several retransmissions
    let mut p = publish_srt(&clip, &srt_url(proxy.port, "streamid=live/lossy&latency=400000"));
    assert!(wait_child(&mut p, Duration::from_secs(60)).is_some_and(|s| s.success()), "SRT publisher failed");
    relay.wait_destinations_closed(1);
    let (forwarded, dropped) = proxy.counts();
    assert!(dropped * 100 >= forwarded * 3, "the proxy lost {dropped} of {} datagrams", forwarded + dropped);
    assert_relayed(&only_recording(&nginx, "lossy"), &clip);
}

#[test]
fn the_relay_pushes_to_an_srt_listener_with_a_passphrase() {
    let tmp = TempDir::new("srt-push");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 4, "640x360");
    let out = tmp.join("out.ts");
    // ffmpeg as the SRT ingest of a platform: a listener with a passphrase
    let (listen_port, mut receiver) = ffmpeg_srt_listener(&out, "&passphrase=0123456789abcdef&streamid=x");
    let to = format!(
        "srt://127.0.0.1:{listen_port}?streamid=%23!%3A%3Ar%3Dlive%2Fout%2Cm%3Dpublish&passphrase=0123456789abcdef"
    );
    let (relay, _dump) = start_relay(tmp.path(), "live", &to_args(&[to]));
    publish_to_end(&clip, &relay.url("live/k1"));
    relay.wait_destinations_closed(1);
    let _ = wait_child(&mut receiver, Duration::from_secs(15));
    // Decoded pictures identical to the source's, every one of them.
    let (frames, errors) = decode_video(&out);
    let (src_frames, _) = decode_video(&clip);
    assert!(errors.trim().is_empty(), "{errors}");
    assert_eq!(frames, src_frames, "decoded frames differ");
    let audio = packet_hashes(&out, "a").len();
    let src_audio = packet_hashes(&clip, "a").len();
    assert!(audio + 3 >= src_audio, "{audio} of {src_audio} AAC frames");
    let log = relay.log_text();
    assert!(log.contains("SRT destination connected"));
    assert!(!log.contains("0123456789abcdef"), "the passphrase is never logged");
}

#[test]
fn an_encrypting_caller_on_a_stream_without_passphrase_is_refused_and_srt_ingest_recovers() {
    let tmp = TempDir::new("srt-recover");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 3, "320x240");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let mut extra = to_args(&[format!("rtmp://127.0.0.1:{}/app/{{key}}", nginx.port)]);
    extra.extend(["--key", "k1", "--key", "k2"].map(String::from));
    let (relay, _dump, port) = start_srt_relay(tmp.path(), &extra);
    // the SRT stack cannot take key material it was not given a passphrase for
    let mut bad = publish_srt(&clip, &srt_url(port, "streamid=live/k1&passphrase=notconfigured"));
    assert!(wait_child(&mut bad, Duration::from_secs(30)).is_some_and(|s| !s.success()));
    assert!(relay.wait_for_log("listening again", 1, Duration::from_secs(10)), "the listener was not restored");
    // the ingest still takes publishers, and the relay process is unharmed
    let mut good = publish_srt(&clip, &srt_url(port, "streamid=live/k2"));
    assert!(wait_child(&mut good, Duration::from_secs(60)).is_some_and(|s| s.success()));
    relay.wait_destinations_closed(1);
    assert_relayed(&only_recording(&nginx, "k2"), &clip);
    assert!(nginx.recordings_of("k1").is_empty(), "the refused caller started its stream");
}

#[test]
fn datagrams_that_are_not_srt_do_not_disturb_a_publisher() {
    let tmp = TempDir::new("srt-garbage");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 5, "320x240");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let (mut relay, _dump, port) =
        start_srt_relay(tmp.path(), &to_args(&[format!("rtmp://127.0.0.1:{}/app/{{key}}", nginx.port)]));
    let mut good = publish_srt(&clip, &srt_url(port, "streamid=live/good"));
    assert!(relay.wait_for_log("SRT stream readable", 1, Duration::from_secs(15)));
    // Garbage at the listener while the publisher streams: random bytes, truncated and
    // oversized control packets, handshakes with nonsense fields, data for sockets that do
    // not exist — from several source ports.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let target = format!("127.0.0.1:{port}");
    let senders: Vec<std::net::UdpSocket> = (0..4).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    for i in 0..3000u32 {
        let len = (next() % 1500) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match i % 4 {
            // a control packet (the top bit) of a random type
            0 if d.len() >= 16 => d[0] |= 0x80,
            // a handshake (control type 0) with random fields
            1 if d.len() >= 64 => {
                d[0] = 0x80;
                d[1] = 0x00;
                d[2..4].copy_from_slice(&[0, 0]);
                d[12..16].copy_from_slice(&[0, 0, 0, 0]);
            }
            // a data packet for a socket id that does not exist
            2 if d.len() >= 16 => d[0] &= 0x7F,
            _ => {}
        }
        let _ = senders[i as usize % senders.len()].send_to(&d, &target);
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(wait_child(&mut good, Duration::from_secs(60)).is_some_and(|s| s.success()), "the publisher failed");
    relay.wait_destinations_closed(1);
    assert_relayed(&only_recording(&nginx, "good"), &clip);
    assert!(relay.is_running(), "the relay died");
    assert!(!relay.log_text().contains("listening again"), "garbage took the SRT listener down");
}
