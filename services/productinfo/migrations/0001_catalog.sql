-- The catalog: products with exact prices and stock, the stock reservations
-- the order service makes, and an audit trail of admin stock adjustments.

CREATE TABLE products (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL CONSTRAINT products_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    description text        NOT NULL DEFAULT '' CONSTRAINT products_description_length CHECK (char_length(description) <= 5000),
    -- ISO 4217 code; the amount is in its minor unit (cents for USD).
    currency    char(3)     NOT NULL,
    price_minor bigint      NOT NULL CONSTRAINT products_price_not_negative CHECK (price_minor >= 0),
    -- Units available to sell; reserved units are already taken out.
    stock       bigint      NOT NULL CONSTRAINT products_stock_not_negative CHECK (stock >= 0),
    image_url   text        NOT NULL DEFAULT '',
    category    text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Names are unique so the book's orders, which list items by name, resolve
-- to one product. The index also orders catalog pages (name, id).
CREATE UNIQUE INDEX products_name_key ON products (name);
CREATE INDEX products_category_name ON products (category, name, id);

-- One row per order that ever reserved (or released) stock: the order id is
-- the idempotency key. A 'released' row whose lines are empty is a tombstone:
-- the order released before reserving, and may never reserve.
CREATE TABLE reservations (
    order_id    text        PRIMARY KEY CONSTRAINT reservations_order_id_length CHECK (char_length(order_id) BETWEEN 1 AND 100),
    state       text        NOT NULL CONSTRAINT reservations_state_known CHECK (state IN ('held', 'released')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    released_at timestamptz
);

-- What a reservation took, with the price and name it was taken at.
CREATE TABLE reservation_lines (
    order_id    text    NOT NULL REFERENCES reservations (order_id) ON DELETE CASCADE,
    product_id  uuid    NOT NULL REFERENCES products (id),
    quantity    bigint  NOT NULL CONSTRAINT reservation_lines_quantity_positive CHECK (quantity > 0),
    currency    char(3) NOT NULL,
    price_minor bigint  NOT NULL,
    name        text    NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX reservation_lines_product ON reservation_lines (product_id);

-- Who changed stock by hand, by how much, and why.
CREATE TABLE stock_adjustments (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id  uuid        NOT NULL REFERENCES products (id),
    delta       bigint      NOT NULL,
    stock_after bigint      NOT NULL,
    reason      text        NOT NULL,
    actor       text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_adjustments_product ON stock_adjustments (product_id, created_at);
