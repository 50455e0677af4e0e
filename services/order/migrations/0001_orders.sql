-- Orders, their lines and the shipments they leave in, plus the outbox of
-- stock reservations that may exist in the catalog without a confirmed order.

CREATE TABLE shipments (
    id          uuid        PRIMARY KEY,
    destination text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id              uuid        PRIMARY KEY,
    -- The token subject of whoever placed the order.
    customer        text        NOT NULL,
    -- Per customer, one key makes one order, however often it is retried.
    idempotency_key text,
    -- What was asked for (canonical form, hashed): a retried key must ask
    -- for the same thing.
    fingerprint     text        NOT NULL,
    status          text        NOT NULL CONSTRAINT orders_status_known CHECK (status IN ('confirmed', 'shipped', 'cancelled')),
    status_reason   text        NOT NULL DEFAULT '',
    description     text        NOT NULL DEFAULT '',
    destination     text        NOT NULL,
    -- ISO 4217; the total is in its minor unit.
    currency        char(3)     NOT NULL,
    total_minor     bigint      NOT NULL CONSTRAINT orders_total_not_negative CHECK (total_minor >= 0),
    shipment_id     uuid        REFERENCES shipments (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_customer_idempotency_key UNIQUE (customer, idempotency_key),
    CONSTRAINT orders_shipped_have_shipment CHECK ((status = 'shipped') = (shipment_id IS NOT NULL))
);
-- searchOrders reads in (created_at, id) order, for everyone or one customer.
CREATE INDEX orders_created ON orders (created_at, id);
CREATE INDEX orders_customer_created ON orders (customer, created_at, id);

CREATE TABLE order_lines (
    order_id         uuid   NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no          int    NOT NULL,
    product_id       uuid   NOT NULL,
    name             text   NOT NULL,
    quantity         bigint NOT NULL CONSTRAINT order_lines_quantity_positive CHECK (quantity > 0),
    unit_price_minor bigint NOT NULL CONSTRAINT order_lines_price_not_negative CHECK (unit_price_minor >= 0),
    PRIMARY KEY (order_id, line_no)
);

-- The outbox. A row exists while stock may be reserved in the catalog for
-- an order id that is not (or no longer) a confirmed order:
--   reserving: addOrder is asking the catalog; the row goes when the order
--              is confirmed or the catalog said no;
--   releasing: the reservation must be given back (the order was cancelled,
--              or addOrder failed half-way); a background task retries
--              releaseStock until the catalog confirms, then removes the row.
-- A 'reserving' row older than any addOrder can take is abandoned (the
-- process died or the client went away) and is released the same way.
CREATE TABLE reservation_intents (
    order_id        uuid        PRIMARY KEY,
    customer        text        NOT NULL,
    idempotency_key text,
    state           text        NOT NULL CONSTRAINT reservation_intents_state_known CHECK (state IN ('reserving', 'releasing')),
    attempts        int         NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reservation_intents_customer_idempotency_key UNIQUE (customer, idempotency_key)
);
CREATE INDEX reservation_intents_state ON reservation_intents (state, updated_at);

-- Every status change is announced on channel 'order_changed' (payload: the
-- order id), so watchOrder streams on every replica learn at once.
CREATE FUNCTION notify_order_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('order_changed', NEW.id::text);
    RETURN NEW;
END
$$;
CREATE TRIGGER orders_status_changed
    AFTER UPDATE OF status ON orders
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION notify_order_changed();
