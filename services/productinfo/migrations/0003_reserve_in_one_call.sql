-- A reservation in one round trip: claim the order id, lock the products in
-- id order, check them, take the stock and write the lines, all in the one
-- statement that calls this function (so all or nothing, as before).
--
-- Returns the reservation's lines (no rows for a reservation without any):
--   fresh = true   this call reserved them;
--   fresh = false  the order id was claimed before (state 'held' or
--                  'released'): what it holds, for the caller to compare.
-- Raises (and so takes nothing, claim included):
--   SH404  products that do not exist; DETAIL: their ids, comma-separated;
--   SH409  not enough stock; DETAIL: JSON [[id, requested, available], ...].
-- Products that do not track stock (stock NULL) are never short and stay
-- untracked; each line records whether it took from a tracked stock.
CREATE FUNCTION reserve_stock(p_order text, p_ids uuid[], p_quantities bigint[])
RETURNS TABLE (fresh boolean, state text, created_at timestamptz, product_id uuid,
               quantity bigint, currency text, price_minor bigint, name text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_created timestamptz;
    v_found int;
    v_missing text;
    v_short text;
BEGIN
    INSERT INTO reservations AS r (order_id, state) VALUES (p_order, 'held')
        ON CONFLICT (order_id) DO NOTHING
        RETURNING r.created_at INTO v_created;
    IF v_created IS NULL THEN
        RETURN QUERY
            SELECT false, r.state, r.created_at, l.product_id, l.quantity, l.currency::text,
                   l.price_minor, l.name
            FROM reservations r
            LEFT JOIN reservation_lines l ON l.order_id = r.order_id
            WHERE r.order_id = p_order
            ORDER BY l.product_id;
        RETURN;
    END IF;

    -- Lock the products in id order (two reservations never deadlock) and
    -- check them, in one statement.
    SELECT count(*)::int,
           (json_agg(json_build_array(l.id, l.q, l.stock) ORDER BY l.id)
                FILTER (WHERE l.stock < l.q))::text
        INTO v_found, v_short
        FROM (SELECT p.id, p.stock, w.q
              FROM products p
              JOIN unnest(p_ids, p_quantities) AS w(id, q) ON w.id = p.id
              ORDER BY p.id
              FOR UPDATE OF p) AS l;
    IF v_found < cardinality(p_ids) THEN
        SELECT string_agg(w.id::text, ',' ORDER BY w.id) INTO v_missing
            FROM unnest(p_ids) AS w(id)
            WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = w.id);
        RAISE EXCEPTION USING ERRCODE = 'SH404', MESSAGE = 'unknown products', DETAIL = v_missing;
    END IF;
    IF v_short IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'SH409', MESSAGE = 'not enough stock', DETAIL = v_short;
    END IF;

    RETURN QUERY
        WITH taken AS (
            UPDATE products p SET stock = p.stock - w.q, updated_at = now()
            FROM unnest(p_ids, p_quantities) AS w(id, q)
            WHERE p.id = w.id
            RETURNING p.id, w.q, p.currency, p.price_minor, p.name, p.stock IS NOT NULL AS tracked
        ), written AS (
            INSERT INTO reservation_lines AS l
                (order_id, product_id, quantity, currency, price_minor, name, tracked)
            SELECT p_order, t.id, t.q, t.currency, t.price_minor, t.name, t.tracked FROM taken t
            RETURNING l.product_id, l.quantity, l.currency, l.price_minor, l.name
        )
        SELECT true, 'held'::text, v_created, w.product_id, w.quantity, w.currency::text,
               w.price_minor, w.name
        FROM written w
        ORDER BY w.product_id;
END
$$;
