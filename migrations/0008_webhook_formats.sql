-- LiveKit-format webhooks on the same delivery queue.
-- format: how an attempt is signed and sent: 'parlor' (X-Parlor-* HMAC headers) or 'livekit'
--   (Authorization: a JWT minted at attempt time; Content-Type application/webhook+json).
-- ordering_key: deliveries with the same url and a non-empty key (the room of a LiveKit event) go
--   out one at a time in seq order: a later one waits while an earlier one is pending (retried).
-- seq: strictly increasing in insertion order (assigned by the application), the queue's order.
ALTER TABLE webhook_deliveries ADD COLUMN format TEXT NOT NULL DEFAULT 'parlor';
ALTER TABLE webhook_deliveries ADD COLUMN ordering_key TEXT NOT NULL DEFAULT '';
ALTER TABLE webhook_deliveries ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
-- Rows queued before this migration keep their order (created_at is unix ms).
UPDATE webhook_deliveries SET seq = created_at * 1000;
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (status, url, ordering_key, seq);
