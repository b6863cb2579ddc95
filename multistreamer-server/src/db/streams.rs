//! Streams, their destinations and their sessions (publish history).

use sqlx::Row;

use super::{Db, now, unique_violation};
use crate::error::AppError;

#[derive(Clone, Debug)]
pub struct StreamRow {
    pub id: i64,
    pub name: String,
    pub ingest_key: String,
    pub created_at: i64,
    /// The transcoding ladder (`1080p,720p,480p`); empty = no transcoding.
    pub ladder: String,
    /// `off`, `original` or `raw`: what is recorded each time the stream goes live.
    pub record_mode: String,
    /// The rendition recorded; empty = the source.
    pub record_rendition: String,
    /// An RTSP URL the server pulls the stream from; empty = publishers push it.
    pub pull_url: String,
    /// The passphrase SRT publishers encrypt with; empty = none.
    pub srt_passphrase: String,
}

#[derive(Clone, Debug)]
pub struct DestinationRow {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub enabled: bool,
    /// The rung of the stream's ladder sent there; empty = the source.
    pub rendition: String,
    /// `negotiate` or `assume` (HEVC/AV1 over Enhanced RTMP).
    pub enhanced_rtmp: String,
}

fn stream_row(r: &sqlx::any::AnyRow) -> Result<StreamRow, sqlx::Error> {
    Ok(StreamRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        ingest_key: r.try_get("ingest_key")?,
        created_at: r.try_get("created_at")?,
        ladder: r.try_get("ladder")?,
        record_mode: r.try_get("record_mode")?,
        record_rendition: r.try_get("record_rendition")?,
        pull_url: r.try_get("pull_url")?,
        srt_passphrase: r.try_get("srt_passphrase")?,
    })
}

fn dest_row(r: &sqlx::any::AnyRow) -> Result<DestinationRow, sqlx::Error> {
    Ok(DestinationRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        url: r.try_get("url")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        rendition: r.try_get("rendition")?,
        enhanced_rtmp: r.try_get("enhanced_rtmp")?,
    })
}

pub async fn list_streams(db: &Db) -> Result<Vec<StreamRow>, AppError> {
    list_streams_page(db, i64::MAX, 0).await
}

/// `limit` streams from the `offset`-th, by id.
pub async fn list_streams_page(db: &Db, limit: i64, offset: i64) -> Result<Vec<StreamRow>, AppError> {
    let rows = sqlx::query(
        "SELECT id, name, ingest_key, created_at, ladder, record_mode, record_rendition, pull_url, srt_passphrase FROM streams \
         ORDER BY id LIMIT $1 OFFSET $2",
    )
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?;
    Ok(rows.iter().map(stream_row).collect::<Result<_, _>>()?)
}

pub async fn count_streams(db: &Db) -> Result<i64, AppError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM streams").fetch_one(db).await?)
}

pub async fn stream(db: &Db, id: i64) -> Result<Option<StreamRow>, AppError> {
    let row = sqlx::query(
        "SELECT id, name, ingest_key, created_at, ladder, record_mode, record_rendition, pull_url, srt_passphrase FROM streams WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.as_ref().map(stream_row).transpose()?)
}

pub async fn stream_by_key(db: &Db, key: &str) -> Result<Option<StreamRow>, AppError> {
    let row = sqlx::query("SELECT id, name, ingest_key, created_at, ladder, record_mode, record_rendition, pull_url, srt_passphrase FROM streams WHERE ingest_key = $1")
        .bind(key)
        .fetch_optional(db)
        .await?;
    Ok(row.as_ref().map(stream_row).transpose()?)
}

pub async fn create_stream(db: &Db, name: &str, key: &str) -> Result<i64, AppError> {
    let r = sqlx::query_scalar::<_, i64>(
        "INSERT INTO streams (name, ingest_key, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(name)
    .bind(key)
    .bind(now())
    .fetch_all(db)
    .await
    .map_err(|e| unique_violation(e, "name", "a stream with this name already exists"))?;
    super::returned_id(r)
}

pub async fn rename_stream<'e>(db: impl sqlx::AnyExecutor<'e>, id: i64, name: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE streams SET name = $1 WHERE id = $2")
        .bind(name)
        .bind(id)
        .execute(db)
        .await
        .map_err(|e| unique_violation(e, "name", "a stream with this name already exists"))?;
    Ok(())
}

pub async fn set_stream_ladder<'e>(db: impl sqlx::AnyExecutor<'e>, id: i64, ladder: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE streams SET ladder = $1 WHERE id = $2").bind(ladder).bind(id).execute(db).await?;
    Ok(())
}

pub async fn set_stream_srt_passphrase<'e>(
    db: impl sqlx::AnyExecutor<'e>,
    id: i64,
    passphrase: &str,
) -> Result<(), AppError> {
    sqlx::query("UPDATE streams SET srt_passphrase = $1 WHERE id = $2").bind(passphrase).bind(id).execute(db).await?;
    Ok(())
}

pub async fn set_stream_pull_url<'e>(db: impl sqlx::AnyExecutor<'e>, id: i64, url: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE streams SET pull_url = $1 WHERE id = $2").bind(url).bind(id).execute(db).await?;
    Ok(())
}

pub async fn set_stream_recording<'e>(
    db: impl sqlx::AnyExecutor<'e>,
    id: i64,
    mode: &str,
    rendition: &str,
) -> Result<(), AppError> {
    sqlx::query("UPDATE streams SET record_mode = $1, record_rendition = $2 WHERE id = $3")
        .bind(mode)
        .bind(rendition)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn set_stream_key<'e>(db: impl sqlx::AnyExecutor<'e>, id: i64, key: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE streams SET ingest_key = $1 WHERE id = $2").bind(key).bind(id).execute(db).await?;
    Ok(())
}

pub async fn delete_stream(db: &Db, id: i64) -> Result<bool, AppError> {
    Ok(sqlx::query("DELETE FROM streams WHERE id = $1").bind(id).execute(db).await?.rows_affected() > 0)
}

pub async fn destinations(db: &Db, stream_id: i64) -> Result<Vec<DestinationRow>, AppError> {
    let rows = sqlx::query(
        "SELECT id, stream_id, name, url, enabled, rendition, enhanced_rtmp FROM destinations WHERE stream_id = $1 ORDER BY id",
    )
    .bind(stream_id)
    .fetch_all(db)
    .await?;
    Ok(rows.iter().map(dest_row).collect::<Result<_, _>>()?)
}

/// Every destination of every stream, by stream id (in id order).
pub async fn destinations_by_stream(db: &Db) -> Result<std::collections::HashMap<i64, Vec<DestinationRow>>, AppError> {
    destinations_of_streams(db, (i64::MIN, i64::MAX)).await
}

/// The destinations of the streams whose ids are in `ids` (inclusive), by stream.
pub async fn destinations_of_streams(
    db: &Db,
    ids: (i64, i64),
) -> Result<std::collections::HashMap<i64, Vec<DestinationRow>>, AppError> {
    let rows = sqlx::query(
        "SELECT id, stream_id, name, url, enabled, rendition, enhanced_rtmp FROM destinations WHERE stream_id BETWEEN $1 AND $2 \
         ORDER BY stream_id, id",
    )
    .bind(ids.0)
    .bind(ids.1)
    .fetch_all(db)
    .await?;
    let mut out: std::collections::HashMap<i64, Vec<DestinationRow>> = std::collections::HashMap::new();
    for r in &rows {
        out.entry(r.try_get("stream_id")?).or_default().push(dest_row(r)?);
    }
    Ok(out)
}

pub async fn destination(db: &Db, stream_id: i64, id: i64) -> Result<Option<DestinationRow>, AppError> {
    let row = sqlx::query(
        "SELECT id, stream_id, name, url, enabled, rendition, enhanced_rtmp FROM destinations WHERE id = $1 AND stream_id = $2",
    )
    .bind(id)
    .bind(stream_id)
    .fetch_optional(db)
    .await?;
    Ok(row.as_ref().map(dest_row).transpose()?)
}

pub async fn create_destination<'e>(
    db: impl sqlx::AnyExecutor<'e>,
    stream_id: i64,
    name: &str,
    url: &str,
    enabled: bool,
    rendition: &str,
) -> Result<i64, AppError> {
    let r = sqlx::query_scalar::<_, i64>(
        "INSERT INTO destinations (stream_id, name, url, enabled, rendition, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(stream_id)
    .bind(name)
    .bind(url)
    .bind(i64::from(enabled))
    .bind(rendition)
    .bind(now())
    .fetch_all(db)
    .await
    .map_err(|e| unique_violation(e, "name", "this stream already has a destination with this name"))?;
    super::returned_id(r)
}

pub async fn update_destination(db: &Db, d: &DestinationRow) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE destinations SET name = $1, url = $2, enabled = $3, rendition = $4, enhanced_rtmp = $5 WHERE id = $6",
    )
    .bind(&d.name)
    .bind(&d.url)
    .bind(i64::from(d.enabled))
    .bind(&d.rendition)
    .bind(&d.enhanced_rtmp)
    .bind(d.id)
    .execute(db)
    .await
    .map_err(|e| unique_violation(e, "name", "this stream already has a destination with this name"))?;
    Ok(())
}

pub async fn delete_destination(db: &Db, stream_id: i64, id: i64) -> Result<bool, AppError> {
    Ok(sqlx::query("DELETE FROM destinations WHERE id = $1 AND stream_id = $2")
        .bind(id)
        .bind(stream_id)
        .execute(db)
        .await?
        .rows_affected()
        > 0)
}

pub async fn session_started(db: &Db, stream_id: i64, started_at: i64) -> Result<i64, AppError> {
    let r = sqlx::query_scalar::<_, i64>(
        "INSERT INTO stream_sessions (stream_id, started_at) VALUES ($1, $2) RETURNING id",
    )
    .bind(stream_id)
    .bind(started_at)
    .fetch_all(db)
    .await?;
    super::returned_id(r)
}

pub async fn session_ended(db: &Db, id: i64, ended_at: i64, bytes_in: u64) -> Result<(), AppError> {
    sqlx::query("UPDATE stream_sessions SET ended_at = $1, bytes_in = $2 WHERE id = $3")
        .bind(ended_at)
        .bind(bytes_in as i64)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// A whole session at once (its start could not be written when it began).
pub async fn session_recorded(
    db: &Db,
    stream_id: i64,
    started_at: i64,
    ended_at: i64,
    bytes_in: u64,
) -> Result<(), AppError> {
    sqlx::query("INSERT INTO stream_sessions (stream_id, started_at, ended_at, bytes_in) VALUES ($1, $2, $3, $4)")
        .bind(stream_id)
        .bind(started_at)
        .bind(ended_at)
        .bind(bytes_in as i64)
        .execute(db)
        .await?;
    Ok(())
}

/// (started_at, ended_at, bytes_in) of a stream's sessions, newest first.
/// One publish session: (started_at, ended_at, bytes_in).
pub type SessionRow = (i64, Option<i64>, i64);

pub async fn stream_history(db: &Db, stream_id: i64) -> Result<Vec<SessionRow>, AppError> {
    let rows = sqlx::query(
        "SELECT started_at, ended_at, bytes_in FROM stream_sessions WHERE stream_id = $1 ORDER BY id DESC LIMIT 50",
    )
    .bind(stream_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Ok((r.try_get("started_at")?, r.try_get("ended_at")?, r.try_get("bytes_in")?)))
        .collect::<Result<_, sqlx::Error>>()?)
}

/// The last 50 sessions of every stream, newest first, by stream id.
/// The last sessions of the streams whose ids are in `ids` (inclusive), by stream.
pub async fn stream_history_of(
    db: &Db,
    ids: (i64, i64),
) -> Result<std::collections::HashMap<i64, Vec<SessionRow>>, AppError> {
    let rows = sqlx::query(
        "SELECT stream_id, started_at, ended_at, bytes_in FROM (SELECT *, ROW_NUMBER() OVER \
         (PARTITION BY stream_id ORDER BY id DESC) AS n FROM stream_sessions WHERE stream_id BETWEEN $1 AND $2) AS s \
         WHERE n <= 50 ORDER BY stream_id, id DESC",
    )
    .bind(ids.0)
    .bind(ids.1)
    .fetch_all(db)
    .await?;
    let mut out: std::collections::HashMap<i64, Vec<SessionRow>> = std::collections::HashMap::new();
    for r in &rows {
        let row = (r.try_get("started_at")?, r.try_get("ended_at")?, r.try_get("bytes_in")?);
        out.entry(r.try_get("stream_id")?).or_default().push(row);
    }
    Ok(out)
}
