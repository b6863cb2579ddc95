//! Prints the machine's load as the server's dashboard sees it: two samples a second apart
//! (rates need two), then CPU, memory and every GPU NVML reports.
//!
//! `cargo run -p multistreamer-core --features monitor --example system_load`
#![allow(clippy::print_stdout)]

use std::time::Duration;

use multistreamer_core::monitor::SystemMonitor;

fn main() -> Result<(), multistreamer_core::monitor::MonitorError> {
    let mut monitor = SystemMonitor::new()?;
    let _ = monitor.sample();
    std::thread::sleep(Duration::from_secs(1));
    let s = monitor.sample();
    println!("cpu {:.1}% over {} cores", s.cpu.total_percent, s.cpu.per_core_percent.len());
    println!(
        "memory {:.1} / {:.1} GiB",
        s.memory.used_bytes as f64 / 1073741824.0,
        s.memory.total_bytes as f64 / 1073741824.0
    );
    if s.gpus.is_empty() {
        println!("gpu: {}", s.gpu_status.as_deref().unwrap_or("none"));
    }
    for g in &s.gpus {
        println!("{g}");
    }
    Ok(())
}
