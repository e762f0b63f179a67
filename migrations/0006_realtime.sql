-- Model sessions (seed 000): conversations with a realtime model and their messages. Portable between
-- SQLite and PostgreSQL: TEXT ids made by the application, BIGINT unix-millisecond times, BIGINT 0/1
-- flags, DOUBLE PRECISION floats, JSON as TEXT.

CREATE TABLE realtime_sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    model TEXT NOT NULL,
    -- Stored state: active, paused, completed or failed (`idle` is derived: active with no activity
    -- for realtime.idle_after_secs).
    status TEXT NOT NULL,
    temperature DOUBLE PRECISION NOT NULL,
    max_tokens BIGINT NOT NULL,
    stream BIGINT NOT NULL,
    system_prompt TEXT,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_activity BIGINT NOT NULL,
    ended_at BIGINT,
    deleted_at BIGINT,
    deleted_by TEXT,
    -- Bumped by resume: authTokens of older generations stop working.
    token_generation BIGINT NOT NULL,
    token_expires_at BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    message_count BIGINT NOT NULL,
    request_count BIGINT NOT NULL,
    failed_count BIGINT NOT NULL,
    response_ms_sum BIGINT NOT NULL,
    response_count BIGINT NOT NULL,
    failure_reason TEXT
);
CREATE INDEX realtime_sessions_user ON realtime_sessions (user_id, created_at);
CREATE INDEX realtime_sessions_created ON realtime_sessions (created_at);

CREATE TABLE realtime_messages (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES realtime_sessions (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Orders messages of the same millisecond.
    seq BIGINT NOT NULL,
    token_count BIGINT NOT NULL,
    metadata TEXT NOT NULL,
    -- Assistant turns: from the user's message (or end of speech) to the final reply.
    response_ms BIGINT
);
CREATE INDEX realtime_messages_session ON realtime_messages (session_id, created_at, seq);
CREATE INDEX realtime_messages_created ON realtime_messages (created_at);
