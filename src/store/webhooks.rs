//! Webhook deliveries: a persisted queue (so a restart does not lose pending events) that doubles as
//! the delivery log.

use super::{map_conflict, Store, StoreResult};
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    pub event: String,
    pub url: String,
    /// The exact JSON body sent on every attempt.
    pub payload: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    /// HTTP status of the last attempt (None: no response).
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

const COLS: &str = "id, event_id, event, url, payload, status, attempts, next_attempt_at, \
     last_status, last_error, created_at, delivered_at";

fn from_row(r: &AnyRow) -> StoreResult<Delivery> {
    Ok(Delivery {
        id: r.try_get("id")?,
        event_id: r.try_get("event_id")?,
        event: r.try_get("event")?,
        url: r.try_get("url")?,
        payload: r.try_get("payload")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_status: r.try_get("last_status")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        delivered_at: r.try_get("delivered_at")?,
    })
}

impl Store {
    pub async fn insert_delivery(&self, d: &Delivery) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO webhook_deliveries ({COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&d.id)
        .bind(&d.event_id)
        .bind(&d.event)
        .bind(&d.url)
        .bind(&d.payload)
        .bind(&d.status)
        .bind(d.attempts)
        .bind(d.next_attempt_at)
        .bind(d.last_status)
        .bind(&d.last_error)
        .bind(d.created_at)
        .bind(d.delivered_at)
        .execute(&self.pool)
        .await
        .map_err(|e| map_conflict(e, "webhook delivery"))?;
        Ok(())
    }

    /// Pending deliveries due at `now`, oldest first.
    pub async fn due_deliveries(&self, now: i64, limit: i64) -> StoreResult<Vec<Delivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, id LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// When the next pending delivery is due.
    pub async fn next_delivery_at(&self) -> StoreResult<Option<i64>> {
        let row = sqlx::query(
            "SELECT next_attempt_at FROM webhook_deliveries WHERE status = 'pending' \
             ORDER BY next_attempt_at LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("next_attempt_at")?),
            None => None,
        })
    }

    /// Record an attempt: `status` is `delivered`, `pending` (retry at `next_at`) or `failed`.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_attempt(
        &self,
        id: &str,
        status: &str,
        attempts: i64,
        next_at: i64,
        http_status: Option<i64>,
        error: Option<&str>,
        delivered_at: Option<i64>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = $2, next_attempt_at = $3, \
             last_status = $4, last_error = $5, delivered_at = $6 WHERE id = $7",
        )
        .bind(status)
        .bind(attempts)
        .bind(next_at)
        .bind(http_status)
        .bind(error)
        .bind(delivered_at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The delivery log, newest first.
    pub async fn list_deliveries(&self, limit: i64) -> StoreResult<Vec<Delivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM webhook_deliveries ORDER BY created_at DESC, id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }
}
