use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::catalog;

/// One upstream provider: its keys, network behaviour and resilience settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderConfig {
    /// API keys; a request goes to one key chosen at random by weight among those that allow
    /// the model and whose circuit is not open.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Upstream address, timeouts and retries.
    #[serde(default)]
    pub network_config: NetworkConfig,
    /// In-flight cap for this provider and how many requests may wait for a slot.
    #[serde(default)]
    pub concurrency_and_buffer_size: ConcurrencyConfig,
    /// For providers with a custom name: which wire format they speak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_provider_config: Option<CustomProviderConfig>,
    /// Circuit breaker applied to each key of this provider.
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    /// Egress proxy for this provider's requests (Bifrost's `proxy_config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_config: Option<ProxyConfig>,
}

/// An egress proxy (Bifrost's `proxy_config`).
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProxyConfig {
    /// `none`, `http` (an HTTP proxy; HTTPS upstreams through CONNECT), `socks5`, or
    /// `environment` (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`).
    #[serde(rename = "type")]
    pub proxy_type: ProxyType,
    /// The proxy's URL (`http://proxy:3128`, `socks5://proxy:1080`; `env.NAME` allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Proxy credentials (Basic for HTTP proxies, username/password for SOCKS5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Proxy password (`env.NAME` allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// PEM CA certificate of an SSL-intercepting proxy, trusted for upstream TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_pem: Option<String>,
}

impl fmt::Debug for ProxyConfig {
    // The password never reaches logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("type", &self.proxy_type)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_cert_pem", &self.ca_cert_pem.is_some())
            .finish()
    }
}

/// How a provider's requests leave the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProxyType {
    /// Directly (also what an absent `proxy_config` means).
    None,
    /// Through an HTTP proxy.
    Http,
    /// Through a SOCKS5 proxy.
    Socks5,
    /// Through the proxy the environment names.
    Environment,
}

/// An upstream API key.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeyConfig {
    /// Stable identifier (used by virtual keys' `key_ids`); defaults to `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Human name used in logs and metrics; defaults to `key-<index>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The secret, or `env.NAME` to read it from the environment.
    #[serde(default)]
    pub value: String,
    /// Models this key serves; `["*"]` means all. Empty or missing: none (Bifrost 1.5's
    /// meaning; a file with `version: 1` reads it as all).
    #[serde(default)]
    pub models: Vec<String>,
    /// Relative share of traffic among eligible keys.
    #[serde(default = "KeyConfig::default_weight")]
    pub weight: f64,
    /// Bifrost's vLLM key: this key is the vLLM server at `url`, serving `model_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vllm_key_config: Option<SelfHostedKey>,
    /// Bifrost's Ollama key: this key is the Ollama server at `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ollama_key_config: Option<SelfHostedKey>,
    /// Bifrost's SGLang key: this key is the SGLang server at `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sgl_key_config: Option<SelfHostedKey>,
    /// Bifrost's Azure OpenAI key: the resource and its deployments (required for `azure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_key_config: Option<AzureKeyConfig>,
    /// Bifrost's AWS Bedrock key: IAM credentials and region (for `bedrock`; a key with only
    /// `value` is a Bedrock API key, sent as a bearer token). Bifrost's
    /// `bedrock_mantle_key_config` (for `bedrock_mantle`) is read as this field.
    #[serde(
        default,
        alias = "bedrock_mantle_key_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub bedrock_key_config: Option<BedrockKeyConfig>,
    /// Bifrost's Vertex AI key: the project, region and service account (required for
    /// `vertex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertex_key_config: Option<VertexKeyConfig>,
}

/// A Google Cloud project's Vertex AI (Bifrost's `vertex_key_config`): Gemini models under
/// `publishers/google`, with a service account's OAuth2 tokens.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VertexKeyConfig {
    /// The Google Cloud project id.
    pub project_id: String,
    /// The location (`us-central1`, `europe-west4`, or `global`).
    pub region: String,
    /// The service account's JSON key (`env.VERTEX_CREDENTIALS`), or the path of its file:
    /// its `client_email`, `private_key` and `token_uri` sign the token requests. Empty:
    /// Application Default Credentials (the key file `GOOGLE_APPLICATION_CREDENTIALS` names,
    /// else the metadata server's service account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_credentials: Option<String>,
    /// Model name → model (or endpoint) id; a model not listed is its own id. The key serves
    /// these models besides its `models`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployments: BTreeMap<String, String>,
}

impl VertexKeyConfig {
    /// The regional endpoint (`https://{region}-aiplatform.googleapis.com`; the global one
    /// for `global`).
    pub fn endpoint(&self) -> String {
        match self.region.as_str() {
            "global" => "https://aiplatform.googleapis.com".to_owned(),
            region => format!("https://{region}-aiplatform.googleapis.com"),
        }
    }

    /// Where the key's tokens come from: the service account key given (as JSON, or as the
    /// path of its file), else Application Default Credentials: the key file named by
    /// `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server. A file that cannot be read
    /// is an error naming it.
    pub fn credentials(&self) -> Result<VertexCredentials, String> {
        let read = |path: &str, named_by: &str| {
            std::fs::read_to_string(path)
                .map(VertexCredentials::ServiceAccount)
                .map_err(|e| {
                    format!("cannot read the service account key file {path} ({named_by}): {e}")
                })
        };
        match self.auth_credentials.as_deref().map(str::trim) {
            Some(json) if json.starts_with('{') => {
                Ok(VertexCredentials::ServiceAccount(json.to_owned()))
            }
            Some(path) if !path.is_empty() => read(path, "auth_credentials"),
            _ => match std::env::var(GOOGLE_APPLICATION_CREDENTIALS) {
                Ok(path) if !path.trim().is_empty() => {
                    read(path.trim(), GOOGLE_APPLICATION_CREDENTIALS)
                }
                _ => Ok(VertexCredentials::MetadataServer),
            },
        }
    }

    /// The path of the model publishers after the endpoint:
    /// `/v1/projects/{p}/locations/{r}/publishers` (Google's models under `/google/models`,
    /// Anthropic's under `/anthropic/models`).
    pub fn publishers_path(&self) -> String {
        format!(
            "/v1/projects/{}/locations/{}/publishers",
            self.project_id, self.region
        )
    }

    /// The model id sent for `model`.
    pub fn model_id<'a>(&'a self, model: &'a str) -> &'a str {
        self.deployments.get(model).map_or(model, String::as_str)
    }
}

/// The environment variable naming Application Default Credentials' key file.
pub const GOOGLE_APPLICATION_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";

/// Where a Vertex AI key's tokens come from (see [`VertexKeyConfig::credentials`]).
#[derive(Clone, PartialEq)]
pub enum VertexCredentials {
    /// A service account's JSON key, as text.
    ServiceAccount(String),
    /// The metadata server of the machine (GCE, GKE with Workload Identity, Cloud Run).
    MetadataServer,
}

/// The fields of a Google service account's JSON key that sign token requests.
#[derive(Clone, PartialEq, Deserialize)]
pub struct ServiceAccountKey {
    /// `service_account`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The account (`name@project.iam.gserviceaccount.com`): the token request's issuer.
    pub client_email: String,
    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub private_key: String,
    /// The key's id, sent as the JWT's `kid`.
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// Where tokens come from (`https://oauth2.googleapis.com/token`).
    #[serde(default = "ServiceAccountKey::default_token_uri")]
    pub token_uri: String,
}

impl ServiceAccountKey {
    fn default_token_uri() -> String {
        "https://oauth2.googleapis.com/token".to_owned()
    }

    /// The key in `text` (a service account's JSON key file), or what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let key: Self = serde_json::from_str(text).map_err(|e| {
            format!("not a service account's JSON key ({e}); download one with `gcloud iam service-accounts keys create`")
        })?;
        if key.kind != "service_account" {
            return Err(format!(
                "type must be \"service_account\" (got \"{}\"): only service account keys are supported",
                key.kind
            ));
        }
        if !key
            .private_key
            .trim_start()
            .starts_with("-----BEGIN PRIVATE KEY-----")
        {
            return Err(
                "private_key must be a PKCS#8 PEM key (-----BEGIN PRIVATE KEY-----)".into(),
            );
        }
        if !key.token_uri.starts_with("https://") && !key.token_uri.starts_with("http://") {
            return Err(format!(
                "token_uri must be an http(s) URL (got \"{}\")",
                key.token_uri
            ));
        }
        Ok(key)
    }
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key", &"<redacted>")
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl fmt::Debug for VertexKeyConfig {
    // The service account's private key never reaches logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VertexKeyConfig")
            .field("project_id", &self.project_id)
            .field("region", &self.region)
            .field(
                "auth_credentials",
                &self.auth_credentials.as_ref().map(|_| "<redacted>"),
            )
            .field("deployments", &self.deployments)
            .finish()
    }
}

/// AWS credentials and addressing for Bedrock (Bifrost's `bedrock_key_config`); requests are
/// SigV4-signed with them.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct BedrockKeyConfig {
    /// Access key id (`env.AWS_ACCESS_KEY_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// Secret access key (`env.AWS_SECRET_ACCESS_KEY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// Session token of temporary credentials (`env.AWS_SESSION_TOKEN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    /// AWS region (`us-east-1` when unset): the endpoint
    /// `https://bedrock-runtime.{region}.amazonaws.com` and the signature's scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// ARN prefix of inference profiles or provisioned models: the model id sent is
    /// `{arn}/{deployment}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// Model id (or inference profile) per model name; a model not listed is its own id. The
    /// key serves these models besides its `models`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployments: BTreeMap<String, String>,
    /// IAM role to assume (`arn:aws:iam::<account>:role/<name>`): the key's own credentials
    /// call STS AssumeRole and requests are signed with the role's temporary credentials,
    /// renewed before they expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// External id the role's trust policy requires (`ExternalId` of AssumeRole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Role session name (`RoleSessionName`; default `bifrost-gateway`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
}

impl BedrockKeyConfig {
    /// The region when none is configured (Bifrost's default too).
    pub const DEFAULT_REGION: &'static str = "us-east-1";

    /// The configured region or the default.
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or(Self::DEFAULT_REGION)
    }

    /// The Bedrock Runtime endpoint of the key's region.
    pub fn runtime_url(&self) -> String {
        format!("https://bedrock-runtime.{}.amazonaws.com", self.region())
    }

    /// The Bedrock Mantle (OpenAI-compatible) endpoint of the key's region.
    pub fn mantle_url(&self) -> String {
        format!("https://bedrock-mantle.{}.api.aws", self.region())
    }

    /// The model id sent for `model`: its deployment (or itself), under `arn` when set.
    pub fn model_id(&self, model: &str) -> String {
        let deployment = self.deployments.get(model).map_or(model, String::as_str);
        match &self.arn {
            Some(arn) => format!("{}/{deployment}", arn.trim_end_matches('/')),
            None => deployment.to_owned(),
        }
    }
}

impl fmt::Debug for BedrockKeyConfig {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BedrockKeyConfig")
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("region", &self.region)
            .field("arn", &self.arn)
            .field("deployments", &self.deployments)
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id)
            .field("session_name", &self.session_name)
            .finish()
    }
}

/// An Azure OpenAI resource (Bifrost's `azure_key_config`).
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AzureKeyConfig {
    /// The resource's endpoint, `https://<resource>.openai.azure.com` (`env.NAME` allowed).
    pub endpoint: String,
    /// Deployment per model name (`{"gpt-4o": "prod-4o"}`); a model not listed is its own
    /// deployment name. The key serves these models besides its `models`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployments: BTreeMap<String, String>,
    /// `api-version` query parameter of the deployment API (`2024-10-21`). Without it the
    /// `/openai/v1/` API is used, with the model (or its deployment) in the body's `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Entra ID application (OAuth2 client credentials): with `client_secret` and
    /// `tenant_id`, requests carry its token as a bearer instead of the key in `api-key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The Entra ID application's secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The Entra ID tenant (directory id or domain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Token scopes; default `https://cognitiveservices.azure.com/.default`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

impl fmt::Debug for AzureKeyConfig {
    // The application secret never reaches logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureKeyConfig")
            .field("endpoint", &self.endpoint)
            .field("deployments", &self.deployments)
            .field("api_version", &self.api_version)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("tenant_id", &self.tenant_id)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// A key that is its own upstream server (Bifrost's `vllm_key_config`, `ollama_key_config`,
/// `sgl_key_config`): requests through the key go to `url` instead of the provider's
/// `base_url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SelfHostedKey {
    /// The server's base URL (`http://gpu-3:8000`), in front of `/v1/...`.
    pub url: String,
    /// The model the server serves; the key serves it (besides its `models`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
}

impl KeyConfig {
    /// Largest accepted `weight`: weights are relative, so more is a typo (and a sum of
    /// huge weights stops being a number).
    pub const MAX_WEIGHT: f64 = 1_000_000.0;

    fn default_weight() -> f64 {
        1.0
    }

    /// Whether this key may serve `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == "*" || m == model)
    }

    /// The server this key is, when it is one (at most one of the three is set; validation
    /// refuses more).
    pub fn self_hosted(&self) -> Option<(&'static str, &SelfHostedKey)> {
        [
            ("vllm_key_config", &self.vllm_key_config),
            ("ollama_key_config", &self.ollama_key_config),
            ("sgl_key_config", &self.sgl_key_config),
        ]
        .into_iter()
        .find_map(|(field, config)| Some((field, config.as_ref()?)))
    }

    /// The models the key serves: `models`, a self-hosted server's `model_name` and an Azure
    /// resource's or a Bedrock key's deployed models.
    pub fn served_models(&self) -> Vec<String> {
        let mut models = self.models.clone();
        let named = self.self_hosted().and_then(|(_, s)| s.model_name.clone());
        let deployed = self
            .azure_key_config
            .iter()
            .flat_map(|azure| azure.deployments.keys().cloned())
            .chain(
                self.bedrock_key_config
                    .iter()
                    .flat_map(|bedrock| bedrock.deployments.keys().cloned()),
            )
            .chain(
                self.vertex_key_config
                    .iter()
                    .flat_map(|vertex| vertex.deployments.keys().cloned()),
            );
        for name in named.into_iter().chain(deployed) {
            if !models.contains(&name) {
                models.push(name);
            }
        }
        models
    }

    /// The name used in logs and metrics.
    pub fn display_name(&self, index: usize) -> String {
        self.name
            .clone()
            .or_else(|| self.id.clone())
            .unwrap_or_else(|| format!("key-{index}"))
    }
}

impl fmt::Debug for KeyConfig {
    // Key values never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyConfig")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("models", &self.models)
            .field("weight", &self.weight)
            .field("server", &self.self_hosted())
            .finish()
    }
}

/// How to reach a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NetworkConfig {
    /// Scheme, host and optional path prefix in front of `/v1/...`; defaults per provider
    /// (`https://api.openai.com`, `https://api.anthropic.com`). Required for custom providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Deadline for one upstream attempt, until the response headers (and for non-streaming
    /// requests, the whole body) arrive.
    #[serde(default = "NetworkConfig::default_timeout")]
    pub default_request_timeout_in_seconds: u64,
    /// Extra attempts on the same provider after a 429, a 5xx, a timeout or a connection error.
    #[serde(default)]
    pub max_retries: u32,
    /// First backoff before a retry; doubles each retry, with jitter. Bifrost's current name,
    /// `retry_backoff_initial` (also milliseconds), is read too.
    #[serde(
        default = "NetworkConfig::default_backoff_initial",
        alias = "retry_backoff_initial"
    )]
    pub retry_backoff_initial_ms: u64,
    /// Backoff ceiling (Bifrost's `retry_backoff_max` is read too).
    #[serde(
        default = "NetworkConfig::default_backoff_max",
        alias = "retry_backoff_max"
    )]
    pub retry_backoff_max_ms: u64,
    /// Static headers sent with every upstream request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_headers: BTreeMap<String, String>,
    /// A stream that sends nothing for this long is ended with an error event (Bifrost's
    /// default: 120).
    #[serde(default = "NetworkConfig::default_stream_idle_timeout")]
    pub stream_idle_timeout_in_seconds: u64,
    /// Idle pooled connections to the provider are closed after this long; keep it below the
    /// upstream's own keep-alive.
    #[serde(default = "NetworkConfig::default_keep_alive_timeout")]
    pub keep_alive_timeout_in_seconds: u64,
    /// Connections to the provider at most: requests beyond it wait for one (like requests
    /// beyond `concurrency_and_buffer_size.concurrency`, the smaller of the two applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_conns_per_host: Option<u32>,
    /// Speak HTTP/2 to the provider without negotiating (prior knowledge; also over plain
    /// HTTP).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enforce_http2: bool,
    /// Accept any TLS certificate from the provider. A last resort: prefer `ca_cert_pem`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// PEM CA certificate(s) trusted for the provider's TLS, in addition to the usual roots
    /// (a private CA, a self-signed upstream; `env.NAME` allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_pem: Option<String>,
}

impl NetworkConfig {
    /// Largest accepted `default_request_timeout_in_seconds` (a day).
    pub const MAX_REQUEST_TIMEOUT_SECONDS: u64 = 86_400;
    /// Largest accepted `max_retries`.
    pub const MAX_RETRIES: u32 = 10;
    /// Largest accepted `retry_backoff_initial_ms` and `retry_backoff_max_ms` (an hour).
    pub const MAX_RETRY_BACKOFF_MS: u64 = 3_600_000;
    /// Largest accepted `stream_idle_timeout_in_seconds` and `keep_alive_timeout_in_seconds`.
    pub const MAX_IDLE_SECONDS: u64 = 3600;
    /// Largest accepted `max_conns_per_host`.
    pub const MAX_CONNS_PER_HOST: u32 = 10_000;

    /// Whether talking to the provider needs an HTTP client of its own (TLS, HTTP version or
    /// pool settings other than the shared client's).
    pub fn needs_own_client(&self) -> bool {
        self.keep_alive_timeout_in_seconds != Self::default_keep_alive_timeout()
            || self.max_conns_per_host.is_some()
            || self.enforce_http2
            || self.insecure_skip_verify
            || self.ca_cert_pem.is_some()
    }

    fn default_timeout() -> u64 {
        30
    }
    fn default_backoff_initial() -> u64 {
        500
    }
    fn default_backoff_max() -> u64 {
        5000
    }
    fn default_stream_idle_timeout() -> u64 {
        120
    }
    /// The shared client's pool idle timeout.
    pub fn default_keep_alive_timeout() -> u64 {
        90
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            default_request_timeout_in_seconds: Self::default_timeout(),
            max_retries: 0,
            retry_backoff_initial_ms: Self::default_backoff_initial(),
            retry_backoff_max_ms: Self::default_backoff_max(),
            extra_headers: BTreeMap::new(),
            stream_idle_timeout_in_seconds: Self::default_stream_idle_timeout(),
            keep_alive_timeout_in_seconds: Self::default_keep_alive_timeout(),
            max_conns_per_host: None,
            enforce_http2: false,
            insecure_skip_verify: false,
            ca_cert_pem: None,
        }
    }
}

/// Bounds on concurrent upstream requests for one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConcurrencyConfig {
    /// Requests in flight to this provider at once.
    #[serde(default = "ConcurrencyConfig::default_concurrency")]
    pub concurrency: u32,
    /// Requests that may wait for a free slot; beyond that (or at once with
    /// `client.drop_excess_requests`) the gateway answers 429.
    #[serde(default = "ConcurrencyConfig::default_buffer_size")]
    pub buffer_size: u32,
}

impl ConcurrencyConfig {
    /// Largest accepted `concurrency` (as many as `server.max_connections` may ever be).
    pub const MAX_CONCURRENCY: u32 = 1_000_000;
    /// Largest accepted `buffer_size`.
    pub const MAX_BUFFER_SIZE: u32 = 1_000_000;

    fn default_concurrency() -> u32 {
        1000
    }
    fn default_buffer_size() -> u32 {
        5000
    }
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        Self {
            concurrency: Self::default_concurrency(),
            buffer_size: Self::default_buffer_size(),
        }
    }
}

/// Wire format and addressing of a custom-named provider (Bifrost's `custom_provider_config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomProviderConfig {
    /// The API this provider speaks.
    pub base_provider_type: ProviderKind,
    /// The provider takes no API key: `keys` are not needed (and, when given, not sent).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_key_less: bool,
    /// Upstream path per Bifrost request type (`chat_completion`, `chat_completion_stream`,
    /// `embedding`, `list_models`), in place of the usual `/v1/...`: a path appended to
    /// `network_config.base_url` (`/api/chat/completions`), or a whole `http(s)://` URL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_path_overrides: BTreeMap<String, String>,
    /// Bifrost's request-type switches: when present, only the types set to `true` are sent
    /// to this provider (`chat_completion`, `chat_completion_stream`, `embedding`,
    /// `list_models` are the ones the gateway serves); others are refused with 400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_requests: Option<BTreeMap<String, bool>>,
}

/// Bifrost's request types the gateway serves, the ones `request_path_overrides` may name.
pub const SERVED_REQUEST_TYPES: [&str; 4] = [
    "chat_completion",
    "chat_completion_stream",
    "embedding",
    "list_models",
];

/// The wire formats the gateway speaks upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI's Chat Completions API and the many services compatible with it. As a custom
    /// provider's `base_provider_type`, Bifrost's OpenAI-compatible provider types mean it too.
    #[serde(
        alias = "groq",
        alias = "mistral",
        alias = "deepseek",
        alias = "openrouter",
        alias = "xai",
        alias = "cerebras",
        alias = "parasail",
        alias = "nebius",
        alias = "huggingface",
        alias = "fireworks",
        alias = "ollama",
        alias = "vllm",
        alias = "sgl"
    )]
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google's Gemini API (`models/{model}:generateContent`; Google AI Studio).
    Gemini,
    /// AWS Bedrock Runtime's Converse API (`/model/{modelId}/converse`), SigV4-signed.
    Bedrock,
}

impl ProviderKind {
    /// Lower-case name as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Bedrock => "bedrock",
        }
    }
}

impl ProviderConfig {
    /// The wire format, from `custom_provider_config` or the provider's well-known name;
    /// anything else is assumed OpenAI-compatible.
    pub fn kind(&self, name: &str) -> ProviderKind {
        if let Some(custom) = &self.custom_provider_config {
            return custom.base_provider_type;
        }
        catalog::endpoint(name).map_or(ProviderKind::Openai, |endpoint| endpoint.kind)
    }

    /// The configured base URL or the well-known default, without a trailing slash.
    pub fn base_url(&self, name: &str) -> Option<String> {
        self.network_config
            .base_url
            .clone()
            .or_else(|| catalog::endpoint(name).map(|endpoint| endpoint.base_url.to_string()))
            .map(|url| url.trim_end_matches('/').to_string())
            .filter(|url| !url.is_empty())
    }

    /// How requests are addressed: Azure's way for the `azure` provider, else the standard.
    pub fn addressing(&self, name: &str) -> catalog::Addressing {
        match &self.custom_provider_config {
            Some(_) => catalog::Addressing::Standard,
            None => catalog::endpoint(name).map_or(catalog::Addressing::Standard, |e| e.addressing),
        }
    }

    /// The upstream URL of Bifrost request type `request` (one of [`SERVED_REQUEST_TYPES`]),
    /// whose usual path after the API version is `path` (`/chat/completions`): the override
    /// when `request_path_overrides` has one, else base URL, the provider's API prefix
    /// (`/v1`; none for Perplexity) and `path`. `None` without a base URL.
    pub fn request_url(&self, name: &str, request: &str, path: &str) -> Option<String> {
        let base = self.base_url(name)?;
        Some(self.request_url_at(&base, name, request, path))
    }

    /// [`ProviderConfig::request_url`] with another base URL (a self-hosted key's server);
    /// a whole-URL override still wins.
    pub fn request_url_at(&self, base: &str, name: &str, request: &str, path: &str) -> String {
        let base = base.trim_end_matches('/');
        let custom = self.custom_provider_config.as_ref();
        match custom.and_then(|c| c.request_path_overrides.get(request)) {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => url.clone(),
            Some(path) => format!("{base}{path}"),
            None => {
                // A custom provider takes its base type's prefix (Gemini's `/v1beta`).
                let known = match custom {
                    Some(custom) => custom.base_provider_type.as_str(),
                    None => name,
                };
                let prefix =
                    catalog::endpoint(known).map_or(catalog::DEFAULT_API_PREFIX, |e| e.api_prefix);
                format!("{base}{prefix}{path}")
            }
        }
    }

    /// Whether keys are sent: not for Bifrost's `is_key_less` custom providers.
    pub fn is_key_less(&self) -> bool {
        self.custom_provider_config
            .as_ref()
            .is_some_and(|c| c.is_key_less)
    }
}

/// Per-key circuit breaker: closed → open after `failure_threshold` consecutive failures;
/// open → half-open after `timeout_seconds`; half-open lets `half_open_requests` probes through
/// and closes after `success_threshold` successes (any failure reopens).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CircuitBreakerConfig {
    /// Turn the breaker off entirely.
    #[serde(default = "crate::config::client::default_true")]
    pub enabled: bool,
    /// Consecutive failures that open the circuit.
    #[serde(default = "CircuitBreakerConfig::default_failure_threshold")]
    pub failure_threshold: u32,
    /// Consecutive successes in half-open that close it.
    #[serde(default = "CircuitBreakerConfig::default_success_threshold")]
    pub success_threshold: u32,
    /// How long an open circuit stays open before probing.
    #[serde(default = "CircuitBreakerConfig::default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Probes allowed at once while half-open.
    #[serde(default = "CircuitBreakerConfig::default_half_open_requests")]
    pub half_open_requests: u32,
}

impl CircuitBreakerConfig {
    /// Largest accepted `timeout_seconds` (a day).
    pub const MAX_TIMEOUT_SECONDS: u64 = 86_400;
    /// Largest accepted `failure_threshold`, `success_threshold` and `half_open_requests`.
    pub const MAX_COUNT: u32 = 10_000;

    fn default_failure_threshold() -> u32 {
        5
    }
    fn default_success_threshold() -> u32 {
        2
    }
    fn default_timeout_seconds() -> u64 {
        30
    }
    fn default_half_open_requests() -> u32 {
        1
    }
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_threshold: Self::default_failure_threshold(),
            success_threshold: Self::default_success_threshold(),
            timeout_seconds: Self::default_timeout_seconds(),
            half_open_requests: Self::default_half_open_requests(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(document: serde_json::Value) -> ProviderConfig {
        serde_json::from_value(document).expect("provider config")
    }

    #[test]
    fn bifrost_openai_compatible_base_types_are_the_openai_format() {
        for base in ["openai", "groq", "vllm", "xai"] {
            let config = provider(serde_json::json!({
                "custom_provider_config": {"base_provider_type": base}
            }));
            assert_eq!(config.kind("mine"), ProviderKind::Openai, "{base}");
        }
        let refused = serde_json::from_value::<ProviderConfig>(serde_json::json!({
            "custom_provider_config": {"base_provider_type": "replicate"}
        }));
        let message = refused.expect_err("not spoken").to_string();
        assert!(
            message.contains("`anthropic`") && message.contains("`openai`"),
            "{message}"
        );
    }

    #[test]
    fn request_urls_follow_the_catalog_and_the_overrides() {
        let plain = ProviderConfig::default();
        let url = |config: &ProviderConfig, name: &str, request: &str, path: &str| {
            config.request_url(name, request, path)
        };
        assert_eq!(
            url(&plain, "xai", "chat_completion", "/chat/completions").as_deref(),
            Some("https://api.x.ai/v1/chat/completions")
        );
        assert_eq!(
            url(&plain, "perplexity", "chat_completion", "/chat/completions").as_deref(),
            Some("https://api.perplexity.ai/chat/completions")
        );
        assert_eq!(url(&plain, "my-llm", "chat_completion", "/x"), None);
        let custom = provider(serde_json::json!({
            "network_config": {"base_url": "https://llm.internal/"},
            "custom_provider_config": {"base_provider_type": "openai", "request_path_overrides": {
                "chat_completion": "/api/chat", "embedding": "https://embed.internal/e"
            }}
        }));
        for (request, path, expected) in [
            (
                "chat_completion",
                "/chat/completions",
                "https://llm.internal/api/chat",
            ),
            ("embedding", "/embeddings", "https://embed.internal/e"),
            ("list_models", "/models", "https://llm.internal/v1/models"),
        ] {
            assert_eq!(
                url(&custom, "my-llm", request, path).as_deref(),
                Some(expected),
                "{request}"
            );
        }
    }
}
