-- Spend written per gateway process: each process (node id + generation, the start time)
-- writes its cumulative spend per budget, and only the part above `flushed_total` is added to
-- the budget. That makes a flush idempotent, and lets a survivor write a dead node's last
-- gossiped totals without ever counting a dollar twice.
CREATE TABLE node_spend (
    node_id TEXT NOT NULL,
    generation BIGINT NOT NULL,
    budget_id TEXT NOT NULL,
    flushed_total DOUBLE PRECISION NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (node_id, generation, budget_id)
);

-- Per-limit cluster behaviour (NULL: the defaults, gossip and local).
ALTER TABLE rate_limits ADD COLUMN cluster_mode TEXT;
ALTER TABLE rate_limits ADD COLUMN cluster_stale_policy TEXT;
