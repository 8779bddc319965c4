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
use super::google::{GoogleTokens, MetadataTokens};

/// The longest a token fetch may take.
pub(super) const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// A credential is fetched again this long before it expires (at most half its lifetime).
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
            TokenSource::Entra(tokens) => {
                let fetch = || async { tokens.fetch(client).await?.bearer() };
                tokens.cache.get(fetch).await
            }
            TokenSource::Google(tokens) => {
                let fetch = || async { tokens.fetch(client).await?.bearer() };
                tokens.cache.get(fetch).await
            }
            TokenSource::GoogleMetadata(tokens) => {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A fetch that counts itself, takes a moment, and answers `n` valid for `lifetime`.
    async fn counted(fetches: &AtomicU32, lifetime: Duration) -> Result<Fetched<u32>, String> {
        let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(Fetched { value: n, lifetime })
    }

    #[tokio::test]
    async fn concurrent_requests_wait_for_one_fetch_and_share_its_value() {
        let cache = Arc::new(TokenCache::<u32>::default());
        let fetches = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, fetches) = (cache.clone(), fetches.clone());
                tokio::spawn(async move {
                    cache
                        .get(|| counted(&fetches, Duration::from_secs(3600)))
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.expect("joined"), Ok(1));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_credential_is_fetched_again_after_half_a_short_lifetime_and_failures_are_not_kept() {
        let cache = TokenCache::<u32>::default();
        let fetches = AtomicU32::new(0);
        let lifetime = Duration::from_millis(200);
        assert_eq!(cache.get(|| counted(&fetches, lifetime)).await, Ok(1));
        assert_eq!(cache.get(|| counted(&fetches, lifetime)).await, Ok(1));
        tokio::time::sleep(Duration::from_millis(110)).await;
        assert_eq!(
            cache.get(|| counted(&fetches, lifetime)).await,
            Ok(2),
            "due at half"
        );

        let failing = TokenCache::<u32>::default();
        let refused = || async { Err::<Fetched<u32>, _>("refused".to_owned()) };
        assert_eq!(failing.get(refused).await, Err("refused".to_owned()));
        assert_eq!(failing.get(|| counted(&fetches, lifetime)).await, Ok(3));
    }
}
