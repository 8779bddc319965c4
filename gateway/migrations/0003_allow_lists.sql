-- Allow-lists now mean what they mean in Bifrost 1.5: an empty list allows nothing and
-- ["*"] everything. Every row written before this migration meant "empty = all", so those
-- rows say so explicitly, as Bifrost's own upgrade does: empty models, allowed_models and
-- key_ids become ["*"], and a virtual key without provider configs gets one per provider
-- in the store (weight 1, no budget or limit).
UPDATE provider_keys SET models = '["*"]' WHERE models = '[]';
UPDATE virtual_key_providers SET allowed_models = '["*"]' WHERE allowed_models = '[]';
UPDATE virtual_key_providers SET key_ids = '["*"]' WHERE key_ids = '[]';
INSERT INTO virtual_key_providers
    (virtual_key_id, position, provider, allowed_models, key_ids, weight, budget_id, rate_limit_id)
SELECT vk.id,
       (SELECT COUNT(*) FROM providers earlier WHERE earlier.name < p.name),
       p.name, '["*"]', '["*"]', 1.0, NULL, NULL
FROM virtual_keys vk CROSS JOIN providers p
WHERE NOT EXISTS (SELECT 1 FROM virtual_key_providers x WHERE x.virtual_key_id = vk.id);
-- Nodes still running the old code reload what changed; an empty store stays at version 0.
UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT)
WHERE key = 'config_version'
  AND (EXISTS (SELECT 1 FROM provider_keys) OR EXISTS (SELECT 1 FROM virtual_keys));
