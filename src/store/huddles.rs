//! Huddles and their members.

use super::{map_conflict, Store, StoreError, StoreResult};
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HuddleRecord {
    pub id: String,
    pub name: String,
    pub workspace_id: Option<String>,
    pub channel_id: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    /// When the first participant joined (the latest start, when it restarted).
    pub started_at: Option<i64>,
    /// When the last participant left (None while it has participants or never had any).
    pub ended_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HuddleMember {
    pub user_id: String,
    pub invited_by: Option<String>,
    pub invited_at: i64,
    pub in_huddle: bool,
    pub joined_at: Option<i64>,
    pub left_at: Option<i64>,
}

/// Result of trying to join a huddle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    Joined,
    AlreadyIn,
    Full,
}

const HUDDLE_COLS: &str =
    "id, name, workspace_id, channel_id, created_by, created_at, started_at, ended_at";
const MEMBER_COLS: &str = "user_id, invited_by, invited_at, in_huddle, joined_at, left_at";

fn huddle_from_row(r: &AnyRow) -> StoreResult<HuddleRecord> {
    Ok(HuddleRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        workspace_id: r.try_get("workspace_id")?,
        channel_id: r.try_get("channel_id")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
    })
}

fn member_from_row(r: &AnyRow) -> StoreResult<HuddleMember> {
    let in_huddle: i64 = r.try_get("in_huddle")?;
    Ok(HuddleMember {
        user_id: r.try_get("user_id")?,
        invited_by: r.try_get("invited_by")?,
        invited_at: r.try_get("invited_at")?,
        in_huddle: in_huddle != 0,
        joined_at: r.try_get("joined_at")?,
        left_at: r.try_get("left_at")?,
    })
}

impl Store {
    /// Insert a huddle with its creator as the first member (not yet a participant).
    pub async fn insert_huddle(&self, h: &HuddleRecord) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO huddles ({HUDDLE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&h.id)
        .bind(&h.name)
        .bind(&h.workspace_id)
        .bind(&h.channel_id)
        .bind(&h.created_by)
        .bind(h.created_at)
        .bind(h.started_at)
        .bind(h.ended_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_conflict(e, "huddle"))?;
        sqlx::query(
            "INSERT INTO huddle_members (huddle_id, user_id, invited_by, invited_at, in_huddle) \
             VALUES ($1, $2, NULL, $3, 0)",
        )
        .bind(&h.id)
        .bind(&h.created_by)
        .bind(h.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_huddle(&self, id: &str) -> StoreResult<HuddleRecord> {
        let row = sqlx::query(&format!("SELECT {HUDDLE_COLS} FROM huddles WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        huddle_from_row(&row)
    }

    pub async fn huddle_members(&self, id: &str) -> StoreResult<Vec<HuddleMember>> {
        let rows = sqlx::query(&format!(
            "SELECT {MEMBER_COLS} FROM huddle_members WHERE huddle_id = $1 ORDER BY invited_at, user_id"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(member_from_row).collect()
    }

    pub async fn huddle_member(&self, id: &str, user: &str) -> StoreResult<Option<HuddleMember>> {
        let row = sqlx::query(&format!(
            "SELECT {MEMBER_COLS} FROM huddle_members WHERE huddle_id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(member_from_row).transpose()
    }

    /// Add invitees (existing members are left as they are). Returns the newly added ones.
    pub async fn add_huddle_invitees(
        &self,
        id: &str,
        users: &[String],
        invited_by: &str,
        at: i64,
    ) -> StoreResult<Vec<String>> {
        let mut added = Vec::new();
        let mut tx = self.pool.begin().await?;
        for u in users {
            let res = sqlx::query(
                "INSERT INTO huddle_members (huddle_id, user_id, invited_by, invited_at, in_huddle) \
                 VALUES ($1, $2, $3, $4, 0) ON CONFLICT (huddle_id, user_id) DO NOTHING",
            )
            .bind(id)
            .bind(u)
            .bind(invited_by)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if res.rows_affected() > 0 {
                added.push(u.clone());
            }
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Make `user` a participant unless the huddle already has `max` participants. With `add_member`,
    /// a user who is not a member yet is added (used when someone joins the room with a room token).
    pub async fn join_huddle(
        &self,
        id: &str,
        user: &str,
        max: i64,
        at: i64,
        add_member: bool,
    ) -> StoreResult<JoinOutcome> {
        let mut tx = self.pool.begin().await?;
        // Serialise joins of one huddle: touch its row first (a write lock on both backends).
        sqlx::query("UPDATE huddles SET name = name WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let member = sqlx::query(
            "SELECT in_huddle FROM huddle_members WHERE huddle_id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
        let in_huddle = match &member {
            Some(r) => r.try_get::<i64, _>("in_huddle")? != 0,
            None if add_member => false,
            None => return Err(StoreError::NotFound),
        };
        if in_huddle {
            tx.commit().await?;
            return Ok(JoinOutcome::AlreadyIn);
        }
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM huddle_members WHERE huddle_id = $1 AND in_huddle = 1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if n >= max {
            tx.commit().await?;
            return Ok(JoinOutcome::Full);
        }
        if member.is_some() {
            sqlx::query(
                "UPDATE huddle_members SET in_huddle = 1, joined_at = $1, left_at = NULL \
                 WHERE huddle_id = $2 AND user_id = $3",
            )
            .bind(at)
            .bind(id)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO huddle_members (huddle_id, user_id, invited_by, invited_at, in_huddle, joined_at) \
                 VALUES ($1, $2, NULL, $3, 1, $3)",
            )
            .bind(id)
            .bind(user)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        if n == 0 {
            sqlx::query("UPDATE huddles SET started_at = $1, ended_at = NULL WHERE id = $2")
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(JoinOutcome::Joined)
    }

    /// `user` stops being a participant. Returns false when it was not one. Ends the huddle when it
    /// was the last participant.
    pub async fn leave_huddle(&self, id: &str, user: &str, at: i64) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE huddles SET name = name WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let res = sqlx::query(
            "UPDATE huddle_members SET in_huddle = 0, left_at = $1 \
             WHERE huddle_id = $2 AND user_id = $3 AND in_huddle = 1",
        )
        .bind(at)
        .bind(id)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() == 0 {
            tx.commit().await?;
            return Ok(false);
        }
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM huddle_members WHERE huddle_id = $1 AND in_huddle = 1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if n == 0 {
            sqlx::query("UPDATE huddles SET ended_at = $1 WHERE id = $2")
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Ids of huddles with at least one participant.
    pub async fn active_huddle_ids(&self) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT huddle_id FROM huddle_members WHERE in_huddle = 1 ORDER BY huddle_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("huddle_id")?)).collect()
    }

    /// End a huddle whose room is gone (a crash): every participant left at `at`, the huddle ended.
    pub async fn finish_orphaned_huddle(&self, id: &str, at: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE huddle_members SET in_huddle = 0, left_at = $1 WHERE huddle_id = $2 AND in_huddle = 1",
        )
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE huddles SET ended_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Huddles with at least one participant.
    pub async fn count_active_huddles(&self) -> StoreResult<i64> {
        let row = sqlx::query(
            "SELECT COUNT(DISTINCT huddle_id) AS n FROM huddle_members WHERE in_huddle = 1",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }
}
