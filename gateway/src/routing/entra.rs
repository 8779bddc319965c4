//! Microsoft Entra ID tokens for Azure OpenAI keys configured with an application
//! (`azure_key_config.client_id`, `client_secret`, `tenant_id`): the OAuth2 client-credentials
//! grant at `{authority}/{tenant}/oauth2/v2.0/token`, cached per key and fetched again before
//! it expires. One fetch at a time per key: concurrent requests wait for it.

use std::time::{Duration, Instant};

use http::HeaderValue;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::AzureKeyConfig;

/// Where tokens come from unless `AZURE_AUTHORITY_HOST` says otherwise (the variable Azure's
/// own SDKs read, e.g. for sovereign clouds).
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The scope of Azure OpenAI (Cognitive Services) when `scopes` is empty.
pub const DEFAULT_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// The longest a token fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// A token is fetched again this long before it expires (at most half its lifetime).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// One key's application credentials and its cached token.
pub struct EntraTokens {
    token_url: String,
    client_id: String,
    client_secret: String,
    scope: String,
    cached: Mutex<Option<Cached>>,
}

struct Cached {
    header: HeaderValue,
    refresh_at: Instant,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
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
            cached: Mutex::new(None),
        })
    }

    /// The authority host from the environment (`AZURE_AUTHORITY_HOST`) or the default.
    pub fn authority_from_env() -> String {
        std::env::var("AZURE_AUTHORITY_HOST")
            .ok()
            .filter(|host| !host.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_AUTHORITY.to_owned())
    }

    /// `Bearer <token>` for a request: the cached token, or a new one when it is due.
    pub async fn bearer(&self, client: &reqwest::Client) -> Result<HeaderValue, String> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(token.header.clone());
        }
        let fetched = self.fetch(client).await?;
        let header = fetched.header.clone();
        *cached = Some(fetched);
        Ok(header)
    }

    async fn fetch(&self, client: &reqwest::Client) -> Result<Cached, String> {
        let failed = |what: String| {
            format!(
                "Entra ID token for client {} from {}: {what}",
                self.client_id, self.token_url
            )
        };
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
            ("scope", self.scope.as_str()),
        ];
        let response = client
            .post(&self.token_url)
            .form(&form)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| failed(format!("request failed: {e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| failed(format!("reading the answer: {e}")))?;
        if !status.is_success() {
            return Err(failed(format!("{status}: {}", entra_error(&body))));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| failed(format!("the answer is not a token: {e}")))?;
        let mut header = HeaderValue::try_from(format!("Bearer {}", answer.access_token))
            .map_err(|_| failed("the token has characters not allowed in a header".into()))?;
        header.set_sensitive(true);
        let lifetime = Duration::from_secs(answer.expires_in);
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        tracing::debug!(client_id = %self.client_id, expires_in = answer.expires_in, "fetched an Entra ID token");
        Ok(Cached {
            header,
            refresh_at: Instant::now() + (lifetime - margin),
        })
    }
}

/// Entra's `error_description` (or `error`), else the body as text.
fn entra_error(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    field("error_description")
        .or_else(|| field("error"))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect())
}
