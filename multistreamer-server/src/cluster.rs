//! Several nodes on one PostgreSQL database (docs/design/scale-out.md).
//!
//! Nothing here is a protocol of its own: PostgreSQL holds who runs what and tells the
//! nodes what changed.
//! * Each node has a row in `nodes`, refreshed every second with its addresses and load.
//! * A stream runs on the node holding its row in `stream_leases`; a publish takes the lease
//!   (or is refused with the owner's id), the owner renews it every second while the stream
//!   has a publisher (or a pull it runs) and writes the stream's live state beside it for the
//!   other nodes' API. A node that stops renewing — killed, cut off — loses its leases
//!   [`LEASE_MS`] later; times are the database's clock, so the nodes' clocks do not matter.
//! * A change through any node's API is announced with `NOTIFY`; every node `LISTEN`s and
//!   makes its jobs match the database again.
//! * Pulled streams (cameras, HLS) go to the least-loaded live node, one per second.
//!
//! With the embedded SQLite there is one node and none of this runs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::views::LiveSnapshot;
use crate::db::Db;
use crate::engine::Engine;
use crate::error::AppError;
use crate::sync::lock;

/// How long a lease outlives its last renewal, in milliseconds.
pub const LEASE_MS: i64 = 8000;
/// Renewals, heartbeats and placement run this often.
const TICK: Duration = Duration::from_secs(1);
/// A publish just authorized holds its lease this long before its stream must be live.
const STARTING: Duration = Duration::from_secs(10);
/// The channel changes are announced on.
const CHANNEL: &str = "multistreamer_changes";
/// The database's clock in milliseconds.
const NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// Where clients and the other nodes reach a node.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeAddrs {
    pub http_url: String,
    pub rtmp_url: String,
    pub rtsp_url: String,
    pub srt_url: String,
}

/// A node's load, as its heartbeat reports it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeLoad {
    pub cpu_percent: f32,
    /// Streams live on the node.
    pub streams: u64,
    pub rx_bytes_per_s: f64,
    pub tx_bytes_per_s: f64,
}

impl NodeLoad {
    /// This node's load now: the monitor's latest sample and the engine's live streams.
    pub fn of(engine: &Engine, sample: &multistreamer_core::monitor::SystemSample) -> NodeLoad {
        NodeLoad {
            cpu_percent: sample.cpu.total_percent,
            streams: engine.live_stream_count() as u64,
            rx_bytes_per_s: sample.networks.iter().map(|n| n.rx_bytes_per_s).sum(),
            tx_bytes_per_s: sample.networks.iter().map(|n| n.tx_bytes_per_s).sum(),
        }
    }
}

/// `Node` in the API.
#[derive(Clone, Debug, Serialize)]
pub struct NodeView {
    pub id: String,
    #[serde(flatten)]
    pub addrs: NodeAddrs,
    /// Whether its heartbeat is younger than the lease time.
    pub alive: bool,
    /// The node that answered.
    pub this_node: bool,
    pub started_at: i64,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: i64,
    pub load: NodeLoad,
}

/// A stream's lease as the other nodes see it.
#[derive(Clone, Debug)]
pub struct Lease {
    pub node_id: String,
    pub http_url: String,
    /// The owner's last report of the stream's jobs.
    pub live: LiveSnapshot,
}

pub struct Cluster {
    db: Db,
    url: String,
    pub node_id: String,
    addrs: Mutex<NodeAddrs>,
    started_at: i64,
    /// Leases this node holds, with when each was taken.
    held: Mutex<HashMap<i64, Instant>>,
    /// The pulled streams this node runs.
    pulls: Mutex<HashSet<i64>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

impl Cluster {
    pub fn new(db: Db, url: String, node_id: String) -> Arc<Cluster> {
        Arc::new(Cluster {
            db,
            url,
            node_id,
            addrs: Mutex::default(),
            started_at: crate::db::now(),
            held: Mutex::default(),
            pulls: Mutex::default(),
        })
    }

    /// Takes the lease of `stream_id` for this node; `Err(owner)` while another node holds it.
    pub async fn acquire(&self, stream_id: i64) -> Result<(), String> {
        let sql = format!(
            "INSERT INTO stream_leases (stream_id, node_id, expires_at, state) VALUES ($1, $2, {NOW_MS} + $3, '{{}}') \
             ON CONFLICT (stream_id) DO UPDATE SET node_id = excluded.node_id, expires_at = excluded.expires_at, \
             state = '{{}}' WHERE stream_leases.node_id = excluded.node_id OR stream_leases.expires_at < {NOW_MS} \
             RETURNING node_id"
        );
        let taken: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(stream_id)
            .bind(&self.node_id)
            .bind(LEASE_MS)
            .fetch_optional(&self.db)
            .await;
        match taken {
            Ok(Some(_)) => {
                lock(&self.held).insert(stream_id, Instant::now());
                Ok(())
            }
            Ok(None) => {
                let owner: Option<String> =
                    sqlx::query_scalar("SELECT node_id FROM stream_leases WHERE stream_id = $1")
                        .bind(stream_id)
                        .fetch_optional(&self.db)
                        .await
                        .ok()
                        .flatten();
                Err(owner.unwrap_or_else(|| "another node".into()))
            }
            Err(e) => {
                warn!(stream_id, error = %e, "cannot take the stream's lease");
                Err(format!("none: the database is unavailable ({e})"))
            }
        }
    }

    /// The pulled streams this node runs.
    pub fn pulls(&self) -> HashSet<i64> {
        lock(&self.pulls).clone()
    }

    /// Tells every node that the configuration changed.
    pub async fn notify(&self) {
        if let Err(e) =
            sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(&self.node_id).execute(&self.db).await
        {
            warn!(error = %e, "cannot announce a change to the other nodes");
        }
    }

    /// The unexpired leases held by other nodes, by stream.
    pub async fn remote_leases(&self) -> Result<HashMap<i64, Lease>, AppError> {
        self.leases_where("", None).await
    }

    /// The lease of one stream when another node holds it.
    pub async fn remote_lease(&self, stream_id: i64) -> Result<Option<Lease>, AppError> {
        Ok(self.leases_where("AND l.stream_id = $2", Some(stream_id)).await?.remove(&stream_id))
    }

    /// Other nodes' unexpired leases, `more` narrowing them (binding `stream_id` as `$2`).
    async fn leases_where(&self, more: &str, stream_id: Option<i64>) -> Result<HashMap<i64, Lease>, AppError> {
        let sql = format!(
            "SELECT l.stream_id, l.node_id, l.state, COALESCE(n.http_url, '') AS http_url FROM stream_leases l \
             LEFT JOIN nodes n ON n.id = l.node_id WHERE l.expires_at > {NOW_MS} AND l.node_id <> $1 {more}"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&self.node_id);
        if let Some(id) = stream_id {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.db).await?;
        let mut out = HashMap::new();
        for r in &rows {
            let state: String = r.try_get("state")?;
            out.insert(
                r.try_get("stream_id")?,
                Lease {
                    node_id: r.try_get("node_id")?,
                    http_url: r.try_get("http_url")?,
                    live: serde_json::from_str(&state).unwrap_or_default(),
                },
            );
        }
        Ok(out)
    }

    /// Where node `id` answers HTTP, if it ever joined.
    pub async fn node_url(&self, id: &str) -> Result<Option<String>, AppError> {
        Ok(sqlx::query_scalar("SELECT http_url FROM nodes WHERE id = $1").bind(id).fetch_optional(&self.db).await?)
    }

    /// Every node that ever joined, this one first.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, AppError> {
        let sql = format!(
            "SELECT id, http_url, rtmp_url, rtsp_url, srt_url, started_at, {NOW_MS} - heartbeat_at AS age, load \
             FROM nodes ORDER BY id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.db).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.try_get("id")?;
            let age: i64 = r.try_get("age")?;
            let load: String = r.try_get("load")?;
            out.push(NodeView {
                this_node: id == self.node_id,
                id,
                addrs: NodeAddrs {
                    http_url: r.try_get("http_url")?,
                    rtmp_url: r.try_get("rtmp_url")?,
                    rtsp_url: r.try_get("rtsp_url")?,
                    srt_url: r.try_get("srt_url")?,
                },
                alive: age < LEASE_MS,
                started_at: r.try_get("started_at")?,
                heartbeat_age_ms: age.max(0),
                load: serde_json::from_str(&load).unwrap_or_default(),
            });
        }
        out.sort_by_key(|n| !n.this_node);
        Ok(out)
    }

    /// This node as `GET /api/nodes` shows it when it is alone (SQLite).
    pub fn single(addrs: NodeAddrs, node_id: &str, load: NodeLoad, started_at: i64) -> NodeView {
        NodeView { id: node_id.to_string(), addrs, alive: true, this_node: true, started_at, heartbeat_age_ms: 0, load }
    }

    /// Writes this node's row; the heartbeat keeps it fresh.
    pub async fn register(&self, addrs: NodeAddrs) -> Result<(), AppError> {
        *lock(&self.addrs) = addrs;
        self.heartbeat(&NodeLoad::default()).await?;
        info!(node = %self.node_id, "joined the nodes of this database");
        Ok(())
    }

    async fn heartbeat(&self, load: &NodeLoad) -> Result<(), AppError> {
        let a = lock(&self.addrs).clone();
        let sql = format!(
            "INSERT INTO nodes (id, http_url, rtmp_url, rtsp_url, srt_url, started_at, heartbeat_at, load) \
             VALUES ($1, $2, $3, $4, $5, $6, {NOW_MS}, $7) ON CONFLICT (id) DO UPDATE SET http_url = excluded.http_url, \
             rtmp_url = excluded.rtmp_url, rtsp_url = excluded.rtsp_url, srt_url = excluded.srt_url, \
             started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, load = excluded.load"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&self.node_id)
            .bind(&a.http_url)
            .bind(&a.rtmp_url)
            .bind(&a.rtsp_url)
            .bind(&a.srt_url)
            .bind(self.started_at)
            .bind(serde_json::to_string(load).unwrap_or_else(|_| "{}".into()))
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Renews a lease with the stream's live state; false when another node has it now.
    async fn renew(&self, stream_id: i64, state: &str) -> Result<bool, AppError> {
        let sql = format!(
            "UPDATE stream_leases SET expires_at = {NOW_MS} + $3, state = $4 WHERE stream_id = $1 AND node_id = $2"
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(stream_id)
            .bind(&self.node_id)
            .bind(LEASE_MS)
            .bind(state)
            .execute(&self.db)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn release(&self, stream_id: i64) {
        lock(&self.held).remove(&stream_id);
        let r = sqlx::query("DELETE FROM stream_leases WHERE stream_id = $1 AND node_id = $2")
            .bind(stream_id)
            .bind(&self.node_id)
            .execute(&self.db)
            .await;
        if let Err(e) = r {
            // it expires by itself
            warn!(stream_id, error = %e, "cannot release the stream's lease");
        }
    }

    /// Heartbeats, lease renewals and pull placement, every second until `cancel`; then the
    /// leases are released so that other nodes can take the streams at once.
    pub async fn run(
        self: Arc<Self>,
        engine: Arc<Engine>,
        monitor: multistreamer_core::monitor::MonitorHandle,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.step(&engine, &monitor).await {
                warn!(error = %e, "cluster heartbeat");
            }
        }
        let held: Vec<i64> = lock(&self.held).keys().copied().collect();
        for id in held {
            self.release(id).await;
        }
    }

    async fn step(
        &self,
        engine: &Arc<Engine>,
        monitor: &multistreamer_core::monitor::MonitorHandle,
    ) -> Result<(), AppError> {
        self.heartbeat(&NodeLoad::of(engine, &monitor.latest())).await?;

        // Renew what runs here, with its live state; release what no longer does.
        let held: Vec<(i64, Instant)> = lock(&self.held).iter().map(|(k, v)| (*k, *v)).collect();
        let pulls = self.pulls();
        let states = engine.stream_states(held.iter().map(|(id, _)| *id).collect()).await;
        let mut lost = Vec::new();
        for (id, since) in held {
            let publishing = engine.is_live(id);
            if publishing || pulls.contains(&id) || since.elapsed() < STARTING {
                let st = states.get(&id).cloned().unwrap_or_default();
                let variants = engine.hls.variants(&crate::engine::hub_name(id));
                let snapshot = LiveSnapshot::new(publishing, &st, &variants);
                let json = serde_json::to_string(&snapshot).unwrap_or_else(|_| "{}".into());
                if !self.renew(id, &json).await? {
                    lost.push(id);
                }
            } else {
                // the publisher left: the stream may wait out its grace period here, but
                // a publisher coming back through another node may take it now
                self.release(id).await;
            }
        }
        let remote = self.remote_leases().await?;
        // Streams here whose lease another node holds (it took over while this node was
        // cut off, or while the stream waited for its publisher) end here.
        for name in engine.hub.stream_names() {
            if let Some(id) = crate::engine::source_stream_id(&name)
                && remote.contains_key(&id)
                && !lost.contains(&id)
            {
                lost.push(id);
            }
        }
        let mut changed = false;
        for id in lost {
            warn!(stream_id = id, owner = ?remote.get(&id).map(|l| &l.node_id), "another node runs the stream now; ending it here");
            lock(&self.held).remove(&id);
            changed |= lock(&self.pulls).remove(&id);
            engine.end_here(id).await;
        }
        changed |= self.place_pulls(&remote).await?;
        if changed {
            engine.sync_here().await?;
        }
        Ok(())
    }

    /// Takes one unowned pulled stream when this node is the least loaded live one; drops
    /// pulls whose stream no longer pulls. Whether the set changed.
    async fn place_pulls(&self, remote: &HashMap<i64, Lease>) -> Result<bool, AppError> {
        let wanted: HashSet<i64> =
            sqlx::query_scalar::<_, i64>("SELECT id FROM streams WHERE pull_url <> '' ORDER BY id")
                .fetch_all(&self.db)
                .await?
                .into_iter()
                .collect();
        let mut changed = false;
        let ours = self.pulls();
        for id in ours.difference(&wanted) {
            lock(&self.pulls).remove(id);
            self.release(*id).await;
            changed = true;
        }
        let free: Vec<i64> = {
            let mut v: Vec<i64> =
                wanted.iter().filter(|id| !remote.contains_key(id) && !ours.contains(id)).copied().collect();
            v.sort_unstable();
            v
        };
        let Some(&candidate) = free.first() else { return Ok(changed) };
        // The least-loaded live node by leases held (ties: the smallest id) takes it.
        let sql = format!(
            "SELECT n.id, (SELECT COUNT(*) FROM stream_leases l WHERE l.node_id = n.id AND l.expires_at > {NOW_MS}) AS held \
             FROM nodes n WHERE n.heartbeat_at > {NOW_MS} - $1 ORDER BY held, n.id LIMIT 1"
        );
        let least: Option<String> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(LEASE_MS)
            .fetch_optional(&self.db)
            .await?
            .map(|r| r.try_get("id"))
            .transpose()?;
        if least.as_deref() == Some(self.node_id.as_str()) && self.acquire(candidate).await.is_ok() {
            info!(stream_id = candidate, "pulling the stream on this node");
            lock(&self.pulls).insert(candidate);
            changed = true;
        }
        Ok(changed)
    }

    /// Listens for changes made through the other nodes and syncs the engine after each
    /// (and after a lost connection, when some may have been missed).
    pub async fn listen(self: Arc<Self>, engine: Arc<Engine>, cancel: CancellationToken) {
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect(&self.url).await {
                Ok(l) => l,
                Err(e) => {
                    warn!(error = %e, "cannot listen for changes; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(TICK) => continue,
                    }
                }
            };
            if let Err(e) = listener.listen(CHANNEL).await {
                warn!(error = %e, "cannot listen for changes; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(TICK) => continue,
                }
            }
            // changes made while this node was not listening
            if let Err(e) = engine.sync_here().await {
                warn!(error = %e, "applying the other nodes' changes");
            }
            loop {
                let n = tokio::select! {
                    _ = cancel.cancelled() => return,
                    n = listener.recv() => n,
                };
                match n {
                    Ok(n) if n.payload() == self.node_id => {}
                    Ok(_) => {
                        if let Err(e) = engine.sync_here().await {
                            warn!(error = %e, "applying a change from another node");
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "the change listener's connection broke; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::views::{DestinationLive, LiveJobs};

    #[test]
    fn a_stream_live_state_survives_its_trip_through_the_lease_row() {
        let mut live = LiveSnapshot { jobs: LiveJobs { live: true, ..LiveJobs::default() }, ..LiveSnapshot::default() };
        live.jobs.skipped_renditions.push("1080p".into());
        live.destinations.insert(
            7,
            DestinationLive {
                state: "live".into(),
                bitrate_bps: 6_000_000,
                bytes_sent: 1,
                reconnects: 2,
                failed_connects: 3,
                dropped: 4,
                last_error: Some("x".into()),
            },
        );
        let stored = serde_json::to_string(&live).expect("json");
        let back: LiveSnapshot = serde_json::from_str(&stored).expect("read back");
        assert!(back.jobs.live);
        assert_eq!(back.jobs.skipped_renditions, ["1080p"]);
        let d = &back.destinations[&7];
        assert_eq!((d.state.as_str(), d.bitrate_bps, d.dropped), ("live", 6_000_000, 4));
        // what the stream view shows of the jobs: the same fields at the top level
        let view = serde_json::to_value(&back.jobs).expect("json");
        for field in ["live", "pull", "renditions", "skipped_renditions", "ladder_error", "recording", "hls_variants"] {
            assert!(view.get(field).is_some(), "{field} in {view}");
        }
    }
}
