-- Calls, huddles, presence, devices, notifications and chat. Portable between SQLite and PostgreSQL:
-- TEXT ids made by the application, BIGINT unix-millisecond times.

CREATE TABLE calls (
    id TEXT PRIMARY KEY,
    call_type TEXT NOT NULL,
    conversation_id TEXT,
    created_by TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT,
    duration_ms BIGINT
);
CREATE INDEX calls_status ON calls (status);
CREATE INDEX calls_conversation ON calls (conversation_id);

-- Everyone who belongs to a call: its creator, invitees and anyone who joined its room.
CREATE TABLE call_members (
    call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    invited_by TEXT,
    invited_at BIGINT NOT NULL,
    joined_at BIGINT,
    left_at BIGINT,
    PRIMARY KEY (call_id, user_id)
);
CREATE INDEX call_members_user ON call_members (user_id);

CREATE TABLE huddles (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    workspace_id TEXT,
    channel_id TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT
);

-- Members of a huddle (creator and invitees); `in_huddle` = 1 while the member is a participant.
CREATE TABLE huddle_members (
    huddle_id TEXT NOT NULL REFERENCES huddles (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    invited_by TEXT,
    invited_at BIGINT NOT NULL,
    in_huddle BIGINT NOT NULL,
    joined_at BIGINT,
    left_at BIGINT,
    PRIMARY KEY (huddle_id, user_id)
);
CREATE INDEX huddle_members_user ON huddle_members (user_id);
CREATE INDEX huddle_members_in ON huddle_members (in_huddle);

-- Persistent part of presence (live connections are in memory).
CREATE TABLE presence (
    user_id TEXT PRIMARY KEY,
    manual_status TEXT,
    custom_message TEXT,
    emoji TEXT,
    last_seen BIGINT
);

CREATE TABLE devices (
    user_id TEXT NOT NULL,
    id TEXT NOT NULL,
    platform TEXT NOT NULL,
    token TEXT,
    name TEXT,
    app_version TEXT,
    registered_at BIGINT NOT NULL,
    last_active BIGINT NOT NULL,
    PRIMARY KEY (user_id, id)
);

CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX notifications_user ON notifications (user_id, created_at);

CREATE TABLE chat_threads (
    id TEXT PRIMARY KEY,
    thread_type TEXT NOT NULL,
    group_id TEXT,
    name TEXT,
    -- Personal threads only: a key made of the two sorted user ids, so there is one thread per pair.
    personal_key TEXT UNIQUE,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    activity BIGINT NOT NULL,
    last_message_id TEXT
);

CREATE TABLE chat_thread_users (
    thread_id TEXT NOT NULL REFERENCES chat_threads (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    access BIGINT NOT NULL,
    PRIMARY KEY (thread_id, user_id)
);
CREATE INDEX chat_thread_users_user ON chat_thread_users (user_id);

CREATE TABLE chat_messages (
    id TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL REFERENCES chat_threads (id) ON DELETE CASCADE,
    from_user TEXT NOT NULL,
    content TEXT NOT NULL,
    -- Lower-cased content (folded in the application, identically on every backend) for search.
    content_folded TEXT NOT NULL,
    files TEXT NOT NULL,
    reply_to TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX chat_messages_thread ON chat_messages (thread_id, created_at, id);
