-- Calls created with "record": true are recorded from the moment media first flows.
ALTER TABLE calls ADD COLUMN auto_record BIGINT NOT NULL DEFAULT 0;
