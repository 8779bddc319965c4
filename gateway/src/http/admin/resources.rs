//! Generic CRUD over the config store for every admin resource: list, read, create, replace,
//! delete. Writes are validated as part of the whole config (so references and field rules are
//! checked exactly as for the config file), stored, and the runtime is rebuilt from the store.
//! Secret values are masked in every answer; a masked value sent back in a `PUT` keeps the
//! stored secret.

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AdminAccess;
use crate::config::{
    BudgetConfig, CustomerConfig, GatewayConfig, ProviderConfig, RateLimitConfig, TeamConfig,
    VirtualKeyConfig, SERVED_REQUEST_TYPES,
};
use crate::error::GatewayError;
use crate::http::errors::{error_response, Dialect};
use crate::state::AppState;
use crate::store::{Store, StoreError};

/// A provider with its name, as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamedProvider {
    /// Provider name (the `provider` in `provider/model`).
    pub name: String,
    /// Its configuration.
    #[serde(flatten)]
    pub config: ProviderConfig,
}

/// An entity the admin API manages.
pub trait Resource: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// Human name (`virtual key`).
    const KIND: &'static str;
    /// The JSON field holding the id (`id`, or `name` for providers).
    const ID_FIELD: &'static str = "id";
    /// The entity's id.
    fn id(&self) -> &str;
    /// Set the id (from the URL).
    fn set_id(&mut self, id: &str);
    /// Every entity of this kind in `config`.
    fn all(config: &GatewayConfig) -> Vec<Self>;
    /// Insert or replace in `config`.
    fn upsert_into(self, config: &mut GatewayConfig);
    /// Write to the store.
    fn store_put(&self, store: &Store) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Delete from the store.
    fn store_delete(store: &Store, id: &str)
        -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Mask secrets for an answer.
    fn redacted(self) -> Self {
        self
    }
    /// Replace masked secrets in an update with the stored ones; whether any was kept.
    fn keep_secrets(&mut self, _existing: &Self) -> bool {
        false
    }
    /// Whether the update sends this entity's secrets somewhere else than `existing` did.
    fn moves_secrets(&self, _existing: &Self) -> bool {
        false
    }
    /// Fill a secret the write leaves out: kept from `existing`, or generated; whether one was
    /// generated (the answer then shows it, once).
    fn fill_missing_secret(&mut self, _existing: Option<&Self>) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// Whether a generated secret of entity `id` is still to be shown (true once).
    async fn take_reveal(_store: &Store, _id: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
}

/// `sk-bf-abcdef…wxyz`: enough to recognise a secret, not to use it.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 12 {
        return "********".into();
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// A key's secrets besides its value, in a fixed order (`None` where the key has no such
/// field): a Bedrock key's secret key and session token, an Azure key's Entra ID secret, a
/// Vertex key's service account key.
fn key_secrets(key: &mut crate::config::KeyConfig) -> [Option<&mut String>; 4] {
    let (secret_key, session_token) = match &mut key.bedrock_key_config {
        Some(bedrock) => (bedrock.secret_key.as_mut(), bedrock.session_token.as_mut()),
        None => (None, None),
    };
    let client_secret = key
        .azure_key_config
        .as_mut()
        .and_then(|azure| azure.client_secret.as_mut());
    let service_account = key
        .vertex_key_config
        .as_mut()
        .and_then(|vertex| vertex.auth_credentials.as_mut());
    [secret_key, session_token, client_secret, service_account]
}

fn upsert_by_id<T: Resource>(list: &mut Vec<T>, item: T) {
    match list.iter_mut().find(|existing| existing.id() == item.id()) {
        Some(existing) => *existing = item,
        None => list.push(item),
    }
}

impl Resource for NamedProvider {
    const KIND: &'static str = "provider";
    const ID_FIELD: &'static str = "name";
    fn id(&self) -> &str {
        &self.name
    }
    fn set_id(&mut self, id: &str) {
        self.name = id.to_string();
    }
    fn all(config: &GatewayConfig) -> Vec<Self> {
        config
            .providers
            .iter()
            .map(|(name, config)| NamedProvider {
                name: name.clone(),
                config: config.clone(),
            })
            .collect()
    }
    fn upsert_into(self, config: &mut GatewayConfig) {
        config.providers.insert(self.name, self.config);
    }
    async fn store_put(&self, store: &Store) -> Result<(), StoreError> {
        store.put_provider(&self.name, &self.config).await
    }
    async fn store_delete(store: &Store, id: &str) -> Result<(), StoreError> {
        store.delete_provider(id).await
    }
    fn redacted(mut self) -> Self {
        for key in &mut self.config.keys {
            key.value = mask(&key.value);
            for secret in key_secrets(key).into_iter().flatten() {
                *secret = mask(secret);
            }
        }
        for value in self.config.network_config.extra_headers.values_mut() {
            *value = mask(value);
        }
        if let Some(password) = self
            .config
            .proxy_config
            .as_mut()
            .and_then(|p| p.password.as_mut())
        {
            *password = mask(password);
        }
        self
    }
    fn moves_secrets(&self, existing: &Self) -> bool {
        // Every upstream URL, so a path override naming another host counts too; and the
        // proxy the requests pass through.
        let urls = |provider: &Self| {
            SERVED_REQUEST_TYPES
                .map(|request| provider.config.request_url(&provider.name, request, ""))
        };
        let proxy = |provider: &Self| {
            let proxy = provider.config.proxy_config.as_ref();
            proxy.map(|p| (p.proxy_type, p.url.clone()))
        };
        // Self-hosted keys are servers of their own; Azure keys name their resource, Bedrock
        // keys their region.
        let servers = |provider: &Self| {
            let keys = provider.config.keys.iter();
            keys.map(|k| {
                let server = k.self_hosted().map(|(_, s)| s.url.clone());
                let resource = k
                    .azure_key_config
                    .as_ref()
                    .map(|a| a.endpoint.clone())
                    .or_else(|| k.bedrock_key_config.as_ref().map(|b| b.runtime_url()));
                (server, resource)
            })
            .collect::<Vec<_>>()
        };
        urls(self) != urls(existing)
            || proxy(self) != proxy(existing)
            || servers(self) != servers(existing)
    }
    fn keep_secrets(&mut self, existing: &Self) -> bool {
        let mut kept = false;
        for (index, key) in self.config.keys.iter_mut().enumerate() {
            let id = key.id.clone().or_else(|| key.name.clone());
            let stored = existing
                .config
                .keys
                .iter()
                .enumerate()
                .find(|(i, k)| match &id {
                    Some(id) => k.id.as_ref().or(k.name.as_ref()) == Some(id),
                    None => *i == index,
                })
                .map(|(_, k)| k);
            if let Some(stored) = stored {
                if key.value == mask(&stored.value) {
                    key.value = stored.value.clone();
                    kept = true;
                }
                let mut stored = stored.clone();
                for (secret, stored) in key_secrets(key).into_iter().zip(key_secrets(&mut stored)) {
                    if let (Some(secret), Some(stored)) = (secret, stored) {
                        if *secret == mask(stored) {
                            *secret = stored.clone();
                            kept = true;
                        }
                    }
                }
            }
        }
        for (name, value) in self.config.network_config.extra_headers.iter_mut() {
            if let Some(stored) = existing.config.network_config.extra_headers.get(name) {
                if *value == mask(stored) {
                    *value = stored.clone();
                    kept = true;
                }
            }
        }
        let stored_password = existing
            .config
            .proxy_config
            .as_ref()
            .and_then(|p| p.password.as_ref());
        let password = self
            .config
            .proxy_config
            .as_mut()
            .and_then(|p| p.password.as_mut());
        if let (Some(password), Some(stored)) = (password, stored_password) {
            if *password == mask(stored) {
                *password = stored.clone();
                kept = true;
            }
        }
        kept
    }
}

impl Resource for VirtualKeyConfig {
    const KIND: &'static str = "virtual key";
    fn id(&self) -> &str {
        &self.id
    }
    fn set_id(&mut self, id: &str) {
        self.id = id.to_string();
    }
    fn all(config: &GatewayConfig) -> Vec<Self> {
        config.governance.virtual_keys.clone()
    }
    fn upsert_into(self, config: &mut GatewayConfig) {
        upsert_by_id(&mut config.governance.virtual_keys, self);
    }
    async fn store_put(&self, store: &Store) -> Result<(), StoreError> {
        store.put_virtual_key(self).await
    }
    async fn store_delete(store: &Store, id: &str) -> Result<(), StoreError> {
        store.delete_virtual_key(id).await
    }
    fn redacted(mut self) -> Self {
        self.value = mask(&self.value);
        self
    }
    fn fill_missing_secret(&mut self, existing: Option<&Self>) -> Result<bool, StoreError> {
        if !self.value.is_empty() {
            return Ok(false);
        }
        match existing {
            Some(existing) => {
                self.value = existing.value.clone();
                Ok(false)
            }
            None => {
                self.value = crate::store::generate_virtual_key_value()?;
                tracing::info!(virtual_key = %self.id, "virtual key created without a value: generated one (shown once in the answer)");
                Ok(true)
            }
        }
    }
    async fn take_reveal(store: &Store, id: &str) -> Result<bool, StoreError> {
        store.take_value_reveal(id).await
    }
    fn keep_secrets(&mut self, existing: &Self) -> bool {
        let kept = self.value == mask(&existing.value);
        if kept {
            self.value = existing.value.clone();
        }
        kept
    }
}

/// Governance entities without secrets share one shape of implementation.
macro_rules! plain_resource {
    ($type:ty, $kind:literal, $field:ident, $put:ident, $delete:ident) => {
        impl Resource for $type {
            const KIND: &'static str = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn set_id(&mut self, id: &str) {
                self.id = id.to_string();
            }
            fn all(config: &GatewayConfig) -> Vec<Self> {
                config.governance.$field.clone()
            }
            fn upsert_into(self, config: &mut GatewayConfig) {
                upsert_by_id(&mut config.governance.$field, self);
            }
            async fn store_put(&self, store: &Store) -> Result<(), StoreError> {
                store.$put(self).await
            }
            async fn store_delete(store: &Store, id: &str) -> Result<(), StoreError> {
                store.$delete(id).await
            }
        }
    };
}

plain_resource!(TeamConfig, "team", teams, put_team, delete_team);
plain_resource!(
    CustomerConfig,
    "customer",
    customers,
    put_customer,
    delete_customer
);
plain_resource!(BudgetConfig, "budget", budgets, put_budget, delete_budget);
plain_resource!(
    RateLimitConfig,
    "rate limit",
    rate_limits,
    put_rate_limit,
    delete_rate_limit
);

fn respond(result: Result<Response, GatewayError>) -> Response {
    result.unwrap_or_else(|error| error_response(Dialect::OpenAi, &error))
}

fn store_error(error: StoreError) -> GatewayError {
    match error {
        StoreError::NotFound { .. } => GatewayError::NotFound(error.to_string()),
        StoreError::InUse { .. } | StoreError::Conflict { .. } => {
            GatewayError::Conflict(error.to_string())
        }
        StoreError::UnknownReference { .. } | StoreError::Invalid { .. } => {
            GatewayError::InvalidRequest(error.to_string())
        }
        other => GatewayError::Store(other.to_string()),
    }
}

fn require_store(state: &AppState) -> Result<&Store, GatewayError> {
    state.sync.store().ok_or_else(|| {
        GatewayError::Conflict(
            "the config store is disabled (config_store.enabled: false): the admin API is read-only; edit the config file and send SIGHUP".into(),
        )
    })
}

fn parse<R: Resource>(body: &Bytes) -> Result<R, GatewayError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        GatewayError::InvalidRequest(format!("{at}{}", e.inner()))
    })
}

/// Validate `item` as part of the whole running config; every problem named by its path.
fn validate<R: Resource>(state: &AppState, item: &R) -> Result<(), GatewayError> {
    let mut candidate = state.runtime.load().config.clone();
    item.clone().upsert_into(&mut candidate);
    let problems = candidate.validate();
    if problems.is_empty() {
        return Ok(());
    }
    Err(GatewayError::InvalidRequest(format!(
        "invalid {}: {}",
        R::KIND,
        problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

fn find<R: Resource>(state: &AppState, id: &str) -> Option<R> {
    R::all(&state.runtime.load().config)
        .into_iter()
        .find(|item| item.id() == id)
}

async fn write<R: Resource>(state: &AppState, item: &R) -> Result<(), GatewayError> {
    validate(state, item)?;
    item.store_put(require_store(state)?)
        .await
        .map_err(store_error)?;
    state.sync.reload_from_store().await
}

/// `GET /api/...`: every entity, secrets masked.
pub async fn list<R: Resource>(State(state): State<Arc<AppState>>) -> Response {
    let items: Vec<R> = R::all(&state.runtime.load().config)
        .into_iter()
        .map(R::redacted)
        .collect();
    Json(json!({"data": items, "count": items.len()})).into_response()
}

/// `GET /api/.../{id}`; a generated secret not shown yet is shown this once.
pub async fn get_one<R: Resource>(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    respond(
        async {
            let item = find::<R>(&state, &id)
                .ok_or_else(|| GatewayError::NotFound(format!("no {} \"{id}\"", R::KIND)))?;
            let reveal = match state.sync.store() {
                Some(store) => R::take_reveal(store, &id).await.map_err(store_error)?,
                None => false,
            };
            Ok(shown(item, reveal).into_response())
        }
        .await,
    )
}

/// The entity as an answer: secrets masked, unless a generated one is shown this once
/// (`value_shown_once: true` says so).
fn shown<R: Resource>(item: R, reveal: bool) -> Json<serde_json::Value> {
    if !reveal {
        return Json(serde_json::to_value(item.redacted()).unwrap_or_default());
    }
    let mut value = serde_json::to_value(item).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.insert("value_shown_once".into(), serde_json::Value::Bool(true));
    }
    Json(value)
}

/// `POST /api/...`: create; 409 if the id exists.
pub async fn create<R: Resource>(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    respond(
        async {
            let mut item: R = parse(&body)?;
            if find::<R>(&state, item.id()).is_some() {
                return Err(GatewayError::Conflict(format!(
                    "{} \"{}\" already exists; use PUT to replace it",
                    R::KIND,
                    item.id()
                )));
            }
            let generated = item.fill_missing_secret(None).map_err(store_error)?;
            write(&state, &item).await?;
            Ok((StatusCode::CREATED, shown(item, generated)).into_response())
        }
        .await,
    )
}

/// `PUT /api/.../{id}`: create or replace.
pub async fn put<R: Resource>(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    access: Option<Extension<AdminAccess>>,
    body: Bytes,
) -> Response {
    respond(
        async {
            // The id comes from the URL; the body may omit it but must not contradict it.
            let mut document: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                GatewayError::InvalidRequest(format!("body is not valid JSON: {e}"))
            })?;
            if let Some(fields) = document.as_object_mut() {
                match fields.get(R::ID_FIELD) {
                    Some(serde_json::Value::String(given)) if *given != id => {
                        return Err(GatewayError::InvalidRequest(format!(
                            "{}: the body says \"{given}\" but the URL says \"{id}\"",
                            R::ID_FIELD
                        )))
                    }
                    _ => {
                        fields.insert(R::ID_FIELD.into(), serde_json::Value::String(id.clone()));
                    }
                }
            }
            let mut item: R = parse(&Bytes::from(document.to_string()))?;
            item.set_id(&id);
            let existing = find::<R>(&state, &id);
            let generated = item
                .fill_missing_secret(existing.as_ref())
                .map_err(store_error)?;
            if let Some(existing) = existing {
                let kept = item.keep_secrets(&existing);
                // Without credentials, a rebound or forged request must not redirect stored keys.
                let credentialed = access.is_some_and(|Extension(a)| a == AdminAccess::Credentials);
                if kept && !credentialed && item.moves_secrets(&existing) {
                    return Err(GatewayError::Forbidden(format!(
                        "changing where {} \"{id}\" sends its stored (masked) secrets (network_config.base_url, a request_path_overrides URL, proxy_config, a key's server or Azure resource) needs admin credentials (governance.auth_config or BIFROST_ADMIN_TOKEN); or send the real key values",
                        R::KIND
                    )));
                }
            }
            write(&state, &item).await?;
            Ok(shown(item, generated).into_response())
        }
        .await,
    )
}

/// `DELETE /api/.../{id}`: 409 while other entities reference it.
pub async fn delete<R: Resource>(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    respond(
        async {
            let store = require_store(&state)?;
            R::store_delete(store, &id).await.map_err(store_error)?;
            state.sync.reload_from_store().await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status and body of an admin write answered by `handler`.
    async fn answer(response: Response) -> (StatusCode, String) {
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[test]
    fn every_place_a_key_is_sent_to_counts_when_secrets_move() {
        let provider = |document: serde_json::Value| NamedProvider {
            name: "azure".into(),
            config: serde_json::from_value(document).expect("provider"),
        };
        let azure = |endpoint: &str| {
            provider(json!({"keys": [{"name": "k", "value": "sk",
                                      "azure_key_config": {"endpoint": endpoint}}]}))
        };
        let stored = azure("https://mine.openai.azure.com");
        assert!(!azure("https://mine.openai.azure.com").moves_secrets(&stored));
        assert!(azure("https://elsewhere.example").moves_secrets(&stored));
        let proxied = provider(json!({"keys": [{"name": "k", "value": "sk",
                                                 "azure_key_config": {"endpoint": "https://mine.openai.azure.com"}}],
                                      "proxy_config": {"type": "http", "url": "http://proxy:3128"}}));
        assert!(proxied.moves_secrets(&stored));
        let vllm = |url: &str| {
            provider(json!({"keys": [{"name": "k", "value": "sk",
                                      "vllm_key_config": {"url": url}}]}))
        };
        assert!(vllm("http://gpu-2:8000").moves_secrets(&vllm("http://gpu-1:8000")));
        let bedrock = |region: &str| {
            provider(json!({"keys": [{"name": "k", "bedrock_key_config":
                {"access_key": "AKID", "secret_key": "s", "region": region}}]}))
        };
        assert!(bedrock("eu-west-1").moves_secrets(&bedrock("us-east-1")));
        assert!(!bedrock("us-east-1").moves_secrets(&bedrock("us-east-1")));
    }

    #[test]
    fn bedrock_and_entra_secrets_are_masked_and_kept_when_sent_back_masked() {
        let stored = NamedProvider {
            name: "bedrock".into(),
            config: serde_json::from_value(json!({"keys": [{"name": "k", "bedrock_key_config": {
                "access_key": "AKIDEXAMPLE", "secret_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "session_token": "FwoGZXIvYXdzEXAMPLETOKEN", "region": "us-west-2"}},
                {"name": "entra", "azure_key_config": {"endpoint": "https://r.openai.azure.com",
                 "client_id": "app", "client_secret": "entra-application-secret", "tenant_id": "t"}}]}))
            .expect("provider"),
        };
        let shown = stored.clone().redacted();
        let text = serde_json::to_string(&shown.config).expect("JSON");
        assert!(
            !text.contains("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            "{text}"
        );
        assert!(!text.contains("FwoGZXIvYXdzEXAMPLETOKEN"), "{text}");
        assert!(!text.contains("entra-application-secret"), "{text}");
        assert!(
            text.contains("AKIDEXAMPLE"),
            "the key id is not secret: {text}"
        );
        let mut sent_back = shown;
        assert!(sent_back.keep_secrets(&stored));
        assert_eq!(sent_back.config, stored.config);
    }

    #[tokio::test]
    async fn admin_writes_with_numbers_past_their_bounds_are_400s_naming_the_field() {
        let state = AppState::new(GatewayConfig::default(), None, None).expect("state");
        let max = u64::MAX;
        let providers = [
            (
                format!(r#"{{"network_config": {{"default_request_timeout_in_seconds": {max}}}}}"#),
                "providers.openai.network_config.default_request_timeout_in_seconds",
            ),
            (
                format!(
                    r#"{{"network_config": {{"retry_backoff_initial_ms": {max}, "retry_backoff_max_ms": {max}}}}}"#
                ),
                "providers.openai.network_config.retry_backoff_max_ms",
            ),
            (
                format!(r#"{{"circuit_breaker": {{"timeout_seconds": {max}}}}}"#),
                "providers.openai.circuit_breaker.timeout_seconds",
            ),
        ];
        for (body, field) in providers {
            let response = put::<NamedProvider>(
                State(state.clone()),
                Path("openai".into()),
                None,
                Bytes::from(body),
            )
            .await;
            let (status, text) = answer(response).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {text}");
            assert!(text.contains(field), "{field} not named in {text}");
        }
        let response = create::<BudgetConfig>(
            State(state.clone()),
            Bytes::from(r#"{"id": "b1", "max_limit": 1e308, "reset_duration": "99999999Y"}"#),
        )
        .await;
        let (status, text) = answer(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        for field in [
            "governance.budgets[0].max_limit",
            "governance.budgets[0].reset_duration",
        ] {
            assert!(text.contains(field), "{field} not named in {text}");
        }
        let response = create::<RateLimitConfig>(
            State(state.clone()),
            Bytes::from(format!(
                r#"{{"id": "r1", "request_max_limit": {max}, "request_reset_duration": "1m"}}"#
            )),
        )
        .await;
        let (status, text) = answer(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(
            text.contains("governance.rate_limits[0].request_max_limit"),
            "{text}"
        );
    }

    #[test]
    fn secrets_are_masked_recognisably() {
        assert_eq!(mask("sk-bf-0123456789abcdef"), "sk-bf-…cdef");
        assert_eq!(mask("short"), "********");
    }
}
