-- Bifrost's teams[].rate_limit_id and customers[].rate_limit_id: a rate limit shared by every
-- key under the team or customer; NULL (every existing row) has none.
ALTER TABLE teams ADD COLUMN rate_limit_id TEXT REFERENCES rate_limits (id);
ALTER TABLE customers ADD COLUMN rate_limit_id TEXT REFERENCES rate_limits (id);
