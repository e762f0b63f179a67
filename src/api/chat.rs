//! Chat: `GET /api/v1/chat/threads`, `POST /api/v1/chat/threads` (custom/group threads),
//! `GET /api/v1/chat/threads/{threadId}/messages?limit&search&before&after`,
//! `POST /api/v1/chat/messages`.
//!
//! Shapes follow the chat reference: successful responses are the bare `ChatThread[]`,
//! `ChatMessage[]` and `{message, thread?}` (errors use the usual envelope). Times are unix ms.
//! New messages are pushed live to the thread's users over the presence WebSocket
//! (`{"type":"chat.message","thread","message"}`).

use super::util::{check_id, check_opt_id, check_text, limit, validation, JsonBody};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiPath, ApiQuery, ApiResult};
use crate::state::AppState;
use crate::store::{MessageQuery, MessageRecord, StoreError, ThreadRecord, ThreadView};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/chat/threads",
            get(list_threads).post(create_thread),
        )
        .route("/api/v1/chat/threads/{thread_id}/messages", get(messages))
        .route("/api/v1/chat/messages", post(post_message))
}

pub const MAX_CONTENT: usize = 10_000;
pub const MAX_FILES: usize = 20;
pub const MAX_THREAD_USERS: usize = 500;

pub fn message_json(m: &MessageRecord) -> Value {
    json!({
        "_id": m.id,
        "thread": m.thread_id,
        "from": m.from_user,
        "content": m.content,
        "files": m.files.iter().map(|f| json!({ "_id": f })).collect::<Vec<_>>(),
        "likes": [],
        "dislikes": [],
        "replyTo": m.reply_to,
        "createdAt": m.created_at,
    })
}

pub fn thread_json(v: &ThreadView) -> Value {
    let t = &v.thread;
    let mut out = json!({
        "_id": t.id,
        "type": t.thread_type,
        "users": v.users,
        "activity": t.activity,
        "access": v.access,
        "lastMessage": v.last_message.as_ref().map(message_json),
        "newActivityCount": v.new_activity_count,
        "createdAt": t.created_at,
    });
    if let Some(g) = &t.group_id {
        out["group"] = json!(g);
    }
    if let Some(n) = &t.name {
        out["name"] = json!(n);
    }
    out
}

fn thread_not_found() -> ApiError {
    ApiError::not_found("thread_not_found", "the specified thread does not exist")
}

/// 404 `thread_not_found` or 403 `not_authorized` unless `user` is in the thread.
async fn check_member(state: &AppState, thread: &str, user: &str) -> ApiResult<ThreadRecord> {
    check_id("thread", thread)?;
    let t = match state.store.get_thread(thread).await {
        Ok(t) => t,
        Err(StoreError::NotFound) => return Err(thread_not_found()),
        Err(e) => return Err(e.into()),
    };
    if !state.store.is_thread_member(thread, user).await? {
        return Err(ApiError::forbidden("you are not a member of this thread"));
    }
    Ok(t)
}

async fn list_threads(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Value>> {
    let views = state.store.list_threads_for_user(user.id()).await?;
    Ok(Json(Value::Array(views.iter().map(thread_json).collect())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateThread {
    #[serde(rename = "type")]
    thread_type: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    group: Option<String>,
    users: Vec<String>,
}

async fn create_thread(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(b): JsonBody<CreateThread>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    match b.thread_type.as_str() {
        "custom" => {
            let name = b.name.as_deref().map(str::trim).unwrap_or("");
            if name.is_empty() {
                return Err(validation("name is required for custom threads"));
            }
            check_text("name", name, 100)?;
        }
        "group" => {
            if b.group.is_none() {
                return Err(validation("group is required for group threads"));
            }
        }
        "personal" => {
            return Err(validation(
                "personal threads are created by sending a message with `to`",
            ))
        }
        _ => return Err(validation("type must be \"custom\" or \"group\"")),
    }
    check_opt_id("group", b.group.as_deref())?;
    if let Some(n) = &b.name {
        check_text("name", n, 100)?;
    }
    let mut users = b.users;
    for u in &users {
        check_id("users[]", u)?;
    }
    users.push(user.id().to_string());
    users.sort();
    users.dedup();
    if users.len() < 2 || users.len() > MAX_THREAD_USERS {
        return Err(validation(format!(
            "users must name 1-{} other users",
            MAX_THREAD_USERS - 1
        )));
    }
    let now = state.clock.unix_ms();
    let t = ThreadRecord {
        id: crate::ids::new_id("thr_"),
        thread_type: b.thread_type,
        group_id: b.group,
        name: b.name.map(|n| n.trim().to_string()),
        personal_key: None,
        created_by: user.id().to_string(),
        created_at: now,
        activity: now,
        last_message_id: None,
    };
    state.store.insert_thread(&t, &users).await?;
    let v = state.store.thread_view(&t.id, user.id()).await?;
    Ok((StatusCode::CREATED, Json(thread_json(&v))))
}

#[derive(Deserialize)]
struct MessagesQuery {
    limit: Option<i64>,
    search: Option<String>,
    before: Option<String>,
    after: Option<String>,
}

/// A pagination cursor: a message of this thread.
async fn cursor(
    state: &AppState,
    thread: &str,
    field: &str,
    id: Option<String>,
) -> ApiResult<Option<MessageRecord>> {
    let Some(id) = id else { return Ok(None) };
    check_id(field, &id)?;
    match state.store.get_message(&id).await {
        Ok(m) if m.thread_id == thread => Ok(Some(m)),
        Ok(_) | Err(StoreError::NotFound) => Err(ApiError::not_found(
            "message_not_found",
            format!("`{field}` is not a message of this thread"),
        )),
        Err(e) => Err(e.into()),
    }
}

async fn messages(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(thread_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<MessagesQuery>,
) -> ApiResult<Json<Value>> {
    let t = check_member(&state, &thread_id, user.id()).await?;
    if let Some(s) = &q.search {
        check_text("search", s, 200)?;
    }
    let query = MessageQuery {
        after: cursor(&state, &t.id, "after", q.after).await?,
        before: cursor(&state, &t.id, "before", q.before).await?,
        search: q.search.filter(|s| !s.is_empty()),
        limit: limit(q.limit, 50, 200),
    };
    let msgs = state.store.list_messages(&t.id, &query).await?;
    state
        .store
        .set_thread_access(&t.id, user.id(), state.clock.unix_ms())
        .await?;
    Ok(Json(Value::Array(msgs.iter().map(message_json).collect())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostMessage {
    #[serde(default)]
    thread: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    files: Option<Vec<String>>,
    #[serde(default, rename = "replyTo")]
    reply_to: Option<String>,
}

async fn post_message(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(b): JsonBody<PostMessage>,
) -> ApiResult<Json<Value>> {
    let me = user.id();
    let content = b.content.unwrap_or_default();
    let files = b.files.unwrap_or_default();
    if content.trim().is_empty() && files.is_empty() {
        return Err(validation("one of `content` or `files` must be set"));
    }
    check_text("content", &content, MAX_CONTENT)?;
    if files.len() > MAX_FILES {
        return Err(validation(format!("at most {MAX_FILES} files per message")));
    }
    for f in &files {
        check_id("files[]", f)?;
    }
    check_opt_id("replyTo", b.reply_to.as_deref())?;
    let now = state.clock.unix_ms();
    let (thread_id, created) = match (b.thread, b.to) {
        (Some(_), Some(_)) => {
            return Err(validation("set exactly one of `thread` or `to`, not both"))
        }
        (None, None) => return Err(validation("one of `thread` or `to` must be set")),
        (Some(t), None) => {
            check_id("thread", &t)?;
            (check_member(&state, &t, me).await?.id, false)
        }
        (None, Some(to)) => {
            check_id("to", &to)?;
            if to == me {
                return Err(validation("`to` must be another user"));
            }
            personal_thread(&state, me, &to, now).await?
        }
    };
    if let Some(r) = &b.reply_to {
        match state.store.get_message(r).await {
            Ok(m) if m.thread_id == thread_id => {}
            Ok(_) | Err(StoreError::NotFound) => {
                return Err(validation("`replyTo` must be a message of the same thread"))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let msg = MessageRecord {
        id: crate::ids::new_id("msg_"),
        thread_id: thread_id.clone(),
        from_user: me.to_string(),
        content,
        files,
        reply_to: b.reply_to,
        created_at: now,
    };
    state.store.insert_message(&msg).await?;
    let push =
        json!({ "type": "chat.message", "thread": thread_id, "message": message_json(&msg) });
    for u in state.store.thread_users(&thread_id).await? {
        state.product.push(&u, &push);
    }
    let mut out = json!({ "message": msg.id });
    if created {
        let v = state.store.thread_view(&thread_id, me).await?;
        out["thread"] = thread_json(&v);
    }
    Ok(Json(out))
}

/// The personal thread of `me` and `to`, created on first use. Returns (id, created).
async fn personal_thread(
    state: &AppState,
    me: &str,
    to: &str,
    now: i64,
) -> ApiResult<(String, bool)> {
    if let Some(id) = state.store.find_personal_thread(me, to).await? {
        return Ok((id, false));
    }
    let t = ThreadRecord {
        id: crate::ids::new_id("thr_"),
        thread_type: "personal".into(),
        group_id: None,
        name: None,
        personal_key: Some(crate::store::personal_key(me, to)),
        created_by: me.to_string(),
        created_at: now,
        activity: now,
        last_message_id: None,
    };
    match state
        .store
        .insert_thread(&t, &[me.to_string(), to.to_string()])
        .await
    {
        Ok(()) => Ok((t.id, true)),
        // Created concurrently by the other side: use theirs.
        Err(StoreError::Conflict(_)) => state
            .store
            .find_personal_thread(me, to)
            .await?
            .map(|id| (id, false))
            .ok_or_else(|| ApiError::internal("personal thread vanished")),
        Err(e) => Err(e.into()),
    }
}
