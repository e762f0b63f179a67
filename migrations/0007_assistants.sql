-- Voice-assistant accounts: assistants, public (embed) keys, the credit ledger, and what an embedded
-- call adds to a call. Portable between SQLite and PostgreSQL: TEXT ids made by the application,
-- BIGINT unix-millisecond times, BIGINT 0/1 flags, money as BIGINT micro-units of `currency`.

-- An account is managed by one API key: its id is the key id (`iss` of the tokens that manage it).
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    currency TEXT NOT NULL,
    credits_micros BIGINT NOT NULL,
    -- 1: postpaid (the balance may go below zero); 0: prepaid (calls stop at zero).
    allow_negative BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE assistants (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    voice TEXT,
    system_prompt TEXT NOT NULL,
    greeting TEXT,
    temperature DOUBLE PRECISION NOT NULL,
    max_tokens BIGINT NOT NULL,
    price_per_minute_micros BIGINT NOT NULL,
    record BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX assistants_account ON assistants (account_id);

-- Public keys sit in web pages: they only mint embed tokens, from the origins they list.
CREATE TABLE public_keys (
    key TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    -- JSON array of origins (`https://example.com`, `http://localhost:3000`, `https://*.example.com`).
    allowed_origins TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX public_keys_account ON public_keys (account_id);

-- Every change of an account's credits. A call is charged at most once: (call_id, kind) is unique
-- (top-ups carry no call id; NULLs never collide).
CREATE TABLE credit_ledger (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    call_id TEXT,
    kind TEXT NOT NULL,
    amount_micros BIGINT NOT NULL,
    balance_after_micros BIGINT NOT NULL,
    note TEXT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX credit_ledger_once ON credit_ledger (call_id, kind);
CREATE INDEX credit_ledger_account ON credit_ledger (account_id, created_at);

-- The embed side of a call (the call itself is a row of `calls`, room = call id).
CREATE TABLE assistant_calls (
    call_id TEXT PRIMARY KEY REFERENCES calls (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    assistant_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    caller_identity TEXT NOT NULL,
    origin TEXT NOT NULL,
    -- JSON object from the embed request.
    metadata TEXT NOT NULL,
    model_session_id TEXT,
    cost_micros BIGINT,
    end_reason TEXT,
    -- `DELETE /api/v1/calls/{id}` hides the record (the ledger keeps referring to it; a live call
    -- goes on and is still finalized and charged).
    deleted_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX assistant_calls_account ON assistant_calls (account_id, created_at);
