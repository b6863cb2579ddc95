//! Real peers for the integration tests of every crate: nginx-rtmp destinations, ffmpeg
//! publishers, ffprobe/framemd5 as the oracle, a Python HTTP server, a GStreamer RTSP
//! server, and the `multistreamer` binary itself.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_debug_implementations)]

mod enhanced_publisher;
mod faulty_rtmp;
mod postgres;
mod rtp_shift;
pub mod secrets;
mod udp_loss;
mod whip_publisher;
pub use enhanced_publisher::{VideoSample, VideoTrack, publish_enhanced, read_video};
pub use faulty_rtmp::{Fault, FaultyRtmp};
pub use postgres::Postgres;
pub use rtp_shift::RtpShift;
pub use udp_loss::UdpLoss;
pub use whip_publisher::{WhipMedia, WhipPublisher, h264_access_units, opus_packets};

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A scratch directory removed at drop (kept when `KEEP_TEST_DIRS` is set).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ms-test-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        secrets::keep_logs(&self.0);
        if std::env::var_os("KEEP_TEST_DIRS").is_none() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A port for a peer that must bind it itself (nginx, the server under test). The kernel
/// picks a free one; it is never handed out twice in one test binary, so tests running in
/// parallel cannot get the same port from here.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Starts `peers/SCRIPT PORT ARGS…` with Debian's python3 (where `make deps-test` installs
/// the GStreamer bindings) and waits until it listens on `port`.
pub fn python_peer(script: &str, port: u16, args: &[&std::ffi::OsStr]) -> Child {
    let child = Command::new("/usr/bin/python3")
        .arg(peer_script(script))
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 (make deps-test)");
    assert!(wait_for_port(port, Duration::from_secs(15)), "{script} did not listen on {port}");
    child
}

/// A script of `peers/` (the Python HTTP and RTSP servers).
pub fn peer_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers").join(name)
}

/// A binary of the workspace built next to the running test (Cargo builds a package's
/// binaries before its integration tests).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join(name);
    assert!(bin.exists(), "{} is not built (it belongs to another package's tests)", bin.display());
    bin
}

/// Waits until a UDP socket is bound to `port` on this machine (an SRT listener), read from
/// /proc/net/udp without sending it anything.
pub fn wait_for_udp_port(port: u16, timeout: Duration) -> bool {
    let suffix = format!(":{port:04X}");
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let table = fs::read_to_string("/proc/net/udp").unwrap_or_default();
        if table.lines().any(|l| l.split_whitespace().nth(1).is_some_and(|a| a.ends_with(&suffix))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Generates an H.264 High (with B-frames) + AAC 48 kHz clip with ffmpeg's lavfi sources.
pub fn make_clip(path: &Path, seconds: u32, size: &str) {
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=30"))
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-profile:v", "high", "-bf", "2", "-g", "30", "-pix_fmt", "yuv420p"])
        .args(["-preset", "ultrafast", "-x264-params", "bframes=2"])
        .args(["-c:a", "aac", "-b:a", "96k", "-ac", "2"])
        .arg(path)
        .status()
        .expect("ffmpeg must be installed (make deps-test)");
    assert!(status.success(), "ffmpeg failed to generate the test clip");
}

/// Starts `ffmpeg -re` publishing `clip` to `url`.
pub fn publish(clip: &Path, url: &str) -> Child {
    Command::new("ffmpeg")
        .args(["-loglevel", "error", "-re", "-i"])
        .arg(clip)
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg")
}

pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// MD5 of every packet of one stream (`v` or `a`), in order, without re-encoding.
pub fn packet_hashes(file: &Path, stream: &str) -> Vec<String> {
    framemd5(file, stream).into_iter().map(|(_, _, md5)| md5).collect()
}

/// (pts, flags, md5) per packet of one stream.
pub fn framemd5(file: &Path, stream: &str) -> Vec<(i64, String, String)> {
    let out = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-i"])
        .arg(file)
        .args(["-map", &format!("0:{stream}"), "-c", "copy", "-f", "framemd5", "-"])
        .output()
        .expect("ffmpeg");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split(',').map(str::trim).collect();
            if cols.len() < 6 {
                return None;
            }
            Some((cols[2].parse().ok()?, String::new(), cols[5].to_string()))
        })
        .collect()
}

/// Keyframe flags of the video packets, in order.
pub fn video_keyframes(file: &Path) -> Vec<bool> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=flags", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.starts_with('K')).collect()
}

/// `codec_name,width,height,sample_rate` of each stream, via ffprobe.
pub fn probe_streams(file: &Path) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name,profile,width,height,sample_rate",
            "-of",
            "compact=p=0:nk=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Whether `needle` occurs as a contiguous run inside `hay`; returns its start.
pub fn find_run(hay: &[String], needle: &[String]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An nginx with the RTMP module, acting as a destination (YouTube stand-in). It records
/// every stream it receives to `dir/rec/`.
pub struct Nginx {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Nginx {
    pub fn start(dir: &Path, port: u16, app: &str) -> Nginx {
        Self::start_with(dir, port, app, "")
    }

    /// `extra` is appended at the top level of the config (e.g. a `stream {}` block).
    pub fn start_with(dir: &Path, port: u16, app: &str, extra: &str) -> Nginx {
        Nginx::start_conf(dir, port, app, "", extra)
    }

    /// Like [`Nginx::start`] with each recording cut at `bytes` (still one file per
    /// publish): for a destination whose sessions are counted rather than read, so that a
    /// long run does not fill the disk.
    pub fn start_capped(dir: &Path, port: u16, app: &str, bytes: u64) -> Nginx {
        Nginx::start_conf(dir, port, app, &format!(" record_max_size {bytes};"), "")
    }

    fn start_conf(dir: &Path, port: u16, app: &str, record: &str, extra: &str) -> Nginx {
        fs::create_dir_all(dir.join("rec")).unwrap();
        fs::create_dir_all(dir.join("logs")).unwrap();
        let stream_module =
            if extra.contains("stream {") { "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n" } else { "" };
        let conf = format!(
            "{stream_module}load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\n\
             daemon off;\nmaster_process off;\nerror_log {dir}/logs/error.log info;\npid {dir}/nginx.pid;\n\
             events {{ worker_connections 256; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
               application {app} {{ live on; record all; record_path {dir}/rec; record_unique on;{record} }} }} }}\n{extra}\n",
            dir = dir.display()
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx must be installed (make deps-test)");
        assert!(wait_for_port(port, Duration::from_secs(10)), "nginx did not start on port {port}");
        Nginx { port, dir: dir.to_path_buf(), child: Some(child) }
    }

    /// Kills nginx as a crash would (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The recordings, oldest first.
    pub fn recordings(&self) -> Vec<PathBuf> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(self.dir.join("rec"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "flv"))
                    .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.into_iter().map(|(_, p)| p).collect()
    }

    /// The recordings whose name starts with `stream` (nginx names them `STREAM-TIME.flv`).
    pub fn recordings_of(&self, stream: &str) -> Vec<PathBuf> {
        self.recordings()
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{stream}-")) || n == format!("{stream}.flv"))
            })
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `multistreamer` binary under test.
pub struct RelayProcess {
    pub port: u16,
    child: Option<Child>,
    pub log: PathBuf,
    pub status: PathBuf,
}

impl RelayProcess {
    /// Starts `multistreamer relay ARGS`. With `port` 0 the relay's `--listen` URL asked for
    /// port 0: the port it was given is read back from its log, so no other process can take
    /// it between the choice and the bind.
    pub fn start(dir: &Path, port: u16, args: &[String]) -> RelayProcess {
        let log = dir.join("relay.log");
        let status = dir.join("relay.status");
        let child = Command::new(workspace_bin("multistreamer"))
            .arg("relay")
            .args(args)
            .env("MULTISTREAMER_LOG", "info,multistreamer_core=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&status).unwrap())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("multistreamer binary");
        let mut relay = RelayProcess { port, child: Some(child), log, status };
        if port == 0 {
            relay.port = relay.bound_port("rtmp").expect("the relay logs the RTMP address it listens on");
        }
        assert!(wait_for_port(relay.port, Duration::from_secs(15)), "relay did not listen on {}", relay.port);
        relay
    }

    /// The port of the relay's `scheme` listener, from its "publish to SCHEME://ADDR/…" line.
    pub fn bound_port(&self, scheme: &str) -> Option<u16> {
        let needle = format!("publish to {scheme}://");
        if !self.wait_for_log(&needle, 1, Duration::from_secs(15)) {
            return None;
        }
        let text = self.log_text();
        let rest = &text[text.find(&needle)? + needle.len()..];
        let addr = rest.split(['/', '?', ' ']).next()?;
        addr.rsplit(':').next()?.parse().ok()
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        strip_ansi(&s)
    }

    pub fn status_text(&self) -> String {
        fs::read_to_string(&self.status).unwrap_or_default()
    }

    /// Waits until the log contains `needle` at least `count` times.
    pub fn wait_for_log(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log_text().matches(needle).count() >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        wait_child(&mut child, Duration::from_secs(30))
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints the relay's log when a test fails, so CI output shows what happened.
pub struct DumpOnPanic {
    log: PathBuf,
    status: PathBuf,
}

#[allow(non_snake_case)]
pub fn DumpOnPanic(relay: &RelayProcess) -> DumpOnPanic {
    DumpOnPanic { log: relay.log.clone(), status: relay.status.clone() }
}

impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = strip_ansi(&fs::read_to_string(&self.log).unwrap_or_default());
            let status = fs::read_to_string(&self.status).unwrap_or_default();
            let tail: String =
                status.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            eprintln!("---- relay log ----\n{log}\n---- relay status (last lines) ----\n{tail}");
        }
    }
}

/// Starts the relay on a free port listening at `rtmp://127.0.0.1:PORT/{listen_path}`, with
/// `--grace 0` and `extra` arguments; dumps its log if the test fails.
pub fn start_relay(dir: &Path, listen_path: &str, extra: &[String]) -> (RelayProcess, DumpOnPanic) {
    // Port 0: the relay binds a free port itself and logs it.
    let port = 0;
    let mut args = vec!["--listen".to_string(), format!("rtmp://127.0.0.1:{port}/{listen_path}")];
    args.extend(extra.iter().cloned());
    if !extra.iter().any(|a| a == "--grace") {
        args.extend(["--grace".to_string(), "0".to_string()]);
    }
    let relay = RelayProcess::start(dir, port, &args);
    let dump = DumpOnPanic(&relay);
    (relay, dump)
}

/// `--to URL` for each URL.
pub fn to_args(urls: &[String]) -> Vec<String> {
    urls.iter().flat_map(|u| ["--to".to_string(), u.clone()]).collect()
}

impl RelayProcess {
    /// `rtmp://127.0.0.1:PORT/{path}` on this relay.
    pub fn url(&self, path: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{path}", self.port)
    }

    /// Waits until `count` destinations have closed after their stream ended.
    pub fn wait_destinations_closed(&self, count: usize) {
        assert!(
            self.wait_for_log("stream ended; destination closed", count, Duration::from_secs(20)),
            "{count} destination(s) did not close"
        );
    }
}

/// Publishes `clip` in real time and waits for the publisher to finish successfully.
pub fn publish_to_end(clip: &Path, url: &str) {
    let mut child = publish(clip, url);
    let st = wait_child(&mut child, Duration::from_secs(60)).expect("publisher finished in time");
    assert!(st.success(), "publisher to {url} failed");
}

/// The recording holds exactly the clip's video and audio packets, bit for bit.
pub fn assert_same_packets(recording: &Path, clip: &Path) {
    assert_eq!(packet_hashes(recording, "v"), packet_hashes(clip, "v"), "video packets differ");
    assert_eq!(packet_hashes(recording, "a"), packet_hashes(clip, "a"), "audio packets differ");
}

/// The single recording of `stream` at `nginx`.
pub fn only_recording(nginx: &Nginx, stream: &str) -> PathBuf {
    let recs = nginx.recordings_of(stream);
    assert_eq!(recs.len(), 1, "one recording of {stream} expected in {:?}", nginx.recordings());
    recs[0].clone()
}

/// One ffprobe value, e.g. `probe_value(f, "v:0", "stream=width")`.
pub fn probe_value(file: &Path, stream: &str, entry: &str) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream, "-show_entries", entry, "-of", "default=nw=1:nk=1"])
        .arg(file)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Decode times (ms) of a file's video packets, in file order.
pub fn video_dts_ms(file: &Path) -> Vec<i64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=dts_time", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // MPEG-TS adds an empty field after the time ("1.5,"); a program prints a blank line
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .map(|s| (s * 1000.0).round() as i64)
        .collect()
}

/// Decodes the first video stream: the MD5 of every decoded frame, and ffmpeg's errors.
pub fn decode_video(file: &Path) -> (Vec<String>, String) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0:v:0", "-f", "framemd5", "-"])
        .output()
        .expect("ffmpeg");
    let md5s = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(',').nth(5).map(|s| s.trim().to_string()))
        .collect();
    (md5s, String::from_utf8_lossy(&out.stderr).to_string())
}

/// The relay with an RTMP and an RTSP ingest on free ports (`--grace 0`); returns it and the
/// RTSP port.
pub fn start_rtsp_relay(dir: &Path, extra: &[String]) -> (RelayProcess, DumpOnPanic, u16) {
    // Port 0 for both: the relay binds free ports itself and logs them.
    let mut args = vec![
        "--listen".to_string(),
        "rtmp://127.0.0.1:0/live".into(),
        "--listen".into(),
        "rtsp://127.0.0.1:0/live".into(),
        "--grace".into(),
        "0".into(),
    ];
    args.extend(extra.iter().cloned());
    let relay = RelayProcess::start(dir, 0, &args);
    let rtsp_port = relay.bound_port("rtsp").expect("the relay logs the RTSP address it listens on");
    assert!(wait_for_port(rtsp_port, Duration::from_secs(10)), "no RTSP listener");
    let dump = DumpOnPanic(&relay);
    (relay, dump, rtsp_port)
}

/// `tests/peers/http_server.py` serving `root` on a free port.
pub struct HttpServer {
    pub port: u16,
    child: Child,
}

impl HttpServer {
    pub fn start(root: &Path) -> HttpServer {
        let port = free_port();
        let child = python_peer("http_server.py", port, &[root.as_os_str()]);
        HttpServer { port, child }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Re-muxes `clip` into an HLS VOD under `dir` with extra ffmpeg options.
pub fn make_hls_vod(clip: &Path, dir: &Path, extra: &[&str]) {
    fs::create_dir_all(dir).unwrap();
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(clip)
        .args(["-c", "copy", "-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod"])
        .args(extra)
        .arg(dir.join("index.m3u8"))
        .status()
        .unwrap();
    assert!(st.success(), "ffmpeg could not write the HLS VOD");
}

/// `peers/fake_google.py`: Google OAuth and YouTube's Live Streaming API stood in locally.
/// Its ingest addresses point at `ingest` (an nginx-rtmp application), and a stream is
/// `active` while a recording under `record_dir` grows.
pub struct FakeGoogle {
    pub port: u16,
    child: Child,
}

impl FakeGoogle {
    pub const CLIENT_ID: &'static str = "test-client.apps.example";
    pub const CLIENT_SECRET: &'static str = "test-secret";

    pub fn start(ingest: &str, record_dir: &Path) -> FakeGoogle {
        let port = free_port();
        let args = ["--client-id", Self::CLIENT_ID, "--client-secret", Self::CLIENT_SECRET, "--ingest", ingest];
        let mut args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        args.extend([std::ffi::OsStr::new("--record-dir"), record_dir.as_os_str()]);
        // the tokens, codes and stream keys it issues go to the suite's secrets scan
        let noted = secrets::peer_secrets_file("google");
        if let Some(file) = &noted {
            args.extend([std::ffi::OsStr::new("--secrets-file"), file.as_os_str()]);
        }
        secrets::note_secret(secrets::Secret::Credential, Self::CLIENT_SECRET);
        let child = python_peer("fake_google.py", port, &args);
        FakeGoogle { port, child }
    }

    /// The OAuth base (`/token`, `/device/code`, `/revoke`).
    pub fn oauth_base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The consent page of the authorization-code flow.
    pub fn auth_url(&self) -> String {
        format!("http://127.0.0.1:{}/o/oauth2/v2/auth", self.port)
    }

    /// The YouTube Data API base.
    pub fn youtube_base(&self) -> String {
        format!("http://127.0.0.1:{}/youtube/v3", self.port)
    }

    /// A control request (`approve`, `deny`, `expire_access`, `revoke_all`, `fail`, `chat`,
    /// `state`, `log`) with a JSON body; returns the answer's body.
    pub fn control(&self, what: &str, json: &str) -> String {
        control_request(self.port, what, json)
    }

    /// Makes the next `method path` request fail with Google's error envelope.
    pub fn fail_next(&self, method: &str, path: &str, status: u16, reason: &str) {
        self.control(
            "fail",
            &format!(r#"{{"method":"{method}","path":"{path}","status":{status},"reason":"{reason}","times":1}}"#),
        );
    }
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `peers/fake_mtslink.py`: webinar.ru / MTS Link UserAPI v3 stood in locally.
pub struct FakeMtsLink {
    pub port: u16,
    child: Child,
}

impl FakeMtsLink {
    pub const TOKEN: &'static str = "test-api-token";

    pub fn start() -> FakeMtsLink {
        secrets::note_secret(secrets::Secret::Credential, Self::TOKEN);
        let port = free_port();
        let child = python_peer("fake_mtslink.py", port, &[std::ffi::OsStr::new("--token"), Self::TOKEN.as_ref()]);
        FakeMtsLink { port, child }
    }

    /// The API base (`…/v3`).
    pub fn api_base(&self) -> String {
        format!("http://127.0.0.1:{}/v3", self.port)
    }

    /// A control request (`chat`, `events`) with a JSON body; returns the answer's body.
    pub fn control(&self, what: &str, json: &str) -> String {
        control_request(self.port, what, json)
    }
}

impl Drop for FakeMtsLink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs a JSON body to `/_control/WHAT` on a local fake and returns the answer's body.
fn control_request(port: u16, what: &str, json: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let req = format!(
        "POST /_control/{what} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
        json.len()
    );
    std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).unwrap();
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// `peers/fake_room.py`: a webinar room page for the capture tests — a presenter canvas
/// whose colour changes every animation frame, a chat list the test fills, reload and
/// layout-change commands, and the times the page inserted each message.
pub struct FakeRoom {
    pub port: u16,
    child: Child,
}

impl FakeRoom {
    pub fn start() -> FakeRoom {
        let port = free_port();
        let child = python_peer("fake_room.py", port, &[]);
        assert!(wait_for_port(port, Duration::from_secs(10)), "the fake room did not start");
        FakeRoom { port, child }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/room", self.port)
    }

    /// Adds messages (`[(author, text)]`) in one go: the page inserts them in one poll.
    pub fn say(&self, messages: &[(&str, &str)]) {
        let items: Vec<String> =
            messages.iter().map(|(a, t)| format!(r#"{{"author":{},"text":{}}}"#, json_str(a), json_str(t))).collect();
        control_request(self.port, "say", &format!("[{}]", items.join(",")));
    }

    /// `reload` or `move`.
    pub fn command(&self, what: &str) {
        control_request(self.port, what, "{}");
    }

    /// `GET /_control/state`: `{"loads", "inserted": {id: page ms}, "messages"}` as JSON text.
    pub fn state(&self) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let req = "GET /_control/state HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
    }
}

impl Drop for FakeRoom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `s` as a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The pids of the processes whose parent is `parent`.
pub fn child_pids(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state ppid …": the command may hold spaces, so read after the last ')'
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// The command name (`/proc/PID/comm`).
pub fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

/// Bytes free for an unprivileged writer on the file system holding `path` (`df`).
pub fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df").args(["-B1", "--output=avail"]).arg(path).output().expect("df");
    String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap_or(0)
}

/// ffmpeg as a platform's SRT ingest: a listener on a free loopback UDP port that writes what
/// it receives to `out` as MPEG-TS; `query` goes on the listener's URL (`&passphrase=…`).
/// Returns the port once ffmpeg listens on it.
pub fn ffmpeg_srt_listener(out: &Path, query: &str) -> (u16, Child) {
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(format!("srt://127.0.0.1:{port}?mode=listener{query}"))
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for_udp_port(port, Duration::from_secs(15)), "ffmpeg's SRT listener did not start");
    (port, child)
}

/// One HTTP/1.1 request with a text body to 127.0.0.1:`port`: (status, head, body).
pub fn http_text(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    use std::io::Write;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (status, head.to_string(), body.to_string())
}
