//! Live system load: CPU (total and per core), memory, disk and network throughput, and
//! NVIDIA GPUs (utilisation, memory, encoder/decoder load) through NVML when a driver is
//! present. Enabled with the `monitor` feature.
//!
//! [`SystemMonitor::sample`] reads cumulative counters (bytes read/written per disk, bytes
//! received/sent per interface) and turns them into per-second rates with [`RateCounter`],
//! which copes with counters that restart (a re-plugged interface, a driver reload).
//! [`spawn_monitor`] samples on a dedicated thread and publishes each sample on a `watch`
//! channel, keeping a bounded history for charts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tracing::{debug, info};

use crate::sync::lock;

/// Turns a cumulative counter into a per-second rate.
#[derive(Clone, Copy, Debug, Default)]
pub struct RateCounter {
    last: Option<(Duration, u64)>,
}

impl RateCounter {
    /// Feeds the counter's value `total` observed at `at` (a monotonic time) and returns
    /// the rate per second since the previous observation; `None` for the first one or when
    /// no time has passed. A counter that went backwards restarted: the new value is what
    /// accumulated since the restart, so it is used as the delta.
    pub fn update(&mut self, at: Duration, total: u64) -> Option<f64> {
        let rate = match self.last {
            Some((t0, v0)) if at > t0 => {
                let delta = if total >= v0 { total - v0 } else { total };
                Some(delta as f64 / (at - t0).as_secs_f64())
            }
            _ => None,
        };
        self.last = Some((at, total));
        rate
    }
}

/// CPU load in percent (0–100).
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CpuLoad {
    pub total_percent: f32,
    pub per_core_percent: Vec<f32>,
    pub load_average_1m: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MemoryLoad {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
}

/// Throughput of one block device.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DiskLoad {
    pub name: String,
    pub mount_point: String,
    pub read_bytes_per_s: f64,
    pub write_bytes_per_s: f64,
    pub total_space_bytes: u64,
    pub available_space_bytes: u64,
}

/// Throughput of one network interface.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct NetworkLoad {
    pub interface: String,
    pub rx_bytes_per_s: f64,
    pub tx_bytes_per_s: f64,
}

/// One NVIDIA GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GpuLoad {
    pub index: u32,
    pub name: String,
    pub utilization_percent: u32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// NVENC load, when the driver reports it.
    pub encoder_percent: Option<u32>,
    /// NVDEC load, when the driver reports it.
    pub decoder_percent: Option<u32>,
}

/// `gpu0 NVIDIA H200 12% mem 1.5/140.4 GiB enc 0% dec -` (`-` where the driver reports nothing).
impl std::fmt::Display for GpuLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |v: Option<u32>| v.map_or("-".to_string(), |v| format!("{v}%"));
        write!(
            f,
            "gpu{} {} {}% mem {:.1}/{:.1} GiB enc {} dec {}",
            self.index,
            self.name,
            self.utilization_percent,
            self.memory_used_bytes as f64 / 1073741824.0,
            self.memory_total_bytes as f64 / 1073741824.0,
            pct(self.encoder_percent),
            pct(self.decoder_percent)
        )
    }
}

/// One sample of the machine's load.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SystemSample {
    /// Wall-clock time of the sample, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    pub cpu: CpuLoad,
    pub memory: MemoryLoad,
    pub disks: Vec<DiskLoad>,
    pub networks: Vec<NetworkLoad>,
    /// Empty when there is no GPU; see `gpu_status`.
    pub gpus: Vec<GpuLoad>,
    /// Why `gpus` is empty (e.g. "no GPU detected"), for display.
    pub gpu_status: Option<String>,
}

/// Why the load cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// The operating system's counters could not be opened.
    #[error("cannot read the {what}: {detail}")]
    Counters { what: &'static str, detail: String },
    /// The sampling thread could not be started.
    #[error("cannot start the monitor thread: {0}")]
    Thread(String),
}

/// Reads the machine's load. Blocking; call from a dedicated thread.
pub struct SystemMonitor {
    started: Instant,
    system: sysinfo::System,
    disks: sysinfo::Disks,
    networks: sysinfo::Networks,
    nvml: Result<nvml_wrapper::Nvml, String>,
    disk_rates: HashMap<String, (RateCounter, RateCounter)>,
    net_rates: HashMap<String, (RateCounter, RateCounter)>,
}

impl std::fmt::Debug for SystemMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemMonitor").field("gpu", &self.nvml.is_ok()).finish_non_exhaustive()
    }
}

impl SystemMonitor {
    /// Opens the system counters and, if an NVIDIA driver is installed, NVML.
    pub fn new() -> Result<SystemMonitor, MonitorError> {
        let counters =
            |what: &'static str| move |e: sysinfo::Error| MonitorError::Counters { what, detail: e.to_string() };
        let system = sysinfo::System::new().map_err(counters("system counters"))?;
        let disks = sysinfo::Disks::new_with_refreshed_list().map_err(counters("disks"))?;
        let networks = sysinfo::Networks::new_with_refreshed_list().map_err(counters("network interfaces"))?;
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| {
            debug!(error = %e, "NVML not available");
            "no GPU detected (no NVIDIA driver/NVML)".to_string()
        });
        if let Ok(n) = &nvml {
            info!(gpus = n.device_count().unwrap_or(0), "NVML available");
        }
        let mut monitor = SystemMonitor {
            started: Instant::now(),
            system,
            disks,
            networks,
            nvml,
            disk_rates: HashMap::new(),
            net_rates: HashMap::new(),
        };
        // prime CPU usage and the rate counters
        let _ = monitor.sample();
        Ok(monitor)
    }

    /// Takes one sample. Rates are over the time since the previous call (0 on the first).
    pub fn sample(&mut self) -> SystemSample {
        let at = self.started.elapsed();
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.disks.refresh(true);
        self.networks.refresh(true);

        let cpu = CpuLoad {
            total_percent: self.system.global_cpu_usage(),
            per_core_percent: self.system.cpus().iter().map(|c| c.usage()).collect(),
            load_average_1m: sysinfo::System::load_average().ok().map(|l| l.one),
        };
        let memory = MemoryLoad {
            total_bytes: self.system.total_memory(),
            used_bytes: self.system.used_memory(),
            available_bytes: self.system.available_memory(),
        };

        let mut disks = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for d in &self.disks {
            let name = d.name().to_string_lossy().into_owned();
            if !seen.insert(name.clone()) {
                continue; // the same device mounted twice
            }
            let usage = d.usage();
            let (r, w) = self.disk_rates.entry(name.clone()).or_default();
            disks.push(DiskLoad {
                mount_point: d.mount_point().to_string_lossy().into_owned(),
                read_bytes_per_s: r.update(at, usage.total_read_bytes).unwrap_or(0.0),
                write_bytes_per_s: w.update(at, usage.total_written_bytes).unwrap_or(0.0),
                total_space_bytes: d.total_space(),
                available_space_bytes: d.available_space(),
                name,
            });
        }
        disks.sort_by(|a, b| a.name.cmp(&b.name));

        let mut networks = Vec::new();
        for (iface, data) in &self.networks {
            let name = iface.to_string_lossy().into_owned();
            let (rx, tx) = self.net_rates.entry(name.clone()).or_default();
            networks.push(NetworkLoad {
                rx_bytes_per_s: rx.update(at, data.total_received()).unwrap_or(0.0),
                tx_bytes_per_s: tx.update(at, data.total_transmitted()).unwrap_or(0.0),
                interface: name,
            });
        }
        networks.sort_by(|a, b| a.interface.cmp(&b.interface));

        let (gpus, gpu_status) = match &self.nvml {
            Ok(nvml) => read_gpus(nvml),
            Err(why) => (Vec::new(), Some(why.clone())),
        };
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        SystemSample { unix_ms, cpu, memory, disks, networks, gpus, gpu_status }
    }
}

fn read_gpus(nvml: &nvml_wrapper::Nvml) -> (Vec<GpuLoad>, Option<String>) {
    let count = match nvml.device_count() {
        Ok(c) => c,
        Err(e) => return (Vec::new(), Some(format!("NVML error: {e}"))),
    };
    let mut gpus = Vec::new();
    for index in 0..count {
        let Ok(dev) = nvml.device_by_index(index) else { continue };
        let util = dev.utilization_rates().map(|u| u.gpu).unwrap_or(0);
        let (used, total) = dev.memory_info().map(|m| (m.used, m.total)).unwrap_or((0, 0));
        gpus.push(GpuLoad {
            index,
            name: dev.name().unwrap_or_else(|_| format!("GPU {index}")),
            utilization_percent: util,
            memory_used_bytes: used,
            memory_total_bytes: total,
            encoder_percent: dev.encoder_utilization().ok().map(|u| u.utilization),
            decoder_percent: dev.decoder_utilization().ok().map(|u| u.utilization),
        });
    }
    let status = gpus.is_empty().then(|| "no GPU detected".to_string());
    (gpus, status)
}

/// The latest sample and a bounded history, shared with readers.
#[derive(Debug, Clone)]
pub struct MonitorHandle {
    latest: watch::Receiver<Arc<SystemSample>>,
    history: Arc<Mutex<VecDeque<Arc<SystemSample>>>>,
}

impl MonitorHandle {
    /// A receiver that sees every new sample (for live feeds).
    pub fn subscribe(&self) -> watch::Receiver<Arc<SystemSample>> {
        self.latest.clone()
    }

    pub fn latest(&self) -> Arc<SystemSample> {
        self.latest.borrow().clone()
    }

    /// Samples of the last few minutes, oldest first.
    pub fn history(&self) -> Vec<Arc<SystemSample>> {
        lock(&self.history).iter().cloned().collect()
    }
}

/// Samples every `interval` on a dedicated thread, keeping `keep` samples of history.
/// The thread ends when every [`MonitorHandle`] (and receiver) is dropped.
pub fn spawn_monitor(interval: Duration, keep: usize) -> Result<MonitorHandle, MonitorError> {
    let mut monitor = SystemMonitor::new()?;
    let first = Arc::new(monitor.sample());
    let (tx, rx) = watch::channel(first.clone());
    let history = Arc::new(Mutex::new(VecDeque::from([first])));
    let hist = history.clone();
    std::thread::Builder::new()
        .name("system-monitor".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                let sample = Arc::new(monitor.sample());
                {
                    let mut h = lock(&hist);
                    h.push_back(sample.clone());
                    while h.len() > keep.max(1) {
                        h.pop_front();
                    }
                }
                if tx.send(sample).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| MonitorError::Thread(e.to_string()))?;
    Ok(MonitorHandle { latest: rx, history })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn counter_to_rate() {
        let mut c = RateCounter::default();
        assert_eq!(c.update(s(0.0), 1000), None);
        assert_eq!(c.update(s(1.0), 3000), Some(2000.0));
        assert_eq!(c.update(s(1.5), 4000), Some(2000.0));
        assert_eq!(c.update(s(2.5), 4000), Some(0.0));
    }

    #[test]
    fn counter_reset_counts_from_zero() {
        let mut c = RateCounter::default();
        c.update(s(0.0), 10_000_000);
        // the interface was re-created: its counter restarted and reached 500 in 1 s
        assert_eq!(c.update(s(1.0), 500), Some(500.0));
        assert_eq!(c.update(s(2.0), 1500), Some(1000.0));
    }

    #[test]
    fn no_time_no_rate() {
        let mut c = RateCounter::default();
        c.update(s(1.0), 10);
        assert_eq!(c.update(s(1.0), 20), None);
    }

    #[test]
    fn samples_this_machine() {
        let mut m = SystemMonitor::new().expect("monitor");
        // make some network traffic on loopback between two samples
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::sleep(Duration::from_millis(200));
        let t = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().expect("accept");
            std::io::copy(&mut c, &mut std::io::sink()).expect("read");
        });
        {
            let mut w = std::net::TcpStream::connect(addr).expect("connect");
            std::io::Write::write_all(&mut w, &vec![0u8; 8 * 1024 * 1024]).expect("write");
        }
        t.join().expect("reader");
        let sample = m.sample();
        assert!(!sample.cpu.per_core_percent.is_empty());
        assert!(sample.cpu.total_percent >= 0.0 && sample.cpu.total_percent <= 100.0);
        assert!(sample.memory.total_bytes > 0 && sample.memory.used_bytes <= sample.memory.total_bytes);
        let lo = sample.networks.iter().find(|n| n.interface == "lo").expect("loopback listed");
        assert!(lo.rx_bytes_per_s > 1_000_000.0, "8 MiB over loopback shows up: {lo:?}");
        // no NVIDIA driver here: an explicit status instead of an error
        if sample.gpus.is_empty() {
            assert!(sample.gpu_status.as_deref().is_some_and(|s| s.contains("no GPU")));
        }
    }

    #[tokio::test]
    async fn spawned_monitor_publishes_samples_and_keeps_history() {
        let handle = spawn_monitor(Duration::from_millis(50), 3).expect("monitor");
        let mut rx = handle.subscribe();
        for _ in 0..5 {
            tokio::time::timeout(Duration::from_secs(5), rx.changed()).await.expect("sample in time").expect("open");
        }
        let h = handle.history();
        assert_eq!(h.len(), 3);
        assert!(h.windows(2).all(|w| w[0].unix_ms <= w[1].unix_ms));
        assert_eq!(handle.latest().unix_ms, h[2].unix_ms);
    }
}
