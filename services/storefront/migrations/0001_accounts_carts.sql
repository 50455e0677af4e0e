-- Accounts, browser sessions and carts of the storefront.

CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    -- Stored lower-cased; unique.
    email         text        NOT NULL CONSTRAINT users_email_key UNIQUE,
    name          text        NOT NULL DEFAULT '',
    -- Argon2id, PHC string format.
    password_hash text        NOT NULL,
    role          text        NOT NULL CONSTRAINT users_role_known CHECK (role IN ('customer', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Server-side sessions. The cookie holds a random id; only its SHA-256 is
-- stored, so a copy of this table cannot be used to log in.
CREATE TABLE sessions (
    id_hash    bytea       PRIMARY KEY,
    user_id    uuid        REFERENCES users (id) ON DELETE CASCADE,
    -- The synchronizer token every state-changing form must send back.
    csrf_token text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- One cart per user, or per anonymous session until it logs in.
CREATE TABLE carts (
    id           uuid        PRIMARY KEY,
    user_id      uuid        UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    session_hash bytea       UNIQUE REFERENCES sessions (id_hash) ON DELETE CASCADE,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT carts_one_owner CHECK ((user_id IS NULL) <> (session_hash IS NULL))
);

CREATE TABLE cart_items (
    cart_id    uuid        NOT NULL REFERENCES carts (id) ON DELETE CASCADE,
    product_id uuid        NOT NULL,
    quantity   int         NOT NULL CONSTRAINT cart_items_quantity_range CHECK (quantity BETWEEN 1 AND 99),
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cart_id, product_id)
);

-- Failed logins, for rate limiting by email and by client address.
CREATE TABLE login_failures (
    key        text        NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_key_time ON login_failures (key, failed_at);
