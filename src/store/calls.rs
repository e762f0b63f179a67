//! Calls and their members.

use super::{map_conflict, Store, StoreError, StoreResult};
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub id: String,
    pub call_type: String,
    pub conversation_id: Option<String>,
    pub created_by: String,
    /// `ringing`, `active`, `completed` or `missed`.
    pub status: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub duration_ms: Option<i64>,
    /// Record automatically once media flows.
    pub auto_record: bool,
}

impl CallRecord {
    pub fn is_over(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "missed")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallMember {
    pub user_id: String,
    /// `creator`, `invitee` or `participant` (joined the room without an invitation).
    pub role: String,
    pub invited_by: Option<String>,
    pub invited_at: i64,
    pub joined_at: Option<i64>,
    pub left_at: Option<i64>,
}

const CALL_COLS: &str =
    "id, call_type, conversation_id, created_by, status, created_at, started_at, ended_at, duration_ms, \
     auto_record";

fn call_from_row(r: &AnyRow) -> StoreResult<CallRecord> {
    Ok(CallRecord {
        id: r.try_get("id")?,
        call_type: r.try_get("call_type")?,
        conversation_id: r.try_get("conversation_id")?,
        created_by: r.try_get("created_by")?,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        duration_ms: r.try_get("duration_ms")?,
        auto_record: r.try_get::<i64, _>("auto_record")? != 0,
    })
}

impl Store {
    /// Insert a call and its creator as the first member.
    pub async fn insert_call(&self, c: &CallRecord) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO calls ({CALL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&c.id)
        .bind(&c.call_type)
        .bind(&c.conversation_id)
        .bind(&c.created_by)
        .bind(&c.status)
        .bind(c.created_at)
        .bind(c.started_at)
        .bind(c.ended_at)
        .bind(c.duration_ms)
        .bind(i64::from(c.auto_record))
        .execute(&mut *tx)
        .await
        .map_err(|e| map_conflict(e, "call"))?;
        sqlx::query(
            "INSERT INTO call_members (call_id, user_id, role, invited_by, invited_at) \
             VALUES ($1, $2, 'creator', NULL, $3)",
        )
        .bind(&c.id)
        .bind(&c.created_by)
        .bind(c.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_call(&self, id: &str) -> StoreResult<CallRecord> {
        let row = sqlx::query(&format!("SELECT {CALL_COLS} FROM calls WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        call_from_row(&row)
    }

    pub async fn delete_call(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM call_members WHERE call_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let res = sqlx::query("DELETE FROM calls WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Calls `user` belongs to, newest first (keyset on `created_at`), optionally one conversation's.
    pub async fn list_calls_for_user(
        &self,
        user: &str,
        conversation_id: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<CallRecord>> {
        let cols = CALL_COLS
            .split(", ")
            .map(|c| format!("c.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {cols} FROM calls c JOIN call_members m ON m.call_id = c.id \
             WHERE m.user_id = $1 AND c.created_at < $2 AND ($3 = '' OR c.conversation_id = $3) \
             ORDER BY c.created_at DESC, c.id DESC LIMIT $4"
        ))
        .bind(user)
        .bind(before.unwrap_or(i64::MAX))
        .bind(conversation_id.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(call_from_row).collect()
    }

    pub async fn call_member(&self, call_id: &str, user: &str) -> StoreResult<Option<CallMember>> {
        let row = sqlx::query(
            "SELECT user_id, role, invited_by, invited_at, joined_at, left_at FROM call_members \
             WHERE call_id = $1 AND user_id = $2",
        )
        .bind(call_id)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(member_from_row).transpose()
    }

    pub async fn call_members(&self, call_id: &str) -> StoreResult<Vec<CallMember>> {
        let rows = sqlx::query(
            "SELECT user_id, role, invited_by, invited_at, joined_at, left_at FROM call_members \
             WHERE call_id = $1 ORDER BY invited_at, user_id",
        )
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(member_from_row).collect()
    }

    /// Members of several calls in one query (call id → members, each list ordered like
    /// `call_members`). Callers bound the id list (API pages hold at most 100 calls).
    pub async fn call_members_many(
        &self,
        call_ids: &[&str],
    ) -> StoreResult<std::collections::HashMap<String, Vec<CallMember>>> {
        let mut out: std::collections::HashMap<String, Vec<CallMember>> =
            std::collections::HashMap::new();
        if call_ids.is_empty() {
            return Ok(out);
        }
        let placeholders: Vec<String> = (1..=call_ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT call_id, user_id, role, invited_by, invited_at, joined_at, left_at \
             FROM call_members WHERE call_id IN ({}) ORDER BY call_id, invited_at, user_id",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for id in call_ids {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&self.pool).await? {
            let call_id: String = row.try_get("call_id")?;
            out.entry(call_id).or_default().push(member_from_row(&row)?);
        }
        Ok(out)
    }

    /// Add `user` as an invitee (no-op if already a member). Returns true when newly added.
    pub async fn add_call_invitee(
        &self,
        call_id: &str,
        user: &str,
        invited_by: &str,
        at: i64,
    ) -> StoreResult<bool> {
        let res = sqlx::query(
            "INSERT INTO call_members (call_id, user_id, role, invited_by, invited_at) \
             VALUES ($1, $2, 'invitee', $3, $4) ON CONFLICT (call_id, user_id) DO NOTHING",
        )
        .bind(call_id)
        .bind(user)
        .bind(invited_by)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Record that `user` joined the call's room (adds it as a `participant` member if needed).
    pub async fn mark_call_joined(&self, call_id: &str, user: &str, at: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO call_members (call_id, user_id, role, invited_by, invited_at, joined_at) \
             VALUES ($1, $2, 'participant', NULL, $3, $3) \
             ON CONFLICT (call_id, user_id) DO UPDATE SET joined_at = $3, left_at = NULL",
        )
        .bind(call_id)
        .bind(user)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn mark_call_left(&self, call_id: &str, user: &str, at: i64) -> StoreResult<()> {
        sqlx::query("UPDATE call_members SET left_at = $1 WHERE call_id = $2 AND user_id = $3")
            .bind(at)
            .bind(call_id)
            .bind(user)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// `ringing` -> `active` at `at`. Returns false when the call was not ringing.
    pub async fn activate_call(&self, call_id: &str, at: i64) -> StoreResult<bool> {
        let res = sqlx::query(
            "UPDATE calls SET status = 'active', started_at = $1 WHERE id = $2 AND status = 'ringing'",
        )
        .bind(at)
        .bind(call_id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    /// End a call at `at`: an active call becomes `completed` with its duration, a ringing one `missed`.
    /// Returns the updated record, or None when the call does not exist or has already ended.
    pub async fn end_call(&self, call_id: &str, at: i64) -> StoreResult<Option<CallRecord>> {
        let call = match self.get_call(call_id).await {
            Ok(c) => c,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let res = match call.status.as_str() {
            "active" => {
                let started = call.started_at.unwrap_or(at);
                sqlx::query(
                    "UPDATE calls SET status = 'completed', ended_at = $1, duration_ms = $2 \
                     WHERE id = $3 AND status = 'active'",
                )
                .bind(at)
                .bind((at - started).max(0))
                .bind(call_id)
                .execute(&self.pool)
                .await?
            }
            "ringing" => {
                sqlx::query(
                    "UPDATE calls SET status = 'missed', ended_at = $1, duration_ms = 0 \
                     WHERE id = $2 AND status = 'ringing'",
                )
                .bind(at)
                .bind(call_id)
                .execute(&self.pool)
                .await?
            }
            _ => return Ok(None),
        };
        if res.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_call(call_id).await.map(Some)
    }

    /// Ids of calls still ringing that were created before `cutoff` (oldest first, at most `limit`).
    pub async fn ringing_calls_before(&self, cutoff: i64, limit: i64) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id FROM calls WHERE status = 'ringing' AND created_at < $1 \
             ORDER BY created_at, id LIMIT $2",
        )
        .bind(cutoff)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Calls not ended (`active` or `ringing`), oldest first: at start-up, the candidates a crash may
    /// have left open.
    pub async fn open_calls(&self) -> StoreResult<Vec<CallRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {CALL_COLS} FROM calls WHERE status IN ('active', 'ringing') ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(call_from_row).collect()
    }

    /// Complete a call whose room is gone (a crash) with `ended_at` and `duration_ms` (`started_at`
    /// if it had none), every member still in the room marked left at `ended_at`. Only if it is still
    /// `from` (nothing else finished it meanwhile); returns whether it did.
    pub async fn finish_orphaned_call(
        &self,
        call_id: &str,
        from: &str,
        started_at: i64,
        ended_at: i64,
        duration_ms: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(
            "UPDATE calls SET status = 'completed', started_at = COALESCE(started_at, $1), \
             ended_at = $2, duration_ms = $3 WHERE id = $4 AND status = $5",
        )
        .bind(started_at)
        .bind(ended_at)
        .bind(duration_ms)
        .bind(call_id)
        .bind(from)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() == 0 {
            tx.commit().await?;
            return Ok(false);
        }
        sqlx::query(
            "UPDATE call_members SET left_at = $1 WHERE call_id = $2 AND joined_at IS NOT NULL \
             AND left_at IS NULL",
        )
        .bind(ended_at)
        .bind(call_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn count_calls_with_status(&self, status: &str) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM calls WHERE status = $1")
            .bind(status)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}

fn member_from_row(r: &AnyRow) -> StoreResult<CallMember> {
    Ok(CallMember {
        user_id: r.try_get("user_id")?,
        role: r.try_get("role")?,
        invited_by: r.try_get("invited_by")?,
        invited_at: r.try_get("invited_at")?,
        joined_at: r.try_get("joined_at")?,
        left_at: r.try_get("left_at")?,
    })
}
