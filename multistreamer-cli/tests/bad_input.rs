//! Malformed peers are refused with a logged reason while a good publisher and its
//! destination carry on untouched.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use multistreamer_test_support::*;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};

/// Connects and completes the RTMP handshake as a client.
fn handshaken(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut hs = Handshake::new(PeerType::Client);
    s.write_all(&hs.generate_outbound_p0_and_p1().unwrap()).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "relay closed during handshake");
        match hs.process_bytes(&buf[..n]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => s.write_all(&response_bytes).unwrap(),
            HandshakeProcessResult::Completed { response_bytes, .. } => {
                s.write_all(&response_bytes).unwrap();
                return s;
            }
        }
    }
}

fn type0(csid: u8, len: u32, type_id: u8) -> Vec<u8> {
    let mut v = vec![csid, 0, 0, 0];
    v.extend_from_slice(&len.to_be_bytes()[1..]);
    v.push(type_id);
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

/// Whether the relay closes the connection (EOF or reset) within `timeout`.
fn closed_by_peer(s: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn malformed_peers_are_refused_and_a_concurrent_publisher_is_unaffected() {
    let tmp = TempDir::new("bad");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 8, "640x360");
    let a = Nginx::start(&tmp.join("nginx-a"), free_port(), "app");
    let mut extra = to_args(&[format!("rtmp://127.0.0.1:{}/app/{{key}}", a.port)]);
    extra.extend(["--key".to_string(), "good-key".to_string()]);
    let (mut relay, _dump) = start_relay(tmp.path(), "live", &extra);
    let port = relay.port;
    let mut good = publish(&clip, &format!("rtmp://127.0.0.1:{port}/live/good-key"));
    std::thread::sleep(Duration::from_millis(1500));

    // 1. random bytes instead of a handshake
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut junk = vec![0x42u8];
    let mut x: u32 = 0x1234_5678;
    for _ in 0..3000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        junk.push(x as u8);
    }
    let _ = s.write_all(&junk);
    assert!(closed_by_peer(&mut s, Duration::from_secs(5)), "random bytes: connection not closed");

    // 2. a truncated handshake (C0 + part of C1, then the peer goes away)
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&[3u8; 200]).unwrap();
    drop(s);

    // 3. an absurd chunk size (0) after a valid handshake
    let mut s = handshaken(port);
    let mut msg = type0(2, 4, 1);
    msg.extend_from_slice(&0u32.to_be_bytes());
    msg.extend(type0(3, 10, 20));
    msg.extend_from_slice(&[0u8; 10]);
    s.write_all(&msg).unwrap();
    assert!(closed_by_peer(&mut s, Duration::from_secs(5)), "chunk size 0: connection not closed");

    // 4. malformed AMF: a `connect` command with no transaction id or command object
    let mut s = handshaken(port);
    let payload = [0x02, 0x00, 0x07, b'c', b'o', b'n', b'n', b'e', b'c', b't'];
    let mut msg = type0(3, payload.len() as u32, 20);
    msg.extend_from_slice(&payload);
    s.write_all(&msg).unwrap();
    assert!(closed_by_peer(&mut s, Duration::from_secs(5)), "malformed AMF: connection not closed");

    // 5. declared message lengths that would pin memory
    let mut s = handshaken(port);
    let mut msg = Vec::new();
    for csid in 3..6u8 {
        msg.extend(type0(csid, 0xFF_FFFF, 9));
        msg.extend_from_slice(&[0u8; 128]);
    }
    let _ = s.write_all(&msg);
    assert!(closed_by_peer(&mut s, Duration::from_secs(5)), "huge messages: connection not closed");

    // 6. a publish with a wrong key (a real ffmpeg publisher)
    let mut wrong = publish(&clip, &format!("rtmp://127.0.0.1:{port}/live/wrong-key"));
    let st = wait_child(&mut wrong, Duration::from_secs(20)).expect("wrong-key publisher gave up");
    assert!(!st.success(), "a wrong key must be refused");

    // 7. a second publisher on a stream that is already live
    let mut dup = publish(&clip, &format!("rtmp://127.0.0.1:{port}/live/good-key"));
    let st = wait_child(&mut dup, Duration::from_secs(20)).expect("duplicate publisher gave up");
    assert!(!st.success(), "a second publisher on a live stream must be refused");

    let st = wait_child(&mut good, Duration::from_secs(60)).expect("good publisher finished");
    assert!(st.success(), "the good publisher was disturbed");
    relay.wait_destinations_closed(1);
    assert!(relay.is_running(), "the relay must survive malformed input");

    let log = relay.log_text();
    for reason in [
        "RTMP handshake failed",
        "peer closed the connection during handshake",
        "peer set an invalid chunk size 0",
        "malformed RTMP input made the protocol library fail",
        "too many bytes of partially received messages",
        "unknown stream key",
        "already has a publisher",
    ] {
        assert!(log.contains(reason), "no logged reason {reason:?}");
    }
    assert!(!log.contains("wrong-key"), "refused keys are masked in logs");

    assert_same_packets(&only_recording(&a, "good-key"), &clip);
}
