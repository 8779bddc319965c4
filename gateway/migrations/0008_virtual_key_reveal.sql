-- A virtual key defined without a value gets a generated one; the admin API shows it in full
-- once (the first GET of that key), then masked like every other. 0 for every existing row.
ALTER TABLE virtual_keys ADD COLUMN value_reveal_pending INTEGER NOT NULL DEFAULT 0;
