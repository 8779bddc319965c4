-- The config store: providers and their keys, governance entities, budget usage.
--
-- One schema for SQLite and PostgreSQL: TEXT ids, BIGINT integers and booleans (0/1),
-- DOUBLE PRECISION amounts, BIGINT Unix-millisecond timestamps, lists and nested settings as
-- JSON TEXT. Secret columns (`*_encrypted`) hold `v1:` + base64(nonce || AES-256-GCM
-- ciphertext), or `plain:` + the value when the store runs without an encryption key.

-- Key/value facts about the store: `config_version` (bumped by every config write),
-- `kdf_salt` and `kdf_params` (Argon2id), `key_check` (proves the encryption key is right).
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

INSERT INTO meta (key, value) VALUES ('config_version', '0');

CREATE TABLE providers (
    name TEXT PRIMARY KEY,
    -- NetworkConfig without extra_headers, which may carry credentials and live encrypted.
    network_config TEXT NOT NULL,
    extra_headers_encrypted TEXT,
    concurrency_and_buffer_size TEXT NOT NULL,
    custom_provider_config TEXT,
    circuit_breaker TEXT NOT NULL
);

CREATE TABLE provider_keys (
    provider TEXT NOT NULL REFERENCES providers (name) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    id TEXT,
    name TEXT,
    value_encrypted TEXT NOT NULL,
    models TEXT NOT NULL,
    weight DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (provider, position)
);

CREATE TABLE budgets (
    id TEXT PRIMARY KEY,
    max_limit DOUBLE PRECISION NOT NULL,
    reset_duration TEXT NOT NULL,
    -- Usage: written only by spend flushes and resets, never by imports or definition edits.
    current_usage DOUBLE PRECISION NOT NULL,
    last_reset BIGINT NOT NULL
);

CREATE TABLE rate_limits (
    id TEXT PRIMARY KEY,
    request_max_limit BIGINT,
    request_reset_duration TEXT,
    token_max_limit BIGINT,
    token_reset_duration TEXT
);

CREATE TABLE customers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    budget_id TEXT REFERENCES budgets (id)
);

CREATE TABLE teams (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    customer_id TEXT REFERENCES customers (id),
    budget_id TEXT REFERENCES budgets (id)
);

CREATE TABLE virtual_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT,
    value_encrypted TEXT NOT NULL,
    -- Lowercase hex SHA-256 of the value: finds a key by the value a client sends and keeps
    -- values unique without decrypting anything.
    value_hash TEXT NOT NULL UNIQUE,
    is_active BIGINT NOT NULL,
    team_id TEXT REFERENCES teams (id),
    customer_id TEXT REFERENCES customers (id),
    budget_id TEXT REFERENCES budgets (id),
    rate_limit_id TEXT REFERENCES rate_limits (id),
    max_in_flight BIGINT
);

-- A virtual key's `provider_configs`, in order.
CREATE TABLE virtual_key_providers (
    virtual_key_id TEXT NOT NULL REFERENCES virtual_keys (id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    provider TEXT NOT NULL REFERENCES providers (name),
    allowed_models TEXT NOT NULL,
    key_ids TEXT NOT NULL,
    weight DOUBLE PRECISION NOT NULL,
    budget_id TEXT REFERENCES budgets (id),
    rate_limit_id TEXT REFERENCES rate_limits (id),
    PRIMARY KEY (virtual_key_id, position)
);

-- Reference lookups for "who uses this?" before a delete.
CREATE INDEX virtual_key_providers_provider ON virtual_key_providers (provider);
CREATE INDEX virtual_keys_team ON virtual_keys (team_id);
CREATE INDEX teams_customer ON teams (customer_id);
