-- no-transaction
-- Item names, the items as sent and product ids of every line, for
-- searchOrders; built CONCURRENTLY, as 0005.
CREATE INDEX CONCURRENTLY IF NOT EXISTS order_lines_search
    ON order_lines USING gin ((name || ' ' || coalesce(item, '') || ' ' || product_id::text) gin_trgm_ops);
