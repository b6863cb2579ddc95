//! `bench-relay`: Multistreamer's relay against nginx-rtmp's `push`, side by side.
//!
//! For N = 1, 10, 30 publishers, each relayed to 3 RTMP destinations, it measures for the
//! relay: CPU-seconds per stream-minute two ways over a fixed window — the relay process's
//! own (utime + stime from /proc/PID/stat) and the whole machine's busy time (/proc/stat:
//! every process, interrupts and softirqs, where loopback TCP work partly lands) minus this
//! benchmark process's own CPU (the publishers and destinations run in it) — peak RSS
//! (VmHWM) and, at the end of the window, PSS, USS and anonymous memory (smaps_rollup),
//! end-to-end latency of video messages, and time to first frame (from a publisher's
//! connect to the first video frame at each destination). It also measures the direct path
//! (publisher straight to the destination server) so the *added* latency of each relay is
//! reported as its percentile minus the direct path's. `--baseline-bin PATH` adds another
//! multistreamer binary (an earlier build) to the same run.
//!
//! A physical reference runs beside them: **the copy floor**, this binary re-executed as a
//! minimal forwarder (a blocking thread per publisher: read up to 64 KiB from the publisher's
//! socket, write the bytes to 3 sockets — no protocol, no parsing, no queue). Its publishers
//! send each packet of the same clip at the same instants, framed like an FLV tag, and its
//! destinations only read and discard, so its CPU is what moving these bytes through the
//! kernel at this message rate costs on this machine — the floor any relay pays.
//!
//! Method: the publishers and the destination server live in this process, so one clock
//! stamps a video message just before it is written to the relay and again when the
//! destination has parsed it; messages are matched by stream key and RTMP timestamp. The
//! clip is real H.264 + AAC (~6 Mbit/s, 1080p30, made with ffmpeg), sent in real time.
//!
//! Run with `make bench-relay` (or `cargo run --release -p multistreamer-benches --bin
//! bench-relay -- --counts 1,10,30 --seconds 20`).
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)] // a benchmark reports on stdout

#[path = "../proc.rs"]
mod proc;
use proc::{
    Memory, clk_tck, free_port, machine_busy_ticks, machine_steal_ticks, make_relay_clip, proc_cpu_ticks, proc_hwm_kb,
    proc_memory, proc_user_sys_ticks, start_nginx, wait_port,
};

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use multistreamer_core::flv::{self, AudioTag, VideoTag};
use multistreamer_core::media::{Codec, MediaInfo, MediaItem, Packet, Timebase, Timestamp, Track, TrackId, TrackKind};
use multistreamer_core::rtmp::chunk_reader::ChunkLimits;
use multistreamer_core::rtmp::ingest::{Inbound, ServerProtocol};
use multistreamer_core::rtmp::{RtmpPushOptions, RtmpSink, RtmpUrl};
use multistreamer_core::sink::{self, Sink};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ServerSessionEvent, ServerSessionResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Clip {
    info: Arc<MediaInfo>,
    packets: Vec<Packet>,
    duration_ms: i64,
}

type SentMap = Arc<Mutex<HashMap<(String, i64), Instant>>>;
/// When each stream's (first) publisher started connecting.
type StartMap = Arc<Mutex<HashMap<String, Instant>>>;

#[derive(Default)]
struct Samples {
    /// Latency samples in microseconds (video messages, all destinations).
    lat_us: Vec<u64>,
    /// Only count messages sent after this instant.
    from: Option<Instant>,
    to: Option<Instant>,
    /// Time to first frame at each destination connection, in microseconds.
    ttff_us: Vec<u64>,
}

/// Reads an FLV file into the media model (the same parsers the ingest uses).
fn load_clip(path: &Path) -> Clip {
    let data = fs::read(path).unwrap();
    let mut pos = 9 + 4;
    let mut info = MediaInfo::default();
    let mut packets = Vec::new();
    let mut last = 0;
    while pos + 11 <= data.len() {
        let ty = data[pos];
        let size = u32::from_be_bytes([0, data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let ts = i64::from(u32::from_be_bytes([data[pos + 7], data[pos + 4], data[pos + 5], data[pos + 6]]));
        let body = Bytes::copy_from_slice(&data[pos + 11..pos + 11 + size]);
        pos += 11 + size + 4;
        let dts = Timestamp::from_millis(ts);
        last = last.max(ts);
        match ty {
            9 => match flv::parse_video(&body).unwrap() {
                VideoTag::AvcSequenceHeader(c) => {
                    info.set_track(Track { id: TrackId(0), codec: Codec::H264(c), timebase: Timebase::MILLIS })
                }
                VideoTag::AvcNalus { keyframe, cts_ms, payload } => packets.push(Packet {
                    track: TrackId(0),
                    kind: TrackKind::Video,
                    dts,
                    pts: dts.add_ticks(i64::from(cts_ms)),
                    keyframe,
                    payload,
                }),
                _ => {}
            },
            8 => match flv::parse_audio(&body).unwrap() {
                AudioTag::AacSequenceHeader(a) => {
                    info.set_track(Track { id: TrackId(1), codec: Codec::Aac(a), timebase: Timebase::MILLIS })
                }
                AudioTag::AacRaw(payload) => packets.push(Packet {
                    track: TrackId(1),
                    kind: TrackKind::Audio,
                    dts,
                    pts: dts,
                    keyframe: true,
                    payload,
                }),
                _ => {}
            },
            _ => {}
        }
    }
    Clip { info: Arc::new(info), packets, duration_ms: last + 33 }
}

/// Publishes the clip in real time, looping, until `until`.
async fn publisher(url: RtmpUrl, key: String, clip: Arc<Clip>, until: Instant, sent: SentMap, starts: StartMap) {
    starts.lock().unwrap().entry(key.clone()).or_insert_with(Instant::now);
    let mut sink = match RtmpSink::connect(&url, &RtmpPushOptions::default()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("publisher {key}: {e}");
            return;
        }
    };
    if sink::send(&mut sink, &[MediaItem::Info(clip.info.clone())]).await.is_err() {
        return;
    }
    let start = tokio::time::Instant::now();
    let mut round = 0i64;
    'outer: loop {
        for p in &clip.packets {
            let offset = round * clip.duration_ms;
            let at = start + Duration::from_millis((offset + p.dts.as_millis()) as u64);
            tokio::time::sleep_until(at).await;
            if Instant::now() >= until {
                break 'outer;
            }
            let mut p = p.clone();
            p.dts = p.dts.add_ticks(offset);
            p.pts = p.pts.add_ticks(offset);
            if p.kind == TrackKind::Video {
                sent.lock().unwrap().insert((key.clone(), p.dts.as_millis()), Instant::now());
            }
            if sink::send(&mut sink, &[MediaItem::Packet(p)]).await.is_err() {
                eprintln!("publisher {key}: write failed");
                return;
            }
        }
        round += 1;
    }
    let _ = sink.finish().await;
}

/// The copy floor's publisher: the clip's packets at the same instants as [`publisher`],
/// each behind an 11-byte FLV-style tag header, on a plain TCP connection.
async fn raw_publisher(port: u16, clip: Arc<Clip>, until: Instant) {
    let Ok(mut sock) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        eprintln!("floor publisher: cannot connect");
        return;
    };
    let _ = sock.set_nodelay(true);
    let start = tokio::time::Instant::now();
    let mut round = 0i64;
    let mut frame = Vec::with_capacity(512 * 1024);
    loop {
        for p in &clip.packets {
            let offset = round * clip.duration_ms;
            let at = start + Duration::from_millis((offset + p.dts.as_millis()) as u64);
            tokio::time::sleep_until(at).await;
            if Instant::now() >= until {
                return;
            }
            frame.clear();
            frame.push(if p.kind == TrackKind::Video { 9 } else { 8 });
            frame.extend_from_slice(&(p.payload.len() as u32).to_be_bytes()[1..]);
            frame.extend_from_slice(&((offset + p.dts.as_millis()) as u32).to_be_bytes());
            frame.extend_from_slice(&[0, 0, 0]);
            frame.extend_from_slice(&p.payload);
            if sock.write_all(&frame).await.is_err() {
                return;
            }
        }
        round += 1;
    }
}

/// The copy floor's destinations: read and discard.
async fn discard_server(listener: TcpListener) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { return };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            while let Ok(n) = sock.read(&mut buf).await {
                if n == 0 {
                    return;
                }
            }
        });
    }
}

/// The copy floor itself (run as a child process): a blocking thread per publisher copying
/// what it reads to 3 connections to `sink_port`.
fn floor_relay(port: u16, sink_port: u16) -> ! {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    for conn in listener.incoming() {
        let Ok(mut input) = conn else { continue };
        std::thread::spawn(move || {
            let mut outs = Vec::new();
            for _ in 0..3 {
                let Ok(o) = std::net::TcpStream::connect(("127.0.0.1", sink_port)) else { return };
                let _ = o.set_nodelay(true);
                outs.push(o);
            }
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                for o in &mut outs {
                    if o.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        });
    }
    std::process::exit(0)
}

/// The destination server: accepts any publish and stamps each video message on arrival.
async fn destination_server(listener: TcpListener, sent: SentMap, starts: StartMap, samples: Arc<Mutex<Samples>>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { return };
        let sent = sent.clone();
        let starts = starts.clone();
        let samples = samples.clone();
        tokio::spawn(async move {
            let _ = sock.set_nodelay(true);
            let mut buf = vec![0u8; 256 * 1024];
            let mut hs = Handshake::new(PeerType::Server);
            let remaining = loop {
                let Ok(n) = sock.read(&mut buf).await else { return };
                if n == 0 {
                    return;
                }
                match hs.process_bytes(&buf[..n]) {
                    Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                        if sock.write_all(&response_bytes).await.is_err() {
                            return;
                        }
                    }
                    Ok(HandshakeProcessResult::Completed { response_bytes, remaining_bytes }) => {
                        if sock.write_all(&response_bytes).await.is_err() {
                            return;
                        }
                        break remaining_bytes;
                    }
                    Err(_) => return,
                }
            };
            let Ok((mut proto, initial)) = ServerProtocol::new(ChunkLimits::default()) else { return };
            let mut out = Vec::new();
            let mut key = String::new();
            let mut first_frame = true;
            let mut pending: std::collections::VecDeque<Inbound> = initial.into_iter().map(Inbound::Session).collect();
            let mut input = remaining;
            loop {
                if !input.is_empty() {
                    if proto.handle_input(&input, &mut pending).is_err() {
                        return;
                    }
                    input.clear();
                }
                let now = Instant::now();
                while let Some(r) = pending.pop_front() {
                    match r {
                        Inbound::Session(ServerSessionResult::OutboundResponse(p)) => out.extend_from_slice(&p.bytes),
                        Inbound::Session(ServerSessionResult::RaisedEvent(ev)) => match ev {
                            ServerSessionEvent::ConnectionRequested { request_id, .. } => {
                                if let Ok(rs) = proto.accept(request_id) {
                                    pending_out(rs, &mut out);
                                }
                            }
                            ServerSessionEvent::PublishStreamRequested { request_id, stream_key, .. } => {
                                key = stream_key;
                                if let Ok(rs) = proto.accept(request_id) {
                                    pending_out(rs, &mut out);
                                }
                            }
                            _ => {}
                        },
                        Inbound::Media { video: true, timestamp, data } if data.len() > 1 && data[1] == 1 => {
                            if std::mem::take(&mut first_frame) {
                                let start = starts.lock().unwrap().get(&key).copied();
                                if let Some(t0) = start {
                                    samples.lock().unwrap().ttff_us.push(now.duration_since(t0).as_micros() as u64);
                                }
                            }
                            let sent_at = sent.lock().unwrap().get(&(key.clone(), i64::from(timestamp))).copied();
                            if let Some(t0) = sent_at {
                                let mut s = samples.lock().unwrap();
                                let in_window = s.from.is_some_and(|f| t0 >= f) && s.to.is_none_or(|t| t0 < t);
                                if in_window {
                                    s.lat_us.push(now.duration_since(t0).as_micros() as u64);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                if !out.is_empty() {
                    if sock.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                }
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => input.extend_from_slice(&buf[..n]),
                }
            }
        });
    }
}

fn pending_out(results: Vec<ServerSessionResult>, out: &mut Vec<u8>) {
    for r in results {
        if let ServerSessionResult::OutboundResponse(p) = r {
            out.extend_from_slice(&p.bytes);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Direct,
    /// The copy floor: bytes in, the same bytes out to 3 sockets, nothing else.
    Floor,
    Nginx,
    Multistreamer,
    /// Another multistreamer binary (`--baseline-bin`).
    Baseline,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Direct => "direct (no relay)",
            System::Floor => "copy floor (reference)",
            System::Nginx => "nginx-rtmp push",
            System::Multistreamer => "multistreamer",
            System::Baseline => baseline_label(),
        }
    }
}

struct Running {
    child: Option<Child>,
    port: u16,
}

fn start_system(sys: System, dir: &Path, sink_port: u16, relay_bin: &Path) -> Running {
    let port = free_port();
    let child = match sys {
        System::Direct => None,
        System::Floor => {
            let exe = std::env::current_exe().unwrap();
            let child = Command::new(exe)
                .args(["--floor-relay", &port.to_string(), &sink_port.to_string()])
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            Some(child)
        }
        System::Nginx => {
            let app = format!(
                "application live {{ live on;\n push rtmp://127.0.0.1:{sink_port}/sink1; \
                 push rtmp://127.0.0.1:{sink_port}/sink2; push rtmp://127.0.0.1:{sink_port}/sink3; }}"
            );
            Some(start_nginx(&dir.join("nginx"), port, &app))
        }
        System::Multistreamer | System::Baseline => {
            let mut cmd = Command::new(relay_bin);
            cmd.arg("relay").arg("--listen").arg(format!("rtmp://127.0.0.1:{port}/live"));
            for i in 1..=3 {
                cmd.arg("--to").arg(format!("rtmp://127.0.0.1:{sink_port}/sink{i}/{{key}}"));
            }
            cmd.args(["--status-interval", "0", "--grace", "0", "--threads", &relay_threads().to_string()])
                .env("MULTISTREAMER_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(fs::File::create(dir.join("multistreamer.log")).unwrap());
            Some(cmd.spawn().expect("multistreamer binary (build it with --release first)"))
        }
    };
    if child.is_some() {
        wait_port(port);
    }
    Running { child, port: if sys == System::Direct { sink_port } else { port } }
}

/// The name of the `--baseline-bin` row (`--baseline-label`, default "multistreamer (baseline)").
fn baseline_label() -> &'static str {
    static LABEL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LABEL.get_or_init(|| {
        let args: Vec<String> = std::env::args().collect();
        args.iter()
            .position(|a| a == "--baseline-label")
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| "multistreamer (baseline)".into())
    })
}

/// `--threads` passed to the relay (bench flag `--relay-threads`, default 1 like the CLI).
fn relay_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        let args: Vec<String> = std::env::args().collect();
        args.iter()
            .position(|a| a == "--relay-threads")
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    })
}

struct Result1 {
    cpu_per_stream_min: f64,
    /// The process's user-space share of `cpu_per_stream_min` (the rest is system time).
    user_per_stream_min: f64,
    /// CPU time the hypervisor took from this VM during the window, in % of its CPUs.
    steal_pct: f64,
    /// Whole-machine busy CPU minus this process's, per stream-minute.
    machine_per_stream_min: f64,
    rss_mb: f64,
    memory: Memory,
    ttff_p50_ms: f64,
    ttff_max_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    samples: usize,
    expected: usize,
}

/// Each figure's median over repeated runs of one case (the upper middle for an even count).
fn median(runs: Vec<Result1>) -> Result1 {
    fn mid<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v[v.len() / 2]
    }
    let f = |g: fn(&Result1) -> f64| mid(runs.iter().map(g).collect());
    let u = |g: fn(&Result1) -> u64| mid(runs.iter().map(g).collect());
    Result1 {
        cpu_per_stream_min: f(|r| r.cpu_per_stream_min),
        user_per_stream_min: f(|r| r.user_per_stream_min),
        steal_pct: f(|r| r.steal_pct),
        machine_per_stream_min: f(|r| r.machine_per_stream_min),
        rss_mb: f(|r| r.rss_mb),
        memory: Memory {
            rss: u(|r| r.memory.rss),
            pss: u(|r| r.memory.pss),
            uss: u(|r| r.memory.uss),
            anon: u(|r| r.memory.anon),
        },
        ttff_p50_ms: f(|r| r.ttff_p50_ms),
        ttff_max_ms: f(|r| r.ttff_max_ms),
        p50_ms: f(|r| r.p50_ms),
        p99_ms: f(|r| r.p99_ms),
        samples: u(|r| r.samples as u64) as usize,
        expected: u(|r| r.expected as u64) as usize,
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

#[allow(clippy::too_many_arguments)]
fn run_case(
    rt: &tokio::runtime::Runtime,
    sys: System,
    n: usize,
    clip: &Arc<Clip>,
    dir: &Path,
    relay_bin: &Path,
    warm: Duration,
    window: Duration,
) -> Result1 {
    let sent: SentMap = Arc::default();
    let starts: StartMap = Arc::default();
    let samples: Arc<Mutex<Samples>> = Arc::default();
    let sink_listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let sink_port = sink_listener.local_addr().unwrap().port();
    let server = if sys == System::Floor {
        rt.spawn(discard_server(sink_listener))
    } else {
        rt.spawn(destination_server(sink_listener, sent.clone(), starts.clone(), samples.clone()))
    };
    let mut running = start_system(sys, dir, sink_port, relay_bin);
    let until = Instant::now() + warm + window + Duration::from_secs(1);
    let mut pubs = Vec::new();
    for i in 0..n {
        if sys == System::Floor {
            pubs.push(rt.spawn(raw_publisher(running.port, clip.clone(), until)));
            std::thread::sleep(Duration::from_millis(30));
            continue;
        }
        // direct: publish straight to each of the 3 destination apps, like a relay would
        let targets: Vec<String> = match sys {
            System::Direct => (1..=3).map(|j| format!("rtmp://127.0.0.1:{}/sink{j}/s{i}", running.port)).collect(),
            _ => vec![format!("rtmp://127.0.0.1:{}/live/s{i}", running.port)],
        };
        for t in targets {
            let url: RtmpUrl = t.parse().unwrap();
            pubs.push(rt.spawn(publisher(url, format!("s{i}"), clip.clone(), until, sent.clone(), starts.clone())));
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    std::thread::sleep(warm);
    let pid = running.child.as_ref().map(|c| c.id());
    let me = std::process::id();
    // one reading of the relay's user and system time at each end of the window
    let (user0, sys0) = pid.map_or((0, 0), proc_user_sys_ticks);
    let cpu0 = user0 + sys0;
    let (machine0, me0, steal0) = (machine_busy_ticks(), proc_cpu_ticks(me), machine_steal_ticks());
    samples.lock().unwrap().from = Some(Instant::now());
    std::thread::sleep(window);
    samples.lock().unwrap().to = Some(Instant::now());
    let (user1, sys1) = pid.map_or((0, 0), proc_user_sys_ticks);
    let cpu1 = user1 + sys1;
    let (machine1, me1, steal1) = (machine_busy_ticks(), proc_cpu_ticks(me), machine_steal_ticks());
    let hwm = pid.map_or(0, proc_hwm_kb);
    let memory = pid.map(proc_memory).unwrap_or_default();
    // let the last messages of the window arrive
    std::thread::sleep(Duration::from_millis(1500));
    for p in pubs {
        let _ = rt.block_on(p);
    }
    if let Some(mut c) = running.child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    server.abort();
    let mut lat = std::mem::take(&mut samples.lock().unwrap().lat_us);
    lat.sort_unstable();
    let mut ttff = std::mem::take(&mut samples.lock().unwrap().ttff_us);
    ttff.sort_unstable();
    let cpu_s = (cpu1.saturating_sub(cpu0)) as f64 / clk_tck();
    let machine_s = (machine1.saturating_sub(machine0)).saturating_sub(me1.saturating_sub(me0)) as f64 / clk_tck();
    let stream_minutes = n as f64 * window.as_secs_f64() / 60.0;
    Result1 {
        cpu_per_stream_min: cpu_s / stream_minutes,
        user_per_stream_min: (user1.saturating_sub(user0)) as f64 / clk_tck() / stream_minutes,
        steal_pct: steal1.saturating_sub(steal0) as f64 * 100.0
            / (clk_tck() * window.as_secs_f64() * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64),
        machine_per_stream_min: machine_s / stream_minutes,
        rss_mb: hwm as f64 / 1024.0,
        memory,
        ttff_p50_ms: percentile(&ttff, 0.5),
        ttff_max_ms: ttff.last().map_or(f64::NAN, |&v| v as f64 / 1000.0),
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        samples: lat.len(),
        expected: n * 3 * (window.as_secs_f64() * 30.0) as usize,
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--floor-relay") {
        let port = |i: usize| argv.get(i).and_then(|v| v.parse().ok()).expect("--floor-relay PORT SINK_PORT");
        floor_relay(port(2), port(3));
    }
    let mut counts = vec![1usize, 10, 30];
    let mut seconds = 20u64;
    let mut baseline: Option<PathBuf> = None;
    let mut repeat = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--counts" => counts = args.next().unwrap_or_default().split(',').filter_map(|v| v.parse().ok()).collect(),
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(20),
            "--relay-threads" => {
                args.next();
            }
            "--baseline-bin" => baseline = args.next().map(PathBuf::from),
            "--baseline-label" => {
                args.next();
            }
            "--repeat" => repeat = args.next().and_then(|v| v.parse().ok()).unwrap_or(1).max(1),
            other => {
                eprintln!(
                    "unknown argument {other}; usage: bench-relay [--counts 1,10,30] [--seconds 20] [--relay-threads N] [--baseline-bin PATH [--baseline-label NAME]] [--repeat K]"
                );
                std::process::exit(2);
            }
        }
    }
    let exe = std::env::current_exe().unwrap();
    let relay_bin = exe.with_file_name("multistreamer");
    let dir = std::env::temp_dir().join("multistreamer-bench");
    fs::create_dir_all(&dir).unwrap();
    let clip = Arc::new(load_clip(&make_relay_clip(&dir.join("clip.flv"))));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let warm = Duration::from_secs(5);
    let window = Duration::from_secs(seconds);
    let bitrate: usize = clip.packets.iter().map(|p| p.payload.len()).sum::<usize>() * 8 / clip.duration_ms as usize;
    println!(
        "bench-relay: {} cores, clip {} kbit/s 1080p30 H.264+AAC, each stream -> 3 destinations, {}s window after {}s warm-up, multistreamer --threads {}, median of {} run(s) per cell",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        bitrate,
        seconds,
        warm.as_secs(),
        relay_threads(),
        repeat
    );
    println!();
    println!(
        "| publishers | system | CPU-s / stream-min (process: user + sys) | CPU-s / stream-min (machine − load generator) | peak RSS (MB) | RSS / PSS / USS / anon at end (MB) | time to first frame p50 / max (ms) | e2e p50 (ms) | e2e p99 (ms) | added p50 (ms) | added p99 (ms) | samples | steal (% of CPUs) |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    let mb = |kb: u64| kb as f64 / 1024.0;
    for &n in &counts {
        let mut systems = vec![System::Direct, System::Nginx, System::Multistreamer, System::Floor];
        if baseline.is_some() {
            systems.push(System::Baseline);
        }
        let mut results = Vec::new();
        for &sys in &systems {
            let bin = match (sys, &baseline) {
                (System::Baseline, Some(b)) => b.clone(),
                _ => relay_bin.clone(),
            };
            let runs: Vec<Result1> =
                (0..repeat).map(|_| run_case(&rt, sys, n, &clip, &dir, &bin, warm, window)).collect();
            results.push((sys, median(runs)));
        }
        let direct = &results[0].1;
        for (sys, r) in &results {
            let relayed = *sys != System::Direct;
            let dash = || "-".to_string();
            let cpu = if relayed {
                format!(
                    "{:.3} ({:.3} user + {:.3} sys)",
                    r.cpu_per_stream_min,
                    r.user_per_stream_min,
                    r.cpu_per_stream_min - r.user_per_stream_min
                )
            } else {
                dash()
            };
            let machine = format!("{:.3}", r.machine_per_stream_min);
            let rss = if relayed { format!("{:.1}", r.rss_mb) } else { dash() };
            let m = &r.memory;
            let mem = if relayed {
                format!("{:.1} / {:.1} / {:.1} / {:.1}", mb(m.rss), mb(m.pss), mb(m.uss), mb(m.anon))
            } else {
                dash()
            };
            let (a50, a99) = if relayed {
                (format!("{:.2}", r.p50_ms - direct.p50_ms), format!("{:.2}", r.p99_ms - direct.p99_ms))
            } else {
                (dash(), dash())
            };
            let timed = |v: String| if *sys == System::Floor { dash() } else { v };
            println!(
                "| {n} | {} | {cpu} | {machine} | {rss} | {mem} | {} | {} | {} | {} | {} | {} | {:.1} |",
                sys.name(),
                timed(format!("{:.1} / {:.1}", r.ttff_p50_ms, r.ttff_max_ms)),
                timed(format!("{:.2}", r.p50_ms)),
                timed(format!("{:.2}", r.p99_ms)),
                timed(a50),
                timed(a99),
                timed(format!("{}/{}", r.samples, r.expected)),
                r.steal_pct,
            );
        }
        let nginx = &results[1].1;
        let floor = &results[3].1;
        for (sys, r) in results.iter().filter(|(s, _)| *s != System::Direct) {
            let added = |v: f64| if *sys == System::Floor { f64::NAN } else { v };
            ratios.push(Ratio {
                n,
                name: sys.name(),
                cpu: r.cpu_per_stream_min / nginx.cpu_per_stream_min,
                machine: r.machine_per_stream_min / nginx.machine_per_stream_min,
                above_floor: (
                    r.cpu_per_stream_min - floor.cpu_per_stream_min,
                    r.machine_per_stream_min - floor.machine_per_stream_min,
                ),
                anon: (r.memory.anon, nginx.memory.anon),
                rss: (r.rss_mb, nginx.rss_mb),
                p99: (added(r.p99_ms - direct.p99_ms), nginx.p99_ms - direct.p99_ms),
            });
        }
    }
    println!();
    println!(
        "| publishers | system | CPU ratio to nginx-rtmp (process) | CPU ratio (machine − load generator) | CPU-s / stream-min above the copy floor (process / machine) | anon MB / nginx | peak RSS MB / nginx | added p99 ms / nginx |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for r in ratios {
        println!(
            "| {} | {} | {:.2}× | {:.2}× | {:.3} / {:.3} | {:.1} / {:.1} | {:.1} / {:.1} | {} / {:.2} |",
            r.n,
            r.name,
            r.cpu,
            r.machine,
            r.above_floor.0,
            r.above_floor.1,
            mb(r.anon.0),
            mb(r.anon.1),
            r.rss.0,
            r.rss.1,
            if r.p99.0.is_nan() { "-".to_string() } else { format!("{:.2}", r.p99.0) },
            r.p99.1
        );
    }
}

/// One row of the ratio table.
struct Ratio {
    n: usize,
    name: &'static str,
    cpu: f64,
    machine: f64,
    /// CPU-seconds per stream-minute above the copy floor's: process, machine.
    above_floor: (f64, f64),
    anon: (u64, u64),
    rss: (f64, f64),
    p99: (f64, f64),
}
