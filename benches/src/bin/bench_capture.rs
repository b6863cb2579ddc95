//! `make bench-capture`: `multistreamer capture` of the local room page
//! (`test-support/peers/fake_room.py`: a canvas repainted every animation frame as the
//! presenter, a chat fed 5 messages a second) for N seconds at 1280×720 and 30 fps.
//! Prints the presenter frame rate achieved, CPU-seconds per captured minute (the capture,
//! its browser and its virtual display together: its process group, sampled every 200 ms),
//! and the chat latency from the page
//! showing a message to its line in chat.jsonl (p50/p95).
//!
//! `bench-capture [--seconds N]` (default 60). Run from the repository root.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

#[path = "../proc.rs"]
mod proc;
use proc::{clk_tck, free_port, group_cpu_ticks, wait_port};

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use multistreamer_core::capture::manifest::Manifest;

fn say(port: u16, i: u32) {
    let body = format!(r#"[{{"author":"user{}","text":"сообщение {i} 👍"}}]"#, i % 13);
    if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
        let req = format!(
            "POST /_control/say HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(req.as_bytes());
        let _ = s.read_to_end(&mut Vec::new());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 =
        args.iter().position(|a| a == "--seconds").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(60);
    let bin = std::env::current_exe().unwrap().with_file_name("multistreamer");
    let dir = std::env::temp_dir().join("ms-bench-capture");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let mut room = Command::new("/usr/bin/python3")
        .arg("test-support/peers/fake_room.py")
        .arg(port.to_string())
        .spawn()
        .expect("python3 and test-support/peers/fake_room.py (run from the repository root)");
    wait_port(port);
    let t0 = Instant::now();
    let mut capture = Command::new(&bin)
        .args(["capture", "--url", &format!("http://127.0.0.1:{port}/room"), "--out"])
        .arg(&dir)
        .args(["--chat-selector", "#chat", "--chat-author-selector", ".author", "--chat-text-selector", ".text"])
        .args(["--chat-id-attribute", "data-id", "--presenter-selector", "#presenter", "--window", "1280x720"])
        .args(["--fps", "30", "--duration", &seconds.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // its own process group: the browser and the display are counted with it
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = capture.id();
    let mut ticks: HashMap<u32, u64> = HashMap::new();
    let mut i = 0;
    while capture.try_wait().unwrap().is_none() {
        for (pid, t) in group_cpu_ticks(pgid) {
            let e = ticks.entry(pid).or_default();
            *e = (*e).max(t);
        }
        std::thread::sleep(Duration::from_millis(200));
        if t0.elapsed() > Duration::from_secs(3) {
            say(port, i);
            i += 1;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    // the last samples miss at most 200 ms of each process
    let cpu = ticks.values().sum::<u64>() as f64 / clk_tck();
    let _ = room.kill();
    let _ = room.wait();
    let m = Manifest::load(&dir).unwrap();
    let c = &m.counters;
    println!("capture of {seconds} s at 1280x720, 30 fps target, chat at 5 msg/s, 2 cores");
    println!("presenter: {} frames, {:.1} fps (goal >= 25)", c.presenter_frames, c.presenter_fps);
    println!(
        "CPU: {cpu:.1} s over {wall:.1} s = {:.1} CPU-s per captured minute (capture + chromium + Xvfb)",
        cpu / wall * 60.0
    );
    println!(
        "chat: {} messages, latency page -> chat.jsonl p50 {} ms, p95 {} ms (goal p95 <= 50)",
        c.chat_messages,
        c.chat_latency_p50_ms.map_or("-".into(), |v| v.to_string()),
        c.chat_latency_p95_ms.map_or("-".into(), |v| v.to_string())
    );
}
