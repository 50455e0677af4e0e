-- Catalog search on indexes. pg_trgm's trigram indexes serve ILIKE '%…%'
-- (a substring anywhere), which no B-tree can. It is a trusted extension
-- (PostgreSQL 13+): the database's owner, the service's own role, may
-- create it; Debian's postgresql package, the official image and
-- CloudNativePG's all ship it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
