//! Devices (push targets) and notification records.

use super::{found, Store, StoreError, StoreResult};
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub user_id: String,
    pub id: String,
    pub platform: String,
    pub token: Option<String>,
    pub name: Option<String>,
    pub app_version: Option<String>,
    pub registered_at: i64,
    pub last_active: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    pub id: String,
    pub user_id: String,
    pub device_id: String,
    /// `call_invite`, `huddle_invite`.
    pub kind: String,
    /// JSON text.
    pub payload: String,
    /// `sent`, `failed` or `skipped` (device has no push token).
    pub status: String,
    pub error: Option<String>,
    pub created_at: i64,
}

/// Outcome of registering a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    Created(DeviceRecord),
    Updated(DeviceRecord),
    LimitExceeded,
}

const DEVICE_COLS: &str =
    "user_id, id, platform, token, name, app_version, registered_at, last_active";

fn device_from_row(r: &AnyRow) -> StoreResult<DeviceRecord> {
    Ok(DeviceRecord {
        user_id: r.try_get("user_id")?,
        id: r.try_get("id")?,
        platform: r.try_get("platform")?,
        token: r.try_get("token")?,
        name: r.try_get("name")?,
        app_version: r.try_get("app_version")?,
        registered_at: r.try_get("registered_at")?,
        last_active: r.try_get("last_active")?,
    })
}

impl Store {
    /// Register (or re-register) a device of `d.user_id`, allowing at most `max` devices per user.
    ///
    /// One user's registrations are serialized so concurrent ones cannot pass the count check
    /// together: SQLite takes the write lock at `BEGIN IMMEDIATE`, PostgreSQL a transaction-scoped
    /// advisory lock on the user.
    pub async fn register_device(&self, d: &DeviceRecord, max: i64) -> StoreResult<Registered> {
        let mut tx = match self.backend {
            super::Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            super::Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(format!("devices:{}", d.user_id))
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        };
        // Re-registration updates the device in place (keeps registered_at).
        let res = sqlx::query(
            "UPDATE devices SET platform = $1, token = $2, name = $3, app_version = $4, last_active = $5 \
             WHERE user_id = $6 AND id = $7",
        )
        .bind(&d.platform)
        .bind(&d.token)
        .bind(&d.name)
        .bind(&d.app_version)
        .bind(d.last_active)
        .bind(&d.user_id)
        .bind(&d.id)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() > 0 {
            let row = sqlx::query(&format!(
                "SELECT {DEVICE_COLS} FROM devices WHERE user_id = $1 AND id = $2"
            ))
            .bind(&d.user_id)
            .bind(&d.id)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Registered::Updated(device_from_row(&row)?));
        }
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM devices WHERE user_id = $1")
            .bind(&d.user_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if n >= max {
            tx.rollback().await?;
            return Ok(Registered::LimitExceeded);
        }
        sqlx::query(&format!(
            "INSERT INTO devices ({DEVICE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&d.user_id)
        .bind(&d.id)
        .bind(&d.platform)
        .bind(&d.token)
        .bind(&d.name)
        .bind(&d.app_version)
        .bind(d.registered_at)
        .bind(d.last_active)
        .execute(&mut *tx)
        .await
        .map_err(|e| super::map_conflict(e, "device"))?;
        tx.commit().await?;
        Ok(Registered::Created(d.clone()))
    }

    pub async fn list_devices(&self, user: &str) -> StoreResult<Vec<DeviceRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE user_id = $1 ORDER BY registered_at, id"
        ))
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device_from_row).collect()
    }

    pub async fn get_device(&self, user: &str, id: &str) -> StoreResult<DeviceRecord> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE user_id = $1 AND id = $2"
        ))
        .bind(user)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        device_from_row(&row)
    }

    pub async fn update_device_token(
        &self,
        user: &str,
        id: &str,
        token: &str,
        at: i64,
    ) -> StoreResult<DeviceRecord> {
        let res = sqlx::query(
            "UPDATE devices SET token = $1, last_active = $2 WHERE user_id = $3 AND id = $4",
        )
        .bind(token)
        .bind(at)
        .bind(user)
        .bind(id)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_device(user, id).await
    }

    pub async fn touch_device(&self, user: &str, id: &str, at: i64) -> StoreResult<DeviceRecord> {
        let res = sqlx::query("UPDATE devices SET last_active = $1 WHERE user_id = $2 AND id = $3")
            .bind(at)
            .bind(user)
            .bind(id)
            .execute(&self.pool)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_device(user, id).await
    }

    pub async fn delete_device(&self, user: &str, id: &str) -> StoreResult<()> {
        let res = sqlx::query("DELETE FROM devices WHERE user_id = $1 AND id = $2")
            .bind(user)
            .bind(id)
            .execute(&self.pool)
            .await?;
        found(res)
    }

    pub async fn insert_notification(&self, n: &NotificationRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO notifications (id, user_id, device_id, kind, payload, status, error, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&n.id)
        .bind(&n.user_id)
        .bind(&n.device_id)
        .bind(&n.kind)
        .bind(&n.payload)
        .bind(&n.status)
        .bind(&n.error)
        .bind(n.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A user's notifications, newest first (keyset on `created_at`).
    pub async fn list_notifications(
        &self,
        user: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<NotificationRecord>> {
        let rows = sqlx::query(
            "SELECT id, user_id, device_id, kind, payload, status, error, created_at FROM notifications \
             WHERE user_id = $1 AND created_at < $2 ORDER BY created_at DESC, id DESC LIMIT $3",
        )
        .bind(user)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NotificationRecord {
                    id: r.try_get("id")?,
                    user_id: r.try_get("user_id")?,
                    device_id: r.try_get("device_id")?,
                    kind: r.try_get("kind")?,
                    payload: r.try_get("payload")?,
                    status: r.try_get("status")?,
                    error: r.try_get("error")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }
}
