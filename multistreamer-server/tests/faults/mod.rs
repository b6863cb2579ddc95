//! Faults the server must contain: destinations that misbehave in every way a remote
//! ingest can.

use super::*;

mod soak;

/// A stream relayed to nginx-rtmp and to four destinations that misbehave: one accepts TCP
/// and never answers the handshake, one refuses the publish, one resets the connection
/// after 200 KB, one reads at 1 kbit/s. Each shows its own reason in the API and keeps
/// retrying; the good destination gets the stream bit-exact from the first keyframe to the
/// end, and the publisher is never disturbed.
#[test]
fn misbehaving_destinations_are_isolated_and_each_shows_its_reason() {
    let tmp = TempDir::new("server-faulty-destinations");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 60, "640x360");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let faults = [
        ("silent", FaultyRtmp::start(Fault::SilentHandshake)),
        ("refusing", FaultyRtmp::start(Fault::RefusePublish)),
        ("resetting", FaultyRtmp::start(Fault::ResetAfter(200_000))),
        ("trickle", FaultyRtmp::start(Fault::Slow(125))),
    ];
    let server = Server::start(tmp.path());
    let admin = Client::login(server.http, "first-password-1");
    let stream = admin.post("/api/streams", json!({"name": "faults"})).json();
    let id = stream["id"].as_i64().unwrap();
    let good = format!("rtmp://127.0.0.1:{}/app/good", nginx.port);
    let mut dests = vec![("good".to_string(), good)];
    // keys unlike any word a log or an answer holds, for the suite's secrets scan
    dests.extend(faults.iter().map(|(name, f)| (name.to_string(), f.url(&format!("{name}-key-5f0c1e")))));
    for (name, url) in &dests {
        let r = admin.post(&format!("/api/streams/{id}/destinations"), json!({"name": name, "url": url}));
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let mut ff = publish(&clip, stream["rtmp_url"].as_str().unwrap());

    // every destination's reason, while the stream runs
    let want: [(&str, &[&str]); 4] = [
        ("silent", &["timed out", "timeout"]),
        ("refusing", &["BadName", "refused"]),
        ("resetting", &["reset", "closed", "broken pipe"]),
        ("trickle", &["stalled", "keep up"]),
    ];
    let mut seen: std::collections::BTreeMap<String, String> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(58);
    while seen.len() < want.len() {
        let s = admin.get(&format!("/api/streams/{id}")).json();
        for d in s["destinations"].as_array().unwrap() {
            let name = d["name"].as_str().unwrap();
            let err = d["last_error"].as_str().unwrap_or("").to_string();
            if let Some((_, words)) = want.iter().find(|(n, _)| *n == name)
                && words.iter().any(|w| err.to_lowercase().contains(&w.to_lowercase()))
            {
                seen.insert(name.to_string(), err);
            }
            if name == "good" {
                assert_eq!(d["last_error"], Value::Null, "the good destination met an error: {d}");
            }
        }
        assert!(Instant::now() < deadline, "reasons seen so far: {seen:?}; the stream: {s}");
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("reasons: {seen:#?}");
    assert!(faults.iter().all(|(_, f)| f.connections.load(std::sync::atomic::Ordering::Relaxed) >= 1));
    assert!(
        faults[2].1.connections.load(std::sync::atomic::Ordering::Relaxed) >= 2,
        "the resetting destination is retried"
    );

    let st = wait_child(&mut ff, Duration::from_secs(90)).expect("the publisher finished");
    assert!(st.success(), "the publisher was disturbed");
    // the good destination: the whole stream, bit-exact
    std::thread::sleep(Duration::from_secs(2));
    assert_whole_stream(&nginx, "good", &clip, true);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// The server binary, run in a mount namespace of its own where `at` is a tmpfs mounted
/// with `options` (`size=2m`, `size=8m,ro`); arguments added to the command go to the server.
fn server_on_tmpfs(at: &Path, options: &str) -> Command {
    tmpfs_wrapper(at, options, "")
}

/// `server_on_tmpfs`, with `redirect` (`2>"$0/server.log"`) applied to the server.
fn tmpfs_wrapper(at: &Path, options: &str, redirect: &str) -> Command {
    std::fs::create_dir_all(at).unwrap();
    let mut wrapper = Command::new("unshare");
    wrapper.args(["--mount", "--propagation", "private", "sh", "-c"]);
    wrapper.arg(format!("mount -t tmpfs -o {options} tmpfs \"$0\" && exec \"$@\" {redirect}"));
    wrapper.arg(at).arg(env!("CARGO_BIN_EXE_multistreamer-server"));
    wrapper
}

/// Runs `script` (`$0` is `dir`) in the mount namespace of process `pid`.
fn in_mount_namespace(pid: u32, dir: &Path, script: &str) {
    let st =
        Command::new("nsenter").args(["--target", &pid.to_string(), "--mount", "sh", "-c", script]).arg(dir).status();
    assert!(st.unwrap().success(), "{script}");
}

/// `nginx`'s one recording of `name` holds the clip's video from its first keyframe to the
/// end, bit-exact (`with_audio`: and all of its audio).
fn assert_whole_stream(nginx: &Nginx, name: &str, clip: &Path, with_audio: bool) {
    let rec = nginx.recordings_of(name);
    assert_eq!(rec.len(), 1, "{name}: one uninterrupted publish: {rec:?}");
    let (sent, got) = (packet_hashes(clip, "v"), packet_hashes(&rec[0], "v"));
    assert!(find_run(&sent, &got).is_some(), "{name}: not a clean run of the stream");
    assert!(got.len() + 30 >= sent.len(), "{name}: {} of {} video packets", got.len(), sent.len());
    if with_audio {
        assert_eq!(packet_hashes(&rec[0], "a").len(), packet_hashes(clip, "a").len(), "{name}: all the audio");
    }
}

/// The disk fills up while the original is recorded: the recording stops with a clear
/// error in the API, what it wrote is playable (cut back to its last whole fragment, no
/// damaged frame at the end), and the relay carries on to the end.
#[test]
fn a_full_disk_stops_the_recording_with_a_clear_error_and_the_relay_carries_on() {
    let tmp = TempDir::new("server-disk-full");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 20, "640x360");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let server = Server::start_in(tmp.path(), &[], server_on_tmpfs(&tmp.path().join("data/recordings"), "size=2m"));
    let admin = Client::login(server.http, "first-password-1");
    let stream = admin.post("/api/streams", json!({"name": "full"})).json();
    let id = stream["id"].as_i64().unwrap();
    let url = format!("rtmp://127.0.0.1:{}/app/full", nginx.port);
    assert_eq!(admin.post(&format!("/api/streams/{id}/destinations"), json!({"name": "n", "url": url})).status, 201);
    let r = admin.request("PATCH", &format!("/api/streams/{id}"), Some(&json!({"record_mode": "original"})));
    assert_eq!(r.status, 200, "{}", r.body);
    let mut ff = publish(&clip, stream["rtmp_url"].as_str().unwrap());

    // the clip is ~2.2 Mb/s: 2 MB fill in a few seconds
    let failed = wait_json(&admin, &format!("/api/streams/{id}"), 30, |s| !s["recording"]["error"].is_null());
    let error = failed["recording"]["error"].as_str().unwrap().to_string();
    eprintln!("recording error: {error}");
    assert!(error.to_lowercase().contains("no space"), "{failed}");
    assert_eq!(failed["recording"]["active"], json!(false), "{failed}");
    assert_eq!(failed["destinations"][0]["state"], json!("live"), "{failed}");
    let list = admin.get("/api/recordings").json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["recording"], json!(false), "closed: {list}");

    assert!(wait_child(&mut ff, Duration::from_secs(60)).is_some_and(|s| s.success()), "the publisher was disturbed");
    std::thread::sleep(Duration::from_secs(2));
    // the relay: the whole stream, bit-exact
    assert_whole_stream(&nginx, "full", &clip, false);
    let sent = packet_hashes(&clip, "v");
    // the recording: what fitted, playable, the clip's own packets
    let path = std::path::PathBuf::from(list[0]["path"].as_str().unwrap_or_default());
    let (status, _, file) = admin.download(list[0]["download_url"].as_str().unwrap(), None);
    assert_eq!(status, 200);
    let local = tmp.join("partial.mp4");
    std::fs::write(&local, &file).unwrap();
    let (frames, errors) = decode_video(&local);
    assert!(
        frames.len() >= 60,
        "{} frames decoded from {} ({} bytes): {errors}",
        frames.len(),
        path.display(),
        file.len()
    );
    let kept = packet_hashes(&local, "v");
    assert!(find_run(&sent, &kept).is_some(), "the recording holds the clip's packets, the last one whole");
    assert!(errors.trim().is_empty(), "decoding the recording: {errors}");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// Holds an exclusive lock on the SQLite database at `db`, in the mount namespace of
/// process `pid`, until killed.
fn lock_database(pid: u32, db: &Path) -> Child {
    let mut child = Command::new("nsenter");
    child
        .args(["--target", &pid.to_string(), "--mount", "/usr/bin/python3"])
        .args([
            "-c",
            "import sqlite3,sys,time\nc=sqlite3.connect(sys.argv[1],isolation_level=None,timeout=30)\nc.execute('BEGIN EXCLUSIVE')\nprint('locked',flush=True)\ntime.sleep(600)",
        ])
        .arg(db);
    spawn_ready(&mut child, b"locked")
}

/// Spawns `command` and returns once it printed `word` (it is ready).
fn spawn_ready(command: &mut Command, word: &[u8]) -> Child {
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = vec![0u8; word.len()];
    child.stdout.as_mut().unwrap().read_exact(&mut line).unwrap();
    assert_eq!(line, word);
    child
}

/// A live stream keeps relaying while its database misbehaves: locked by another process,
/// then on a full disk. API writes answer 503 with the reason (and
/// Retry-After) instead of an internal error; reads and the relay carry on; writes work
/// again once the database does.
#[test]
fn a_locked_or_full_database_answers_503_and_the_relay_carries_on() {
    let tmp = TempDir::new("server-db-faults");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 40, "640x360");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    // the data directory on its own file system, to fill it later
    let data = tmp.join("data");
    let server = Server::start_in(tmp.path(), &[], server_on_tmpfs(&data, "size=64m"));
    let admin = Client::login(server.http, "first-password-1");
    let stream = admin.post("/api/streams", json!({"name": "db"})).json();
    let id = stream["id"].as_i64().unwrap();
    let url = format!("rtmp://127.0.0.1:{}/app/db", nginx.port);
    assert_eq!(admin.post(&format!("/api/streams/{id}/destinations"), json!({"name": "n", "url": url})).status, 201);
    let mut ff = publish(&clip, stream["rtmp_url"].as_str().unwrap());
    wait_json(&admin, &format!("/api/streams/{id}"), 20, |s| s["destinations"][0]["state"] == json!("live"));
    let path = format!("/api/streams/{id}");

    // 1. another process holds the database's write lock
    let mut lock = lock_database(server.child.id(), &data.join("multistreamer.db"));
    let r = admin.request("PATCH", &path, Some(&json!({"name": "renamed"})));
    assert_eq!((r.status, &r.json()["error"]["code"]), (503, &json!("unavailable")), "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("busy"), "{}", r.body);
    assert!(r.headers.to_ascii_lowercase().contains("retry-after: 5"), "{}", r.headers);
    let s = admin.get(&path).json();
    assert_eq!((&s["name"], &s["destinations"][0]["state"]), (&json!("db"), &json!("live")), "{s}");
    let _ = lock.kill();
    let _ = lock.wait();
    let r = admin.request("PATCH", &path, Some(&json!({"name": "renamed"})));
    assert_eq!(r.status, 200, "{}", r.body);

    // 2. the data directory's disk fills up under the running server
    let in_namespace = |script: &str| in_mount_namespace(server.child.id(), &data, script);
    in_namespace("cat /dev/zero > \"$0/filler\" 2>/dev/null; test -s \"$0/filler\"");
    let r = admin.request("PATCH", &path, Some(&json!({"name": "full"})));
    assert_eq!((r.status, &r.json()["error"]["code"]), (503, &json!("unavailable")), "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("cannot be written"), "{}", r.body);
    let s = admin.get(&path).json();
    assert_eq!((&s["name"], &s["destinations"][0]["state"]), (&json!("renamed"), &json!("live")), "{s}");
    in_namespace("rm \"$0/filler\"");
    let r = admin.request("PATCH", &path, Some(&json!({"name": "room again"})));
    assert_eq!(r.status, 200, "{}", r.body);

    // the relay never noticed
    assert!(wait_child(&mut ff, Duration::from_secs(60)).is_some_and(|s| s.success()), "the publisher was disturbed");
    std::thread::sleep(Duration::from_secs(2));
    assert_whole_stream(&nginx, "db", &clip, false);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// The database, the recordings and the server's log share one small file system, and it
/// fills up while a stream is recorded. Only the writes stop: the recording says why, API
/// changes are refused with the reason, log lines are lost; the three streams relay to the
/// end bit-exact, one of them published while the disk is full (its recording cannot start
/// and says so). Once the file system has room again, changes, the log and a new recording
/// work, the recording the full disk stopped is listed as closed with the size of its
/// playable file, every publish is in its stream's history, and SIGTERM ends the server
/// cleanly.
#[test]
fn a_full_disk_under_the_database_recordings_and_log_stops_only_the_writes() {
    let tmp = TempDir::new("server-data-disk-full");
    let (clip, late) = (tmp.join("in.mp4"), tmp.join("late.mp4"));
    make_clip(&clip, 45, "640x360");
    make_clip(&late, 15, "640x360");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let data = tmp.join("data");
    // the shell opens the log inside the namespace, on the tmpfs
    let server = Server::start_in(tmp.path(), &[], tmpfs_wrapper(&data, "size=6m", "2>\"$0/server.log\""));
    let pid = server.child.id();
    let log = PathBuf::from(format!("/proc/{pid}/root{}", data.join("server.log").display()));
    // kept beside the other logs (for the secrets scan, and to read after a failure)
    let _keep = KeepLog(log.clone(), tmp.join("server-on-its-data-disk.log"));
    let admin = Client::login(server.http, "first-password-1");
    let mut streams = Vec::new();
    for name in ["a", "b", "c"] {
        let s = admin.post("/api/streams", json!({"name": name})).json();
        let path = format!("/api/streams/{}", s["id"].as_i64().unwrap());
        let url = format!("rtmp://127.0.0.1:{}/app/{name}", nginx.port);
        assert_eq!(admin.post(&format!("{path}/destinations"), json!({"name": "n", "url": url})).status, 201);
        streams.push((path, s["rtmp_url"].as_str().unwrap().to_string()));
    }
    // a and c record their original; b only relays until there is room again
    for i in [0, 2] {
        let r = admin.request("PATCH", &streams[i].0, Some(&json!({"record_mode": "original"})));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let mut publishers = vec![publish(&clip, &streams[0].1), publish(&clip, &streams[1].1)];

    // a's recording fills the file system (~2.2 Mb/s into 6 MB), a filler takes what is left
    let failed = wait_json(&admin, &streams[0].0, 60, |s| !s["recording"]["error"].is_null());
    assert!(failed["recording"]["error"].as_str().unwrap().to_lowercase().contains("no space"), "{failed}");
    assert_eq!(failed["recording"]["active"], json!(false), "{failed}");
    in_mount_namespace(
        pid,
        &data,
        "cat /dev/zero > \"$0/filler\" 2>/dev/null; df -P \"$0\" | awk 'NR == 2 { exit $4 != 0 }'",
    );
    let logged_before = std::fs::read(&log).unwrap().len();

    // full: changes are refused with the reason, reads and the health check answer
    let r = admin.request("PATCH", &streams[1].0, Some(&json!({"name": "renamed"})));
    assert_eq!((r.status, &r.json()["error"]["code"]), (503, &json!("unavailable")), "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("cannot be written"), "{}", r.body);
    // peers that send junk, each disconnected with a logged reason: more lines than the
    // log's last page holds, so log writes fail (a failed log write once panicked the task
    // that logged, and aborted the server when it came during unwinding)
    for _ in 0..60 {
        let mut s = TcpStream::connect(("127.0.0.1", server.rtmp)).unwrap();
        let _ = s.write_all(&[0x42; 1537]);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.read(&mut [0u8; 16]);
    }
    // so is a new stream, not answered with the id of a row that never lands
    let r = admin.post("/api/streams", json!({"name": "d"}));
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(admin.get("/api/streams").json().as_array().map(Vec::len), Some(3));
    assert_eq!(raw_get(server.http, "/healthz", None).0, 200);
    // a publisher arriving now goes live; its recording cannot start and says why
    publishers.push(publish(&late, &streams[2].1));
    let s = wait_json(&admin, &streams[2].0, 30, |s| {
        s["destinations"][0]["state"] == json!("live") && !s["recording"]["error"].is_null()
    });
    assert!(s["recording"]["error"].as_str().unwrap().to_lowercase().contains("no space"), "{s}");
    for (path, _) in &streams[..2] {
        let s = admin.get(path).json();
        assert_eq!(s["destinations"][0]["state"], json!("live"), "{s}");
    }

    // room again: the operator grows the file system
    in_mount_namespace(pid, &data, "mount -o remount,size=64m \"$0\" && rm \"$0/filler\"");
    let r = admin.request("PATCH", &streams[1].0, Some(&json!({"name": "renamed", "record_mode": "original"})));
    assert_eq!(r.status, 200, "{}", r.body);
    let s = wait_json(&admin, &streams[1].0, 20, |s| s["recording"]["active"] == json!(true));
    assert!(s["recording"]["error"].is_null(), "{s}");

    for ff in &mut publishers {
        assert!(wait_child(ff, Duration::from_secs(90)).is_some_and(|s| s.success()), "a publisher was disturbed");
    }
    // every publish in its stream's history once it ended (after the grace period), c's
    // too (its start may have been refused: the whole session is written at its end)
    for (path, _) in &streams {
        let ended = |s: &Value| s["sessions"].as_array().is_some_and(|v| v.iter().all(|x| !x["ended_at"].is_null()));
        let s = wait_json(&admin, path, 40, |s| s["sessions"].as_array().is_some_and(|v| !v.is_empty()) && ended(s));
        let sessions = s["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 1, "{s}");
        assert!(sessions[0]["ended_at"].as_i64() >= sessions[0]["started_at"].as_i64(), "{s}");
        assert!(sessions[0]["bytes_in"].as_i64().unwrap_or(0) > 1_000_000, "{s}");
    }
    // every recording listed and closed: the one the disk stopped with its file's size
    let list = wait_json(&admin, "/api/recordings", 30, |l| {
        l.as_array().is_some_and(|l| l.len() == 2 && l.iter().all(|r| !r["ended_at"].is_null()))
    });
    let sent = packet_hashes(&clip, "v");
    for (r, stream) in list.as_array().unwrap().iter().map(|r| (r, r["stream"].as_str().unwrap())) {
        assert_eq!(r["recording"], json!(false), "{list}");
        let (status, _, file) = admin.download(r["download_url"].as_str().unwrap(), None);
        assert_eq!(status, 200);
        assert_eq!(r["bytes"].as_u64(), Some(file.len() as u64), "{stream}: the listed size is the file's: {list}");
        let local = tmp.join(&format!("{stream}.mp4"));
        std::fs::write(&local, &file).unwrap();
        let (frames, errors) = decode_video(&local);
        assert!(frames.len() >= 60, "{stream}: {} frames: {errors}", frames.len());
        assert!(errors.trim().is_empty(), "{stream}: decoding the recording: {errors}");
        assert!(find_run(&sent, &packet_hashes(&local, "v")).is_some(), "{stream}: the clip's packets");
        assert!(r["duration_ms"].as_u64().unwrap_or(0) >= 2_000, "{stream}: {list}");
    }
    let mut names: Vec<_> = list.as_array().unwrap().iter().map(|r| r["stream"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["a", "renamed"], "{list}");
    // and nothing else on the disk: c's file, which never started, was removed
    let dir = PathBuf::from(format!("/proc/{pid}/root{}", data.join("recordings").display()));
    let mut files: Vec<_> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let mut listed: Vec<_> = list.as_array().unwrap().iter().map(|r| r["file"].as_str().unwrap().to_string()).collect();
    files.sort();
    listed.sort();
    assert_eq!(files, listed, "{list}");

    // the relay never noticed
    std::thread::sleep(Duration::from_secs(2));
    assert_whole_stream(&nginx, "a", &clip, false);
    assert_whole_stream(&nginx, "b", &clip, false);
    assert_whole_stream(&nginx, "c", &late, false);
    // the lines that did not fit were counted
    let metrics = admin.get("/metrics").body;
    let lost = metric(&metrics, "multistreamer_log_writes_lost_total");
    assert!(lost.is_some_and(|n| n > 0), "{metrics}");
    // the log went on once there was room
    let logged = std::fs::read(&log).unwrap();
    let (after, logged) = (String::from_utf8_lossy(&logged[logged_before..]), String::from_utf8_lossy(&logged));
    assert!(after.contains("recording to a new file"), "nothing logged once there was room: {after}");
    assert!(!logged.contains("panicked"), "{logged}");
    server.stop();
}

/// Copies a log (.0) that would vanish with its mount namespace to .1 when dropped.
struct KeepLog(PathBuf, PathBuf);

impl Drop for KeepLog {
    fn drop(&mut self) {
        let _ = std::fs::copy(&self.0, &self.1);
    }
}

/// Standard output and error on a full disk (`/dev/full`): the server starts, serves and
/// stops cleanly; printing its banner or a log line never panics.
#[test]
fn the_server_runs_with_its_output_on_a_full_disk() {
    let tmp = TempDir::new("server-output-full");
    let http = free_port();
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_multistreamer-server"))
        .arg("--data-dir")
        .arg(tmp.join("data"))
        .args(["--http", &format!("127.0.0.1:{http}"), "--rtmp", "127.0.0.1:0", "--rtsp", "127.0.0.1:0"])
        .args(["--srt", "127.0.0.1:0", "--whip-udp", "127.0.0.1:0"])
        .env("MULTISTREAMER_ADMIN_PASSWORD", "first-password-1")
        .stdin(Stdio::null())
        .stdout(full())
        .stderr(full())
        .spawn()
        .unwrap();
    assert!(wait_for_port(http, Duration::from_secs(30)), "the server did not start");
    assert_eq!(raw_get(http, "/healthz", None).0, 200);
    let admin = Client::login(http, "first-password-1");
    assert_eq!(admin.post("/api/streams", json!({"name": "quiet"})).status, 201);
    let metrics = admin.get("/metrics").body;
    let lost = metric(&metrics, "multistreamer_log_writes_lost_total");
    assert!(lost.is_some_and(|n| n > 0), "{metrics}");
    let _ = Command::new("kill").arg("-TERM").arg(server.id().to_string()).status();
    let st = wait_child(&mut server, Duration::from_secs(20));
    assert!(st.is_some_and(|s| s.success()), "clean exit on SIGTERM: {st:?}");
}

/// A data directory the server cannot write: it says so and exits, without a panic.
#[test]
fn a_read_only_data_directory_is_a_clear_error_at_start() {
    let tmp = TempDir::new("server-db-read-only");
    let data = tmp.join("data");
    let log = tmp.join("server.log");
    let st = server_on_tmpfs(&data, "size=8m,ro")
        .arg("--data-dir")
        .arg(&data)
        .args(["--http", "127.0.0.1:0", "--rtmp", "127.0.0.1:0", "--rtsp", "127.0.0.1:0"])
        .env("MULTISTREAMER_ADMIN_PASSWORD", "first-password-1")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!st.success(), "{text}");
    assert!(text.to_lowercase().contains("read-only"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

/// A GET as written (no normalisation, no check against the API description): status and
/// body.
fn raw_get(port: u16, path: &str, cookie: Option<&str>) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{cookie}\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw.windows(4).position(|w| w == b"\r\n\r\n").map_or(Vec::new(), |i| raw[i + 4..].to_vec());
    (status, body)
}

/// Every (method, path) the router serves, read from the router's source, so a route added
/// later is covered without editing this test.
fn routes() -> Vec<(String, String)> {
    let src = include_str!("../../src/api/mod.rs");
    let mut out = Vec::new();
    for chunk in src.split(".route(").skip(1) {
        let Some(path) = chunk.split('"').nth(1) else { continue };
        // the handlers, up to the next route
        for m in ["get", "post", "put", "patch", "delete"] {
            if chunk.contains(&format!("{m}(")) && !chunk.contains(&format!("_{m}("))
                || chunk.contains(&format!("routing::{m}("))
            {
                out.push((m.to_uppercase(), path.to_string()));
            }
        }
    }
    out
}

/// Hostile requests: every state-changing route refuses a request without the CSRF token
/// (routes enumerated from the router), and paths that try to leave the served directories
/// (`..`, encoded, absolute, NUL) get 400/404 and never a file's content.
#[test]
fn missing_csrf_and_path_traversal_are_refused_on_every_route() {
    let tmp = TempDir::new("server-hostile");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 12, "640x360");
    let server = Server::start(tmp.path());
    let admin = Client::login(server.http, "first-password-1");
    let stream = admin.post("/api/streams", json!({"name": "hostile"})).json();
    let id = stream["id"].as_i64().unwrap();

    let routes = routes();
    let documented: Value = serde_json::from_str(include_str!("../../assets/openapi.json")).unwrap();
    let changing: Vec<&(String, String)> = routes.iter().filter(|(m, _)| m != "GET").collect();
    eprintln!("state-changing routes: {changing:?}");
    assert!(changing.len() >= 20, "{routes:?}");
    for (method, path) in &changing {
        let op = &documented["paths"][path.as_str()][method.to_lowercase()];
        assert!(op.is_object(), "{method} {path} is served but not documented");
        if path == "/api/login" {
            continue; // signs in: no session, no token yet
        }
        if path.starts_with("/whip/") {
            // WHIP: authorized by the stream key (Bearer) or the session id, never by the
            // cookie, so a forged cross-site request carries nothing that authorizes it
            continue;
        }
        let concrete = path.replace("{id}", &id.to_string()).replace("{did}", "1").replace("{name}", "capture.json");
        let no_csrf = Client { csrf: None, ..admin.clone() };
        let r = no_csrf.request(method, &concrete, Some(&json!({})));
        assert_eq!(r.status, 403, "{method} {concrete} without the CSRF token: {}", r.body);
    }
    assert_eq!(admin.get(&format!("/api/streams/{id}")).json()["name"], json!("hostile"), "nothing changed");

    // a live stream, so that its HLS directory exists
    let mut ff = publish(&clip, stream["rtmp_url"].as_str().unwrap());
    let s = wait_json(&admin, &format!("/api/streams/{id}"), 20, |s| {
        s["hls_variants"][0]["segments"].as_u64().unwrap_or(0) > 0
    });
    let play = s["hls_play_path"].as_str().unwrap().trim_end_matches("/index.m3u8").to_string();
    let cookie = admin.cookie.clone();
    let (status, body) = raw_get(server.http, &format!("/hls/{id}/source/index.m3u8"), cookie.as_deref());
    assert_eq!(status, 200, "the real playlist: {}", String::from_utf8_lossy(&body));
    let secrets: [&[u8]; 4] = [b"root:", b"SQLite format", b"[package]", b"multistreamer_start"];
    let attempts = [
        format!("/hls/{id}/source/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd"),
        format!("/hls/{id}/..%2f..%2f..%2f..%2fetc/passwd"),
        format!("/hls/{id}/%2e%2e/%2e%2e"),
        format!("/hls/{id}/source/%2fetc%2fpasswd"),
        format!("/hls/{id}/source/..%2F..%2F..%2Fmultistreamer.db"),
        format!("/hls/{id}/source/index.m3u8%00.ts"),
        format!("/hls/..%2f..%2f{id}/source/index.m3u8"),
        format!("/hls/{id}/source/....%2f%2f....%2f%2fetc%2fpasswd"),
        format!("{play}/source/..%2f..%2f..%2fmultistreamer.db"),
        format!("{play}/..%2f..%2f/etc%2fpasswd"),
        format!("{play}/source/%2e%2e%2f%2e%2e%2fsecret.key"),
        "/play/..%2f..%2f..%2fetc/source/passwd".to_string(),
        "/api/recordings/..%2f..%2fetc%2fpasswd/file".to_string(),
        "/api/recordings/1%00/file".to_string(),
        format!("/api/captures/{id}/files/..%2f..%2fmultistreamer.db"),
        format!("/api/captures/{id}/files/%2fetc%2fpasswd"),
        "/js/..%2f..%2f..%2fCargo.toml".to_string(),
        "/js/%2e%2e%2fapp.css".to_string(),
        "/js/%2fetc%2fpasswd".to_string(),
        "/../../../../etc/passwd".to_string(),
        "/%2e%2e/%2e%2e/etc/passwd".to_string(),
    ];
    for path in &attempts {
        for who in [cookie.as_deref(), None] {
            let (status, body) = raw_get(server.http, path, who);
            assert!(
                [400, 401, 404].contains(&status),
                "{path} (signed in: {}) answered {status}: {}",
                who.is_some(),
                String::from_utf8_lossy(&body[..body.len().min(200)])
            );
            for secret in secrets {
                assert!(!body.windows(secret.len()).any(|w| w == secret), "{path} leaked a file");
            }
        }
    }
    let _ = ff.kill();
    let _ = ff.wait();
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// Keeps `count` TCP connections from `source` open to `port` that never send a byte,
/// reopening each one the server closes, until killed.
fn connection_flood(source: &str, port: u16, count: usize) -> Child {
    let script = r#"
import resource, select, socket, sys, time
src, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
def dial():
    s = socket.socket()
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    return s
socks = [dial() for _ in range(count)]
print("flooding", flush=True)
reopened = 0
while True:
    ready, _, _ = select.select(socks[:1000], [], [], 0.2)
    ready += select.select(socks[1000:], [], [], 0)[0] if len(socks) > 1000 else []
    for s in ready:
        try:
            gone = s.recv(4096) == b""
        except OSError:
            gone = True
        if gone:
            s.close()
            socks[socks.index(s)] = dial()
            reopened += 1
"#;
    spawn_ready(
        Command::new("/usr/bin/python3").args(["-c", script, source, &port.to_string(), &count.to_string()]),
        b"flooding",
    )
}

/// 1,100 connections from one host that never finish the RTMP handshake (reopened as soon
/// as they are closed): the server refuses what is beyond the per-address limit, a real
/// publisher from another address goes live and reaches its destination bit-exact, the API
/// answers, and the log is not flooded.
#[test]
fn a_connection_flood_from_one_host_does_not_lock_out_a_real_publisher() {
    let tmp = TempDir::new("server-flood");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 10, "640x360");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let server = Server::start(tmp.path());
    let admin = Client::login(server.http, "first-password-1");
    let stream = admin.post("/api/streams", json!({"name": "flooded"})).json();
    let id = stream["id"].as_i64().unwrap();
    let url = format!("rtmp://127.0.0.1:{}/app/flooded", nginx.port);
    assert_eq!(admin.post(&format!("/api/streams/{id}/destinations"), json!({"name": "n", "url": url})).status, 201);

    let mut flood = connection_flood("127.0.0.2", server.rtmp, 1100);
    std::thread::sleep(Duration::from_secs(1));
    publish_to_end(&clip, stream["rtmp_url"].as_str().unwrap());
    let s = admin.get(&format!("/api/streams/{id}")).json();
    assert_eq!(s["name"], json!("flooded"), "the API answers during the flood");
    let _ = flood.kill();
    let _ = flood.wait();
    std::thread::sleep(Duration::from_secs(2));
    let rec = nginx.recordings_of("flooded");
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert_same_packets(&rec[0], &clip);
    let log = server.log();
    let refusals = log.lines().filter(|l| l.contains("refusing RTMP connections")).count();
    assert!(refusals >= 1, "the flood was not refused: {log}");
    assert!(refusals <= 30, "{refusals} refusal lines: the log is flooded");
    assert!(!log.contains("panicked"), "{log}");
}

/// schemathesis (installed by `make deps-test`) fuzzes every operation of the API, signed
/// in, against `assets/openapi.json`: no 5xx, every status and content type documented,
/// every JSON body valid against its schema, and no panic in the log. A bounded run here;
/// `make fuzz-api` runs it for 30 minutes (`MULTISTREAMER_API_FUZZ_SECONDS`).
#[test]
fn the_api_holds_under_schemathesis() {
    let st = std::env::var("MULTISTREAMER_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/api-fuzz-venv/bin/st"));
    assert!(st.exists(), "{} is missing: run `make deps-test` (scripts/api-fuzz-env.sh)", st.display());
    let tmp = TempDir::new("server-schemathesis");
    let google = FakeGoogle::start("rtmp://127.0.0.1:1/live2", &tmp.join("rec"));
    let mts = FakeMtsLink::start();
    assert!(wait_for_port(google.port, Duration::from_secs(10)) && wait_for_port(mts.port, Duration::from_secs(10)));
    let server = Server::start_with(tmp.path(), &platform_flags(&google, &mts));
    let admin = Client::login(server.http, "first-password-1");
    // something for the operations on ids to find
    let stream = admin.post("/api/streams", json!({"name": "fuzzed"})).json();
    let id = stream["id"].as_i64().unwrap();
    let dest = json!({"name": "d", "url": "rtmp://127.0.0.1:1/app/key"});
    assert_eq!(admin.post(&format!("/api/streams/{id}/destinations"), dest).status, 201);
    let r = admin.post("/api/platforms/mtslink", json!({"name": "webinar.ru", "token": FakeMtsLink::TOKEN}));
    assert_eq!(r.status, 201, "{}", r.body);

    let seconds: Option<u64> = std::env::var("MULTISTREAMER_API_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok());
    let mut cmd = Command::new(&st);
    cmd.arg("run")
        .arg(format!("http://127.0.0.1:{}/api/openapi.json", server.http))
        .args(["-H", &format!("Cookie: {}", admin.cookie.clone().unwrap())])
        .args(["-H", &format!("X-CSRF-Token: {}", admin.csrf.clone().unwrap())])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        // signing out or changing the password ends the run's session; the feeds never end
        .args(["--exclude-path", "/api/logout", "--exclude-path", "/api/login", "--exclude-path", "/api/password"])
        .args(["--exclude-path", "/api/streams/{id}/live", "--exclude-path", "/api/system/live"])
        .args(["--workers", "1", "--seed", "20261202", "--no-color"]);
    match seconds {
        Some(s) => cmd.args(["--phases", "coverage,fuzzing,stateful", "--max-time", &s.to_string()]),
        None => cmd.args(["--phases", "coverage,fuzzing", "--max-examples", "25"]),
    };
    // its cache of found failures goes to the scratch directory, not into the source tree;
    // the hooks teach it to send WHIP's application/sdp offers
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults");
    let out = cmd
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PYTHONPATH", hooks)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!(
        "{}",
        text.lines().filter(|l| l.contains("generated") || l.contains("passed")).collect::<Vec<_>>().join("\n")
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains(FakeMtsLink::TOKEN), "the API token in the log");
}

/// SIGTERM while live, then a start on the same data directory: the destination was
/// unpublished cleanly, the recording closed and playable; after the start, a pulled stream
/// comes back by itself, the publisher's reconnect goes live with its destination and a new
/// recording — everything from the database, nothing set again.
#[test]
fn a_restart_while_live_closes_cleanly_and_resumes_from_the_database() {
    let tmp = TempDir::new("server-restart");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 30, "320x240");
    let vod = tmp.join("www/v");
    make_hls_vod(&clip, &vod, &[]);
    let http = HttpServer::start(&tmp.join("www"));
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let server = Server::start(tmp.path());
    let admin = Client::login(server.http, "first-password-1");
    let stream = admin.post("/api/streams", json!({"name": "talk"})).json();
    let id = stream["id"].as_i64().unwrap();
    let url = format!("rtmp://127.0.0.1:{}/app/talk-out", nginx.port);
    assert_eq!(admin.post(&format!("/api/streams/{id}/destinations"), json!({"name": "n", "url": url})).status, 201);
    let r = admin.request("PATCH", &format!("/api/streams/{id}"), Some(&json!({"record_mode": "original"})));
    assert_eq!(r.status, 200, "{}", r.body);
    let pulled = admin.post("/api/streams", json!({"name": "camera"})).json();
    let pid = pulled["id"].as_i64().unwrap();
    let r =
        admin.request("PATCH", &format!("/api/streams/{pid}"), Some(&json!({"pull_url": http.url("v/index.m3u8")})));
    assert_eq!(r.status, 200, "{}", r.body);

    let mut ff = publish(&clip, stream["rtmp_url"].as_str().unwrap());
    let live = |s: &Value| {
        s["destinations"][0]["state"] == json!("live") && s["recording"]["bytes_written"].as_u64().unwrap_or(0) > 0
    };
    wait_json(&admin, &format!("/api/streams/{id}"), 20, live);
    wait_json(&admin, &format!("/api/streams/{pid}"), 20, |s| s["pull"]["state"] == json!("live"));
    std::thread::sleep(Duration::from_secs(3));
    server.stop(); // SIGTERM, a clean exit asserted
    let _ = wait_child(&mut ff, Duration::from_secs(10));
    let first = nginx.recordings_of("talk-out");
    assert_eq!(first.len(), 1, "{first:?}");
    let got = packet_hashes(&first[0], "v");
    assert!(got.len() >= 60, "{} packets before the restart", got.len());
    assert_eq!(&packet_hashes(&clip, "v")[..got.len()], &got[..], "a clean prefix of the stream");

    // the same data directory, new ports
    let server = Server::start(tmp.path());
    let admin = Client::login(server.http, "first-password-1");
    let recs = admin.get("/api/recordings").json();
    assert_eq!(recs.as_array().unwrap().len(), 1, "{recs}");
    assert_eq!(recs[0]["recording"], json!(false), "closed: {recs}");
    let (status, _, file) = admin.download(recs[0]["download_url"].as_str().unwrap(), None);
    assert_eq!(status, 200);
    let local = tmp.join("before-restart.mp4");
    std::fs::write(&local, &file).unwrap();
    let (frames, errors) = decode_video(&local);
    assert!(frames.len() >= 60 && errors.trim().is_empty(), "{} frames: {errors}", frames.len());
    // the pull comes back by itself
    wait_json(&admin, &format!("/api/streams/{pid}"), 30, |s| s["pull"]["state"] == json!("live"));
    // the publisher reconnects: destination and recording as configured
    let again = admin.get(&format!("/api/streams/{id}")).json();
    publish_to_end(&tmp.join("in.mp4"), again["rtmp_url"].as_str().unwrap());
    std::thread::sleep(Duration::from_secs(2));
    let all = nginx.recordings_of("talk-out");
    assert_eq!(all.len(), 2, "republished after the restart: {all:?}");
    let second = all.iter().find(|p| **p != first[0]).unwrap();
    assert_same_packets(second, &clip);
    let recs = wait_json(&admin, "/api/recordings", 20, |v| {
        v.as_array().is_some_and(|a| a.len() == 2 && a.iter().all(|r| r["recording"] == json!(false)))
    });
    assert!(recs.as_array().unwrap().iter().all(|r| r["duration_ms"].as_u64().unwrap_or(0) > 0), "{recs}");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// A request announcing a 1 GB body is refused after the first megabytes (413), and the
/// server goes on answering; the same for a body that never ends (chunked).
#[test]
fn an_oversized_request_body_is_refused_without_reading_it_all() {
    let tmp = TempDir::new("server-big-body");
    let server = Server::start(tmp.path());
    let admin = Client::login(server.http, "first-password-1");
    let cookie = admin.cookie.clone().unwrap();
    let csrf = admin.csrf.clone().unwrap();
    for framing in ["Content-Length: 1073741824", "Transfer-Encoding: chunked"] {
        let mut s = TcpStream::connect(("127.0.0.1", server.http)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        let chunked = framing.starts_with("Transfer");
        let start = if chunked { "9\r\n{\"name\":\"\r\n" } else { "{\"name\":\"" };
        write!(
            s,
            "POST /api/streams HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\n\
             Content-Type: application/json\r\n{framing}\r\n\r\n{start}"
        )
        .unwrap();
        // up to 64 MB, until the server answers and stops reading
        let chunk = vec![b'a'; 1 << 20];
        let mut sent = 0usize;
        for _ in 0..64 {
            let piece: Vec<u8> = if chunked {
                [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk.clone(), b"\r\n".to_vec()].concat()
            } else {
                chunk.clone()
            };
            if s.write_all(&piece).is_err() {
                break;
            }
            sent += chunk.len();
        }
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let head = String::from_utf8_lossy(&answer[..answer.len().min(600)]).to_string();
        assert!(head.starts_with("HTTP/1.1 413"), "{framing}: after {sent} bytes the server said: {head}");
        assert!(sent < 64 << 20 || head.starts_with("HTTP/1.1 413"), "{framing}");
        // and it carries on
        assert_eq!(admin.get("/api/streams").status, 200);
    }
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// 10,000 streams (20,000 destinations) in the database, written straight into SQLite:
/// the server starts on them, lists them all, and a real publisher on one of them reaches
/// its destination bit-exact.
#[test]
fn ten_thousand_streams_in_the_database() {
    let tmp = TempDir::new("server-10k");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 6, "320x240");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    // the schema comes from a first start
    Server::start(tmp.path()).stop();
    let fill = r#"
import secrets, sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], timeout=30)
t = int(time.time())
for i in range(10000):
    sid = c.execute("INSERT INTO streams(name, ingest_key, created_at) VALUES (?, ?, ?)",
                    ("bulk-%d" % i, secrets.token_hex(16), t)).lastrowid
    for d in ("a", "b"):
        c.execute("INSERT INTO destinations(stream_id, name, url, enabled, created_at) VALUES (?, ?, ?, 0, ?)",
                  (sid, d, "rtmp://127.0.0.1:1/app/k%d%s" % (i, d), t))
c.commit()
"#;
    let st = Command::new("/usr/bin/python3").args(["-c", fill]).arg(tmp.join("data/multistreamer.db")).status();
    assert!(st.unwrap().success());
    let server = Server::start(tmp.path());
    let admin = Client::login(server.http, "first-password-1");
    let header = |r: &Resp, name: &str| {
        r.headers.lines().find_map(|l| {
            let low = l.to_ascii_lowercase();
            low.strip_prefix(name).map(|v| v.trim().to_string())
        })
    };
    let all = admin.get("/api/streams");
    assert_eq!(all.json().as_array().unwrap().len(), 10_000, "every stream listed");
    assert_eq!(header(&all, "x-total-count:").as_deref(), Some("10000"), "the whole list counts itself");
    // a page at a time: the total, the next page's link, each stream's destinations
    let page = admin.get("/api/streams?limit=100&offset=9950");
    assert_eq!(page.status, 200, "{}", page.body);
    let items = page.json();
    let names: Vec<&str> = items.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, (9950..10_000).map(|i| format!("bulk-{i}")).collect::<Vec<_>>());
    assert!(items.as_array().unwrap().iter().all(|s| s["destinations"].as_array().unwrap().len() == 2), "{items}");
    assert_eq!(header(&page, "x-total-count:").as_deref(), Some("10000"));
    assert_eq!(header(&page, "link:"), None, "the last page links to no next one");
    let first = admin.get("/api/streams?limit=3");
    assert_eq!(first.json()[0]["name"], json!("bulk-0"));
    assert_eq!(header(&first, "link:").as_deref(), Some("</api/streams?limit=3&offset=3>; rel=\"next\""));
    assert_eq!(admin.get("/api/streams?limit=10&offset=20000").json(), json!([]));
    for bad in ["limit=0", "limit=1001", "offset=-1", "limit=ten"] {
        let r = admin.get(&format!("/api/streams?{bad}"));
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
        assert!(["limit", "offset"].contains(&r.json()["error"]["field"].as_str().unwrap()), "{}", r.body);
    }
    let stream = admin.post("/api/streams", json!({"name": "the real one"})).json();
    let id = stream["id"].as_i64().unwrap();
    let url = format!("rtmp://127.0.0.1:{}/app/real", nginx.port);
    assert_eq!(admin.post(&format!("/api/streams/{id}/destinations"), json!({"name": "n", "url": url})).status, 201);
    publish_to_end(&clip, stream["rtmp_url"].as_str().unwrap());
    std::thread::sleep(Duration::from_secs(2));
    let rec = nginx.recordings_of("real");
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert_same_packets(&rec[0], &clip);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// 300 clients that send their request headers a byte at a time (and one that sends
/// nothing): the API answers all along, and the server cuts each of them off once the
/// header deadline (3 s here, 15 s by default) has passed.
#[test]
fn slow_http_clients_are_cut_off_and_the_api_keeps_answering() {
    let tmp = TempDir::new("server-slowloris");
    let server = Server::start_with(tmp.path(), &["--http-header-timeout".to_string(), "3".to_string()]);
    let admin = Client::login(server.http, "first-password-1");
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", server.http)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
            s
        })
        .collect();
    let silent = TcpStream::connect(("127.0.0.1", server.http)).unwrap();
    let request = b"GET /api/streams HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let started = Instant::now();
    let (mut closed, mut step) = (vec![false; slow.len()], 0usize);
    while closed.iter().any(|c| !c) && started.elapsed() < Duration::from_secs(20) {
        for (s, done) in slow.iter_mut().zip(closed.iter_mut()).filter(|(_, d)| !**d) {
            let byte = request[step.min(request.len() - 1)];
            *done = s.write_all(&[byte]).is_err() || cut_off(s);
        }
        step += 1;
        // the API answers while they trickle
        assert_eq!(admin.get("/api/streams").status, 200);
        std::thread::sleep(Duration::from_millis(200));
    }
    let cut = closed.iter().filter(|c| **c).count();
    assert_eq!(cut, slow.len(), "{cut} of {} slow clients cut off after {:?}", slow.len(), started.elapsed());
    let mut probe = [0u8; 16];
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!((&silent).read(&mut probe).ok(), Some(0), "the silent client was cut off");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// Whether the server closed `s` (a read that only times out means it is still open).
fn cut_off(s: &mut TcpStream) -> bool {
    let mut probe = [0u8; 64];
    match s.read(&mut probe) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

/// `make image`: the server in its container image (podman, host network, the scratch
/// directory mounted at the same path) starts, answers /healthz and the API, and relays a
/// publish to nginx-rtmp bit-exact; SIGTERM stops it cleanly.
#[test]
#[ignore = "needs the container image: make image"]
fn the_container_image_serves_and_relays() {
    let image = std::env::var("MULTISTREAMER_IMAGE").unwrap_or_else(|_| "localhost/multistreamer:dev".into());
    let tmp = TempDir::new("server-image");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 6, "320x240");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let name = format!("multistreamer-smoke-{}", std::process::id());
    /// The container goes whatever happens to the test.
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = Command::new("podman").args(["rm", "-f", "-t", "2", &self.0]).output();
        }
    }
    let _remove = Remove(name.clone());
    let mut podman = Command::new("podman");
    podman
        .args(["run", "--rm", "--name", &name, "--network", "host", "--pull", "never"])
        .args(["-e", "MULTISTREAMER_ADMIN_PASSWORD", "-e", "NO_COLOR", "-v"])
        .arg(format!("{0}:{0}", tmp.path().display()))
        .arg(&image);
    let server = Server::start_in(tmp.path(), &[], podman);
    let health = Client { port: server.http, ..Default::default() }.get("/healthz");
    assert_eq!((health.status, health.body.trim()), (200, "ok"));
    let admin = Client::login(server.http, "first-password-1");
    let stream = admin.post("/api/streams", json!({"name": "from the image"})).json();
    let id = stream["id"].as_i64().unwrap();
    let url = format!("rtmp://127.0.0.1:{}/app/image-out", nginx.port);
    assert_eq!(admin.post(&format!("/api/streams/{id}/destinations"), json!({"name": "n", "url": url})).status, 201);
    publish_to_end(&clip, stream["rtmp_url"].as_str().unwrap());
    std::thread::sleep(Duration::from_secs(2));
    let rec = nginx.recordings_of("image-out");
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert_same_packets(&rec[0], &clip);
    // the libraries it runs on are the image's own
    let out =
        Command::new("podman").args(["exec", &name, "sh", "-c", "ldd /usr/local/bin/multistreamer-server"]).output();
    let ldd = String::from_utf8_lossy(&out.unwrap().stdout).to_string();
    assert!(ldd.contains("libavcodec.so.59") && !ldd.contains("not found"), "{ldd}");
    // and what a webinar capture needs is there
    let out = Command::new("podman").args(["exec", &name, "sh", "-c", "command -v chromium Xvfb"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    server.stop();
}
