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

/// Prometheus metrics (OpenMetrics text): gauges for what is true now, counters (`_total`)
/// that only grow, across destination restarts.
pub(super) async fn metrics(State(state): State<AppState>) -> Result<Response, AppError> {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;
    let dests = state.engine.all_destination_stats().await;
    let (totals, live_dropped) = state.engine.destination_totals().await;
    let sample = state.monitor.latest();
    let snapshot = crate::metrics::Snapshot {
        streams_live: state.engine.live_stream_count() as i64,
        destinations: dests.iter().map(|d| d.state.as_str()).collect(),
        bytes_in: state.engine.bytes_in_total(),
        totals,
        live_dropped,
        sample,
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    encode(&mut out, &registry).map_err(|e| AppError::internal(format!("metrics: {e}")))?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok((headers, out).into_response())
}
