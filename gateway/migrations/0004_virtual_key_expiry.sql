-- Bifrost's virtual_keys[].expires_at: an RFC 3339 time from which the key is refused; NULL
-- (every existing row) never expires.
ALTER TABLE virtual_keys ADD COLUMN expires_at TEXT;
