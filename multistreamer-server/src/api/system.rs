//! Live system load (latest, history, server-sent events) and Prometheus metrics.

#[allow(unused_imports)]
use super::prelude::*;

pub fn sample_json(s: &SystemSample) -> Value {
    json!({
        "unix_ms": s.unix_ms,
        "cpu": { "total_percent": s.cpu.total_percent, "per_core_percent": s.cpu.per_core_percent, "load_average_1m": s.cpu.load_average_1m },
        "memory": { "total_bytes": s.memory.total_bytes, "used_bytes": s.memory.used_bytes, "available_bytes": s.memory.available_bytes },
        "disks": s.disks.iter().map(|d| json!({
            "name": d.name, "mount_point": d.mount_point, "read_bytes_per_s": d.read_bytes_per_s,
            "write_bytes_per_s": d.write_bytes_per_s, "total_space_bytes": d.total_space_bytes,
            "available_space_bytes": d.available_space_bytes })).collect::<Vec<_>>(),
        "networks": s.networks.iter().map(|n| json!({
            "interface": n.interface, "rx_bytes_per_s": n.rx_bytes_per_s, "tx_bytes_per_s": n.tx_bytes_per_s })).collect::<Vec<_>>(),
        "gpus": s.gpus.iter().map(|g| json!({
            "index": g.index, "name": g.name, "utilization_percent": g.utilization_percent,
            "memory_used_bytes": g.memory_used_bytes, "memory_total_bytes": g.memory_total_bytes,
            "encoder_percent": g.encoder_percent, "decoder_percent": g.decoder_percent })).collect::<Vec<_>>(),
        "gpu_status": s.gpu_status,
    })
}

pub(super) async fn system(State(state): State<AppState>, _auth: Auth) -> Json<Value> {
    Json(sample_json(&state.monitor.latest()))
}

pub(super) async fn system_history(State(state): State<AppState>, _auth: Auth) -> Json<Value> {
    Json(Value::Array(state.monitor.history().iter().map(|s| sample_json(s)).collect()))
}

/// A live feed of load samples (one per second) as server-sent events.
pub(super) async fn system_live(
    State(state): State<AppState>,
    _auth: Auth,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    use futures_util::StreamExt;
    let rx = state.monitor.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let sample = rx.borrow_and_update().clone();
        let ev = Event::default().event("sample").data(sample_json(&sample).to_string());
        Some((Ok(ev), rx))
    })
    // The feed ends at shutdown, or the server would wait for every open dashboard.
    .take_until(state.shutdown.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let dests = state.engine.all_destination_stats().await;
    let mut out = String::new();
    let mut push = |name: &str, help: &str, kind: &str, lines: Vec<(String, String)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in lines {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    push(
        "multistreamer_streams_live",
        "Streams with a publisher or in their grace period.",
        "gauge",
        vec![(String::new(), state.engine.live_stream_count().to_string())],
    );
    let states = ["connecting", "live", "retrying", "stopped", "failed"];
    push(
        "multistreamer_destinations",
        "Running destinations by state.",
        "gauge",
        states
            .iter()
            .map(|st| {
                (format!("{{state=\"{st}\"}}"), dests.iter().filter(|d| d.state.as_str() == *st).count().to_string())
            })
            .collect(),
    );
    push(
        "multistreamer_bytes_in",
        "Bytes received from publishers of live streams.",
        "gauge",
        vec![(String::new(), state.engine.bytes_in_total().to_string())],
    );
    push(
        "multistreamer_bytes_out",
        "Bytes sent by running destinations.",
        "gauge",
        vec![(String::new(), dests.iter().map(|d| d.bytes_sent).sum::<u64>().to_string())],
    );
    push(
        "multistreamer_reconnects",
        "Reconnections of running destinations.",
        "gauge",
        vec![(String::new(), dests.iter().map(|d| d.reconnects).sum::<u64>().to_string())],
    );
    push(
        "multistreamer_dropped_packets",
        "Packets dropped for slow running destinations.",
        "gauge",
        vec![(String::new(), dests.iter().map(|d| d.dropped).sum::<u64>().to_string())],
    );
    let s = state.monitor.latest();
    push(
        "multistreamer_cpu_percent",
        "Machine CPU use.",
        "gauge",
        vec![(String::new(), format!("{:.1}", s.cpu.total_percent))],
    );
    push(
        "multistreamer_memory_used_bytes",
        "Machine memory in use.",
        "gauge",
        vec![(String::new(), s.memory.used_bytes.to_string())],
    );
    push(
        "multistreamer_network_rx_bytes_per_second",
        "Received bytes per second by interface.",
        "gauge",
        s.networks
            .iter()
            .map(|n| (format!("{{interface=\"{}\"}}", n.interface), format!("{:.0}", n.rx_bytes_per_s)))
            .collect(),
    );
    push(
        "multistreamer_network_tx_bytes_per_second",
        "Sent bytes per second by interface.",
        "gauge",
        s.networks
            .iter()
            .map(|n| (format!("{{interface=\"{}\"}}", n.interface), format!("{:.0}", n.tx_bytes_per_s)))
            .collect(),
    );
    push(
        "multistreamer_gpu_utilization_percent",
        "GPU use by device.",
        "gauge",
        s.gpus.iter().map(|g| (format!("{{gpu=\"{}\"}}", g.index), g.utilization_percent.to_string())).collect(),
    );
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    (headers, out).into_response()
}
