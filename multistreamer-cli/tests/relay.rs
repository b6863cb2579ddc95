//! End-to-end relay tests against real peers: ffmpeg publishes, nginx-rtmp receives and
//! records, ffmpeg/ffprobe check what arrived.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use multistreamer_test_support::*;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn relays_bit_identical_stream_to_two_destinations() {
    let tmp = TempDir::new("identical");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 6, "640x360");
    let a = Nginx::start(&tmp.join("nginx-a"), free_port(), "app");
    let b = Nginx::start(&tmp.join("nginx-b"), free_port(), "live2");
    let (relay, _dump) = start_relay(
        tmp.path(),
        "live/secret1",
        &to_args(&[
            format!("rtmp://127.0.0.1:{}/app/{{key}}", a.port),
            // a key with a query string, sent verbatim (nginx records it under the name before '?')
            format!("rtmp://127.0.0.1:{}/live2/yt-{{key}}?token=a1&b=2", b.port),
        ]),
    );
    publish_to_end(&clip, &relay.url("live/secret1"));
    relay.wait_destinations_closed(2);
    assert_eq!(packet_hashes(&clip, "v").len(), 180);
    for (nginx, name) in [(&a, "secret1"), (&b, "yt-secret1")] {
        let rec = only_recording(nginx, name);
        let streams = probe_streams(&rec);
        assert!(
            streams
                .iter()
                .any(|s| s.contains("codec_name=h264") && s.contains("width=640") && s.contains("height=360")),
            "{streams:?}"
        );
        assert!(streams.iter().any(|s| s.contains("codec_name=aac") && s.contains("sample_rate=48000")), "{streams:?}");
        assert_same_packets(&rec, &clip);
    }
    // the key never shows up in logs or status lines
    assert!(!relay.log_text().contains("token=a1"));
    assert!(!relay.status_text().contains("token=a1"));
}

#[test]
fn destination_down_at_start_and_restarted_mid_stream_recovers_while_other_misses_nothing() {
    let tmp = TempDir::new("reconnect");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 14, "640x360");
    let a = Nginx::start(&tmp.join("nginx-a"), free_port(), "app");
    let b_port = free_port();
    let mut extra = to_args(&[
        format!("rtmp://127.0.0.1:{}/app/{{key}}", a.port),
        format!("rtmp://127.0.0.1:{b_port}/app/{{key}}"),
    ]);
    extra.extend(args(&["--key", "k"]));
    let (relay, _dump) = start_relay(tmp.path(), "live", &extra);
    let mut ff = publish(&clip, &relay.url("live/k"));
    // B is down for the first 2 s
    thread::sleep(Duration::from_secs(2));
    let mut b1 = Nginx::start(&tmp.join("nginx-b1"), b_port, "app");
    thread::sleep(Duration::from_secs(4));
    // crash B mid-stream and bring it back a second later
    b1.kill();
    thread::sleep(Duration::from_secs(1));
    let restarted_at_s = 7.0;
    let b2 = Nginx::start(&tmp.join("nginx-b2"), b_port, "app");
    let st = wait_child(&mut ff, Duration::from_secs(60)).expect("publisher finished");
    assert!(st.success());
    relay.wait_destinations_closed(2);

    let src_v = packet_hashes(&clip, "v");
    // A: every packet, no gap
    assert_same_packets(&only_recording(&a, "k"), &clip);

    // B first connection: started late, on a keyframe, a contiguous run of the source
    let b1_rec = &b1.recordings_of("k")[0];
    let b1_v = packet_hashes(b1_rec, "v");
    assert!(!b1_v.is_empty(), "B received nothing before the crash");
    assert!(find_run(&src_v, &b1_v[..b1_v.len().min(30)]).is_some());
    assert_eq!(video_keyframes(b1_rec).first(), Some(&true));

    // B after the restart: resumes on a keyframe within a few seconds, contiguous to the end
    let b2_rec = &b2.recordings_of("k")[0];
    let b2_v = packet_hashes(b2_rec, "v");
    assert_eq!(video_keyframes(b2_rec).first(), Some(&true), "resumed on a keyframe");
    let start = find_run(&src_v, &b2_v).expect("B's second recording is a contiguous run of the source");
    assert_eq!(start + b2_v.len(), src_v.len(), "B received everything up to the end after resuming");
    let resumed_at_s = start as f64 / 30.0;
    assert!(
        resumed_at_s <= restarted_at_s + 4.0,
        "B resumed at {resumed_at_s:.1} s of media, restarted at ~{restarted_at_s} s"
    );
    assert!(relay.status_text().contains("reconnects 1") || relay.status_text().contains("reconnects 2"));
}

/// A TCP proxy in front of a real destination that stops reading from the relay after
/// `stop_after`, like a destination whose network stalls.
fn stalling_proxy(upstream: u16, stop_after: Duration) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stalled = Arc::new(AtomicBool::new(false));
    let flag = stalled.clone();
    thread::spawn(move || {
        let mut first = true;
        for conn in listener.incoming() {
            let Ok(down) = conn else { break };
            let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
            let stall_this = first;
            first = false;
            let (mut d_r, mut u_w) = (down.try_clone().unwrap(), up.try_clone().unwrap());
            let (mut u_r, mut d_w) = (up, down);
            let flag = flag.clone();
            thread::spawn(move || {
                let started = std::time::Instant::now();
                let mut buf = [0u8; 8192];
                loop {
                    if stall_this && started.elapsed() >= stop_after {
                        flag.store(true, Ordering::SeqCst);
                        // stop reading; keep the socket open so the relay's writes back up
                        thread::sleep(Duration::from_secs(3600));
                    }
                    match d_r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if u_w.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
            thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match u_r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if d_w.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    (port, stalled)
}

#[test]
fn stalled_destination_does_not_delay_the_other_destination_or_the_ingest() {
    let tmp = TempDir::new("slow");
    let clip = tmp.join("in.mp4");
    // large frames so the stalled socket's buffers fill quickly
    make_clip(&clip, 12, "1280x720");
    let a = Nginx::start(&tmp.join("nginx-a"), free_port(), "app");
    let b = Nginx::start(&tmp.join("nginx-b"), free_port(), "app");
    let (proxy_port, stalled) = stalling_proxy(b.port, Duration::from_secs(2));
    let mut extra = to_args(&[
        format!("rtmp://127.0.0.1:{}/app/{{key}}", a.port),
        format!("rtmp://127.0.0.1:{proxy_port}/app/{{key}}"),
    ]);
    extra.extend(args(&["--queue", "64"]));
    let (relay, _dump) = start_relay(tmp.path(), "live/s", &extra);
    publish_to_end(&clip, &relay.url("live/s"));
    assert!(stalled.load(Ordering::SeqCst), "the proxy stalled");
    relay.wait_destinations_closed(1);
    // A missed nothing
    assert_same_packets(&only_recording(&a, "s"), &clip);
    // the stalled destination's queue overflowed and dropped to keyframes
    assert!(relay.log_text().contains("subscriber queue full; dropping until the next keyframe"));
}

#[test]
fn open_ingest_serves_several_publishers_with_per_key_destinations() {
    let tmp = TempDir::new("multi");
    let clip1 = tmp.join("a.mp4");
    let clip2 = tmp.join("b.mp4");
    make_clip(&clip1, 4, "320x240");
    make_clip(&clip2, 4, "480x270");
    let n = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let (relay, _dump) =
        start_relay(tmp.path(), "live", &to_args(&[format!("rtmp://127.0.0.1:{}/app/out-{{key}}", n.port)]));
    assert!(relay.wait_for_log("OPEN INGEST", 1, Duration::from_secs(5)), "an open ingest is announced loudly");
    let mut p1 = publish(&clip1, &relay.url("live/alice"));
    let mut p2 = publish(&clip2, &relay.url("live/bob"));
    assert!(wait_child(&mut p1, Duration::from_secs(60)).is_some_and(|s| s.success()));
    assert!(wait_child(&mut p2, Duration::from_secs(60)).is_some_and(|s| s.success()));
    relay.wait_destinations_closed(2);
    for (key, clip, width) in [("alice", &clip1, "width=320"), ("bob", &clip2, "width=480")] {
        let rec = only_recording(&n, &format!("out-{key}"));
        assert!(probe_streams(&rec).iter().any(|s| s.contains(width)), "{key}");
        assert_same_packets(&rec, clip);
    }
}

#[test]
fn sigterm_shuts_down_in_order_and_flushes_destinations() {
    let tmp = TempDir::new("sigterm");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 10, "640x360");
    let a = Nginx::start(&tmp.join("nginx-a"), free_port(), "app");
    let port = free_port();
    let mut relay = RelayProcess::start(
        tmp.path(),
        port,
        &args(&[
            "--listen",
            &format!("rtmp://127.0.0.1:{port}/live/k"),
            "--to",
            &format!("rtmp://127.0.0.1:{}/app/k", a.port),
        ]),
    );
    let mut ff = publish(&clip, &format!("rtmp://127.0.0.1:{port}/live/k"));
    thread::sleep(Duration::from_secs(4));
    let st = relay.terminate().expect("relay exits after SIGTERM");
    let log = relay.log_text();
    assert!(st.success(), "exit status {st:?}\n{log}");
    let _ = wait_child(&mut ff, Duration::from_secs(10));
    let order = ["stopping ingest", "ending streams", "destination closed", "relay stopped"];
    let positions: Vec<usize> =
        order.iter().map(|s| log.find(s).unwrap_or_else(|| panic!("{s:?} not in log:\n{log}"))).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "shutdown out of order:\n{log}");
    let rec = &a.recordings_of("k")[0];
    let got = packet_hashes(rec, "v");
    let src = packet_hashes(&clip, "v");
    assert!(got.len() >= 60, "only {} packets reached the destination", got.len());
    assert_eq!(&src[..got.len()], &got[..], "the destination got a clean prefix of the stream");
}

/// Makes a CA and a `localhost` server certificate signed by it.
fn make_tls_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let st = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(st.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Multistreamer Test CA",
    ]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost"]);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
}

/// nginx terminating TLS (stream module) in front of its own RTMP server, as RTMPS ingests
/// do, with a certificate for `localhost` from a CA made for the test. Returns the nginx and
/// its TLS port.
fn tls_nginx(tmp: &TempDir) -> (Nginx, u16) {
    make_tls_certs(tmp.path());
    let rtmp_port = free_port();
    let tls_port = free_port();
    let extra = format!(
        "stream {{ server {{ listen 127.0.0.1:{tls_port} ssl; ssl_certificate {dir}/leaf.pem; \
         ssl_certificate_key {dir}/leaf.key; proxy_pass 127.0.0.1:{rtmp_port}; }} }}",
        dir = tmp.path().display()
    );
    let n = Nginx::start_with(&tmp.join("nginx"), rtmp_port, "rtmp", &extra);
    assert!(wait_for_port(tls_port, Duration::from_secs(5)));
    (n, tls_port)
}

#[test]
fn rtmps_destination_with_a_custom_ca() {
    let tmp = TempDir::new("rtmps");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 4, "640x360");
    let (n, tls_port) = tls_nginx(&tmp);
    let mut extra = to_args(&[format!("rtmps://localhost:{tls_port}/rtmp/FB-1?s_bl=1&a=x")]);
    extra.extend(["--ca-file".to_string(), tmp.join("ca.pem").display().to_string()]);
    let (relay, _dump) = start_relay(tmp.path(), "live/k", &extra);
    publish_to_end(&clip, &relay.url("live/k"));
    relay.wait_destinations_closed(1);
    assert_same_packets(&only_recording(&n, "FB-1"), &clip);
}

#[test]
fn rtmps_destination_with_an_untrusted_certificate_keeps_retrying_with_a_clear_error() {
    let tmp = TempDir::new("rtmps-bad");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 3, "320x240");
    let (n, tls_port) = tls_nginx(&tmp);
    let (relay, _dump) =
        start_relay(tmp.path(), "live/k", &to_args(&[format!("rtmps://localhost:{tls_port}/rtmp/key")]));
    publish_to_end(&clip, &relay.url("live/k"));
    assert!(relay.wait_for_log("UnknownIssuer", 1, Duration::from_secs(10)), "the TLS failure is reported");
    assert!(relay.status_text().contains("retrying"));
    assert!(n.recordings().is_empty(), "nothing was delivered over an untrusted connection");
}

#[test]
fn timestamps_past_the_24_bit_field_use_extended_timestamps_end_to_end() {
    let tmp = TempDir::new("extts");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 4, "320x240");
    let n = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let (relay, _dump) = start_relay(tmp.path(), "live/k", &to_args(&[format!("rtmp://127.0.0.1:{}/app/k", n.port)]));
    // FLV timestamps start at 16 800 s = 16 800 000 ms, above the 24-bit field's 16 777 215:
    // every message on the wire (ingest and push) carries an extended timestamp.
    let mut ff = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-re", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-output_ts_offset", "16800", "-f", "flv"])
        .arg(relay.url("live/k"))
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("ffmpeg");
    assert!(wait_child(&mut ff, Duration::from_secs(60)).is_some_and(|s| s.success()));
    relay.wait_destinations_closed(1);
    let rec = only_recording(&n, "k");
    // Garbled extended timestamps would desynchronise nginx's chunk parser and the packets
    // would differ; the recorded timestamps also keep their spacing: 4 s of media.
    assert_same_packets(&rec, &clip);
    let pts: Vec<i64> = framemd5(&rec, "v").iter().map(|f| f.0).collect();
    assert_eq!(pts.len(), 120);
    let span = pts.iter().max().copied().unwrap_or(0) - pts.iter().min().copied().unwrap_or(0);
    assert!((3800..=4100).contains(&span), "recorded video spans {span} ms");
}
