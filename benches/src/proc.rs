//! /proc readings shared by the benchmark binaries.

use std::process::Command;

/// Clock ticks per second of /proc's CPU times.
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}
