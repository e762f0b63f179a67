//! Call recordings. The recorder inserts and finishes them; the REST API lists, reads and deletes.

use super::{found, map_conflict, Store, StoreError, StoreResult};
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRecord {
    pub id: String,
    pub call_id: String,
    pub conversation_id: Option<String>,
    pub call_type: String,
    pub started_by: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub duration_ms: Option<i64>,
    /// `recording`, `completed`, `failed` or `deleting` (a delete in progress: files being removed;
    /// the API treats it as gone and start-up finishes it).
    pub status: String,
    /// Relative to `<data_dir>/recordings`.
    pub file_path: Option<String>,
    pub size_bytes: Option<i64>,
    /// Multi-node mode: the node whose disk holds the files ('' in single-node mode).
    pub node: String,
}

const COLS: &str = "r.id, r.call_id, r.conversation_id, r.call_type, r.started_by, r.started_at, \
     r.ended_at, r.duration_ms, r.status, r.file_path, r.size_bytes, r.node";

/// Recordings of node `$1`, of no node, or every one when `$1` is ''.
const OF_NODE: &str = "($1 = '' OR r.node = $1 OR r.node = '')";

fn from_row(r: &AnyRow) -> StoreResult<RecordingRecord> {
    Ok(RecordingRecord {
        id: r.try_get("id")?,
        call_id: r.try_get("call_id")?,
        conversation_id: r.try_get("conversation_id")?,
        call_type: r.try_get("call_type")?,
        started_by: r.try_get("started_by")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        duration_ms: r.try_get("duration_ms")?,
        status: r.try_get("status")?,
        file_path: r.try_get("file_path")?,
        size_bytes: r.try_get("size_bytes")?,
        node: r.try_get("node")?,
    })
}

impl Store {
    pub async fn insert_recording(&self, r: &RecordingRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO recordings (id, call_id, conversation_id, call_type, started_by, started_at, \
             ended_at, duration_ms, status, file_path, size_bytes, node) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&r.id)
        .bind(&r.call_id)
        .bind(&r.conversation_id)
        .bind(&r.call_type)
        .bind(&r.started_by)
        .bind(r.started_at)
        .bind(r.ended_at)
        .bind(r.duration_ms)
        .bind(&r.status)
        .bind(&r.file_path)
        .bind(r.size_bytes)
        .bind(&r.node)
        .execute(&self.pool)
        .await
        .map_err(|e| map_conflict(e, "recording"))?;
        Ok(())
    }

    /// Mark a recording that is still `recording` finished (`completed` or `failed`) with its file
    /// and the media duration it holds (`ended_at` = `started_at` + `duration_ms`). Ok(false) when it
    /// had already been finished (the second of two racing finishers).
    pub async fn finish_recording(
        &self,
        id: &str,
        status: &str,
        duration_ms: i64,
        file_path: Option<&str>,
        size_bytes: Option<i64>,
    ) -> StoreResult<bool> {
        let res = sqlx::query(
            "UPDATE recordings SET status = $1, ended_at = started_at + $2, duration_ms = $2, \
             file_path = $3, size_bytes = $4 WHERE id = $5 AND status = 'recording'",
        )
        .bind(status)
        .bind(duration_ms)
        .bind(file_path)
        .bind(size_bytes)
        .bind(id)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() > 0 {
            return Ok(true);
        }
        // Distinguish "already finished" from "no such recording".
        self.get_recording(id).await.map(|_| false)
    }

    pub async fn get_recording(&self, id: &str) -> StoreResult<RecordingRecord> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM recordings r WHERE r.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        from_row(&row)
    }

    /// Whether `user` may see a recording: it started it or belongs to its call.
    pub async fn can_see_recording(&self, r: &RecordingRecord, user: &str) -> StoreResult<bool> {
        if r.started_by == user {
            return Ok(true);
        }
        Ok(self.call_member(&r.call_id, user).await?.is_some())
    }

    /// Recordings `user` may see, newest first, optionally one conversation's; offset pagination.
    pub async fn list_recordings_for_user(
        &self,
        user: &str,
        conversation_id: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<RecordingRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM recordings r WHERE ($2 = '' OR r.conversation_id = $2) AND \
             r.status <> 'deleting' AND \
             (r.started_by = $1 OR EXISTS (SELECT 1 FROM call_members m WHERE m.call_id = r.call_id \
              AND m.user_id = $1)) ORDER BY r.started_at DESC, r.id DESC LIMIT $3 OFFSET $4"
        ))
        .bind(user)
        .bind(conversation_id.unwrap_or(""))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// The call's recording in progress, if any (the newest).
    pub async fn active_recording_for_call(
        &self,
        call_id: &str,
    ) -> StoreResult<Option<RecordingRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLS} FROM recordings r WHERE r.call_id = $1 AND r.status = 'recording' \
             ORDER BY r.started_at DESC, r.id DESC LIMIT 1"
        ))
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// When the call's last recording ended (None: no finished recording).
    pub async fn last_recording_end(&self, call_id: &str) -> StoreResult<Option<i64>> {
        let row = sqlx::query("SELECT MAX(ended_at) AS t FROM recordings WHERE call_id = $1")
            .bind(call_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("t")?)
    }

    /// Every recording of `node` (and of no node; every one when `node` is '') still marked
    /// `recording` (at start-up: left behind by a crash).
    pub async fn unfinished_recordings(&self, node: &str) -> StoreResult<Vec<RecordingRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM recordings r WHERE r.status = 'recording' AND {OF_NODE} \
             ORDER BY r.started_at"
        ))
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// First step of a delete: mark the row `deleting` (whatever its status). Ok(false) when it was
    /// already being deleted; NotFound when there is no such row.
    pub async fn mark_recording_deleting(&self, id: &str) -> StoreResult<bool> {
        let res = sqlx::query(
            "UPDATE recordings SET status = 'deleting' WHERE id = $1 AND status <> 'deleting'",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() > 0 {
            return Ok(true);
        }
        self.get_recording(id).await.map(|_| false)
    }

    /// Recordings of `node` (as for [`Store::unfinished_recordings`]) whose delete has not
    /// finished (at start-up: a crash interrupted it).
    pub async fn deleting_recordings(&self, node: &str) -> StoreResult<Vec<RecordingRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM recordings r WHERE r.status = 'deleting' AND {OF_NODE} \
             ORDER BY r.started_at"
        ))
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Last step of a delete: remove the row.
    pub async fn delete_recording(&self, id: &str) -> StoreResult<()> {
        let res = sqlx::query("DELETE FROM recordings WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        found(res)
    }
}
