-- Bifrost's vllm_key_config / ollama_key_config / sgl_key_config: a key that is its own
-- upstream server (JSON: the configs that are set); NULL (every existing row): none.
ALTER TABLE provider_keys ADD COLUMN server TEXT;
