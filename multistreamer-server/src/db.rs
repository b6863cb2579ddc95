//! SQLite state: migrations at start-up and the queries the server runs.
//!
//! Migrations are embedded SQL files applied in order and recorded in
//! `schema_migrations`; the SQL stays portable so PostgreSQL can be added later.

use std::path::Path;
use std::str::FromStr;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::error::AppError;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_initial.sql")),
    (2, include_str!("../migrations/0002_ladder.sql")),
    (3, include_str!("../migrations/0003_recordings.sql")),
    (4, include_str!("../migrations/0004_pull.sql")),
];

pub type Db = SqlitePool;

/// Opens (creating if needed) the database file and applies pending migrations.
/// A transaction: several changes that land together or not at all.
pub async fn begin(db: &Db) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, AppError> {
    Ok(db.begin().await?)
}

pub async fn open(path: &Path) -> Result<Db, AppError> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .map_err(|e| AppError::internal(format!("database path: {e}")))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .map_err(|e| AppError::internal(format!("cannot open database {}: {e}", path.display())))?;
    migrate(&pool).await?;
    Ok(pool)
}

async fn migrate(pool: &Db) -> Result<(), AppError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .execute(pool)
    .await?;
    for (version, sql) in MIGRATIONS {
        let done: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
            .bind(version)
            .fetch_optional(pool)
            .await?;
        if done.is_some() {
            continue;
        }
        let mut tx = pool.begin().await?;
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty() && !is_comment_only(s)) {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
            .bind(version)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "database migration applied");
    }
    Ok(())
}

fn is_comment_only(s: &str) -> bool {
    s.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with("--"))
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

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
}

#[derive(Clone, Debug)]
pub struct DestinationRow {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub enabled: bool,
    /// The rung of the stream's ladder sent there; empty = the source.
    pub rendition: String,
}

fn stream_row(r: &sqlx::sqlite::SqliteRow) -> Result<StreamRow, sqlx::Error> {
    Ok(StreamRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        ingest_key: r.try_get("ingest_key")?,
        created_at: r.try_get("created_at")?,
        ladder: r.try_get("ladder")?,
        record_mode: r.try_get("record_mode")?,
        record_rendition: r.try_get("record_rendition")?,
        pull_url: r.try_get("pull_url")?,
    })
}

fn dest_row(r: &sqlx::sqlite::SqliteRow) -> Result<DestinationRow, sqlx::Error> {
    Ok(DestinationRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        url: r.try_get("url")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        rendition: r.try_get("rendition")?,
    })
}

pub async fn user_count(db: &Db) -> Result<i64, AppError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(db).await?)
}

pub async fn create_user(db: &Db, username: &str, password_hash: &str) -> Result<i64, AppError> {
    let r = sqlx::query("INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?)")
        .bind(username)
        .bind(password_hash)
        .bind(now())
        .execute(db)
        .await?;
    Ok(r.last_insert_rowid())
}

/// (id, password hash) of a user.
pub async fn user_by_name(db: &Db, username: &str) -> Result<Option<(i64, String)>, AppError> {
    let row =
        sqlx::query("SELECT id, password_hash FROM users WHERE username = ?").bind(username).fetch_optional(db).await?;
    Ok(row.map(|r| Ok::<_, sqlx::Error>((r.try_get("id")?, r.try_get("password_hash")?))).transpose()?)
}

pub async fn user_hash(db: &Db, id: i64) -> Result<Option<String>, AppError> {
    Ok(sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?").bind(id).fetch_optional(db).await?)
}

pub async fn set_password(db: &Db, id: i64, hash: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?").bind(hash).bind(id).execute(db).await?;
    Ok(())
}

pub async fn create_session(db: &Db, id: &str, user_id: i64, csrf: &str, expires_at: i64) -> Result<(), AppError> {
    sqlx::query("INSERT INTO sessions (id, user_id, csrf_token, expires_at) VALUES (?, ?, ?, ?)")
        .bind(id)
        .bind(user_id)
        .bind(csrf)
        .bind(expires_at)
        .execute(db)
        .await?;
    Ok(())
}

/// (user id, username, csrf token) of a live session.
pub async fn session(db: &Db, id: &str) -> Result<Option<(i64, String, String)>, AppError> {
    let row = sqlx::query(
        "SELECT s.user_id, u.username, s.csrf_token FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.id = ? AND s.expires_at > ?",
    )
    .bind(id)
    .bind(now())
    .fetch_optional(db)
    .await?;
    Ok(row
        .map(|r| Ok::<_, sqlx::Error>((r.try_get("user_id")?, r.try_get("username")?, r.try_get("csrf_token")?)))
        .transpose()?)
}

pub async fn delete_session(db: &Db, id: &str) -> Result<(), AppError> {
    sqlx::query("DELETE FROM sessions WHERE id = ?").bind(id).execute(db).await?;
    Ok(())
}

pub async fn list_streams(db: &Db) -> Result<Vec<StreamRow>, AppError> {
    let rows = sqlx::query(
        "SELECT id, name, ingest_key, created_at, ladder, record_mode, record_rendition, pull_url FROM streams ORDER BY id",
    )
    .fetch_all(db)
    .await?;
    Ok(rows.iter().map(stream_row).collect::<Result<_, _>>()?)
}

pub async fn stream(db: &Db, id: i64) -> Result<Option<StreamRow>, AppError> {
    let row = sqlx::query(
        "SELECT id, name, ingest_key, created_at, ladder, record_mode, record_rendition, pull_url FROM streams WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.as_ref().map(stream_row).transpose()?)
}

pub async fn stream_by_key(db: &Db, key: &str) -> Result<Option<StreamRow>, AppError> {
    let row = sqlx::query("SELECT id, name, ingest_key, created_at, ladder, record_mode, record_rendition, pull_url FROM streams WHERE ingest_key = ?")
        .bind(key)
        .fetch_optional(db)
        .await?;
    Ok(row.as_ref().map(stream_row).transpose()?)
}

pub async fn create_stream(db: &Db, name: &str, key: &str) -> Result<i64, AppError> {
    let r = sqlx::query("INSERT INTO streams (name, ingest_key, created_at) VALUES (?, ?, ?)")
        .bind(name)
        .bind(key)
        .bind(now())
        .execute(db)
        .await
        .map_err(|e| unique_violation(e, "name", "a stream with this name already exists"))?;
    Ok(r.last_insert_rowid())
}

pub async fn rename_stream<'e>(db: impl sqlx::SqliteExecutor<'e>, id: i64, name: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE streams SET name = ? WHERE id = ?")
        .bind(name)
        .bind(id)
        .execute(db)
        .await
        .map_err(|e| unique_violation(e, "name", "a stream with this name already exists"))?;
    Ok(())
}

pub async fn set_stream_ladder<'e>(db: impl sqlx::SqliteExecutor<'e>, id: i64, ladder: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE streams SET ladder = ? WHERE id = ?").bind(ladder).bind(id).execute(db).await?;
    Ok(())
}

pub async fn set_stream_pull_url<'e>(db: impl sqlx::SqliteExecutor<'e>, id: i64, url: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE streams SET pull_url = ? WHERE id = ?").bind(url).bind(id).execute(db).await?;
    Ok(())
}

pub async fn set_stream_recording<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    id: i64,
    mode: &str,
    rendition: &str,
) -> Result<(), AppError> {
    sqlx::query("UPDATE streams SET record_mode = ?, record_rendition = ? WHERE id = ?")
        .bind(mode)
        .bind(rendition)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

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
}

fn recording_row(r: &sqlx::sqlite::SqliteRow) -> Result<RecordingRow, sqlx::Error> {
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
    })
}

pub async fn recording_started(
    db: &Db,
    stream_id: i64,
    stream_name: &str,
    kind: &str,
    path: &str,
) -> Result<i64, AppError> {
    let r = sqlx::query(
        "INSERT INTO recordings (stream_id, stream_name, kind, path, started_at) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT(path) DO UPDATE SET ended_at = NULL",
    )
    .bind(stream_id)
    .bind(stream_name)
    .bind(kind)
    .bind(path)
    .bind(now())
    .execute(db)
    .await?;
    Ok(r.last_insert_rowid())
}

pub async fn recording_progress(
    db: &Db,
    path: &str,
    bytes: u64,
    duration_ms: u64,
    ended: bool,
) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE recordings SET bytes = ?, duration_ms = ?, ended_at = CASE WHEN ? THEN ? ELSE NULL END WHERE path = ?",
    )
    .bind(bytes as i64)
    .bind(duration_ms as i64)
    .bind(ended)
    .bind(now())
    .bind(path)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn list_recordings(db: &Db) -> Result<Vec<RecordingRow>, AppError> {
    let rows = sqlx::query(
        "SELECT id, stream_id, stream_name, kind, path, started_at, ended_at, bytes, duration_ms FROM recordings \
         ORDER BY started_at DESC, id DESC",
    )
    .fetch_all(db)
    .await?;
    Ok(rows.iter().map(recording_row).collect::<Result<_, _>>()?)
}

pub async fn recording(db: &Db, id: i64) -> Result<Option<RecordingRow>, AppError> {
    let row = sqlx::query(
        "SELECT id, stream_id, stream_name, kind, path, started_at, ended_at, bytes, duration_ms FROM recordings \
         WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.as_ref().map(recording_row).transpose()?)
}

pub async fn delete_recording(db: &Db, id: i64) -> Result<(), AppError> {
    sqlx::query("DELETE FROM recordings WHERE id = ?").bind(id).execute(db).await?;
    Ok(())
}

/// Recordings left open by a crash are closed at start-up (the file is still there,
/// readable up to its last second).
pub async fn close_stale_recordings(db: &Db) -> Result<(), AppError> {
    sqlx::query("UPDATE recordings SET ended_at = ? WHERE ended_at IS NULL").bind(now()).execute(db).await?;
    Ok(())
}

pub async fn set_stream_key<'e>(db: impl sqlx::SqliteExecutor<'e>, id: i64, key: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE streams SET ingest_key = ? WHERE id = ?").bind(key).bind(id).execute(db).await?;
    Ok(())
}

pub async fn delete_stream(db: &Db, id: i64) -> Result<bool, AppError> {
    Ok(sqlx::query("DELETE FROM streams WHERE id = ?").bind(id).execute(db).await?.rows_affected() > 0)
}

pub async fn destinations(db: &Db, stream_id: i64) -> Result<Vec<DestinationRow>, AppError> {
    let rows = sqlx::query(
        "SELECT id, stream_id, name, url, enabled, rendition FROM destinations WHERE stream_id = ? ORDER BY id",
    )
    .bind(stream_id)
    .fetch_all(db)
    .await?;
    Ok(rows.iter().map(dest_row).collect::<Result<_, _>>()?)
}

/// Every destination of every stream, as (stream id, row).
pub async fn all_destinations(db: &Db) -> Result<Vec<(i64, DestinationRow)>, AppError> {
    let rows =
        sqlx::query("SELECT id, stream_id, name, url, enabled, rendition FROM destinations ORDER BY stream_id, id")
            .fetch_all(db)
            .await?;
    Ok(rows.iter().map(|r| Ok((r.try_get("stream_id")?, dest_row(r)?))).collect::<Result<_, sqlx::Error>>()?)
}

pub async fn destination(db: &Db, stream_id: i64, id: i64) -> Result<Option<DestinationRow>, AppError> {
    let row = sqlx::query(
        "SELECT id, stream_id, name, url, enabled, rendition FROM destinations WHERE id = ? AND stream_id = ?",
    )
    .bind(id)
    .bind(stream_id)
    .fetch_optional(db)
    .await?;
    Ok(row.as_ref().map(dest_row).transpose()?)
}

pub async fn create_destination(
    db: &Db,
    stream_id: i64,
    name: &str,
    url: &str,
    enabled: bool,
    rendition: &str,
) -> Result<i64, AppError> {
    let r = sqlx::query(
        "INSERT INTO destinations (stream_id, name, url, enabled, rendition, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(stream_id)
    .bind(name)
    .bind(url)
    .bind(i64::from(enabled))
    .bind(rendition)
    .bind(now())
    .execute(db)
    .await
    .map_err(|e| unique_violation(e, "name", "this stream already has a destination with this name"))?;
    Ok(r.last_insert_rowid())
}

pub async fn update_destination(db: &Db, d: &DestinationRow) -> Result<(), AppError> {
    sqlx::query("UPDATE destinations SET name = ?, url = ?, enabled = ?, rendition = ? WHERE id = ?")
        .bind(&d.name)
        .bind(&d.url)
        .bind(i64::from(d.enabled))
        .bind(&d.rendition)
        .bind(d.id)
        .execute(db)
        .await
        .map_err(|e| unique_violation(e, "name", "this stream already has a destination with this name"))?;
    Ok(())
}

pub async fn delete_destination(db: &Db, stream_id: i64, id: i64) -> Result<bool, AppError> {
    Ok(sqlx::query("DELETE FROM destinations WHERE id = ? AND stream_id = ?")
        .bind(id)
        .bind(stream_id)
        .execute(db)
        .await?
        .rows_affected()
        > 0)
}

pub async fn session_started(db: &Db, stream_id: i64) -> Result<i64, AppError> {
    let r = sqlx::query("INSERT INTO stream_sessions (stream_id, started_at) VALUES (?, ?)")
        .bind(stream_id)
        .bind(now())
        .execute(db)
        .await?;
    Ok(r.last_insert_rowid())
}

pub async fn session_ended(db: &Db, id: i64, bytes_in: u64) -> Result<(), AppError> {
    sqlx::query("UPDATE stream_sessions SET ended_at = ?, bytes_in = ? WHERE id = ?")
        .bind(now())
        .bind(bytes_in as i64)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// (started_at, ended_at, bytes_in) of a stream's sessions, newest first.
pub async fn stream_history(db: &Db, stream_id: i64) -> Result<Vec<(i64, Option<i64>, i64)>, AppError> {
    let rows = sqlx::query(
        "SELECT started_at, ended_at, bytes_in FROM stream_sessions WHERE stream_id = ? ORDER BY id DESC LIMIT 50",
    )
    .bind(stream_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Ok((r.try_get("started_at")?, r.try_get("ended_at")?, r.try_get("bytes_in")?)))
        .collect::<Result<_, sqlx::Error>>()?)
}

fn unique_violation(e: sqlx::Error, field: &'static str, message: &'static str) -> AppError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => AppError::invalid(field, message),
        _ => AppError::from(e),
    }
}
