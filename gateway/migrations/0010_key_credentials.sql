-- A key's secrets beyond its value, as JSON sealed like every other secret: a Bedrock key's
-- bedrock_key_config (IAM credentials, region, ARN, deployments) and an Azure key's Entra ID
-- client_secret. NULL (every existing row): none.
ALTER TABLE provider_keys ADD COLUMN credentials_encrypted TEXT;
