//! The persistent part of presence: manual status, custom message, emoji and last seen.

use super::{Store, StoreResult};
use sqlx::Row;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceRecord {
    pub user_id: String,
    /// `away` when the user set it; None means automatic (online while connected).
    pub manual_status: Option<String>,
    pub custom_message: Option<String>,
    pub emoji: Option<String>,
    pub last_seen: Option<i64>,
}

impl Store {
    pub async fn get_presence(&self, user: &str) -> StoreResult<Option<PresenceRecord>> {
        let row = sqlx::query(
            "SELECT user_id, manual_status, custom_message, emoji, last_seen FROM presence WHERE user_id = $1",
        )
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(PresenceRecord {
                user_id: r.try_get("user_id")?,
                manual_status: r.try_get("manual_status")?,
                custom_message: r.try_get("custom_message")?,
                emoji: r.try_get("emoji")?,
                last_seen: r.try_get("last_seen")?,
            })
        })
        .transpose()
    }

    /// Set the user-chosen fields (status, custom message, emoji), keeping last_seen.
    pub async fn set_presence_status(&self, p: &PresenceRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO presence (user_id, manual_status, custom_message, emoji, last_seen) \
             VALUES ($1, $2, $3, $4, NULL) ON CONFLICT (user_id) DO UPDATE SET \
             manual_status = $2, custom_message = $3, emoji = $4",
        )
        .bind(&p.user_id)
        .bind(&p.manual_status)
        .bind(&p.custom_message)
        .bind(&p.emoji)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_last_seen(&self, user: &str, at: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO presence (user_id, last_seen) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET last_seen = $2",
        )
        .bind(user)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
