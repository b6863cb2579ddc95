//! SQLite state: migrations at start-up and the queries the server runs.
//!
//! Migrations are embedded SQL files applied in order and recorded in
//! `schema_migrations`; the SQL stays portable so PostgreSQL can be added later.

use std::path::Path;
use std::str::FromStr;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::error::AppError;

mod captures;
mod platforms;
mod recordings;
mod streams;

pub use self::captures::*;
pub use self::platforms::*;
pub use self::recordings::*;
pub use self::streams::*;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001_initial.sql")),
    (2, include_str!("../../migrations/0002_ladder.sql")),
    (3, include_str!("../../migrations/0003_recordings.sql")),
    (4, include_str!("../../migrations/0004_pull.sql")),
    (5, include_str!("../../migrations/0005_platforms.sql")),
    (6, include_str!("../../migrations/0006_captures.sql")),
    (7, include_str!("../../migrations/0007_indexes.sql")),
    (8, include_str!("../../migrations/0008_srt.sql")),
    (9, include_str!("../../migrations/0009_enhanced_rtmp.sql")),
];

pub type Db = SqlitePool;

/// A transaction: several changes that land together or not at all.
pub async fn begin(db: &Db) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, AppError> {
    Ok(db.begin().await?)
}

/// Opens (creating if needed) the database file and applies pending migrations.
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

fn unique_violation(e: sqlx::Error, field: &'static str, message: &'static str) -> AppError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => AppError::invalid(field, message),
        _ => AppError::from(e),
    }
}
