-- Portable between SQLite and PostgreSQL: TEXT ids, BIGINT unix-millisecond times, BIGINT flags.
CREATE TABLE rooms (
    name TEXT PRIMARY KEY,
    sid TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    closed_at BIGINT,
    max_participants BIGINT NOT NULL
);
CREATE INDEX rooms_open_created ON rooms (created_at);
