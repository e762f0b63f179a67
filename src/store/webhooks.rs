//! Webhook deliveries: a persisted queue (so a restart does not lose pending events) that doubles as
//! the delivery log. The queue's order is `seq` (strictly increasing, assigned by the caller);
//! deliveries sharing a url and a non-empty `ordering_key` go out one at a time in that order.

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
    /// How an attempt is signed and sent: `parlor` (X-Parlor-* HMAC) or `livekit` (JWT).
    pub format: String,
    /// Deliveries with the same url and this key (non-empty) are attempted in `seq` order, a later
    /// one only once no earlier one is pending. Empty: no ordering constraint.
    pub ordering_key: String,
    /// Position in the queue: strictly increasing in insertion order.
    pub seq: i64,
}

const COLS: &str = "id, event_id, event, url, payload, status, attempts, next_attempt_at, \
     last_status, last_error, created_at, delivered_at, format, ordering_key, seq";

/// A pending delivery `d` that no earlier pending delivery of its url and ordering key holds back.
const UNBLOCKED: &str = "(d.ordering_key = '' OR NOT EXISTS (SELECT 1 FROM webhook_deliveries e \
     WHERE e.status = 'pending' AND e.url = d.url AND e.ordering_key = d.ordering_key \
     AND e.seq < d.seq))";

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
        format: r.try_get("format")?,
        ordering_key: r.try_get("ordering_key")?,
        seq: r.try_get("seq")?,
    })
}

impl Store {
    pub async fn insert_delivery(&self, d: &Delivery) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO webhook_deliveries ({COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
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
        .bind(&d.format)
        .bind(&d.ordering_key)
        .bind(d.seq)
        .execute(&self.pool)
        .await
        .map_err(|e| map_conflict(e, "webhook delivery"))?;
        Ok(())
    }

    /// Pending deliveries due at `now` and not held back by an earlier one of their url and
    /// ordering key, in queue order (`seq`: ties on times never reorder them).
    pub async fn due_deliveries(&self, now: i64, limit: i64) -> StoreResult<Vec<Delivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM webhook_deliveries d WHERE d.status = 'pending' \
             AND d.next_attempt_at <= $1 AND {UNBLOCKED} ORDER BY d.seq LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Claim pending delivery `id` for one attempt: its next attempt moves to `lease_until`, only
    /// if nobody changed it since it was read as due at `seen_next`. Several processes sharing the
    /// queue (multi-node mode) so attempt each delivery once; one that dies mid-attempt leaves it
    /// due again at `lease_until`.
    pub async fn claim_delivery(
        &self,
        id: &str,
        seen_next: i64,
        lease_until: i64,
    ) -> StoreResult<bool> {
        let res = sqlx::query(
            "UPDATE webhook_deliveries SET next_attempt_at = $1              WHERE id = $2 AND status = 'pending' AND next_attempt_at = $3",
        )
        .bind(lease_until)
        .bind(id)
        .bind(seen_next)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// When the next pending delivery that is not held back is due.
    pub async fn next_delivery_at(&self) -> StoreResult<Option<i64>> {
        let row = sqlx::query(&format!(
            "SELECT d.next_attempt_at FROM webhook_deliveries d WHERE d.status = 'pending' \
             AND {UNBLOCKED} ORDER BY d.next_attempt_at LIMIT 1"
        ))
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

    /// The highest `seq` in the queue (0 when it is empty): where a new process continues from.
    pub async fn max_delivery_seq(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS m FROM webhook_deliveries")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("m")?)
    }

    /// The delivery log, newest first.
    pub async fn list_deliveries(&self, limit: i64) -> StoreResult<Vec<Delivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM webhook_deliveries ORDER BY seq DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }
}
