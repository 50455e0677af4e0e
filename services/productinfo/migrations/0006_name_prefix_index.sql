-- no-transaction
-- Names by their lower-case form, byte order: a query's best matches (names
-- that start with it) come from this index in order, and so do queries too
-- short for trigrams. Built CONCURRENTLY, as 0005.
CREATE INDEX CONCURRENTLY IF NOT EXISTS products_name_lower
    ON products ((lower(name) COLLATE "C"), id);
