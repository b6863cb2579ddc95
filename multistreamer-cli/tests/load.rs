//! `multistreamer load` reports the machine's load and says plainly when there is no GPU.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn load_prints_cpu_memory_disk_network_and_gpu_status() {
    let out = Command::new(env!("CARGO_BIN_EXE_multistreamer"))
        .args(["load", "--count", "2", "--interval", "0.3"])
        .output()
        .expect("run multistreamer load");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for l in lines {
        assert!(l.starts_with("cpu "), "{l}");
        assert!(l.contains("| mem "), "{l}");
        assert!(l.contains("| lo rx "), "{l}");
        let has_gpu = l.contains("| gpu0 ");
        assert!(has_gpu || l.contains("no GPU detected"), "{l}");
    }
}
