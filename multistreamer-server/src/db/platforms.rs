//! Connected platform accounts, the broadcasts created on them, and UI settings.

use sqlx::Row;

use super::{Db, now};
use crate::error::AppError;

#[derive(Clone, Debug)]
pub struct PlatformRow {
    pub id: i64,
    /// `youtube` or `mtslink`.
    pub kind: String,
    pub name: String,
    pub remote_id: String,
    /// The account's credentials, sealed (never usable without the data directory's key).
    pub sealed_secret: String,
    /// `connected`, `reconnect_needed` or `error`.
    pub state: String,
    pub last_error: Option<String>,
}

fn platform_row(r: &sqlx::any::AnyRow) -> Result<PlatformRow, sqlx::Error> {
    Ok(PlatformRow {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        name: r.try_get("name")?,
        remote_id: r.try_get("remote_id")?,
        sealed_secret: r.try_get("sealed_secret")?,
        state: r.try_get("state")?,
        last_error: r.try_get("last_error")?,
    })
}

/// `SELECT` of every column of `platform_accounts`, then `$rest`.
macro_rules! select_platforms {
    ($rest:literal) => {
        concat!("SELECT id, kind, name, remote_id, sealed_secret, state, last_error FROM platform_accounts ", $rest)
    };
}

pub async fn platforms(db: &Db) -> Result<Vec<PlatformRow>, AppError> {
    let rows = sqlx::query(select_platforms!("ORDER BY id")).fetch_all(db).await?;
    Ok(rows.iter().map(platform_row).collect::<Result<_, _>>()?)
}

pub async fn platform(db: &Db, id: i64) -> Result<Option<PlatformRow>, AppError> {
    let row = sqlx::query(select_platforms!("WHERE id = $1")).bind(id).fetch_optional(db).await?;
    Ok(row.as_ref().map(platform_row).transpose()?)
}

/// Adds an account, or replaces the credentials of the same account connected again
/// (same kind and remote id, when there is one); returns its id. `seal` seals the
/// credentials for the row's id (they are bound to it), inside the same transaction.
pub async fn upsert_platform(
    db: &Db,
    kind: &str,
    name: &str,
    remote_id: &str,
    seal: impl Fn(i64) -> Result<String, AppError>,
) -> Result<i64, AppError> {
    let mut tx = db.begin().await?;
    let existing: Option<i64> = if remote_id.is_empty() {
        None
    } else {
        sqlx::query_scalar("SELECT id FROM platform_accounts WHERE kind = $1 AND remote_id = $2")
            .bind(kind)
            .bind(remote_id)
            .fetch_optional(&mut *tx)
            .await?
    };
    let id = match existing {
        Some(id) => id,
        None => {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO platform_accounts (kind, name, remote_id, sealed_secret, state, created_at) \
             VALUES ($1, $2, $3, '', 'connected', $4) RETURNING id",
            )
            .bind(kind)
            .bind(name)
            .bind(remote_id)
            .bind(now())
            .fetch_one(&mut *tx)
            .await?
        }
    };
    sqlx::query(
        "UPDATE platform_accounts SET name = $1, sealed_secret = $2, state = 'connected', last_error = NULL WHERE id = $3",
    )
    .bind(name)
    .bind(seal(id)?)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

pub async fn set_platform_secret(db: &Db, id: i64, sealed: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE platform_accounts SET sealed_secret = $1 WHERE id = $2")
        .bind(sealed)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn set_platform_state(db: &Db, id: i64, state: &str, last_error: Option<&str>) -> Result<(), AppError> {
    sqlx::query("UPDATE platform_accounts SET state = $1, last_error = $2 WHERE id = $3")
        .bind(state)
        .bind(last_error)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn delete_platform(db: &Db, id: i64) -> Result<bool, AppError> {
    Ok(sqlx::query("DELETE FROM platform_accounts WHERE id = $1").bind(id).execute(db).await?.rows_affected() > 0)
}

#[derive(Clone, Debug)]
pub struct BroadcastRow {
    pub id: i64,
    pub stream_id: i64,
    pub platform_id: i64,
    pub remote_id: String,
    pub remote_stream_id: String,
    pub title: String,
    pub watch_url: String,
    pub state: String,
    pub destination_id: Option<i64>,
    pub backup_destination_id: Option<i64>,
    pub auto_live: bool,
    pub monitor_stream: bool,
    pub last_error: Option<String>,
    pub created_at: i64,
}

fn broadcast_row(r: &sqlx::any::AnyRow) -> Result<BroadcastRow, sqlx::Error> {
    Ok(BroadcastRow {
        id: r.try_get("id")?,
        stream_id: r.try_get("stream_id")?,
        platform_id: r.try_get("platform_id")?,
        remote_id: r.try_get("remote_id")?,
        remote_stream_id: r.try_get("remote_stream_id")?,
        title: r.try_get("title")?,
        watch_url: r.try_get("watch_url")?,
        state: r.try_get("state")?,
        destination_id: r.try_get("destination_id")?,
        backup_destination_id: r.try_get("backup_destination_id")?,
        auto_live: r.try_get::<i64, _>("auto_live")? != 0,
        monitor_stream: r.try_get::<i64, _>("monitor_stream")? != 0,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
    })
}

/// `SELECT` of every column of `broadcasts`, then `$rest`.
macro_rules! select_broadcasts {
    ($rest:literal) => {
        concat!(
            "SELECT id, stream_id, platform_id, remote_id, remote_stream_id, title, watch_url, state, destination_id, ",
            "backup_destination_id, auto_live, monitor_stream, last_error, created_at FROM broadcasts ",
            $rest
        )
    };
}

/// Every broadcast (the engine's view), oldest first.
pub async fn all_broadcasts(db: &Db) -> Result<Vec<BroadcastRow>, AppError> {
    let rows = sqlx::query(select_broadcasts!("ORDER BY id")).fetch_all(db).await?;
    Ok(rows.iter().map(broadcast_row).collect::<Result<_, _>>()?)
}

pub async fn broadcasts_of(db: &Db, stream_id: i64) -> Result<Vec<BroadcastRow>, AppError> {
    let rows =
        sqlx::query(select_broadcasts!("WHERE stream_id = $1 ORDER BY id")).bind(stream_id).fetch_all(db).await?;
    Ok(rows.iter().map(broadcast_row).collect::<Result<_, _>>()?)
}

pub async fn broadcast(db: &Db, id: i64) -> Result<Option<BroadcastRow>, AppError> {
    let row = sqlx::query(select_broadcasts!("WHERE id = $1")).bind(id).fetch_optional(db).await?;
    Ok(row.as_ref().map(broadcast_row).transpose()?)
}

pub async fn insert_broadcast<'e>(db: impl sqlx::AnyExecutor<'e>, b: &BroadcastRow) -> Result<i64, AppError> {
    let r = sqlx::query_scalar::<_, i64>(
        "INSERT INTO broadcasts (stream_id, platform_id, remote_id, remote_stream_id, title, watch_url, state, \
         destination_id, backup_destination_id, auto_live, monitor_stream, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(b.stream_id)
    .bind(b.platform_id)
    .bind(&b.remote_id)
    .bind(&b.remote_stream_id)
    .bind(&b.title)
    .bind(&b.watch_url)
    .bind(&b.state)
    .bind(b.destination_id)
    .bind(b.backup_destination_id)
    .bind(i64::from(b.auto_live))
    .bind(i64::from(b.monitor_stream))
    .bind(now())
    .fetch_all(db)
    .await?;
    super::returned_id(r)
}

/// Records what the platform last said: the state, and the last error (cleared by `None`).
pub async fn set_broadcast_state(db: &Db, id: i64, state: &str, last_error: Option<&str>) -> Result<(), AppError> {
    sqlx::query("UPDATE broadcasts SET state = $1, last_error = $2 WHERE id = $3")
        .bind(state)
        .bind(last_error)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn set_broadcast_error(db: &Db, id: i64, last_error: Option<&str>) -> Result<(), AppError> {
    sqlx::query("UPDATE broadcasts SET last_error = $1 WHERE id = $2").bind(last_error).bind(id).execute(db).await?;
    Ok(())
}

pub async fn set_broadcast_destination(db: &Db, id: i64, destination_id: Option<i64>) -> Result<(), AppError> {
    sqlx::query("UPDATE broadcasts SET destination_id = $1 WHERE id = $2")
        .bind(destination_id)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn set_broadcast_auto_live(db: &Db, id: i64, auto_live: bool) -> Result<(), AppError> {
    sqlx::query("UPDATE broadcasts SET auto_live = $1 WHERE id = $2")
        .bind(i64::from(auto_live))
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn delete_broadcast(db: &Db, id: i64) -> Result<bool, AppError> {
    Ok(sqlx::query("DELETE FROM broadcasts WHERE id = $1").bind(id).execute(db).await?.rows_affected() > 0)
}

/// Turns a stream's destinations on or off (a broadcast's ingest, when it goes live or ends).
pub async fn set_destinations_enabled(db: &Db, ids: &[i64], enabled: bool) -> Result<(), AppError> {
    for id in ids {
        sqlx::query("UPDATE destinations SET enabled = $1 WHERE id = $2")
            .bind(i64::from(enabled))
            .bind(id)
            .execute(db)
            .await?;
    }
    Ok(())
}

pub async fn setting(db: &Db, key: &str) -> Result<Option<String>, AppError> {
    Ok(sqlx::query_scalar("SELECT value FROM settings WHERE key = $1").bind(key).fetch_optional(db).await?)
}

pub async fn set_setting(db: &Db, key: &str, value: &str) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(db)
    .await?;
    Ok(())
}
