-- Products may leave stock untracked (NULL): the book's addProduct has no
-- stock field, and its products must still sell. Such a product is never
-- short; an admin's first positive adjustment starts tracking it.
ALTER TABLE products ALTER COLUMN stock DROP NOT NULL;

-- Whether a reservation line took units from a tracked stock, so a release
-- gives back only what was taken (a product may start tracking between the
-- two).
ALTER TABLE reservation_lines ADD COLUMN tracked boolean NOT NULL DEFAULT true;
