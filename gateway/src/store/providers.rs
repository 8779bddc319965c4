//! Providers and their keys: `providers` holds the non-secret settings as JSON (except
//! `extra_headers`, which may carry credentials and is sealed), `provider_keys` one row per key
//! in order, with the key value sealed.

use std::collections::{BTreeMap, HashMap};

use sqlx::AnyConnection;

use super::error::{EntityKind, QueryContext, StoreError};
use super::rows::{from_json, position, to_json};
use super::secrets::Secrets;
use super::Store;
use crate::config::{
    AzureKeyConfig, BedrockKeyConfig, KeyConfig, NetworkConfig, ProviderConfig, SelfHostedKey,
    VertexKeyConfig,
};

type ProviderRow = (
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    Option<String>,
);
type KeyRow = (
    String,
    i64,
    Option<String>,
    Option<String>,
    String,
    String,
    f64,
    Option<String>,
    Option<String>,
);

/// A key's self-hosted server settings, as the `server` column holds them.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct KeyServer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vllm_key_config: Option<SelfHostedKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ollama_key_config: Option<SelfHostedKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sgl_key_config: Option<SelfHostedKey>,
    // Without its client_secret, which is sealed with the key's other credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    azure_key_config: Option<AzureKeyConfig>,
    // Without its auth_credentials (sealed likewise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vertex_key_config: Option<VertexKeyConfig>,
}

/// A key's secrets beyond its value, as the sealed `credentials_encrypted` column holds them.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct KeyCredentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bedrock_key_config: Option<BedrockKeyConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    azure_client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vertex_auth_credentials: Option<String>,
}

/// Every provider with its keys, values revealed.
pub(crate) async fn load_all(
    conn: &mut AnyConnection,
    secrets: &Secrets,
) -> Result<BTreeMap<String, ProviderConfig>, StoreError> {
    const CONTEXT: &str = "loading providers";
    let rows: Vec<ProviderRow> = sqlx::query_as(
        "SELECT name, network_config, extra_headers_encrypted, concurrency_and_buffer_size, \
         custom_provider_config, circuit_breaker, proxy_config_encrypted FROM providers ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await
    .context(CONTEXT)?;
    let key_rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT provider, position, id, name, value_encrypted, models, weight, server, \
         credentials_encrypted FROM provider_keys ORDER BY provider, position",
    )
    .fetch_all(&mut *conn)
    .await
    .context(CONTEXT)?;

    let mut keys: HashMap<String, Vec<KeyConfig>> = HashMap::new();
    for (provider, position, id, name, value, models, weight, server, credentials) in key_rows {
        let at = |column: &str| format!("provider_keys ({provider}, {position}).{column}");
        let server: KeyServer = match server {
            Some(text) => from_json(&text, || at("server"))?,
            None => KeyServer::default(),
        };
        let credentials: KeyCredentials = match credentials {
            Some(sealed) => {
                let text = secrets.reveal(&sealed, || at("credentials_encrypted"))?;
                from_json(&text, || at("credentials_encrypted"))?
            }
            None => KeyCredentials::default(),
        };
        let mut azure_key_config = server.azure_key_config;
        if let Some(azure) = &mut azure_key_config {
            azure.client_secret = credentials.azure_client_secret;
        }
        let mut vertex_key_config = server.vertex_key_config;
        if let Some(vertex) = &mut vertex_key_config {
            vertex.auth_credentials = credentials.vertex_auth_credentials;
        }
        keys.entry(provider.clone()).or_default().push(KeyConfig {
            id,
            name,
            value: secrets.reveal(&value, || at("value_encrypted"))?,
            models: from_json(&models, || at("models"))?,
            weight,
            vllm_key_config: server.vllm_key_config,
            ollama_key_config: server.ollama_key_config,
            sgl_key_config: server.sgl_key_config,
            azure_key_config,
            bedrock_key_config: credentials.bedrock_key_config,
            vertex_key_config,
        });
    }

    let mut providers = BTreeMap::new();
    for (name, network, extra_headers, concurrency, custom, circuit, proxy) in rows {
        let at = |column: &str| format!("providers ({name}).{column}");
        let mut network_config: NetworkConfig = from_json(&network, || at("network_config"))?;
        if let Some(sealed) = extra_headers {
            let headers = secrets.reveal(&sealed, || at("extra_headers_encrypted"))?;
            network_config.extra_headers = from_json(&headers, || at("extra_headers_encrypted"))?;
        }
        let provider = ProviderConfig {
            keys: keys.remove(&name).unwrap_or_default(),
            network_config,
            concurrency_and_buffer_size: from_json(&concurrency, || {
                at("concurrency_and_buffer_size")
            })?,
            custom_provider_config: custom
                .map(|text| from_json(&text, || at("custom_provider_config")))
                .transpose()?,
            circuit_breaker: from_json(&circuit, || at("circuit_breaker"))?,
            proxy_config: proxy
                .map(|sealed| {
                    let text = secrets.reveal(&sealed, || at("proxy_config_encrypted"))?;
                    from_json(&text, || at("proxy_config_encrypted"))
                })
                .transpose()?,
        };
        providers.insert(name, provider);
    }
    Ok(providers)
}

/// Upserts a provider and replaces its keys, inside a config write transaction.
pub(crate) async fn write(
    conn: &mut AnyConnection,
    secrets: &Secrets,
    name: &str,
    provider: &ProviderConfig,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "writing a provider";
    if name.trim().is_empty() {
        return Err(StoreError::Invalid {
            what: "provider name".to_string(),
            reason: "must not be empty".to_string(),
        });
    }
    let what = |field: &str| format!("provider \"{name}\" {field}");
    let mut network = provider.network_config.clone();
    let headers = std::mem::take(&mut network.extra_headers);
    let sealed_headers = if headers.is_empty() {
        None
    } else {
        Some(secrets.seal(&to_json(&headers, || what("extra_headers"))?)?)
    };
    let custom = provider
        .custom_provider_config
        .as_ref()
        .map(|custom| to_json(custom, || what("custom_provider_config")))
        .transpose()?;
    // The proxy's password is a secret, so the whole proxy config is sealed.
    let sealed_proxy = match &provider.proxy_config {
        Some(proxy) => Some(secrets.seal(&to_json(proxy, || what("proxy_config"))?)?),
        None => None,
    };
    sqlx::query(
        "INSERT INTO providers (name, network_config, extra_headers_encrypted, \
         concurrency_and_buffer_size, custom_provider_config, circuit_breaker, \
         proxy_config_encrypted) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (name) DO UPDATE SET network_config = excluded.network_config, \
         extra_headers_encrypted = excluded.extra_headers_encrypted, \
         concurrency_and_buffer_size = excluded.concurrency_and_buffer_size, \
         custom_provider_config = excluded.custom_provider_config, \
         circuit_breaker = excluded.circuit_breaker, \
         proxy_config_encrypted = excluded.proxy_config_encrypted",
    )
    .bind(name)
    .bind(to_json(&network, || what("network_config"))?)
    .bind(sealed_headers)
    .bind(to_json(&provider.concurrency_and_buffer_size, || {
        what("concurrency_and_buffer_size")
    })?)
    .bind(custom)
    .bind(to_json(&provider.circuit_breaker, || {
        what("circuit_breaker")
    })?)
    .bind(sealed_proxy)
    .execute(&mut *conn)
    .await
    .context(CONTEXT)?;

    sqlx::query("DELETE FROM provider_keys WHERE provider = $1")
        .bind(name)
        .execute(&mut *conn)
        .await
        .context(CONTEXT)?;
    for (index, key) in provider.keys.iter().enumerate() {
        if !key.weight.is_finite() {
            return Err(StoreError::Invalid {
                what: what(&format!("keys[{index}].weight")),
                reason: "must be a finite number".to_string(),
            });
        }
        let has_server = key.self_hosted().is_some()
            || key.azure_key_config.is_some()
            || key.vertex_key_config.is_some();
        let server = has_server.then(|| KeyServer {
            vllm_key_config: key.vllm_key_config.clone(),
            ollama_key_config: key.ollama_key_config.clone(),
            sgl_key_config: key.sgl_key_config.clone(),
            azure_key_config: key.azure_key_config.clone().map(|mut azure| {
                azure.client_secret = None;
                azure
            }),
            vertex_key_config: key.vertex_key_config.clone().map(|mut vertex| {
                vertex.auth_credentials = None;
                vertex
            }),
        });
        let server = server
            .map(|server| to_json(&server, || what(&format!("keys[{index}] server"))))
            .transpose()?;
        let credentials = KeyCredentials {
            bedrock_key_config: key.bedrock_key_config.clone(),
            azure_client_secret: key
                .azure_key_config
                .as_ref()
                .and_then(|azure| azure.client_secret.clone()),
            vertex_auth_credentials: key
                .vertex_key_config
                .as_ref()
                .and_then(|vertex| vertex.auth_credentials.clone()),
        };
        let has_credentials = credentials.bedrock_key_config.is_some()
            || credentials.azure_client_secret.is_some()
            || credentials.vertex_auth_credentials.is_some();
        let credentials = match has_credentials {
            true => {
                let text = to_json(&credentials, || what(&format!("keys[{index}] credentials")))?;
                Some(secrets.seal(&text)?)
            }
            false => None,
        };
        sqlx::query(
            "INSERT INTO provider_keys (provider, position, id, name, value_encrypted, models, \
             weight, server, credentials_encrypted) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(name)
        .bind(position(index))
        .bind(key.id.clone())
        .bind(key.name.clone())
        .bind(secrets.seal(&key.value)?)
        .bind(to_json(&key.models, || {
            what(&format!("keys[{index}].models"))
        })?)
        .bind(key.weight)
        .bind(server)
        .bind(credentials)
        .execute(&mut *conn)
        .await
        .context(CONTEXT)?;
    }
    Ok(())
}

impl Store {
    /// Creates or replaces provider `name` with its keys.
    pub async fn put_provider(
        &self,
        name: &str,
        provider: &ProviderConfig,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_config_write().await?;
        write(&mut tx, &self.secrets, name, provider).await?;
        tx.commit().await.context("committing a provider")
    }

    /// Deletes provider `name` and its keys; refused while a virtual key's `provider_configs`
    /// names it.
    pub async fn delete_provider(&self, name: &str) -> Result<(), StoreError> {
        self.delete_entity(EntityKind::Provider, name).await
    }
}
