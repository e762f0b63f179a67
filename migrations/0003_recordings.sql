-- Call recordings. Rows are written by the recorder; the REST API reads, deletes and serves them.
CREATE TABLE recordings (
    id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    conversation_id TEXT,
    call_type TEXT NOT NULL,
    started_by TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    duration_ms BIGINT,
    -- `recording`, `completed` or `failed`.
    status TEXT NOT NULL,
    -- Path of the file relative to `<data_dir>/recordings` (set when the file exists).
    file_path TEXT,
    size_bytes BIGINT
);
CREATE INDEX recordings_call ON recordings (call_id);
CREATE INDEX recordings_started ON recordings (started_at);
