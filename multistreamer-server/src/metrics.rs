//! What `/metrics` exports, as one Prometheus collector over a snapshot taken per scrape.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use multistreamer_core::destination::DestinationTotals;
use multistreamer_core::monitor::SystemSample;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};

/// This process's resident memory (`VmRSS` in `/proc/self/status`), on Linux.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The values of one scrape.
#[derive(Debug)]
pub struct Snapshot {
    pub streams_live: i64,
    /// The state of each running destination.
    pub destinations: Vec<&'static str>,
    pub bytes_in: u64,
    pub totals: Arc<DestinationTotals>,
    /// Packets dropped on the connections open now.
    pub live_dropped: u64,
    pub sample: Arc<SystemSample>,
    /// This process: resident memory, and the allocator's `(in_use, obtained)` bytes.
    pub resident_bytes: Option<u64>,
    pub heap: Option<(u64, u64)>,
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: i64) -> fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn gauge_f(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: f64) -> fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

/// A gauge per label value.
fn labelled(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl Iterator<Item = (String, f64)>,
) -> fmt::Result {
    let family = Family::<Vec<(&'static str, String)>, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for (l, v) in values {
        family.get_or_create(&vec![(label, l)]).set(v);
    }
    family.encode(e.encode_descriptor(name, help, None, family.metric_type())?)
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let t = &self.totals;
        gauge(
            &mut e,
            "multistreamer_streams_live",
            "Streams with a publisher or in their grace period.",
            self.streams_live,
        )?;
        let states = ["connecting", "live", "retrying", "stopped", "failed"];
        let by_state =
            states.iter().map(|s| (s.to_string(), self.destinations.iter().filter(|d| *d == s).count() as f64));
        labelled(&mut e, "multistreamer_destinations", "Running destinations by state.", "state", by_state)?;
        gauge(
            &mut e,
            "multistreamer_bytes_in",
            "Bytes received from the publishers of live streams.",
            self.bytes_in as i64,
        )?;
        counter(&mut e, "multistreamer_bytes_out", "Bytes sent to destinations.", t.bytes_sent.load(Relaxed))?;
        counter(&mut e, "multistreamer_connects", "Connections made to destinations.", t.connects.load(Relaxed))?;
        counter(&mut e, "multistreamer_reconnects", "Reconnections of destinations.", t.reconnects.load(Relaxed))?;
        let failed = t.failed_connects.load(Relaxed);
        counter(&mut e, "multistreamer_failed_connects", "Connection attempts to destinations that failed.", failed)?;
        let dropped = t.dropped(self.live_dropped);
        counter(
            &mut e,
            "multistreamer_dropped_packets",
            "Packets dropped for destinations that could not keep up.",
            dropped,
        )?;
        if let Some(rss) = self.resident_bytes {
            gauge(&mut e, "multistreamer_process_resident_bytes", "This server's resident memory.", rss as i64)?;
        }
        if let Some((in_use, obtained)) = self.heap {
            let help = "Heap bytes this server allocated and has not freed (the live heap).";
            gauge(&mut e, "multistreamer_process_heap_in_use_bytes", help, in_use as i64)?;
            let help = "Heap bytes the allocator took from the system (in use plus freed memory it keeps).";
            gauge(&mut e, "multistreamer_process_heap_obtained_bytes", help, obtained as i64)?;
        }
        let lost = multistreamer_core::log_writer::writes_lost();
        counter(&mut e, "multistreamer_log_writes_lost", "Log lines that could not be written (a full disk).", lost)?;
        let s = &self.sample;
        gauge_f(&mut e, "multistreamer_cpu_percent", "Machine CPU use.", f64::from(s.cpu.total_percent))?;
        gauge(&mut e, "multistreamer_memory_used_bytes", "Machine memory in use.", s.memory.used_bytes as i64)?;
        let rx = s.networks.iter().map(|n| (n.interface.clone(), n.rx_bytes_per_s));
        labelled(
            &mut e,
            "multistreamer_network_rx_bytes_per_second",
            "Received bytes per second by interface.",
            "interface",
            rx,
        )?;
        let tx = s.networks.iter().map(|n| (n.interface.clone(), n.tx_bytes_per_s));
        labelled(
            &mut e,
            "multistreamer_network_tx_bytes_per_second",
            "Sent bytes per second by interface.",
            "interface",
            tx,
        )?;
        let gpus = s.gpus.iter().map(|g| (g.index.to_string(), f64::from(g.utilization_percent)));
        labelled(&mut e, "multistreamer_gpu_utilization_percent", "GPU use by device.", "gpu", gpus)?;
        Ok(())
    }
}
