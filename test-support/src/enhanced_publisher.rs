//! An Enhanced RTMP publisher for the tests, written from the specification and independent
//! of the project's own push code (Debian's ffmpeg 5.1 cannot publish HEVC or AV1 over
//! RTMP): `rml_rtmp`'s client session for the handshake, `connect` and `publish`, and tags
//! built here as OBS sends them — a `SequenceStart` with the configuration record, then
//! `CodedFrames` (with the composition time for `hvc1`) in real time.
//!
//! The video comes out of an MP4 file through ffprobe (`-show_data`): the configuration
//! record (extradata) and every packet, bit for bit.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;

/// One video packet of a file.
#[derive(Clone, Debug)]
pub struct VideoSample {
    pub dts_ms: i64,
    pub cts_ms: i64,
    pub keyframe: bool,
    pub data: Vec<u8>,
}

/// The video track of a file: its FourCC (`hvc1`, `av01`), configuration record and packets.
#[derive(Clone, Debug)]
pub struct VideoTrack {
    pub fourcc: [u8; 4],
    pub record: Vec<u8>,
    pub samples: Vec<VideoSample>,
}

/// The hex bytes of an ffprobe `-show_data` dump (`00000000: 0101 6000 …  ascii`).
fn hexdump(lines: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        let hex: String = l.get(10..50).unwrap_or("").chars().filter(|c| !c.is_whitespace()).collect();
        for i in (0..hex.len() / 2 * 2).step_by(2) {
            out.push(u8::from_str_radix(&hex[i..i + 2], 16).expect("ffprobe hex"));
        }
    }
    out
}

/// `key=value` fields of ffprobe's default output, with `-show_data` dumps joined.
fn sections(text: &str, name: &str) -> Vec<Vec<(String, Vec<u8>, String)>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<(String, Vec<u8>, String)>> = None;
    let mut dump: Option<(String, Vec<&str>)> = None;
    for line in text.lines() {
        if line == format!("[{name}]") {
            current = Some(Vec::new());
            continue;
        }
        if line == format!("[/{name}]") {
            if let (Some(c), Some((k, d))) = (current.as_mut(), dump.take()) {
                c.push((k, hexdump(&d), String::new()));
            }
            out.extend(current.take());
            continue;
        }
        let Some(c) = current.as_mut() else { continue };
        if let Some((_, d)) = dump.as_mut()
            && line.len() > 10
            && line.as_bytes()[8] == b':'
        {
            d.push(line);
            continue;
        }
        if let Some((k, d)) = dump.take() {
            c.push((k, hexdump(&d), String::new()));
        }
        if let Some((k, v)) = line.split_once('=') {
            if v.is_empty() && (k == "data" || k == "extradata") {
                dump = Some((k.to_string(), Vec::new()));
            } else {
                c.push((k.to_string(), Vec::new(), v.to_string()));
            }
        }
    }
    out
}

fn field<'a>(s: &'a [(String, Vec<u8>, String)], key: &str) -> Option<&'a (String, Vec<u8>, String)> {
    s.iter().find(|(k, _, _)| k == key)
}

/// Reads the first video track of `file` (HEVC or AV1 in MP4).
pub fn read_video(file: &Path) -> VideoTrack {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_streams", "-show_packets", "-show_data"])
        .arg(file)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let streams = sections(&text, "STREAM");
    let stream = streams.first().expect("a video stream");
    let codec = field(stream, "codec_name").map(|f| f.2.clone()).unwrap_or_default();
    let fourcc = match codec.as_str() {
        "hevc" => *b"hvc1",
        "av1" => *b"av01",
        other => panic!("no Enhanced RTMP FourCC for {other}"),
    };
    let record = field(stream, "extradata").map(|f| f.1.clone()).expect("extradata (-show_data)");
    let tb = field(stream, "time_base").map(|f| f.2.clone()).expect("time_base");
    let (num, den) = tb.split_once('/').expect("n/d");
    let (num, den): (i64, i64) = (num.parse().unwrap(), den.parse().unwrap());
    let ms = |ticks: &str| ticks.parse::<i64>().ok().map(|t| t * 1000 * num / den);
    let samples = sections(&text, "PACKET")
        .iter()
        .map(|p| {
            let dts = field(p, "dts").and_then(|f| ms(&f.2)).expect("dts");
            let pts = field(p, "pts").and_then(|f| ms(&f.2)).unwrap_or(dts);
            VideoSample {
                dts_ms: dts,
                cts_ms: pts - dts,
                keyframe: field(p, "flags").is_some_and(|f| f.2.starts_with('K')),
                data: field(p, "data").map(|f| f.1.clone()).expect("packet data (-show_data)"),
            }
        })
        .collect();
    VideoTrack { fourcc, record, samples }
}

fn flush(sock: &mut TcpStream, results: Vec<ClientSessionResult>) -> Vec<ClientSessionEvent> {
    let mut events = Vec::new();
    for r in results {
        match r {
            ClientSessionResult::OutboundResponse(p) => sock.write_all(&p.bytes).expect("write"),
            ClientSessionResult::RaisedEvent(e) => events.push(e),
            ClientSessionResult::UnhandleableMessageReceived(_) => {}
        }
    }
    events
}

/// Publishes `video` to `rtmp://127.0.0.1:PORT/APP/KEY` over Enhanced RTMP in real time,
/// then closes the connection.
pub fn publish_enhanced(port: u16, app: &str, key: &str, video: &VideoTrack) {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_nodelay(true).expect("nodelay");
    let mut hs = Handshake::new(PeerType::Client);
    sock.write_all(&hs.generate_outbound_p0_and_p1().expect("p0p1")).expect("write");
    let mut buf = vec![0u8; 64 * 1024];
    let remaining = loop {
        let n = sock.read(&mut buf).expect("handshake read");
        assert!(n > 0, "the server closed during the handshake");
        match hs.process_bytes(&buf[..n]).expect("handshake") {
            HandshakeProcessResult::InProgress { response_bytes } => sock.write_all(&response_bytes).expect("write"),
            HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                sock.write_all(&response_bytes).expect("write");
                break remaining_bytes;
            }
        }
    };
    let mut config = ClientSessionConfig::new();
    config.tc_url = Some(format!("rtmp://127.0.0.1:{port}/{app}"));
    let (mut session, initial) = ClientSession::new(config).expect("session");
    flush(&mut sock, initial);
    let r = session.request_connection(app.to_string()).expect("connect");
    flush(&mut sock, vec![r]);
    let mut input = remaining;
    let mut published = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !published {
        assert!(Instant::now() < deadline, "connect/publish not accepted");
        if !input.is_empty() {
            let results = session.handle_input(&input).expect("server input");
            input.clear();
            for ev in flush(&mut sock, results) {
                match ev {
                    ClientSessionEvent::ConnectionRequestAccepted => {
                        let r = session.request_publishing(key.to_string(), PublishRequestType::Live).expect("publish");
                        flush(&mut sock, vec![r]);
                    }
                    ClientSessionEvent::PublishRequestAccepted => published = true,
                    ClientSessionEvent::ConnectionRequestRejected { description } => {
                        panic!("connect refused: {description}")
                    }
                    _ => {}
                }
            }
        }
        if !published {
            let n = sock.read(&mut buf).expect("read");
            assert!(n > 0, "the server closed before the publish was accepted");
            input.extend_from_slice(&buf[..n]);
        }
    }
    // SequenceStart (packet type 0) with the record, as a keyframe
    let mut start = vec![0x80 | 0x10];
    start.extend_from_slice(&video.fourcc);
    start.extend_from_slice(&video.record);
    let r = session.publish_video_data(start.into(), RtmpTimestamp::new(0), false).expect("video");
    flush(&mut sock, vec![r]);
    let began = Instant::now();
    let first = video.samples.first().map_or(0, |s| s.dts_ms);
    for s in &video.samples {
        let at = Duration::from_millis((s.dts_ms - first).max(0) as u64);
        if let Some(wait) = at.checked_sub(began.elapsed()) {
            std::thread::sleep(wait);
        }
        // CodedFrames (packet type 1): SI24 composition time for hvc1, none for av01
        let frame_type: u8 = if s.keyframe { 1 } else { 2 };
        let mut tag = vec![0x80 | (frame_type << 4) | 1];
        tag.extend_from_slice(&video.fourcc);
        if &video.fourcc == b"hvc1" {
            tag.extend_from_slice(&(s.cts_ms as i32).to_be_bytes()[1..]);
        }
        tag.extend_from_slice(&s.data);
        let ts = RtmpTimestamp::new((s.dts_ms - first).max(0) as u32);
        let r = session.publish_video_data(tag.into(), ts, false).expect("video");
        flush(&mut sock, vec![r]);
    }
    // let the server read the tail before the connection closes
    let _ = sock.shutdown(std::net::Shutdown::Write);
    sock.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    while matches!(sock.read(&mut buf), Ok(n) if n > 0) {}
}
