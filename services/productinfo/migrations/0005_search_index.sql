-- no-transaction
-- Built CONCURRENTLY, outside a transaction, so a big live catalog keeps
-- taking writes while it builds (one statement per such migration: several
-- in one file would run as one transaction). An interrupted build leaves an
-- INVALID index: drop it (DROP INDEX CONCURRENTLY products_search) and run
-- the migration again. The expression is the one `db::list_products` matches.
CREATE INDEX CONCURRENTLY IF NOT EXISTS products_search
    ON products USING gin ((name || ' ' || description || ' ' || category) gin_trgm_ops);
