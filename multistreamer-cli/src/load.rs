//! `multistreamer load`: the machine's load, one line per sample.

use std::time::Duration;

use clap::Args;
use multistreamer_core::monitor::spawn_monitor;
use multistreamer_core::signal::shutdown_signal;

use crate::CliError;

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Seconds between samples (at least 0.1).
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = interval)]
    interval: Duration,
    /// Stop after this many samples (0 = until Ctrl-C).
    #[arg(long, value_name = "N", default_value_t = 0)]
    count: u64,
}

fn interval(s: &str) -> Result<Duration, String> {
    let d = crate::args::seconds(s)?;
    if d < Duration::from_millis(100) {
        return Err("expected at least 0.1 seconds".into());
    }
    Ok(d)
}

pub async fn load(args: LoadArgs) -> Result<(), CliError> {
    let handle = spawn_monitor(args.interval, 2).map_err(|e| CliError::Failed(e.to_string()))?;
    let mut rx = handle.subscribe();
    let mut printed = 0u64;
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => return Ok(()),
            r = rx.changed() => if r.is_err() { return Ok(()) },
        }
        let s = rx.borrow_and_update().clone();
        let mb = |b: f64| b / 1_000_000.0;
        let mut line = format!(
            "cpu {:5.1}% | mem {:.1}/{:.1} GiB",
            s.cpu.total_percent,
            s.memory.used_bytes as f64 / 1073741824.0,
            s.memory.total_bytes as f64 / 1073741824.0
        );
        for d in &s.disks {
            line.push_str(&format!(
                " | {} r {:.1} w {:.1} MB/s",
                d.name,
                mb(d.read_bytes_per_s),
                mb(d.write_bytes_per_s)
            ));
        }
        for n in &s.networks {
            line.push_str(&format!(
                " | {} rx {:.1} tx {:.1} Mbit/s",
                n.interface,
                n.rx_bytes_per_s * 8.0 / 1e6,
                n.tx_bytes_per_s * 8.0 / 1e6
            ));
        }
        if s.gpus.is_empty() {
            line.push_str(&format!(" | {}", s.gpu_status.as_deref().unwrap_or("no GPU detected")));
        }
        for g in &s.gpus {
            line.push_str(&format!(" | {g}"));
        }
        println!("{line}");
        printed += 1;
        if args.count > 0 && printed >= args.count {
            return Ok(());
        }
    }
}
