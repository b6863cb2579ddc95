//! /proc readings and small process helpers shared by the benchmark binaries.
#![allow(dead_code)] // each binary uses its own subset

use std::fs;
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

/// Clock ticks per second of /proc's CPU times.
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("local address").port()
}

/// Waits until something accepts connections on `port` (10 s at most).
pub fn wait_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

/// utime + stime of a live process, in clock ticks.
pub fn proc_cpu_ticks(pid: u32) -> u64 {
    let (user, sys) = proc_user_sys_ticks(pid);
    user + sys
}

/// (utime, stime) of a live process, in clock ticks.
pub fn proc_user_sys_ticks(pid: u32) -> (u64, u64) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // after the command name: state is field 3, utime 14, stime 15 (1-based) -> 11, 12 here
    let field = |i: usize| f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
    (field(11), field(12))
}

/// Peak resident memory (VmHWM) of a live process, in KiB.
pub fn proc_hwm_kb(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds of this process's waited-for children so far (cutime + cstime).
pub fn children_cpu_s() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // after the command name: cutime is field 16, cstime 17 (1-based) -> 13, 14 here
    let cu: f64 = f.get(13).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let cs: f64 = f.get(14).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (cu + cs) / clk_tck()
}

/// nginx with the RTMP module on 127.0.0.1:`port`, one process, `app` being the body of
/// `rtmp { server { … } }` after `listen` (e.g. `application live { live on; }`).
pub fn start_nginx(dir: &std::path::Path, port: u16, app: &str) -> std::process::Child {
    fs::create_dir_all(dir.join("logs")).expect("nginx dir");
    let conf = format!(
        "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\ndaemon off;\nmaster_process off;\n\
         error_log {d}/logs/error.log warn;\npid {d}/nginx.pid;\nevents {{ worker_connections 1024; }}\n\
         rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n {app} }} }}\n",
        d = dir.display()
    );
    fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nginx (make deps-test)");
    wait_port(port);
    child
}

/// CPU clock ticks (own and waited-for children) of each live process in process group
/// `pgid`, by pid: sample it while the group runs and keep each pid's largest value.
pub fn group_cpu_ticks(pgid: u32) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        // after the command name: pgrp is field 5 (1-based) -> 2; utime..cstime 14..17 -> 11..14
        if f.get(2).and_then(|v| v.parse::<u32>().ok()) != Some(pgid) {
            continue;
        }
        let ticks: u64 = (11..=14).filter_map(|i| f.get(i)?.parse::<u64>().ok()).sum();
        out.push((pid, ticks));
    }
    out
}

/// Runs `cmd` to its end (stdout discarded, stderr shown on failure): (wall seconds,
/// CPU-seconds of the children it left).
pub fn timed(mut cmd: Command) -> (f64, f64) {
    let cpu0 = children_cpu_s();
    let t0 = std::time::Instant::now();
    let out = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).output().expect("spawn");
    let wall = t0.elapsed().as_secs_f64();
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    (wall, children_cpu_s() - cpu0)
}

/// The number of video frames of a file, as its container says.
pub fn count_frames(file: &std::path::Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=nb_frames", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

/// Busy clock ticks of the whole machine so far (every CPU: user, nice, system, irq,
/// softirq; not idle, iowait or time the hypervisor gave to other guests), from /proc/stat.
pub fn machine_busy_ticks() -> u64 {
    let f = machine_cpu_ticks();
    // user nice system idle iowait irq softirq steal
    [0usize, 1, 2, 5, 6].iter().filter_map(|&i| f.get(i)).sum()
}

/// The all-CPUs line of /proc/stat: user, nice, system, idle, iowait, irq, softirq, steal…
fn machine_cpu_ticks() -> Vec<u64> {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else { return Vec::new() };
    cpu.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect()
}

/// Clock ticks the hypervisor gave to other guests while this machine wanted to run
/// (`steal` in /proc/stat, all CPUs): a window with much of it measured a busy host, not us.
pub fn machine_steal_ticks() -> u64 {
    machine_cpu_ticks().get(7).copied().unwrap_or(0)
}

/// Memory of a live process from /proc/PID/smaps_rollup, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss: u64,
    /// Proportional set size: shared pages divided among the processes that map them.
    pub pss: u64,
    /// Unique set size: pages no other process maps (private clean + private dirty).
    pub uss: u64,
    /// Anonymous memory (heap, stacks): what the process itself allocated.
    pub anon: u64,
}

pub fn proc_memory(pid: u32) -> Memory {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss: field("Rss:"),
        pss: field("Pss:"),
        uss: field("Private_Clean:") + field("Private_Dirty:"),
        anon: field("Anonymous:"),
    }
}

/// The relay benchmarks' clip: 10 s of 1080p30 H.264 (6 Mbit/s, capped, keyframe every 2 s)
/// + AAC, generated once at `path` (the container from its extension: `.flv`, `.mp4`).
pub fn make_relay_clip(path: &std::path::Path) -> std::path::PathBuf {
    if path.exists() {
        return path.to_path_buf();
    }
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "10"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-b:v", "6M", "-maxrate", "6M", "-bufsize", "12M"])
        .args(["-g", "60", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k"])
        .arg(path)
        .status()
        .expect("ffmpeg (make deps-test)");
    assert!(st.success(), "cannot generate the clip");
    path.to_path_buf()
}

pub fn kill(mut c: std::process::Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// Video packets ffprobe reads from a live RTMP stream in 3 s.
pub fn probe_live(url: &str) -> usize {
    let out = Command::new("timeout")
        .args(["15", "ffprobe", "-v", "error", "-read_intervals", "%+3", "-select_streams", "v:0"])
        .args(["-count_packets", "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", url])
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).lines().next().and_then(|l| l.trim().parse().ok()).unwrap_or(0)
}
