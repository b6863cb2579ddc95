//! Live system load (latest, history, server-sent events) and Prometheus metrics.

use std::sync::Arc;

use multistreamer_core::monitor::SystemSample;

#[allow(unused_imports)]
use super::prelude::*;

pub(super) async fn system(State(state): State<AppState>, _auth: Auth) -> Json<Arc<SystemSample>> {
    Json(state.monitor.latest())
}

pub(super) async fn system_history(State(state): State<AppState>, _auth: Auth) -> Json<Vec<Arc<SystemSample>>> {
    Json(state.monitor.history())
}

/// `GET /api/nodes`: the nodes sharing this database with their addresses and load, this
/// one first (only this one on the embedded SQLite).
pub(super) async fn nodes(
    State(state): State<AppState>,
    _auth: Auth,
) -> Result<Json<Vec<crate::cluster::NodeView>>, AppError> {
    if let Some(c) = state.engine.cluster() {
        return Ok(Json(c.nodes().await?));
    }
    let load = crate::cluster::NodeLoad::of(&state.engine, &state.monitor.latest());
    let node = &state.node;
    Ok(Json(vec![crate::cluster::Cluster::single(node.addrs.clone(), &node.id, load, node.started_at)]))
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
        let ev = Event::default().event("sample").json_data(&*sample).ok()?;
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
        resident_bytes: crate::metrics::resident_bytes(),
        heap: multistreamer_core::malloc::heap(),
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
