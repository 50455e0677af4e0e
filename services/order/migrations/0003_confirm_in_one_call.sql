-- Confirming an order in one statement (one round trip, all or nothing):
--
--   DELETE FROM reservation_intents WHERE order_id = $1 AND state = 'reserving'
--   RETURNING store_order(...)
--
-- The DELETE takes the intent row (the abandoned-placement sweep serialises
-- with it there); for the row it deletes, store_order writes the order and
-- its lines. No intent, no row, nothing written. A second order with the same
-- idempotency key fails the whole statement, intent included.
CREATE FUNCTION store_order(
    p_id uuid, p_customer text, p_key text, p_fingerprint text, p_description text,
    p_destination text, p_currency text, p_total_minor bigint,
    p_product_ids uuid[], p_names text[], p_quantities bigint[], p_prices bigint[],
    p_items text[]
) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO orders (id, customer, idempotency_key, fingerprint, status, description,
                        destination, currency, total_minor)
    VALUES (p_id, p_customer, p_key, p_fingerprint, 'confirmed', p_description,
            p_destination, p_currency, p_total_minor);
    INSERT INTO order_lines (order_id, line_no, product_id, name, quantity, unit_price_minor, item)
    SELECT p_id, l.line_no::int, l.product_id, l.name, l.quantity, l.price, l.item
    FROM unnest(p_product_ids, p_names, p_quantities, p_prices, p_items)
         WITH ORDINALITY AS l(product_id, name, quantity, price, item, line_no);
    RETURN true;
END
$$;
