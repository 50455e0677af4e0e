-- Order search on indexes: pg_trgm's trigram indexes serve ILIKE '%…%'.
-- A trusted extension (PostgreSQL 13+): the database's owner, the
-- service's own role, may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
