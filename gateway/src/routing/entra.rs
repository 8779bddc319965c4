//! Microsoft Entra ID tokens for Azure OpenAI keys configured with an application
//! (`azure_key_config.client_id`, `client_secret`, `tenant_id`): the OAuth2 client-credentials
//! grant at `{authority}/{tenant}/oauth2/v2.0/token`.

use super::tokens::{request_token, Token, TokenCache};
use crate::config::AzureKeyConfig;

/// Where tokens come from unless `AZURE_AUTHORITY_HOST` says otherwise (the variable Azure's
/// own SDKs read, e.g. for sovereign clouds).
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The scope of Azure OpenAI (Cognitive Services) when `scopes` is empty.
pub const DEFAULT_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// One key's application credentials and its cached token.
pub struct EntraTokens {
    token_url: String,
    client_id: String,
    client_secret: String,
    scope: String,
    pub(super) cache: TokenCache,
}

impl EntraTokens {
    /// The token source for `config`, when it names an application; `authority` is the
    /// authority host (`https://login.microsoftonline.com`).
    pub fn for_key(config: &AzureKeyConfig, authority: &str) -> Option<Self> {
        let tenant = config.tenant_id.as_ref()?;
        let scope = match config.scopes.is_empty() {
            true => DEFAULT_SCOPE.to_owned(),
            false => config.scopes.join(" "),
        };
        Some(Self {
            token_url: format!(
                "{}/{}/oauth2/v2.0/token",
                authority.trim_end_matches('/'),
                super::table::percent_encode(tenant)
            ),
            client_id: config.client_id.clone()?,
            client_secret: config.client_secret.clone()?,
            scope,
            cache: TokenCache::default(),
        })
    }

    /// The authority host from the environment (`AZURE_AUTHORITY_HOST`) or the default.
    pub fn authority_from_env() -> String {
        std::env::var("AZURE_AUTHORITY_HOST")
            .ok()
            .filter(|host| !host.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_AUTHORITY.to_owned())
    }

    pub(super) async fn fetch(&self, client: &reqwest::Client) -> Result<Token, String> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
            ("scope", self.scope.as_str()),
        ];
        let token = request_token(client, &self.token_url, &form)
            .await
            .map_err(|why| {
                format!(
                    "Entra ID token for client {} from {}: {why}",
                    self.client_id, self.token_url
                )
            })?;
        tracing::debug!(client_id = %self.client_id, expires_in = token.expires_in, "fetched an Entra ID token");
        Ok(token)
    }
}
