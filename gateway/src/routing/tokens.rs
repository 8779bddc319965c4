//! Short-lived credentials of keys that are applications rather than API keys: OAuth2 bearer
//! tokens of Entra ID (Azure OpenAI) and Google service accounts (Vertex AI), and the
//! temporary AWS credentials of an assumed IAM role (Bedrock, `routing/sts.rs`). Each key
//! caches its credential and fetches a new one before it expires, one fetch at a time.

use std::future::Future;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use http::HeaderValue;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::entra::EntraTokens;
use super::google::GoogleTokens;

/// The longest a token fetch may take.
pub(super) const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// A credential is fetched again this long before it expires (at most half its lifetime).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Where a key's bearer tokens come from.
pub enum TokenSource {
    Entra(EntraTokens),
    Google(Box<GoogleTokens>),
}

impl TokenSource {
    /// `Bearer <token>` for a request: the cached token, or a new one when it is due.
    pub async fn bearer(&self, client: &reqwest::Client) -> Result<HeaderValue, String> {
        match self {
            TokenSource::Entra(tokens) => {
                let fetch = || async { tokens.fetch(client).await?.bearer() };
                tokens.cache.get(fetch).await
            }
            TokenSource::Google(tokens) => {
                let fetch = || async { tokens.fetch(client).await?.bearer() };
                tokens.cache.get(fetch).await
            }
        }
    }
}

/// A token as a token endpoint answers it.
#[derive(Deserialize)]
pub(super) struct Token {
    pub access_token: String,
    pub expires_in: u64,
}

impl Token {
    /// `Bearer <token>` as a sensitive header, valid for `expires_in`.
    pub(super) fn bearer(self) -> Result<Fetched<HeaderValue>, String> {
        let mut header = HeaderValue::try_from(format!("Bearer {}", self.access_token))
            .map_err(|_| "the token has characters not allowed in a header".to_owned())?;
        header.set_sensitive(true);
        Ok(Fetched {
            value: header,
            lifetime: Duration::from_secs(self.expires_in),
        })
    }
}

/// A credential as fetched: the value and how long it is valid from now.
pub(super) struct Fetched<T> {
    pub value: T,
    pub lifetime: Duration,
}

/// One key's cached credential (a bearer header by default). Requests read it under a short
/// read lock; only a due credential makes them wait, for the one fetch.
pub(super) struct TokenCache<T = HeaderValue> {
    fresh: RwLock<Option<Cached<T>>>,
    fetching: Mutex<()>,
}

impl<T> Default for TokenCache<T> {
    fn default() -> Self {
        Self {
            fresh: RwLock::new(None),
            fetching: Mutex::new(()),
        }
    }
}

struct Cached<T> {
    value: T,
    refresh_at: Instant,
}

impl<T: Clone> TokenCache<T> {
    /// The cached credential while it is fresh, else the one `fetch` gets (concurrent callers
    /// wait for that one fetch). It is fetched again [`REFRESH_MARGIN`] (at most half its
    /// lifetime) before it expires.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<T, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched<T>, String>>,
    {
        if let Some(value) = self.fresh_value() {
            return Ok(value);
        }
        let _fetching = self.fetching.lock().await;
        // Another request may have fetched it while this one waited.
        if let Some(value) = self.fresh_value() {
            return Ok(value);
        }
        let fetched = fetch().await?;
        let margin = REFRESH_MARGIN.min(fetched.lifetime / 2);
        let cached = Cached {
            value: fetched.value.clone(),
            refresh_at: Instant::now() + (fetched.lifetime - margin),
        };
        *self.fresh.write().unwrap_or_else(PoisonError::into_inner) = Some(cached);
        Ok(fetched.value)
    }

    /// The cached credential while it is not due.
    fn fresh_value(&self) -> Option<T> {
        let fresh = self.fresh.read().unwrap_or_else(PoisonError::into_inner);
        fresh
            .as_ref()
            .filter(|cached| Instant::now() < cached.refresh_at)
            .map(|cached| cached.value.clone())
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
