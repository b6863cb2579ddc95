//! The catalogue of recording files.

use sqlx::Row;

use super::{Db, now};
use crate::error::AppError;

/// A recording file.
#[derive(Clone, Debug)]
pub struct RecordingRow {
    pub id: i64,
    pub stream_id: Option<i64>,
    pub stream_name: String,
    pub kind: String,
    pub path: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub bytes: i64,
    pub duration_ms: i64,
    /// The node whose disk holds the file ('' with a single node).
    pub node_id: String,
}

fn recording_row(r: &sqlx::any::AnyRow) -> Result<RecordingRow, sqlx::Error> {
    Ok(RecordingRow {
        id: r.try_get("id")?,
        stream_id: r.try_get("stream_id")?,
        stream_name: r.try_get("stream_name")?,
        kind: r.try_get("kind")?,
        path: r.try_get("path")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        bytes: r.try_get("bytes")?,
        duration_ms: r.try_get("duration_ms")?,
        node_id: r.try_get("node_id")?,
    })
}

pub async fn recording_started(
    db: &Db,
    stream_id: i64,
    stream_name: &str,
    kind: &str,
    path: &str,
    started_at: i64,
) -> Result<i64, AppError> {
    let r = sqlx::query_scalar::<_, i64>(
        "INSERT INTO recordings (stream_id, stream_name, kind, path, started_at, node_id) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT(path) DO UPDATE SET ended_at = NULL RETURNING id",
    )
    .bind(stream_id)
    .bind(stream_name)
    .bind(kind)
    .bind(path)
    .bind(started_at)
    .bind(super::node_id())
    .fetch_all(db)
    .await?;
    super::returned_id(r)
}

pub async fn recording_progress(
    db: &Db,
    path: &str,
    bytes: u64,
    duration_ms: u64,
    ended_at: Option<i64>,
) -> Result<(), AppError> {
    sqlx::query("UPDATE recordings SET bytes = $1, duration_ms = $2, ended_at = $3 WHERE path = $4")
        .bind(bytes as i64)
        .bind(duration_ms as i64)
        .bind(ended_at)
        .bind(path)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn list_recordings(db: &Db) -> Result<Vec<RecordingRow>, AppError> {
    let rows = sqlx::query(
        "SELECT id, stream_id, stream_name, kind, path, started_at, ended_at, bytes, duration_ms, node_id FROM recordings \
         ORDER BY started_at DESC, id DESC",
    )
    .fetch_all(db)
    .await?;
    Ok(rows.iter().map(recording_row).collect::<Result<_, _>>()?)
}

pub async fn recording(db: &Db, id: i64) -> Result<Option<RecordingRow>, AppError> {
    let row = sqlx::query(
        "SELECT id, stream_id, stream_name, kind, path, started_at, ended_at, bytes, duration_ms, node_id FROM recordings \
         WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.as_ref().map(recording_row).transpose()?)
}

pub async fn delete_recording(db: &Db, id: i64) -> Result<(), AppError> {
    sqlx::query("DELETE FROM recordings WHERE id = $1").bind(id).execute(db).await?;
    Ok(())
}

/// Recordings left open by a crash are closed at start-up (the file is still there,
/// readable up to its last second).
pub async fn close_stale_recordings(db: &Db) -> Result<(), AppError> {
    // this node's only: the others' are being written
    sqlx::query("UPDATE recordings SET ended_at = $1 WHERE ended_at IS NULL AND node_id = $2")
        .bind(now())
        .bind(super::node_id())
        .execute(db)
        .await?;
    Ok(())
}
