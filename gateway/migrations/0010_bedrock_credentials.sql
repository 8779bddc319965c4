-- Bifrost's bedrock_key_config: IAM credentials, region, ARN and deployments of a Bedrock key,
-- as JSON sealed like every other secret (the secret key and session token are in it); NULL
-- (every existing row): none.
ALTER TABLE provider_keys ADD COLUMN credentials_encrypted TEXT;
