-- Book-style orders list items (product names or ids) one unit each. Each
-- item is kept as one line, in the order sent, with the exact string the
-- client sent, so getOrder gives the client back its own items. NULL for
-- lines sent as product id + quantity.
ALTER TABLE order_lines ADD COLUMN item text
    CONSTRAINT order_lines_item_length CHECK (char_length(item) <= 200);
