-- Delivery retries of the notification outbox: a failed message waits until next_attempt_at
-- (exponential backoff, decided by the sender's policy) and, once its attempts reach the
-- limit, becomes a dead letter (dead_at set) until an administrator revives it. A message
-- queued before this migration is due at once (0).
ALTER TABLE notifications ADD COLUMN next_attempt_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN dead_at INTEGER;

DROP INDEX notifications_pending;
CREATE INDEX notifications_pending ON notifications(next_attempt_at)
    WHERE sent_at IS NULL AND dead_at IS NULL;
CREATE INDEX notifications_dead ON notifications(id)
    WHERE sent_at IS NULL AND dead_at IS NOT NULL;
