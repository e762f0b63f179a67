//! Persistent storage on sqlx's `Any` driver: the same migrations and queries run on SQLite (embedded
//! default) and PostgreSQL. Portable SQL only: `$1` placeholders (SQLite accepts them), TEXT ids made by
//! the application, times as BIGINT unix milliseconds, flags as BIGINT 0/1.

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::time::Duration;

mod assistants;
mod calls;
mod chat;
mod devices;
mod huddles;
mod presence;
mod realtime;
mod recordings;
mod webhooks;

pub use assistants::{
    AccountRecord, AssistantCallRecord, AssistantRecord, Charge, LedgerEntry, PublicKeyRecord,
};
pub use calls::{CallMember, CallRecord};
pub use chat::{personal_key, MessageQuery, MessageRecord, ThreadRecord, ThreadView};
pub use devices::{DeviceRecord, NotificationRecord, Registered};
pub use huddles::{HuddleMember, HuddleRecord, JoinOutcome};
pub use presence::PresenceRecord;
pub use realtime::{
    message_sort_column, session_sort_column, RtLatency, RtMessageQuery, RtMessageRecord,
    RtMessageSummary, RtModelStats, RtScope, RtSessionQuery, RtSessionRecord, RtSessionSummary,
    RtStats,
};
pub use recordings::RecordingRecord;
pub use webhooks::Delivery;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    pub pool: AnyPool,
    pub backend: Backend,
}

/// `NotFound` when a statement that must hit one row (an update or delete by key) hit none.
pub(crate) fn found(res: sqlx::any::AnyQueryResult) -> StoreResult<()> {
    if res.rows_affected() == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// Map unique-constraint violations to `Conflict`.
pub fn map_conflict(e: sqlx::Error, what: &str) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            return StoreError::Conflict(format!("{what} already exists"));
        }
    }
    StoreError::Db(e)
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomRecord {
    pub name: String,
    pub sid: String,
    pub created_at: i64,
    pub closed_at: Option<i64>,
    pub max_participants: i64,
    /// Seconds the room stays open while nobody has joined (0: `room.empty_timeout_secs`).
    pub empty_timeout_secs: i64,
    /// Seconds the live room stays open after its last participant left (0: the server default).
    pub departure_timeout_secs: i64,
    pub metadata: String,
}

const ROOM_COLS: &str =
    "name, sid, created_at, closed_at, max_participants, empty_timeout, departure_timeout, metadata";

impl Store {
    /// Connect (creating the SQLite file and its directory if needed) and apply migrations.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        if backend == Backend::Sqlite {
            if let Some(path) = sqlite_path(url) {
                if let Some(dir) = std::path::Path::new(&path).parent() {
                    if !dir.as_os_str().is_empty() {
                        std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(e.into()))?;
                    }
                }
            }
        }
        let mut opts = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA journal_mode=WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout=5000")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys=ON")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous=NORMAL")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = opts.connect(url).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool, backend })
    }

    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn insert_room(&self, r: &RoomRecord) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO rooms ({ROOM_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&r.name)
        .bind(&r.sid)
        .bind(r.created_at)
        .bind(r.closed_at)
        .bind(r.max_participants)
        .bind(r.empty_timeout_secs)
        .bind(r.departure_timeout_secs)
        .bind(&r.metadata)
        .execute(&self.pool)
        .await
        .map_err(|e| map_conflict(e, "room"))?;
        Ok(())
    }

    pub async fn get_room(&self, name: &str) -> StoreResult<RoomRecord> {
        let row = sqlx::query(&format!("SELECT {ROOM_COLS} FROM rooms WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        room_from_row(&row)
    }

    pub async fn close_room(&self, name: &str, at: i64) -> StoreResult<()> {
        let res =
            sqlx::query("UPDATE rooms SET closed_at = $1 WHERE name = $2 AND closed_at IS NULL")
                .bind(at)
                .bind(name)
                .execute(&self.pool)
                .await?;
        found(res)
    }

    /// Open rooms, newest first, with keyset pagination on `created_at`.
    pub async fn list_open_rooms(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<RoomRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {ROOM_COLS} FROM rooms \
             WHERE closed_at IS NULL AND created_at < $1 ORDER BY created_at DESC, name LIMIT $2"
        ))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(room_from_row).collect()
    }

    /// Set an open room's metadata (RoomService.UpdateRoomMetadata).
    pub async fn set_room_metadata(&self, name: &str, metadata: &str) -> StoreResult<()> {
        let res =
            sqlx::query("UPDATE rooms SET metadata = $1 WHERE name = $2 AND closed_at IS NULL")
                .bind(metadata)
                .bind(name)
                .execute(&self.pool)
                .await?;
        found(res)
    }

    /// Open rooms created with an `empty_timeout` whose time ran out at `now_ms` (nobody has to
    /// have joined: the caller skips rooms that are live).
    pub async fn expired_unused_rooms(&self, now_ms: i64) -> StoreResult<Vec<RoomRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {ROOM_COLS} FROM rooms WHERE closed_at IS NULL AND empty_timeout > 0 \
             AND created_at + empty_timeout * 1000 <= $1 ORDER BY created_at LIMIT 100"
        ))
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(room_from_row).collect()
    }

    pub async fn delete_room(&self, name: &str) -> StoreResult<()> {
        let res = sqlx::query("DELETE FROM rooms WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        found(res)
    }
}

fn room_from_row(row: &AnyRow) -> StoreResult<RoomRecord> {
    Ok(RoomRecord {
        name: row.try_get("name")?,
        sid: row.try_get("sid")?,
        created_at: row.try_get("created_at")?,
        closed_at: row.try_get("closed_at")?,
        max_participants: row.try_get("max_participants")?,
        empty_timeout_secs: row.try_get("empty_timeout")?,
        departure_timeout_secs: row.try_get("departure_timeout")?,
        metadata: row.try_get("metadata")?,
    })
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}
