//! Model sessions (seed 000) and their messages: rows, filters, pagination and the summaries and
//! statistics the `/api/realtime` endpoints report, all computed in SQL from the stored rows.
//!
//! A session's stored `status` is `active`, `paused`, `completed` or `failed`; `idle` is derived at
//! read time (an `active` session whose `last_activity` is older than the caller's `idle_cut`), so
//! filters and counts by state agree with what a single read shows.

use super::{map_conflict, Store, StoreError, StoreResult};
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq)]
pub struct RtSessionRecord {
    pub id: String,
    pub user_id: String,
    pub model: String,
    /// Stored state: `active`, `paused`, `completed` or `failed`.
    pub status: String,
    pub temperature: f64,
    pub max_tokens: i64,
    pub stream: bool,
    pub system_prompt: Option<String>,
    /// JSON object, as text.
    pub metadata: String,
    pub created_at: i64,
    pub last_activity: i64,
    pub ended_at: Option<i64>,
    pub deleted_at: Option<i64>,
    pub deleted_by: Option<String>,
    pub token_generation: i64,
    pub token_expires_at: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub message_count: i64,
    /// Model responses asked for, and how many of them failed.
    pub request_count: i64,
    pub failed_count: i64,
    pub response_ms_sum: i64,
    pub response_count: i64,
    pub failure_reason: Option<String>,
}

impl RtSessionRecord {
    /// The state a client sees (`idle` derived from `last_activity`).
    pub fn state(&self, idle_cut: i64) -> &str {
        if self.status == "active" && self.last_activity < idle_cut {
            "idle"
        } else {
            &self.status
        }
    }
    /// Last activity minus creation.
    pub fn duration_ms(&self) -> i64 {
        (self.last_activity - self.created_at).max(0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RtMessageRecord {
    pub id: String,
    pub session_id: String,
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
    pub created_at: i64,
    pub token_count: i64,
    /// JSON object, as text.
    pub metadata: String,
    pub response_ms: Option<i64>,
}

/// Which sessions a list or summary covers.
#[derive(Debug, Clone, Default)]
pub struct RtScope {
    /// Only this user's sessions (None: everyone's, for admins).
    pub owner: Option<String>,
    /// `userId` filter.
    pub user_id: Option<String>,
    pub model: Option<String>,
    /// `active` sessions idle before this time read `idle`.
    pub idle_cut: i64,
}

#[derive(Debug, Clone, Default)]
pub struct RtSessionQuery {
    pub scope: RtScope,
    /// `active`, `idle`, `paused`, `completed`, `failed`; None: every state but `completed`.
    pub state: Option<String>,
    /// A whitelisted sort key (see [`session_sort_column`]).
    pub sort_by: String,
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtSessionSummary {
    pub total: i64,
    pub active: i64,
    pub idle: i64,
    pub paused: i64,
    pub completed: i64,
    pub failed: i64,
    pub users: i64,
}

#[derive(Debug, Clone, Default)]
pub struct RtMessageQuery {
    pub session_id: String,
    pub start: Option<i64>,
    pub end: Option<i64>,
    /// `timestamp` or `tokenCount`.
    pub sort_by: String,
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RtMessageSummary {
    pub total: i64,
    pub user: i64,
    pub assistant: i64,
    pub tokens: i64,
    pub average_response_ms: Option<f64>,
}

/// Figures of `GET /api/realtime/stats` over one time range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RtStats {
    pub sessions: RtSessionSummary,
    pub average_duration_ms: Option<f64>,
    pub messages: i64,
    pub tokens: i64,
    pub requests: i64,
    pub failed: i64,
    pub latency: RtLatency,
    pub models: Vec<RtModelStats>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RtLatency {
    pub count: i64,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub average: Option<f64>,
    pub p95: Option<i64>,
    pub p99: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RtModelStats {
    pub model: String,
    pub sessions: i64,
    pub tokens: i64,
    pub average_response_ms: Option<f64>,
}

/// The column expression of a `sortBy` value; None for an unknown key.
pub fn session_sort_column(sort_by: &str) -> Option<&'static str> {
    Some(match sort_by {
        "createdAt" => "s.created_at",
        "lastActivity" => "s.last_activity",
        "duration" => "(s.last_activity - s.created_at)",
        "messageCount" => "s.message_count",
        "tokenUsage" => "(s.prompt_tokens + s.completion_tokens)",
        "model" => "s.model",
        "status" => "s.status",
        "userId" => "s.user_id",
        _ => return None,
    })
}

/// The column expression of a history `sortBy` value.
pub fn message_sort_column(sort_by: &str) -> Option<&'static str> {
    Some(match sort_by {
        "timestamp" => "m.created_at",
        "tokenCount" => "m.token_count",
        "role" => "m.role",
        _ => return None,
    })
}

/// Bind values of a query built at run time, in placeholder order.
#[derive(Default)]
struct Args {
    vals: Vec<Arg>,
}

enum Arg {
    I(i64),
    S(String),
}

impl Args {
    fn i(&mut self, v: i64) -> String {
        self.vals.push(Arg::I(v));
        format!("${}", self.vals.len())
    }
    fn s(&mut self, v: &str) -> String {
        self.vals.push(Arg::S(v.to_string()));
        format!("${}", self.vals.len())
    }
    fn bind<'q>(
        &'q self,
        mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for v in &self.vals {
            q = match v {
                Arg::I(i) => q.bind(*i),
                Arg::S(s) => q.bind(s.as_str()),
            };
        }
        q
    }
}

/// The derived state of `s` as SQL (binds the idle cut).
fn state_expr(a: &mut Args, idle_cut: i64) -> String {
    let cut = a.i(idle_cut);
    format!(
        "(CASE WHEN s.status = 'active' AND s.last_activity < {cut} THEN 'idle' ELSE s.status END)"
    )
}

/// `WHERE` conditions of a scope (always starts with `1 = 1`).
fn scope_where(a: &mut Args, scope: &RtScope) -> String {
    let mut w = String::from("1 = 1");
    if let Some(o) = &scope.owner {
        w += &format!(" AND s.user_id = {}", a.s(o));
    }
    if let Some(u) = &scope.user_id {
        w += &format!(" AND s.user_id = {}", a.s(u));
    }
    if let Some(m) = &scope.model {
        w += &format!(" AND s.model = {}", a.s(m));
    }
    w
}

const SESSION_COLS: &str = "s.id, s.user_id, s.model, s.status, s.temperature, s.max_tokens, \
     s.stream, s.system_prompt, s.metadata, s.created_at, s.last_activity, s.ended_at, \
     s.deleted_at, s.deleted_by, s.token_generation, s.token_expires_at, s.prompt_tokens, \
     s.completion_tokens, s.message_count, s.request_count, s.failed_count, s.response_ms_sum, \
     s.response_count, s.failure_reason";

fn session_from_row(r: &AnyRow) -> StoreResult<RtSessionRecord> {
    Ok(RtSessionRecord {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        model: r.try_get("model")?,
        status: r.try_get("status")?,
        temperature: r.try_get("temperature")?,
        max_tokens: r.try_get("max_tokens")?,
        stream: r.try_get::<i64, _>("stream")? != 0,
        system_prompt: r.try_get("system_prompt")?,
        metadata: r.try_get("metadata")?,
        created_at: r.try_get("created_at")?,
        last_activity: r.try_get("last_activity")?,
        ended_at: r.try_get("ended_at")?,
        deleted_at: r.try_get("deleted_at")?,
        deleted_by: r.try_get("deleted_by")?,
        token_generation: r.try_get("token_generation")?,
        token_expires_at: r.try_get("token_expires_at")?,
        prompt_tokens: r.try_get("prompt_tokens")?,
        completion_tokens: r.try_get("completion_tokens")?,
        message_count: r.try_get("message_count")?,
        request_count: r.try_get("request_count")?,
        failed_count: r.try_get("failed_count")?,
        response_ms_sum: r.try_get("response_ms_sum")?,
        response_count: r.try_get("response_count")?,
        failure_reason: r.try_get("failure_reason")?,
    })
}

const MESSAGE_COLS: &str = "m.id, m.session_id, m.role, m.content, m.created_at, m.token_count, \
     m.metadata, m.response_ms";

fn message_from_row(r: &AnyRow) -> StoreResult<RtMessageRecord> {
    Ok(RtMessageRecord {
        id: r.try_get("id")?,
        session_id: r.try_get("session_id")?,
        role: r.try_get("role")?,
        content: r.try_get("content")?,
        created_at: r.try_get("created_at")?,
        token_count: r.try_get("token_count")?,
        metadata: r.try_get("metadata")?,
        response_ms: r.try_get("response_ms")?,
    })
}

/// Counts by derived state, as SQL select items (`total, active, idle, paused, completed, failed,
/// users`) over `s`.
fn summary_items(a: &mut Args, idle_cut: i64) -> String {
    let st = state_expr(a, idle_cut);
    format!(
        "COUNT(*) AS total, \
         COALESCE(SUM(CASE WHEN {st} = 'active' THEN 1 ELSE 0 END), 0) AS active, \
         COALESCE(SUM(CASE WHEN {st} = 'idle' THEN 1 ELSE 0 END), 0) AS idle, \
         COALESCE(SUM(CASE WHEN s.status = 'paused' THEN 1 ELSE 0 END), 0) AS paused, \
         COALESCE(SUM(CASE WHEN s.status = 'completed' THEN 1 ELSE 0 END), 0) AS completed, \
         COALESCE(SUM(CASE WHEN s.status = 'failed' THEN 1 ELSE 0 END), 0) AS failed, \
         COUNT(DISTINCT s.user_id) AS users"
    )
}

fn summary_from_row(r: &AnyRow) -> StoreResult<RtSessionSummary> {
    // SUM of integers is NUMERIC/BIGINT depending on the backend: read through i64 casts.
    Ok(RtSessionSummary {
        total: r.try_get("total")?,
        active: r.try_get("active")?,
        idle: r.try_get("idle")?,
        paused: r.try_get("paused")?,
        completed: r.try_get("completed")?,
        failed: r.try_get("failed")?,
        users: r.try_get("users")?,
    })
}

/// `CAST(expr AS BIGINT)`: PostgreSQL's SUM of BIGINT is NUMERIC, which the `Any` driver cannot read.
fn big(expr: &str) -> String {
    format!("CAST({expr} AS BIGINT)")
}

fn dbl(expr: &str) -> String {
    format!("CAST({expr} AS DOUBLE PRECISION)")
}

impl Store {
    pub async fn insert_rt_session(&self, s: &RtSessionRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO realtime_sessions (id, user_id, model, status, temperature, max_tokens, \
             stream, system_prompt, metadata, created_at, last_activity, ended_at, deleted_at, \
             deleted_by, token_generation, token_expires_at, prompt_tokens, completion_tokens, \
             message_count, request_count, failed_count, response_ms_sum, response_count, \
             failure_reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)",
        )
        .bind(&s.id)
        .bind(&s.user_id)
        .bind(&s.model)
        .bind(&s.status)
        .bind(s.temperature)
        .bind(s.max_tokens)
        .bind(i64::from(s.stream))
        .bind(&s.system_prompt)
        .bind(&s.metadata)
        .bind(s.created_at)
        .bind(s.last_activity)
        .bind(s.ended_at)
        .bind(s.deleted_at)
        .bind(&s.deleted_by)
        .bind(s.token_generation)
        .bind(s.token_expires_at)
        .bind(s.prompt_tokens)
        .bind(s.completion_tokens)
        .bind(s.message_count)
        .bind(s.request_count)
        .bind(s.failed_count)
        .bind(s.response_ms_sum)
        .bind(s.response_count)
        .bind(&s.failure_reason)
        .execute(&self.pool)
        .await
        .map_err(|e| map_conflict(e, "session"))?;
        Ok(())
    }

    /// A session, deleted or not.
    pub async fn get_rt_session(&self, id: &str) -> StoreResult<RtSessionRecord> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLS} FROM realtime_sessions s WHERE s.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        session_from_row(&row)
    }

    /// Sessions of `user` that are neither completed nor failed.
    pub async fn count_open_rt_sessions(&self, user: &str) -> StoreResult<i64> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS n FROM realtime_sessions WHERE user_id = $1 \
             AND status <> 'completed' AND status <> 'failed'",
        )
        .bind(user)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?)
    }

    /// One page of sessions and the number of rows matching the query.
    pub async fn list_rt_sessions(
        &self,
        q: &RtSessionQuery,
    ) -> StoreResult<(Vec<RtSessionRecord>, i64)> {
        let mut a = Args::default();
        let mut w = scope_where(&mut a, &q.scope);
        match q.state.as_deref() {
            None => w += " AND s.status <> 'completed'",
            Some(st) => {
                let e = state_expr(&mut a, q.scope.idle_cut);
                w += &format!(" AND {e} = {}", a.s(st));
            }
        }
        let count_sql = format!("SELECT COUNT(*) AS n FROM realtime_sessions s WHERE {w}");
        let total: i64 = a
            .bind(sqlx::query(&count_sql))
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let col = session_sort_column(&q.sort_by).unwrap_or("s.created_at");
        let dir = if q.descending { "DESC" } else { "ASC" };
        let lim = a.i(q.limit);
        let off = a.i(q.offset);
        let sql = format!(
            "SELECT {SESSION_COLS} FROM realtime_sessions s WHERE {w} \
             ORDER BY {col} {dir}, s.id {dir} LIMIT {lim} OFFSET {off}"
        );
        let rows = a.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        let out = rows
            .iter()
            .map(session_from_row)
            .collect::<StoreResult<_>>()?;
        Ok((out, total))
    }

    /// Sessions of a scope by state (every state, completed included).
    pub async fn rt_session_summary(&self, scope: &RtScope) -> StoreResult<RtSessionSummary> {
        let mut a = Args::default();
        let items = summary_items(&mut a, scope.idle_cut);
        let w = scope_where(&mut a, scope);
        let sql = format!("SELECT {items} FROM realtime_sessions s WHERE {w}");
        let row = a.bind(sqlx::query(&sql)).fetch_one(&self.pool).await?;
        summary_from_row(&row)
    }

    /// Resume: a new token generation (older authTokens stop working), state `active`, activity
    /// now. Ok(None) when the session is deleted or gone.
    pub async fn resume_rt_session(
        &self,
        id: &str,
        now: i64,
        token_expires_at: i64,
    ) -> StoreResult<Option<RtSessionRecord>> {
        let res = sqlx::query(
            "UPDATE realtime_sessions SET token_generation = token_generation + 1, \
             status = 'active', last_activity = $1, token_expires_at = $2, ended_at = NULL, \
             failure_reason = NULL WHERE id = $3 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(token_expires_at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_rt_session(id).await.map(Some)
    }

    /// Set the stored state of a live (not deleted) session; `activity` also moves
    /// `last_activity`. `failed` records `reason` and the end time.
    pub async fn set_rt_status(
        &self,
        id: &str,
        status: &str,
        now: i64,
        activity: bool,
        reason: Option<&str>,
    ) -> StoreResult<bool> {
        let ended = (status == "failed").then_some(now);
        let res = sqlx::query(
            "UPDATE realtime_sessions SET status = $1, \
             last_activity = CASE WHEN $2 = 1 THEN $3 ELSE last_activity END, \
             ended_at = $4, failure_reason = $5 WHERE id = $6 AND deleted_at IS NULL",
        )
        .bind(status)
        .bind(i64::from(activity))
        .bind(now)
        .bind(ended)
        .bind(reason)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    /// The socket of an `active` session closed: `paused` (other states stay).
    pub async fn pause_rt_session(&self, id: &str) -> StoreResult<bool> {
        let res = sqlx::query(
            "UPDATE realtime_sessions SET status = 'paused' WHERE id = $1 AND status = 'active' \
             AND deleted_at IS NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Soft delete: state `completed`, the row kept for statistics. Ok(false) when it was already
    /// deleted.
    pub async fn delete_rt_session(&self, id: &str, by: &str, now: i64) -> StoreResult<bool> {
        let res = sqlx::query(
            "UPDATE realtime_sessions SET status = 'completed', deleted_at = $1, deleted_by = $2, \
             ended_at = $1 WHERE id = $3 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(by)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Store a message and fold it into its session's counters: every message counts and moves
    /// `last_activity`; an assistant message with a response time is one successful request with
    /// its prompt and completion tokens.
    pub async fn add_rt_message(
        &self,
        m: &RtMessageRecord,
        prompt_tokens: i64,
        completion_tokens: i64,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(
            "UPDATE realtime_sessions SET message_count = message_count + 1, \
             last_activity = CASE WHEN last_activity < $1 THEN $1 ELSE last_activity END, \
             prompt_tokens = prompt_tokens + $2, completion_tokens = completion_tokens + $3, \
             request_count = request_count + $4, response_count = response_count + $4, \
             response_ms_sum = response_ms_sum + $5 WHERE id = $6 AND deleted_at IS NULL",
        )
        .bind(m.created_at)
        .bind(prompt_tokens)
        .bind(completion_tokens)
        .bind(i64::from(m.response_ms.is_some()))
        .bind(m.response_ms.unwrap_or(0))
        .bind(&m.session_id)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO realtime_messages (id, session_id, role, content, created_at, seq, \
             token_count, metadata, response_ms) SELECT $1, $2, $3, $4, $5, \
             COALESCE(MAX(seq), 0) + 1, $6, $7, $8 FROM realtime_messages WHERE session_id = $9",
        )
        .bind(&m.id)
        .bind(&m.session_id)
        .bind(&m.role)
        .bind(&m.content)
        .bind(m.created_at)
        .bind(m.token_count)
        .bind(&m.metadata)
        .bind(m.response_ms)
        .bind(&m.session_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_conflict(e, "message"))?;
        tx.commit().await?;
        Ok(())
    }

    /// A model response that failed: one more request, one more failure.
    pub async fn add_rt_failure(&self, id: &str, now: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE realtime_sessions SET request_count = request_count + 1, \
             failed_count = failed_count + 1, \
             last_activity = CASE WHEN last_activity < $1 THEN $1 ELSE last_activity END \
             WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The last `limit` messages of a session, oldest first (resume's messageHistory, the
    /// conversation seed).
    pub async fn recent_rt_messages(
        &self,
        session_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<RtMessageRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLS} FROM realtime_messages m WHERE m.session_id = $1 \
             ORDER BY m.created_at DESC, m.seq DESC LIMIT $2"
        ))
        .bind(session_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(message_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }

    fn message_where(a: &mut Args, q: &RtMessageQuery) -> String {
        let mut w = format!("m.session_id = {}", a.s(&q.session_id));
        if let Some(s) = q.start {
            w += &format!(" AND m.created_at >= {}", a.i(s));
        }
        if let Some(e) = q.end {
            w += &format!(" AND m.created_at <= {}", a.i(e));
        }
        w
    }

    /// One page of a session's history, the number of matching messages and their summary.
    pub async fn list_rt_messages(
        &self,
        q: &RtMessageQuery,
    ) -> StoreResult<(Vec<RtMessageRecord>, RtMessageSummary)> {
        let mut a = Args::default();
        let w = Self::message_where(&mut a, q);
        let sum_sql = format!(
            "SELECT COUNT(*) AS total, \
             {} AS users, {} AS assistants, {} AS tokens, {} AS avg_ms \
             FROM realtime_messages m WHERE {w}",
            big("COALESCE(SUM(CASE WHEN m.role = 'user' THEN 1 ELSE 0 END), 0)"),
            big("COALESCE(SUM(CASE WHEN m.role = 'assistant' THEN 1 ELSE 0 END), 0)"),
            big("COALESCE(SUM(m.token_count), 0)"),
            dbl("AVG(m.response_ms)"),
        );
        let row = a.bind(sqlx::query(&sum_sql)).fetch_one(&self.pool).await?;
        let summary = RtMessageSummary {
            total: row.try_get("total")?,
            user: row.try_get("users")?,
            assistant: row.try_get("assistants")?,
            tokens: row.try_get("tokens")?,
            average_response_ms: row.try_get("avg_ms")?,
        };
        let col = message_sort_column(&q.sort_by).unwrap_or("m.created_at");
        let dir = if q.descending { "DESC" } else { "ASC" };
        let lim = a.i(q.limit);
        let off = a.i(q.offset);
        let sql = format!(
            "SELECT {MESSAGE_COLS} FROM realtime_messages m WHERE {w} \
             ORDER BY {col} {dir}, m.seq {dir} LIMIT {lim} OFFSET {off}"
        );
        let rows = a.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        let out = rows
            .iter()
            .map(message_from_row)
            .collect::<StoreResult<_>>()?;
        Ok((out, summary))
    }

    /// Statistics over sessions created and messages written in `[start, end]`.
    pub async fn rt_stats(
        &self,
        owner: Option<&str>,
        start: i64,
        end: i64,
        idle_cut: i64,
    ) -> StoreResult<RtStats> {
        let scope = RtScope {
            owner: owner.map(str::to_string),
            idle_cut,
            ..Default::default()
        };
        // Sessions by state and their mean duration.
        let mut a = Args::default();
        let items = summary_items(&mut a, idle_cut);
        let w = scope_where(&mut a, &scope);
        let (s0, e0) = (a.i(start), a.i(end));
        let sql = format!(
            "SELECT {items}, {} AS avg_dur, {} AS requests, {} AS failed_requests \
             FROM realtime_sessions s \
             WHERE {w} AND s.created_at >= {s0} AND s.created_at <= {e0}",
            dbl("AVG(s.last_activity - s.created_at)"),
            big("COALESCE(SUM(s.request_count), 0)"),
            big("COALESCE(SUM(s.failed_count), 0)"),
        );
        let row = a.bind(sqlx::query(&sql)).fetch_one(&self.pool).await?;
        let mut out = RtStats {
            sessions: summary_from_row(&row)?,
            average_duration_ms: row.try_get("avg_dur")?,
            requests: row.try_get("requests")?,
            failed: row.try_get("failed_requests")?,
            ..Default::default()
        };
        // Messages, tokens and response times in the range (of sessions in scope).
        let mut a = Args::default();
        let w = scope_where(&mut a, &scope);
        let (s1, e1) = (a.i(start), a.i(end));
        let mw = format!("{w} AND m.created_at >= {s1} AND m.created_at <= {e1}");
        let from = "realtime_messages m JOIN realtime_sessions s ON s.id = m.session_id";
        let sql = format!(
            "SELECT COUNT(*) AS n, {} AS tokens, COUNT(m.response_ms) AS timed, \
             {} AS min_ms, {} AS max_ms, {} AS avg_ms FROM {from} WHERE {mw}",
            big("COALESCE(SUM(m.token_count), 0)"),
            big("MIN(m.response_ms)"),
            big("MAX(m.response_ms)"),
            dbl("AVG(m.response_ms)"),
        );
        let row = a.bind(sqlx::query(&sql)).fetch_one(&self.pool).await?;
        out.messages = row.try_get("n")?;
        out.tokens = row.try_get("tokens")?;
        out.latency = RtLatency {
            count: row.try_get("timed")?,
            min: row.try_get("min_ms")?,
            max: row.try_get("max_ms")?,
            average: row.try_get("avg_ms")?,
            p95: None,
            p99: None,
        };
        // Nearest-rank percentiles of the stored response times.
        let n = out.latency.count;
        for (p, slot) in [(95, 0), (99, 1)] {
            if n == 0 {
                break;
            }
            let rank = (p * n + 99) / 100; // ceil(p/100 * n), 1-based
            let mut b = Args::default();
            let w = scope_where(&mut b, &scope);
            let (s2, e2) = (b.i(start), b.i(end));
            let off = b.i(rank - 1);
            let sql = format!(
                "SELECT m.response_ms AS v FROM {from} WHERE {w} AND m.created_at >= {s2} \
                 AND m.created_at <= {e2} AND m.response_ms IS NOT NULL \
                 ORDER BY m.response_ms LIMIT 1 OFFSET {off}"
            );
            let v: Option<i64> = b
                .bind(sqlx::query(&sql))
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get("v"))
                .transpose()?;
            if slot == 0 {
                out.latency.p95 = v;
            } else {
                out.latency.p99 = v;
            }
        }
        // Per model: sessions created in range; tokens and response times of messages in range.
        let mut a = Args::default();
        let w = scope_where(&mut a, &scope);
        let (s3, e3) = (a.i(start), a.i(end));
        let sql = format!(
            "SELECT s.model AS model, COUNT(*) AS sessions FROM realtime_sessions s \
             WHERE {w} AND s.created_at >= {s3} AND s.created_at <= {e3} GROUP BY s.model"
        );
        let rows = a.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        let mut models: Vec<RtModelStats> = rows
            .iter()
            .map(|r| {
                Ok(RtModelStats {
                    model: r.try_get("model")?,
                    sessions: r.try_get("sessions")?,
                    ..Default::default()
                })
            })
            .collect::<StoreResult<_>>()?;
        let mut a = Args::default();
        let w = scope_where(&mut a, &scope);
        let (s4, e4) = (a.i(start), a.i(end));
        let sql = format!(
            "SELECT s.model AS model, {} AS tokens, {} AS avg_ms FROM {from} \
             WHERE {w} AND m.created_at >= {s4} AND m.created_at <= {e4} GROUP BY s.model",
            big("COALESCE(SUM(m.token_count), 0)"),
            dbl("AVG(m.response_ms)"),
        );
        let rows = a.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        for r in &rows {
            let model: String = r.try_get("model")?;
            let tokens: i64 = r.try_get("tokens")?;
            let avg: Option<f64> = r.try_get("avg_ms")?;
            match models.iter_mut().find(|m| m.model == model) {
                Some(m) => {
                    m.tokens = tokens;
                    m.average_response_ms = avg;
                }
                None => models.push(RtModelStats {
                    model,
                    sessions: 0,
                    tokens,
                    average_response_ms: avg,
                }),
            }
        }
        models.sort_by(|a, b| a.model.cmp(&b.model));
        out.models = models;
        Ok(out)
    }
}
