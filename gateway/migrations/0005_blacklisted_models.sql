-- Bifrost's provider_configs[].blacklisted_models: models refused even where allowed_models
-- allows them. Existing rows refuse nothing.
ALTER TABLE virtual_key_providers ADD COLUMN blacklisted_models TEXT NOT NULL DEFAULT '[]';
