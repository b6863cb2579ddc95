//! `multistreamer capture` against a local webinar room page (`test-support/peers/fake_room.py`)
//! in Debian's chromium, with the presenter read from a virtual display: the chat is checked
//! message by message (text exact, time within 500 ms of when the page showed it, once
//! each through a reload and a browser crash), the presenter video frame by frame (the
//! canvas's colour changes every frame), and a `kill -9` leaves readable files.
#![allow(clippy::unwrap_used)]

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use multistreamer_core::capture::chat::{ChatSource, read_chat};
use multistreamer_core::capture::manifest::Manifest;
use multistreamer_core::clock::parse_rfc3339_millis;
use multistreamer_test_support::*;
use serde_json::Value;

/// One capture at a time: each runs a browser, a display and an encoder on the machine's
/// two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn capture_cmd(room: &FakeRoom, out: &Path, extra: &[&str]) -> Child {
    capture_cmd_env(room, out, extra, &[])
}

fn capture_cmd_env(room: &FakeRoom, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(workspace_bin("multistreamer"))
        .args(["capture", "--url", &room.url(), "--out"])
        .arg(out)
        .args(["--chat-selector", "#chat", "--chat-author-selector", ".author", "--chat-text-selector", ".text"])
        .args(["--chat-id-attribute", "data-id", "--presenter-selector", "#presenter"])
        .args(["--window", "1280x720", "--fps", "30"])
        .args(extra)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out.with_extension("out")).unwrap())
        .stderr(std::fs::File::create(out.with_extension("log")).unwrap())
        // its own process group: a kill reaches the browser and the display too
        .process_group(0)
        .spawn()
        .unwrap()
}

/// A webinar (an event and its session) created on the MTS Link stand-in: the session's id.
fn webinar_session(mts: &FakeMtsLink) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = multistreamer_core::platform::MtsLinkClient::new(&mts.api_base(), FakeMtsLink::TOKEN).unwrap();
    let event = multistreamer_core::platform::NewEvent {
        name: "Lecture".into(),
        description: String::new(),
        starts_at: (2026, 12, 2, 10, 0),
        timezone: None,
        access: multistreamer_core::platform::EventAccess::Free,
        kind: "webinar".into(),
    };
    rt.block_on(client.create_webinar(&event)).unwrap().1.id
}

fn manifest(out: &Path) -> Option<Manifest> {
    Manifest::load(out).ok()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn room_state(room: &FakeRoom) -> Value {
    serde_json::from_str(&room.state()).unwrap()
}

/// The colour at the centre of each presenter frame.
fn centre_colours(video: &Path) -> Vec<[u8; 3]> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(video)
        .args(["-fps_mode", "passthrough", "-vf", "crop=16:16:iw/2-8:ih/2-8,scale=1:1"])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect()
}

fn saturated(c: &[u8; 3]) -> bool {
    let (max, min) = (c.iter().max().unwrap_or(&0), c.iter().min().unwrap_or(&0));
    max - min > 120
}

fn kill_browser_of(pid: u32) -> usize {
    let browsers: Vec<u32> = child_pids(pid).into_iter().filter(|p| process_name(*p).contains("chrom")).collect();
    for p in &browsers {
        let _ = Command::new("kill").args(["-KILL", &p.to_string()]).status();
    }
    browsers.len()
}

#[test]
fn a_room_is_captured_through_a_reload_a_layout_change_and_a_browser_crash() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = TempDir::new("capture-room");
    let room = FakeRoom::start();
    let out = tmp.join("cap");
    let mut child = capture_cmd(&room, &out, &["--duration", "24", "--name", "Lecture 1"]);
    wait_for("the page", Duration::from_secs(30), || manifest(&out).is_some_and(|m| m.counters.page_loads >= 1));

    let long_word = "Длинное".repeat(286); // 2,002 characters, no space to wrap at
    let first: Vec<(String, String)> = vec![
        ("Анна".into(), "Добрый день! Начинаем?".into()),
        ("Bob".into(), "🎉👍 great talk 😀".into()),
        ("Mallory".into(), "<img src=x onerror=alert(1)> <b>not bold</b>".into()),
        ("Длинный".into(), long_word),
    ];
    for (a, t) in &first {
        room.say(&[(a, t)]);
        std::thread::sleep(Duration::from_millis(300));
    }
    // ten messages in one second
    let burst: Vec<(String, String)> = (1..=10).map(|i| (format!("user{i}"), format!("burst №{i}"))).collect();
    for chunk in burst.chunks(2) {
        room.say(&chunk.iter().map(|(a, t)| (a.as_str(), t.as_str())).collect::<Vec<_>>());
        std::thread::sleep(Duration::from_millis(190));
    }
    std::thread::sleep(Duration::from_millis(500));
    room.command("reload");
    wait_for("the reload", Duration::from_secs(10), || room_state(&room)["loads"].as_u64() >= Some(2));
    room.say(&[("Анна", "после перезагрузки")]);
    std::thread::sleep(Duration::from_millis(500));
    room.command("move");
    std::thread::sleep(Duration::from_millis(800));
    room.say(&[("Bob", "the tile moved")]);
    std::thread::sleep(Duration::from_millis(800));
    assert!(kill_browser_of(child.id()) > 0, "no browser under the capture");
    wait_for("the browser restart", Duration::from_secs(20), || {
        manifest(&out).is_some_and(|m| m.counters.browser_restarts >= 1 && m.counters.page_loads >= 3)
    });
    room.say(&[("Анна", "после сбоя браузера")]);
    let status = wait_child(&mut child, Duration::from_secs(60)).expect("the capture ends after --duration");
    let stdout = std::fs::read_to_string(out.with_extension("out")).unwrap_or_default();
    assert!(status.success(), "{stdout}\n{}", std::fs::read_to_string(out.with_extension("log")).unwrap_or_default());

    // the chat: every message once, in order, text exact, at the time the page showed it
    let m = Manifest::load(&out).unwrap();
    let started = parse_rfc3339_millis(&m.started_at).unwrap();
    let state = room_state(&room);
    let sent = state["messages"].as_array().unwrap();
    let chat = read_chat(&out.join("chat.jsonl")).unwrap();
    let ids: Vec<&str> = chat.iter().map(|l| l.id.as_str()).collect();
    let want: Vec<String> = sent.iter().map(|s| s["id"].to_string()).collect();
    assert_eq!(ids, want, "each message once, in the order the page showed them");
    for (line, s) in chat.iter().zip(sent) {
        assert_eq!(
            (line.author.as_str(), line.text.as_str()),
            (s["author"].as_str().unwrap(), s["text"].as_str().unwrap())
        );
        assert_eq!((line.source, line.kind.as_str()), (ChatSource::Page, "message"));
        let shown = state["inserted"][&line.id].as_i64().unwrap() - started;
        let late = line.t_ms as i64 - shown;
        assert!(late.abs() <= 500, "message {} at {} ms, shown at {shown} ms", line.id, line.t_ms);
    }
    assert!(chat.iter().any(|l| l.text.chars().count() == 2002), "the 2,000-character message is whole");

    // the manifest: the reload and the crash are gaps, the tile's move is in the rectangles
    assert_eq!((m.version, m.name.as_str(), m.profile.as_str()), (1, "Lecture 1", "generic"));
    assert!(m.ended_at.is_some() && m.error.is_none(), "{:?}", m.error);
    let reasons: Vec<&str> = m.gaps.iter().map(|g| g.reason.as_str()).collect();
    assert!(reasons.contains(&"page reload") && reasons.contains(&"browser restart"), "{:?}", m.gaps);
    assert!(m.gaps.iter().all(|g| g.from_ms <= g.to_ms));
    assert!(m.presenter_rects.iter().any(|r| (r.x, r.y, r.w, r.h) == (40, 40, 640, 360)), "{:?}", m.presenter_rects);
    assert!(m.presenter_rects.iter().any(|r| (r.x, r.y, r.w, r.h) == (300, 260, 800, 450)), "{:?}", m.presenter_rects);
    assert_eq!(m.counters.chat_messages as usize, sent.len());
    // how fast lines reach the file is measured by `make bench-capture`, not asserted here
    assert!(m.counters.chat_latency_p95_ms.is_some(), "{:?}", m.counters);

    // the presenter: 640x360 (the tile as it started), at ≥ 80 % of 30 fps, showing the canvas
    let video = out.join("presenter.mp4");
    assert_eq!(probe_value(&video, "v", "stream=width"), "640");
    assert_eq!(probe_value(&video, "v", "stream=height"), "360");
    assert!(m.counters.presenter_fps >= 24.0, "{:.1} fps: {:?}", m.counters.presenter_fps, m.counters);
    let colours = centre_colours(&video);
    assert_eq!(colours.len() as u64, m.counters.presenter_frames);
    // while the page is away (the gaps, and the moment a new page takes to paint) the screen
    // is empty; everywhere else it shows the canvas
    let start = m.presenter_start_ms.unwrap() as f64;
    let away = |i: usize| {
        let t = start + i as f64 * 1000.0 / 30.0;
        m.gaps.iter().any(|g| t >= g.from_ms as f64 - 500.0 && t <= g.to_ms as f64 + 2000.0)
    };
    let present: Vec<usize> = (0..colours.len()).filter(|i| !away(*i)).collect();
    let canvas = present.iter().filter(|i| saturated(&colours[**i])).count();
    assert!(canvas * 100 >= present.len() * 95, "{canvas} of {} frames show the canvas", present.len());
    let moving = present.iter().filter(|&&i| i > 0 && saturated(&colours[i]) && colours[i - 1] != colours[i]).count();
    assert!(moving * 100 >= canvas * 95, "{moving} of {canvas} canvas frames differ from the one before");
}

#[test]
fn a_killed_capture_leaves_readable_files_up_to_about_a_second_before() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = TempDir::new("capture-kill");
    let room = FakeRoom::start();
    let out = tmp.join("cap");
    let mut child = capture_cmd(&room, &out, &[]);
    wait_for("the page", Duration::from_secs(30), || manifest(&out).is_some_and(|m| m.counters.page_loads >= 1));
    for i in 0..5 {
        room.say(&[("Анна", &format!("сообщение {i}"))]);
        std::thread::sleep(Duration::from_millis(400));
    }
    std::thread::sleep(Duration::from_millis(2500));
    let started = parse_rfc3339_millis(&manifest(&out).unwrap().started_at).unwrap();
    let killed_at =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    // the whole group, browser and display included: as a power cut would
    let _ = Command::new("kill").args(["-s", "KILL", "--", &format!("-{}", child.id())]).status();
    let _ = child.wait();

    let chat = read_chat(&out.join("chat.jsonl")).unwrap();
    assert_eq!(chat.len(), 5, "every message written before the kill is there");
    let video = out.join("presenter.mp4");
    let frames: u64 = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v", "-show_entries", "stream=nb_read_frames"])
        .args(["-of", "csv=p=0"])
        .arg(&video)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(0))
        .unwrap_or(0);
    let last_ms: f64 = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries", "frame=pts_time", "-of", "csv=p=0"])
        .arg(&video)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.trim().parse::<f64>().ok()).fold(0.0, f64::max)
        })
        .unwrap_or(0.0)
        * 1000.0;
    let m = Manifest::load(&out).expect("the manifest is whole (written atomically)");
    // the video's timeline starts at its first frame, which the manifest places
    let first = m.presenter_start_ms.expect("the manifest knows the first frame") as f64;
    let kill_ms = (killed_at - started) as f64;
    assert!(frames > 30, "{frames} frames readable");
    assert!(first + last_ms >= kill_ms - 2000.0, "video readable to {:.0} ms of {kill_ms:.0} ms", first + last_ms);
}

/// The page's chat and MTS Link's API chat together: each message once — the API's line
/// where both saw it (with the page's more precise time), the page's where only it did.
#[test]
fn the_api_chat_wins_over_the_page_and_the_page_fills_its_gaps() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = TempDir::new("capture-api");
    let room = FakeRoom::start();
    let mts = FakeMtsLink::start();
    assert!(wait_for_port(mts.port, Duration::from_secs(10)));
    let out = tmp.join("cap");
    let sid = webinar_session(&mts).to_string();
    let base = mts.api_base();
    let mut child = capture_cmd_env(
        &room,
        &out,
        &["--no-presenter", "--duration", "14", "--mtslink-session", &sid, "--mtslink-api-base", &base],
        &[("MULTISTREAMER_MTSLINK_TOKEN", FakeMtsLink::TOKEN)],
    );
    wait_for("the page", Duration::from_secs(30), || manifest(&out).is_some_and(|m| m.counters.page_loads >= 1));
    let api = |author: &str, text: &str| {
        let body = format!(r#"{{"session":{sid},"author":{},"text":{}}}"#, json_str(author), json_str(text));
        mts.control("chat", &body);
    };
    for (a, t) in [("Анна", "и там, и тут"), ("Bob", "both places 👍"), ("Анна", "ещё одно")] {
        room.say(&[(a, t)]);
        api(a, t);
        std::thread::sleep(Duration::from_millis(400));
    }
    api("Carl", "only through the API");
    room.say(&[("Dana", "only on the page")]);
    let status = wait_child(&mut child, Duration::from_secs(60)).expect("the capture ends after --duration");
    assert!(status.success(), "{}", std::fs::read_to_string(out.with_extension("log")).unwrap_or_default());

    let chat = read_chat(&out.join("chat.jsonl")).unwrap();
    let mut got: Vec<(ChatSource, &str)> = chat.iter().map(|l| (l.source, l.text.as_str())).collect();
    got.sort();
    let mut want = vec![
        (ChatSource::Mtslink, "и там, и тут"),
        (ChatSource::Mtslink, "both places 👍"),
        (ChatSource::Mtslink, "ещё одно"),
        (ChatSource::Mtslink, "only through the API"),
        (ChatSource::Page, "only on the page"),
    ];
    want.sort();
    assert_eq!(got, want, "each message once");
    let m = Manifest::load(&out).unwrap();
    assert_eq!(m.chat_sources, [format!("mtslink:{sid}")]);
    let started = parse_rfc3339_millis(&m.started_at).unwrap();
    let state = room_state(&room);
    for line in chat.iter().filter(|l| l.source == ChatSource::Mtslink && l.author != "Carl") {
        let shown = state["messages"].as_array().unwrap().iter().find(|s| s["text"] == line.text.as_str()).unwrap();
        let shown = state["inserted"][&shown["id"].to_string()].as_i64().unwrap() - started;
        assert!((line.t_ms as i64 - shown).abs() <= 500, "{} at {} ms, shown at {shown}", line.text, line.t_ms);
        assert!(line.src_time.as_deref().is_some_and(|t| t.ends_with("+03:00")), "{line:?}");
    }
}

/// A time as MTS Link writes it: whole seconds, `+03:00`.
fn msk(unix_ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis((unix_ms + 3 * 3_600_000) as u64);
    multistreamer_core::clock::rfc3339(t).replace('Z', "+03:00")
}

fn capture_after(mts: &FakeMtsLink, sid: u64, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(workspace_bin("multistreamer"))
        .args(["capture", "--from-mtslink-session", &sid.to_string(), "--out"])
        .arg(out)
        .args(["--mtslink-api-base", &mts.api_base(), "--conversion-poll", "0.1"])
        .args(extra)
        .env("MULTISTREAMER_MTSLINK_TOKEN", FakeMtsLink::TOKEN)
        .output()
        .unwrap()
}

/// After the webinar: the capture built from an MTS Link session through the API — its
/// whole chat, and the presenter's video that MTS Link converts from the session's
/// recording (`view: "none"`), ordered once the account's other conversion has ended and
/// downloaded from a storage link that is never sent the API key. The stand-in's
/// `createAt` has whole seconds, with an offset.
#[test]
fn a_capture_is_rebuilt_after_the_fact_from_an_mtslink_session() {
    // its conversions load the CPU: never beside a live capture, whose frame rate is checked
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = TempDir::new("capture-after");
    let mts = FakeMtsLink::start();
    assert!(wait_for_port(mts.port, Duration::from_secs(10)));
    let sid = webinar_session(&mts);
    let clip = tmp.join("converted.mp4");
    make_clip(&clip, 4, "640x360");
    // the recording started a minute ago, two seconds before the first message
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let t0 = (now_s - 60) * 1000;
    let rec = serde_json::json!({"session": sid, "file": clip, "createAt": msk(t0)}).to_string();
    mts.control("record", &rec);
    for (s, a, t) in [(2, "Анна", "первый 👋"), (5, "Bob", "second"), (9, "Анна", "<i>третий</i>")]
    {
        let m = serde_json::json!({"session": sid, "author": a, "text": t, "createAt": msk(t0 + s * 1000)});
        mts.control("chat", &m.to_string());
    }
    // another employee's conversion holds the account for two more reads
    mts.control("busy", r#"{"polls":2}"#);
    let out = tmp.join("after");
    let run = capture_after(&mts, sid, &out, &["--name", "Lecture (after)"]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("converting another record"), "{stdout}");
    let chat = read_chat(&out.join("chat.jsonl")).unwrap();
    let texts: Vec<&str> = chat.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["первый 👋", "second", "<i>третий</i>"]);
    assert!(chat.iter().all(|l| l.source == ChatSource::Mtslink && l.src_time.is_some()));
    let times: Vec<u64> = chat.iter().map(|l| l.t_ms).collect();
    assert_eq!(times, [2000, 5000, 9000], "the capture starts with the recording");
    let m = Manifest::load(&out).unwrap();
    assert_eq!(m.files.presenter.as_deref(), Some("presenter.mp4"));
    assert_eq!((m.presenter_start_ms, parse_rfc3339_millis(&m.started_at)), (Some(0), Some(t0)));
    assert_eq!(parse_rfc3339_millis(m.ended_at.as_deref().unwrap()), Some(t0 + 9000));
    assert_eq!(m.counters.chat_messages, 3);
    assert_eq!(m.counters.presenter_frames, 120, "4 s at 30 fps");
    assert_eq!(m.chat_sources, [format!("mtslink:{sid}")]);
    assert_eq!(m.name, "Lecture (after)");
    // the platform's file, intact; nothing half-written left
    assert_eq!(std::fs::read(out.join("presenter.mp4")).unwrap(), std::fs::read(&clip).unwrap());
    assert!(!out.join("presenter.part").exists());
    let (frames, _) = decode_video(&out.join("presenter.mp4"));
    assert_eq!(frames.len(), 120);
    let orders: Value = serde_json::from_str(&mts.control("orders", "{}")).unwrap();
    let orders = orders.as_array().unwrap();
    assert_eq!(orders.len(), 2, "refused while busy, then accepted: {orders:?}");
    assert!(orders.iter().all(|o| o["body"] == serde_json::json!({"quality": "720", "view": "none"})), "{orders:?}");

    // A conversion that fails keeps the chat and says why.
    mts.control("fail_next_conversion", "{}");
    let out = tmp.join("after-failed");
    let run = capture_after(&mts, sid, &out, &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the chat is saved") && stderr.contains("failed"), "{stderr}");
    assert_eq!(read_chat(&out.join("chat.jsonl")).unwrap().len(), 3);
    let m = Manifest::load(&out).unwrap();
    assert_eq!((m.files.presenter, m.counters.chat_messages), (None, 3));
    assert!(!out.join("presenter.mp4").exists() && !out.join("presenter.part").exists());

    // --no-presenter orders nothing; a session without a recording says so.
    let run = capture_after(&mts, sid, &tmp.join("chat-only"), &["--no-presenter"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let bare = webinar_session(&mts);
    let run = capture_after(&mts, bare, &tmp.join("no-record"), &[]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stderr).contains("no recording of the session"));
    let orders: Value = serde_json::from_str(&mts.control("orders", "{}")).unwrap();
    assert_eq!(orders.as_array().unwrap().len(), 3, "only the failed attempt was added");
}
