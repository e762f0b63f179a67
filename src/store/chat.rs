//! Chat threads (personal, group, custom) and their messages.

use super::{map_conflict, Store, StoreError, StoreResult};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadRecord {
    pub id: String,
    /// `personal`, `group` or `custom`.
    pub thread_type: String,
    pub group_id: Option<String>,
    pub name: Option<String>,
    pub personal_key: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub activity: i64,
    pub last_message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: String,
    pub thread_id: String,
    pub from_user: String,
    pub content: String,
    /// File ids.
    pub files: Vec<String>,
    pub reply_to: Option<String>,
    pub created_at: i64,
}

/// A thread as one of its users sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadView {
    pub thread: ThreadRecord,
    pub users: Vec<String>,
    /// When this user last read the thread (0: never).
    pub access: i64,
    pub last_message: Option<MessageRecord>,
    /// Messages from others since `access`.
    pub new_activity_count: i64,
}

/// Which page of a thread's messages to read.
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    /// Only messages after this one (oldest first from there).
    pub after: Option<MessageRecord>,
    /// Only messages before this one (the newest ones before it).
    pub before: Option<MessageRecord>,
    /// Case-insensitive substring of the content.
    pub search: Option<String>,
    pub limit: i64,
}

/// The key that makes a personal thread unique per pair of users.
pub fn personal_key(a: &str, b: &str) -> String {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    format!("{}:{x}|{y}", x.len())
}

/// Case folding used for search, done here so every backend folds the same way.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

const THREAD_COLS: &str = "t.id, t.thread_type, t.group_id, t.name, t.personal_key, t.created_by, \
     t.created_at, t.activity, t.last_message_id";
const MSG_COLS: &str =
    "m.id, m.thread_id, m.from_user, m.content, m.files, m.reply_to, m.created_at";

fn thread_from_row(r: &AnyRow) -> StoreResult<ThreadRecord> {
    Ok(ThreadRecord {
        id: r.try_get("id")?,
        thread_type: r.try_get("thread_type")?,
        group_id: r.try_get("group_id")?,
        name: r.try_get("name")?,
        personal_key: r.try_get("personal_key")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        activity: r.try_get("activity")?,
        last_message_id: r.try_get("last_message_id")?,
    })
}

fn message_from_row(r: &AnyRow) -> StoreResult<MessageRecord> {
    let files: String = r.try_get("files")?;
    Ok(MessageRecord {
        id: r.try_get("id")?,
        thread_id: r.try_get("thread_id")?,
        from_user: r.try_get("from_user")?,
        content: r.try_get("content")?,
        files: serde_json::from_str(&files).unwrap_or_default(),
        reply_to: r.try_get("reply_to")?,
        created_at: r.try_get("created_at")?,
    })
}

fn like_pattern(search: &str) -> String {
    let mut p = String::with_capacity(search.len() + 2);
    p.push('%');
    for c in fold(search).chars() {
        if matches!(c, '%' | '_' | '!') {
            p.push('!');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl Store {
    /// Create a thread with its users (each with access 0).
    pub async fn insert_thread(&self, t: &ThreadRecord, users: &[String]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO chat_threads (id, thread_type, group_id, name, personal_key, created_by, \
             created_at, activity, last_message_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&t.id)
        .bind(&t.thread_type)
        .bind(&t.group_id)
        .bind(&t.name)
        .bind(&t.personal_key)
        .bind(&t.created_by)
        .bind(t.created_at)
        .bind(t.activity)
        .bind(&t.last_message_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_conflict(e, "thread"))?;
        for u in users {
            sqlx::query(
                "INSERT INTO chat_thread_users (thread_id, user_id, access) VALUES ($1, $2, 0) \
                 ON CONFLICT (thread_id, user_id) DO NOTHING",
            )
            .bind(&t.id)
            .bind(u)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_thread(&self, id: &str) -> StoreResult<ThreadRecord> {
        let row = sqlx::query(&format!(
            "SELECT {THREAD_COLS} FROM chat_threads t WHERE t.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        thread_from_row(&row)
    }

    pub async fn find_personal_thread(&self, a: &str, b: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT id FROM chat_threads WHERE personal_key = $1")
            .bind(personal_key(a, b))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    pub async fn is_thread_member(&self, thread: &str, user: &str) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT user_id FROM chat_thread_users WHERE thread_id = $1 AND user_id = $2",
        )
        .bind(thread)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    pub async fn thread_users(&self, thread: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT user_id FROM chat_thread_users WHERE thread_id = $1 ORDER BY user_id",
        )
        .bind(thread)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("user_id")?)).collect()
    }

    /// The threads `user` belongs to, most recent activity first.
    pub async fn list_threads_for_user(&self, user: &str) -> StoreResult<Vec<ThreadView>> {
        self.thread_views(user, None).await
    }

    /// One thread as `user` sees it (NotFound when the user is not in it).
    pub async fn thread_view(&self, thread: &str, user: &str) -> StoreResult<ThreadView> {
        self.thread_views(user, Some(thread))
            .await?
            .into_iter()
            .next()
            .ok_or(StoreError::NotFound)
    }

    async fn thread_views(&self, user: &str, only: Option<&str>) -> StoreResult<Vec<ThreadView>> {
        let only = only.unwrap_or("");
        let rows = sqlx::query(&format!(
            "SELECT {THREAD_COLS}, me.access AS access, \
             (SELECT COUNT(*) FROM chat_messages n WHERE n.thread_id = t.id AND n.created_at > me.access \
              AND n.from_user <> $1) AS new_count \
             FROM chat_threads t JOIN chat_thread_users me ON me.thread_id = t.id \
             WHERE me.user_id = $1 AND ($2 = '' OR t.id = $2) ORDER BY t.activity DESC, t.id"
        ))
        .bind(user)
        .bind(only)
        .fetch_all(&self.pool)
        .await?;
        let user_rows = sqlx::query(
            "SELECT tu.thread_id AS thread_id, tu.user_id AS user_id FROM chat_thread_users tu \
             JOIN chat_thread_users me ON me.thread_id = tu.thread_id \
             WHERE me.user_id = $1 AND ($2 = '' OR tu.thread_id = $2) ORDER BY tu.user_id",
        )
        .bind(user)
        .bind(only)
        .fetch_all(&self.pool)
        .await?;
        let mut users: HashMap<String, Vec<String>> = HashMap::new();
        for r in &user_rows {
            users
                .entry(r.try_get("thread_id")?)
                .or_default()
                .push(r.try_get("user_id")?);
        }
        let last_rows = sqlx::query(&format!(
            "SELECT {MSG_COLS} FROM chat_messages m JOIN chat_threads t ON t.last_message_id = m.id \
             JOIN chat_thread_users me ON me.thread_id = t.id \
             WHERE me.user_id = $1 AND ($2 = '' OR t.id = $2)"
        ))
        .bind(user)
        .bind(only)
        .fetch_all(&self.pool)
        .await?;
        let mut last: HashMap<String, MessageRecord> = HashMap::new();
        for r in &last_rows {
            let m = message_from_row(r)?;
            last.insert(m.thread_id.clone(), m);
        }
        rows.iter()
            .map(|r| {
                let thread = thread_from_row(r)?;
                Ok(ThreadView {
                    users: users.remove(&thread.id).unwrap_or_default(),
                    last_message: last.remove(&thread.id),
                    access: r.try_get("access")?,
                    new_activity_count: r.try_get("new_count")?,
                    thread,
                })
            })
            .collect()
    }

    /// Store a message: bumps the thread's activity and last message, and marks the thread read by
    /// the sender.
    pub async fn insert_message(&self, m: &MessageRecord) -> StoreResult<()> {
        let files = serde_json::to_string(&m.files).unwrap_or_else(|_| "[]".into());
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO chat_messages (id, thread_id, from_user, content, content_folded, files, reply_to, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&m.id)
        .bind(&m.thread_id)
        .bind(&m.from_user)
        .bind(&m.content)
        .bind(fold(&m.content))
        .bind(files)
        .bind(&m.reply_to)
        .bind(m.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_conflict(e, "message"))?;
        sqlx::query(
            "UPDATE chat_threads SET activity = $1, last_message_id = $2 WHERE id = $3 AND activity <= $1",
        )
        .bind(m.created_at)
        .bind(&m.id)
        .bind(&m.thread_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE chat_thread_users SET access = $1 WHERE thread_id = $2 AND user_id = $3 AND access < $1",
        )
        .bind(m.created_at)
        .bind(&m.thread_id)
        .bind(&m.from_user)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_message(&self, id: &str) -> StoreResult<MessageRecord> {
        let row = sqlx::query(&format!(
            "SELECT {MSG_COLS} FROM chat_messages m WHERE m.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        message_from_row(&row)
    }

    /// A page of a thread's messages in chronological order. Ordering is (created_at, id).
    pub async fn list_messages(
        &self,
        thread: &str,
        q: &MessageQuery,
    ) -> StoreResult<Vec<MessageRecord>> {
        let (after_t, after_id) = q
            .after
            .as_ref()
            .map(|m| (m.created_at, m.id.clone()))
            .unwrap_or((i64::MIN, String::new()));
        let (before_t, before_id) = q
            .before
            .as_ref()
            .map(|m| (m.created_at, m.id.clone()))
            .unwrap_or((i64::MAX, String::new()));
        let pattern = q.search.as_deref().map(like_pattern).unwrap_or_default();
        // With `after`, read forward from it; otherwise read the newest ones backwards.
        let order = if q.after.is_some() { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT {MSG_COLS} FROM chat_messages m WHERE m.thread_id = $1 \
             AND (m.created_at > $2 OR (m.created_at = $2 AND m.id > $3)) \
             AND (m.created_at < $4 OR (m.created_at = $4 AND m.id < $5) OR $6 = 0) \
             AND ($7 = '' OR m.content_folded LIKE $7 ESCAPE '!') \
             ORDER BY m.created_at {order}, m.id {order} LIMIT $8"
        );
        let rows = sqlx::query(&sql)
            .bind(thread)
            .bind(after_t)
            .bind(after_id)
            .bind(before_t)
            .bind(before_id)
            .bind(i64::from(q.before.is_some()))
            .bind(pattern)
            .bind(q.limit)
            .fetch_all(&self.pool)
            .await?;
        let mut msgs = rows
            .iter()
            .map(message_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        if q.after.is_none() {
            msgs.reverse();
        }
        Ok(msgs)
    }

    /// Mark the thread read by `user` at `at`.
    pub async fn set_thread_access(&self, thread: &str, user: &str, at: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE chat_thread_users SET access = $1 WHERE thread_id = $2 AND user_id = $3 AND access < $1",
        )
        .bind(at)
        .bind(thread)
        .bind(user)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
