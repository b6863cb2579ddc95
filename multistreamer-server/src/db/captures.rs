//! Webinar captures.

use sqlx::Row;

use super::{Db, now};
use crate::error::AppError;

#[derive(Clone, Debug)]
pub struct CaptureRow {
    pub id: i64,
    pub stream_id: i64,
    pub name: String,
    pub url_masked: String,
    pub sealed_url: String,
    pub profile: String,
    /// JSON of [`crate::engine::CaptureSettings`].
    pub options: String,
    pub broadcast_id: Option<i64>,
    pub dir: String,
    /// `running`, `stopping`, `converting` (after the fact), `finished` or `failed`.
    pub state: String,
    pub error: Option<String>,
    pub chat_messages: i64,
    pub presenter_frames: i64,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// The node that runs (ran) it and holds its files ('' with a single node).
    pub node_id: String,
}

fn capture_row(r: &sqlx::any::AnyRow) -> Result<CaptureRow, sqlx::Error> {
    Ok(CaptureRow {
        id: r.try_get("id")?,
        stream_id: r.try_get("stream_id")?,
        name: r.try_get("name")?,
        url_masked: r.try_get("url_masked")?,
        sealed_url: r.try_get("sealed_url")?,
        profile: r.try_get("profile")?,
        options: r.try_get("options")?,
        broadcast_id: r.try_get("broadcast_id")?,
        dir: r.try_get("dir")?,
        state: r.try_get("state")?,
        error: r.try_get("error")?,
        chat_messages: r.try_get("chat_messages")?,
        presenter_frames: r.try_get("presenter_frames")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        node_id: r.try_get("node_id")?,
    })
}

/// `SELECT` of every column of `captures`, then `$rest`.
macro_rules! select_captures {
    ($rest:literal) => {
        concat!(
            "SELECT id, stream_id, name, url_masked, sealed_url, profile, options, broadcast_id, dir, state, error, ",
            "chat_messages, presenter_frames, started_at, ended_at, node_id FROM captures ",
            $rest
        )
    };
}

pub async fn all_captures(db: &Db) -> Result<Vec<CaptureRow>, AppError> {
    let rows = sqlx::query(select_captures!("ORDER BY id")).fetch_all(db).await?;
    Ok(rows.iter().map(capture_row).collect::<Result<_, _>>()?)
}

pub async fn captures_of(db: &Db, stream_id: i64) -> Result<Vec<CaptureRow>, AppError> {
    let rows =
        sqlx::query(select_captures!("WHERE stream_id = $1 ORDER BY id DESC")).bind(stream_id).fetch_all(db).await?;
    Ok(rows.iter().map(capture_row).collect::<Result<_, _>>()?)
}

pub async fn capture(db: &Db, id: i64) -> Result<Option<CaptureRow>, AppError> {
    let row = sqlx::query(select_captures!("WHERE id = $1")).bind(id).fetch_optional(db).await?;
    Ok(row.as_ref().map(capture_row).transpose()?)
}

/// Adds a capture in state `c.state`; `seal` seals its URL for the row's id, in the same
/// transaction.
pub async fn insert_capture(
    db: &Db,
    c: &CaptureRow,
    seal: impl Fn(i64) -> Result<String, AppError>,
    dir_of: impl Fn(i64) -> String,
) -> Result<i64, AppError> {
    let mut tx = db.begin().await?;
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO captures (stream_id, name, url_masked, sealed_url, profile, options, broadcast_id, dir, state, \
         started_at, node_id) VALUES ($1, $2, $3, '', $4, $5, $6, '', $7, $8, $9) RETURNING id",
    )
    .bind(c.stream_id)
    .bind(&c.name)
    .bind(&c.url_masked)
    .bind(&c.profile)
    .bind(&c.options)
    .bind(c.broadcast_id)
    .bind(&c.state)
    .bind(now())
    .bind(super::node_id())
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("UPDATE captures SET sealed_url = $1, dir = $2 WHERE id = $3")
        .bind(seal(id)?)
        .bind(dir_of(id))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(id)
}

/// The capture ended (by itself, stopped, or failed).
pub async fn finish_capture(
    db: &Db,
    id: i64,
    state: &str,
    error: Option<&str>,
    chat_messages: u64,
    presenter_frames: u64,
) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE captures SET state = $1, error = $2, chat_messages = $3, presenter_frames = $4, \
         ended_at = COALESCE(ended_at, $5) WHERE id = $6",
    )
    .bind(state)
    .bind(error)
    .bind(chat_messages as i64)
    .bind(presenter_frames as i64)
    .bind(now())
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// Asks a running capture to stop: `stopping` until its job has closed its files (then
/// `finished`).
pub async fn stop_capture(db: &Db, id: i64) -> Result<bool, AppError> {
    let r = sqlx::query("UPDATE captures SET state = 'stopping' WHERE id = $1 AND state = 'running'")
        .bind(id)
        .execute(db)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn delete_capture(db: &Db, id: i64) -> Result<bool, AppError> {
    Ok(sqlx::query("DELETE FROM captures WHERE id = $1").bind(id).execute(db).await?.rows_affected() > 0)
}

/// Captures left `running` by a server that stopped: they ended then. One that waited for
/// a platform's presenter video keeps its chat and says the video did not come.
pub async fn close_stale_captures(db: &Db) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE captures SET state = 'finished', ended_at = COALESCE(ended_at, $1) WHERE state IN ('running', 'stopping') \
         AND node_id = $2",
    )
    .bind(now())
    .bind(super::node_id())
    .execute(db)
    .await?;
    let note = "no presenter video: the server stopped before the platform had it ready (fetch again)";
    sqlx::query(
        "UPDATE captures SET state = 'finished', ended_at = COALESCE(ended_at, $1), \
         error = CASE WHEN error IS NULL THEN $2 ELSE error || '; ' || $3 END WHERE state = 'converting' AND node_id = $4",
    )
    .bind(now())
    .bind(note)
    .bind(note)
    .bind(super::node_id())
    .execute(db)
    .await?;
    Ok(())
}

/// The capture's span (seconds): an after-the-fact capture covers the webinar, not the
/// moment it was built.
pub async fn set_capture_span(db: &Db, id: i64, started_at: i64, ended_at: i64) -> Result<(), AppError> {
    sqlx::query("UPDATE captures SET started_at = $1, ended_at = $2 WHERE id = $3")
        .bind(started_at)
        .bind(ended_at)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}
