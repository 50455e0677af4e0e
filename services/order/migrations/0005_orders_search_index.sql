-- no-transaction
-- Built CONCURRENTLY, outside a transaction, so a big live table keeps
-- taking orders while it builds (one statement per such migration). An
-- interrupted build leaves an INVALID index: drop it (DROP INDEX
-- CONCURRENTLY orders_search) and run the migration again. The expression
-- is the one `db::search` matches.
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_search
    ON orders USING gin ((description || ' ' || destination) gin_trgm_ops);
