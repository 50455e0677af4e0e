-- Visitors who change nothing leave nothing behind: sessions are stored only
-- once they hold something (a cart, a login), and their CSRF token is derived
-- from the session id with a key of the storefront (no column needed).
ALTER TABLE sessions DROP COLUMN csrf_token;
CREATE INDEX sessions_user ON sessions (user_id);

-- Sign-in attempts and registrations, counted before the password is checked
-- so concurrent attempts cannot all slip under a limit: one row per attempt
-- and key ('email:…', 'email-client:…', 'client:…', 'register:…'); a login
-- that succeeds removes its own rows.
ALTER TABLE login_failures RENAME TO attempts;
ALTER TABLE attempts RENAME COLUMN failed_at TO at;
ALTER TABLE attempts ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY;
ALTER INDEX login_failures_key_time RENAME TO attempts_key_time;
