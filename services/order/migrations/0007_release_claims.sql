-- Releases claimed by one replica at a time. Every order replica runs the
-- release sweep; a sweep takes due rows with FOR UPDATE SKIP LOCKED and
-- moves their next_attempt_at a lease ahead, so the other replicas' sweeps
-- pass them by while the release is in flight. A replica that dies
-- mid-release leaves the lease to run out; another then takes the row. The
-- releases placed and cancelled orders start themselves are claimed the
-- same way when their row is written.
ALTER TABLE reservation_intents ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now();
DROP INDEX reservation_intents_state;
CREATE INDEX reservation_intents_due ON reservation_intents (state, next_attempt_at);
