//! OAuth2 bearer tokens for keys that are applications rather than API keys: Entra ID
//! (Azure OpenAI) and Google service accounts (Vertex AI). Each key caches its token and
//! fetches a new one before it expires, one fetch at a time.

use std::future::Future;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use http::HeaderValue;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::entra::EntraTokens;
use super::google::{GoogleTokens, MetadataTokens};

/// The longest a token fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// A token is fetched again this long before it expires (at most half its lifetime).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Where a key's bearer tokens come from.
pub enum TokenSource {
    Entra(EntraTokens),
    Google(Box<GoogleTokens>),
    /// Application Default Credentials on Google Cloud: the metadata server's.
    GoogleMetadata(MetadataTokens),
}

impl TokenSource {
    /// `Bearer <token>` for a request: the cached token, or a new one when it is due.
    pub async fn bearer(&self, client: &reqwest::Client) -> Result<HeaderValue, String> {
        match self {
            TokenSource::Entra(tokens) => tokens.cache.get(|| tokens.fetch(client)).await,
            TokenSource::Google(tokens) => tokens.cache.get(|| tokens.fetch(client)).await,
            TokenSource::GoogleMetadata(tokens) => tokens.cache.get(|| tokens.fetch(client)).await,
        }
    }
}

/// A token as a token endpoint answers it.
#[derive(Deserialize)]
pub(super) struct Token {
    pub access_token: String,
    pub expires_in: u64,
}

/// One key's cached token. Requests read it under a short read lock; only a due token makes
/// them wait, for the one fetch.
#[derive(Default)]
pub(super) struct TokenCache {
    fresh: RwLock<Option<Cached>>,
    fetching: Mutex<()>,
}

struct Cached {
    header: HeaderValue,
    refresh_at: Instant,
}

impl TokenCache {
    /// The cached token while it is fresh, else the one `fetch` gets (concurrent callers wait
    /// for that one fetch).
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<HeaderValue, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, String>>,
    {
        if let Some(header) = self.fresh_header() {
            return Ok(header);
        }
        let _fetching = self.fetching.lock().await;
        // Another request may have fetched it while this one waited.
        if let Some(header) = self.fresh_header() {
            return Ok(header);
        }
        let token = fetch().await?;
        let mut header = HeaderValue::try_from(format!("Bearer {}", token.access_token))
            .map_err(|_| "the token has characters not allowed in a header".to_owned())?;
        header.set_sensitive(true);
        let lifetime = Duration::from_secs(token.expires_in);
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        let cached = Cached {
            header: header.clone(),
            refresh_at: Instant::now() + (lifetime - margin),
        };
        *self.fresh.write().unwrap_or_else(PoisonError::into_inner) = Some(cached);
        Ok(header)
    }

    /// The cached token's header while it is not due.
    fn fresh_header(&self) -> Option<HeaderValue> {
        let fresh = self.fresh.read().unwrap_or_else(PoisonError::into_inner);
        fresh
            .as_ref()
            .filter(|token| Instant::now() < token.refresh_at)
            .map(|token| token.header.clone())
    }
}

/// POST `form` to a token endpoint; the token, or why there is none (the endpoint's
/// `error_description`, as Entra and Google both send it).
pub(super) async fn request_token(
    client: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> Result<Token, String> {
    let response = client
        .post(url)
        .form(form)
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("{status}: {}", endpoint_error(&body)));
    }
    serde_json::from_slice(&body).map_err(|e| format!("the answer is not a token: {e}"))
}

/// The endpoint's `error_description` (or `error`), else the body as text.
fn endpoint_error(body: &[u8]) -> String {
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
