-- Bifrost's providers.<name>.proxy_config (an egress proxy, with credentials): sealed like the
-- other secrets; NULL (every existing row) goes direct.
ALTER TABLE providers ADD COLUMN proxy_config_encrypted TEXT;
