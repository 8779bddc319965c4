//! The routing table: config compiled into what the request path needs (keys with their
//! precomputed auth headers, breakers, queues), rebuilt on reload.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue};

use super::circuit::CircuitBreaker;
use super::entra::EntraTokens;
use super::google::{GoogleTokens, MetadataTokens};
use super::queue::ProviderQueue;
use super::sigv4::{AwsSigner, BEDROCK_SERVICE, MANTLE_SERVICE};
use super::sts::AssumedRole;
use super::tokens::TokenSource;
use crate::config::{
    ConcurrencyConfig, GatewayConfig, NetworkConfig, ProviderKind, ProxyConfig, VertexCredentials,
};
use crate::error::GatewayError;
use crate::providers::{with_wire_headers, ForwardedHeaders, UpstreamOp};
use crate::telemetry::metrics::{KeyLabels, Metrics};

/// One upstream API key, ready to use.
pub struct UpstreamKey {
    /// Stable id (config `id`, else `name`, else `key-<index>`).
    pub id: String,
    /// Name for logs and metrics.
    pub name: String,
    /// The auth header value (`Bearer …` or the raw key), marked sensitive; `None` when the
    /// key is empty (e.g. a local model server).
    pub auth: Option<HeaderValue>,
    /// Models served; `*` means all, empty none (Bifrost 1.5).
    pub models: Vec<String>,
    /// Share of traffic.
    pub weight: f64,
    /// This key's breaker.
    pub breaker: Arc<CircuitBreaker>,
    /// A self-hosted key's own operation URLs (`UpstreamOp::index` order); `None`: the
    /// provider's.
    pub urls: Option<Vec<reqwest::Url>>,
    /// An Azure OpenAI key's resource: URLs are built per request (the deployment is in the
    /// path) and the key goes in `api-key`.
    pub azure: Option<crate::config::AzureKeyConfig>,
    /// A Bedrock key's model ids (`deployments`, `arn`) and, with IAM credentials, its SigV4
    /// signer.
    pub bedrock: Option<Arc<BedrockKey>>,
    /// A key that is an application (Azure's Entra ID, Vertex AI's service account): its
    /// bearer tokens.
    pub tokens: Option<Arc<TokenSource>>,
    /// A Vertex AI key's project, region and deployments.
    pub vertex: Option<Arc<crate::config::VertexKeyConfig>>,
}

/// Vertex AI's global endpoint (express mode, and the `global` location).
const VERTEX_GLOBAL: &str = "https://aiplatform.googleapis.com";

/// What a Bedrock key adds to its requests.
pub struct BedrockKey {
    pub config: crate::config::BedrockKeyConfig,
    /// `None`: the key is a Bedrock API key (a bearer token in `auth`).
    pub signer: Option<AwsSigner>,
}

/// What one attempt authenticates with beyond the key's own header, got (and cached) before
/// the request is built.
pub enum AttemptAuth {
    /// The token of a key that is an application (Entra ID, a Google service account).
    Bearer(HeaderValue),
    /// The AWS credentials a Bedrock key signs with: its own, or its role's.
    Aws(aws_smithy_runtime_api::client::identity::Identity),
}

impl UpstreamKey {
    /// A caller's own key for `provider` (`client.allow_direct_keys`): serves every model, goes
    /// where the provider's first key goes (its server or Azure resource), and has a breaker
    /// of its own that never opens (its failures say nothing about the configured keys).
    pub fn direct(provider: &Provider, value: &str) -> Result<Self, GatewayError> {
        let first = provider.keys.first();
        let azure = first.and_then(|k| k.azure.clone());
        let bearer = bearer_auth(provider.kind) && azure.is_none();
        let auth = auth_header(value, bearer).map_err(|()| {
            GatewayError::InvalidRequest(
                "the direct provider key has characters not allowed in an HTTP header".into(),
            )
        })?;
        let off = crate::config::CircuitBreakerConfig {
            enabled: false,
            ..Default::default()
        };
        Ok(Self {
            id: "direct".into(),
            name: "direct".into(),
            auth,
            models: vec!["*".into()],
            weight: 1.0,
            breaker: Arc::new(CircuitBreaker::new(
                off,
                prometheus_client::metrics::gauge::Gauge::default(),
                "direct".into(),
            )),
            urls: first.and_then(|k| k.urls.clone()),
            azure,
            // A caller's own key is a key, not an application.
            tokens: None,
            vertex: first.and_then(|k| k.vertex.clone()),
            // A caller's own Bedrock key is an API key (a bearer), at the first key's region.
            bedrock: first.and_then(|k| k.bedrock.as_ref()).map(|b| {
                Arc::new(BedrockKey {
                    config: b.config.clone(),
                    signer: None,
                })
            }),
        })
    }

    /// The model id this key deploys `model` as, when its `deployments` name one (Vertex
    /// AI's and Bedrock's ids are model ids; Azure's deployment names are not).
    pub fn deployment(&self, model: &str) -> Option<&str> {
        let vertex = self.vertex.as_ref().and_then(|v| v.deployments.get(model));
        let bedrock = self
            .bedrock
            .as_ref()
            .and_then(|b| b.config.deployments.get(model));
        vertex.or(bedrock).map(String::as_str)
    }

    /// Whether the key may serve `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == "*" || m == model)
    }
}

/// An upstream provider as the request path sees it.
pub struct Provider {
    /// Config name, the `provider` in `provider/model`.
    pub name: String,
    /// Wire format.
    pub kind: ProviderKind,
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// The URL of each upstream operation, parsed once (`UpstreamOp::index` order).
    pub urls: Vec<reqwest::Url>,
    /// Timeouts, retries and extra headers.
    pub network: NetworkConfig,
    /// The egress proxy, as configured.
    pub proxy: Option<ProxyConfig>,
    /// Extra headers, parsed once.
    pub extra_headers: Vec<(http::HeaderName, HeaderValue)>,
    /// Keys; a provider without keys gets one empty key.
    pub keys: Vec<UpstreamKey>,
    /// Concurrency admission.
    pub queue: ProviderQueue,
    /// A client of its own (TLS, HTTP/2, pool or proxy settings); `None`: the shared one.
    pub client: Option<reqwest::Client>,
    /// Bifrost request types this provider may be sent (`allowed_requests`); `None`: all.
    pub allowed_requests: Option<Vec<String>>,
    /// Vertex AI (Gemini's format at Google Cloud's addresses).
    pub vertex: bool,
}

impl Provider {
    /// The wire format `model` is spoken to in. Vertex AI serves Google's models in Gemini's
    /// format and Anthropic's (a model whose name, or deployment on any key, contains
    /// `claude`, as Bifrost decides it) in Anthropic's Messages format at `:rawPredict`.
    pub fn wire_kind(&self, model: &str) -> ProviderKind {
        let claude = |id: &str| id.contains("claude");
        let on_vertex_claude = self.vertex
            && (claude(model)
                || self
                    .keys
                    .iter()
                    .filter_map(|key| key.vertex.as_ref())
                    .any(|vertex| claude(vertex.model_id(model))));
        if on_vertex_claude {
            ProviderKind::Anthropic
        } else {
            self.kind
        }
    }

    /// Whether Bifrost request type `request` may be sent here.
    pub fn allows_request(&self, request: &str) -> bool {
        self.allowed_requests
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|a| a == request))
    }
}

/// All providers by name.
pub struct RoutingTable {
    /// Providers by config name.
    pub providers: HashMap<String, Arc<Provider>>,
}

impl RoutingTable {
    /// Compile `config`. Breakers of keys that still exist with the same settings carry over
    /// from `previous`, so a reload does not forget that a key is failing.
    pub fn build(
        config: &GatewayConfig,
        metrics: &Metrics,
        previous: Option<&RoutingTable>,
    ) -> Result<Self, GatewayError> {
        let mut providers = HashMap::new();
        let authority = EntraTokens::authority_from_env();
        let sts_endpoint = AssumedRole::endpoint_from_env();
        for (name, provider_config) in &config.providers {
            let kind = provider_config.kind(name);
            let addressing = provider_config.addressing(name);
            let vertex_express = addressing == crate::config::catalog::Addressing::Vertex;
            // Bedrock Mantle: OpenAI's format at each key's region, Bedrock's credentials.
            let mantle = addressing == crate::config::catalog::Addressing::Mantle;
            let aws_endpoint = |config: &crate::config::BedrockKeyConfig| {
                if mantle {
                    config.mantle_url()
                } else {
                    config.runtime_url()
                }
            };
            // Azure and Bedrock have no provider-wide address: their keys name their resources
            // or regions; the first stands in where one URL is needed.
            let first_resource = provider_config.keys.iter().find_map(|k| {
                k.azure_key_config
                    .as_ref()
                    .map(|a| a.endpoint.clone())
                    .or_else(|| k.bedrock_key_config.as_ref().map(aws_endpoint))
                    .or_else(|| k.vertex_key_config.as_ref().map(|v| v.endpoint()))
            });
            let first_resource = first_resource.or_else(|| match kind {
                _ if kind == ProviderKind::Bedrock || mantle => {
                    Some(aws_endpoint(&crate::config::BedrockKeyConfig::default()))
                }
                _ if vertex_express => Some(VERTEX_GLOBAL.to_owned()),
                _ => None,
            });
            let base_url = provider_config
                .base_url(name)
                .or(first_resource)
                .ok_or_else(|| {
                    GatewayError::Config(format!(
                        "providers.{name}.network_config.base_url is required"
                    ))
                })?;
            let mut extra_headers = Vec::new();
            for (header, value) in &provider_config.network_config.extra_headers {
                let header_name = http::HeaderName::try_from(header.as_str()).map_err(|_| {
                    GatewayError::Config(format!(
                        "providers.{name}.network_config.extra_headers.{header}: not a valid header name"
                    ))
                })?;
                let header_value = HeaderValue::try_from(value.as_str()).map_err(|_| {
                    GatewayError::Config(format!(
                        "providers.{name}.network_config.extra_headers.{header}: value has characters not allowed in a header"
                    ))
                })?;
                extra_headers.push((header_name, header_value));
            }

            let mut key_configs = provider_config.keys.clone();
            if provider_config.is_key_less() {
                key_configs.clear();
            }
            if key_configs.is_empty() {
                key_configs.push(crate::config::KeyConfig {
                    id: None,
                    name: Some("no-key".into()),
                    value: String::new(),
                    // A provider without keys (a local model server) serves whatever it has.
                    models: vec!["*".into()],
                    weight: 1.0,
                    vllm_key_config: None,
                    ollama_key_config: None,
                    sgl_key_config: None,
                    azure_key_config: None,
                    bedrock_key_config: None,
                    vertex_key_config: None,
                });
            }
            let mut keys = Vec::with_capacity(key_configs.len());
            for (index, key) in key_configs.iter().enumerate() {
                let display = key.display_name(index);
                let id = key.id.clone().unwrap_or_else(|| display.clone());
                // Azure takes the key as it is, in `api-key`.
                let bearer = bearer_auth(kind) && key.azure_key_config.is_none();
                // A Vertex key authenticates with its service account's tokens only.
                let value = match key.vertex_key_config {
                    Some(_) => "",
                    None => key.value.as_str(),
                };
                let auth = auth_header(value, bearer).map_err(|()| {
                    GatewayError::Config(format!(
                        "providers.{name}.keys[{index}].value: has characters not allowed in an HTTP header"
                    ))
                })?;
                let breaker = previous
                    .and_then(|table| table.providers.get(name))
                    .and_then(|old| old.keys.iter().find(|k| k.id == id))
                    .filter(|old| old.breaker.config() == &provider_config.circuit_breaker)
                    .map(|old| old.breaker.clone())
                    .unwrap_or_else(|| {
                        let gauge = metrics
                            .circuit_state
                            .get_or_create(&KeyLabels {
                                provider: name.clone(),
                                key: display.clone(),
                            })
                            .clone();
                        Arc::new(CircuitBreaker::new(
                            provider_config.circuit_breaker.clone(),
                            gauge,
                            format!("{name}/{display}"),
                        ))
                    });
                // A key that is its own server has its own URLs; so has a Bedrock key in a
                // region of its own (unless base_url puts the whole provider elsewhere).
                let bedrock_region = key
                    .bedrock_key_config
                    .as_ref()
                    .filter(|_| provider_config.network_config.base_url.is_none());
                let urls = match (key.self_hosted(), bedrock_region) {
                    (Some((field, server)), _) => Some(operation_urls_at(
                        name,
                        provider_config,
                        &server.url,
                        &format!("keys[{index}].{field}.url"),
                    )?),
                    (None, Some(bedrock)) => Some(operation_urls_at(
                        name,
                        provider_config,
                        &aws_endpoint(bedrock),
                        &format!("keys[{index}].bedrock_key_config.region"),
                    )?),
                    // Vertex: the project's Gemini models, at its region (or base_url); a
                    // Vertex API key's are the publisher's, in express mode.
                    (None, None) if vertex_express && key.vertex_key_config.is_none() => {
                        let endpoint = provider_config
                            .network_config
                            .base_url
                            .clone()
                            .unwrap_or_else(|| VERTEX_GLOBAL.to_owned());
                        let publishers =
                            format!("{}/v1/publishers", endpoint.trim_end_matches('/'));
                        Some(vertex_urls(
                            name,
                            provider_config,
                            &publishers,
                            &format!("keys[{index}].value"),
                        )?)
                    }
                    (None, None) => match &key.vertex_key_config {
                        Some(vertex) => {
                            let endpoint = provider_config
                                .network_config
                                .base_url
                                .clone()
                                .unwrap_or_else(|| vertex.endpoint());
                            let publishers = format!(
                                "{}{}",
                                endpoint.trim_end_matches('/'),
                                vertex.publishers_path()
                            );
                            Some(vertex_urls(
                                name,
                                provider_config,
                                &publishers,
                                &format!("keys[{index}].vertex_key_config"),
                            )?)
                        }
                        None => None,
                    },
                };
                let service = if mantle {
                    MANTLE_SERVICE
                } else {
                    BEDROCK_SERVICE
                };
                let bedrock = (kind == ProviderKind::Bedrock || mantle).then(|| {
                    let config = key.bedrock_key_config.clone().unwrap_or_default();
                    Arc::new(BedrockKey {
                        signer: AwsSigner::for_key(&config, service, sts_endpoint.as_deref()),
                        config,
                    })
                });
                keys.push(UpstreamKey {
                    id,
                    name: display,
                    auth,
                    models: key.served_models(),
                    weight: key.weight,
                    breaker,
                    urls,
                    azure: key.azure_key_config.clone(),
                    bedrock,
                    tokens: token_source(name, index, key, &authority)?.map(Arc::new),
                    vertex: key.vertex_key_config.clone().map(Arc::new),
                });
            }
            let network = &provider_config.network_config;
            let concurrency = &provider_config.concurrency_and_buffer_size;
            // A reload keeps a provider's own client (and its pooled connections) while the
            // settings it was built from are unchanged.
            let kept = previous
                .and_then(|table| table.providers.get(name))
                .filter(|old| old.network == *network && old.proxy == provider_config.proxy_config)
                .and_then(|old| old.client.clone());
            let client = match kept {
                Some(client) => Some(client),
                None => super::client::for_provider(
                    name,
                    provider_config,
                    config.client.initial_pool_size as usize,
                )?,
            };
            providers.insert(
                name.clone(),
                Arc::new(Provider {
                    name: name.clone(),
                    kind,
                    urls: operation_urls_at(
                        name,
                        provider_config,
                        &base_url,
                        "network_config.base_url",
                    )?,
                    base_url,
                    network: provider_config.network_config.clone(),
                    proxy: provider_config.proxy_config.clone(),
                    extra_headers,
                    keys,
                    queue: ProviderQueue::new(
                        &ConcurrencyConfig {
                            concurrency: concurrency.concurrency.min(
                                network
                                    .max_conns_per_host
                                    .unwrap_or(concurrency.concurrency),
                            ),
                            ..concurrency.clone()
                        },
                        config.client.drop_excess_requests,
                    ),
                    client,
                    vertex: vertex_express,
                    allowed_requests: provider_config
                        .custom_provider_config
                        .as_ref()
                        .and_then(|c| c.allowed_requests.as_ref())
                        .map(|allowed| {
                            allowed
                                .iter()
                                .filter(|(_, on)| **on)
                                .map(|(request, _)| request.clone())
                                .collect()
                        }),
                }),
            );
        }
        Ok(Self { providers })
    }
}

/// Build a request to `provider` with `key`: the operation's URL, `body` (JSON) if any, the
/// headers of the provider's wire format (`auth`: the token of a key that is an application,
/// Entra ID or a Google service account; the credentials a Bedrock key signs with), then the
/// provider's extra headers.
#[allow(clippy::too_many_arguments)]
pub fn upstream_request(
    client: &reqwest::Client,
    provider: &Provider,
    key: &UpstreamKey,
    op: UpstreamOp,
    model: &str,
    body: Option<Bytes>,
    forwarded: &ForwardedHeaders,
    auth: Option<AttemptAuth>,
) -> Result<reqwest::RequestBuilder, GatewayError> {
    let client = provider.client.as_ref().unwrap_or(client);
    let request = match &key.azure {
        // The deployment is in the path (or, on the v1 API, the body's `model`): built per
        // request.
        Some(azure) => {
            let body = match (&azure.api_version, azure.deployments.get(model), body) {
                (None, Some(deployment), Some(body)) => Some(naming_model(body, model, deployment)),
                (_, _, body) => body,
            };
            with_body(client, azure_url(azure, op, model), body)
        }
        None => {
            let urls = key.urls.as_ref().unwrap_or(&provider.urls);
            let url = &urls[op.index()];
            match op.model_method() {
                // Gemini and Bedrock: the model is in the path, after the operation's
                // collection URL (for Bedrock, the key's model id: deployment, ARN).
                Some(method) => {
                    let collection = url.as_str().trim_end_matches('/');
                    let model = match (&key.bedrock, &key.vertex) {
                        (Some(bedrock), _) => percent_encode(&bedrock.config.model_id(model)),
                        // Vertex's model versions are `name@version`, `@` as it is.
                        (None, Some(vertex)) => {
                            percent_encode(vertex.model_id(model)).replace("%40", "@")
                        }
                        (None, None) => percent_encode(model),
                    };
                    let url = format!("{collection}/{model}{method}");
                    with_body(client, url, body)
                }
                // Bedrock Mantle names the model's deployment in the body.
                None if provider.kind == ProviderKind::Openai => {
                    let deployment = key
                        .bedrock
                        .as_ref()
                        .and_then(|b| b.config.deployments.get(model));
                    let body = match (deployment, body) {
                        (Some(deployment), Some(body)) => {
                            Some(naming_model(body, model, deployment))
                        }
                        (_, body) => body,
                    };
                    with_body(client, url.clone(), body)
                }
                // Parsed once per provider (routing table build), cloned here.
                None => with_body(client, url.clone(), body),
            }
        }
    };
    let (bearer, aws) = match auth {
        Some(AttemptAuth::Bearer(bearer)) => (Some(bearer), None),
        Some(AttemptAuth::Aws(identity)) => (None, Some(identity)),
        None => (None, None),
    };
    let mut request = match (&key.azure, &key.auth, bearer) {
        // Claude on Vertex AI takes Anthropic's beta flags as headers, as Anthropic does.
        (_, _, Some(bearer)) if op.is_raw_predict() => {
            let request = request.header(header::AUTHORIZATION, bearer);
            match &forwarded.anthropic_beta {
                Some(beta) => request.header("anthropic-beta", beta.clone()),
                None => request,
            }
        }
        (_, _, Some(bearer)) => request.header(header::AUTHORIZATION, bearer),
        (Some(_), Some(auth), None) => request.header("api-key", auth.clone()),
        (Some(_), None, None) => request,
        (None, _, None) => with_wire_headers(request, provider.kind, key.auth.as_ref(), forwarded),
    };
    for (name, value) in &provider.extra_headers {
        request = request.header(name.clone(), value.clone());
    }
    match key.bedrock.as_ref().and_then(|b| b.signer.as_ref()) {
        Some(signer) => signed(client, request, signer, aws.as_ref(), &provider.name),
        None => Ok(request),
    }
}

/// `request` as built, signed by `signer` (a Bedrock key with IAM credentials) with
/// `identity`, the credentials the attempt got from [`AwsSigner::credentials`].
fn signed(
    client: &reqwest::Client,
    request: reqwest::RequestBuilder,
    signer: &AwsSigner,
    identity: Option<&aws_smithy_runtime_api::client::identity::Identity>,
    provider: &str,
) -> Result<reqwest::RequestBuilder, GatewayError> {
    let failed =
        |message: String| GatewayError::Config(format!("provider \"{provider}\": {message}"));
    let identity = identity.ok_or_else(|| {
        failed("a Bedrock request was built without the key's AWS credentials".into())
    })?;
    let mut built = request
        .build()
        .map_err(|e| failed(format!("cannot build the upstream request: {e}")))?;
    signer.sign(&mut built, identity).map_err(failed)?;
    Ok(reqwest::RequestBuilder::from_parts(client.clone(), built))
}

/// Where the bearer tokens of `key` (the `index`th of provider `name`) come from: its Entra ID
/// application or its Vertex service account; `None` for an API key.
fn token_source(
    name: &str,
    index: usize,
    key: &crate::config::KeyConfig,
    authority: &str,
) -> Result<Option<TokenSource>, GatewayError> {
    if let Some(tokens) = key
        .azure_key_config
        .as_ref()
        .and_then(|azure| EntraTokens::for_key(azure, authority))
    {
        return Ok(Some(TokenSource::Entra(tokens)));
    }
    let Some(vertex) = &key.vertex_key_config else {
        return Ok(None);
    };
    let failed = |why: String| {
        GatewayError::Config(format!(
            "providers.{name}.keys[{index}].vertex_key_config.auth_credentials: {why}"
        ))
    };
    match vertex.credentials().map_err(failed)? {
        VertexCredentials::ServiceAccount(text) => GoogleTokens::for_key(&text)
            .map(|tokens| Some(TokenSource::Google(Box::new(tokens))))
            .map_err(failed),
        VertexCredentials::MetadataServer => Ok(Some(TokenSource::GoogleMetadata(
            MetadataTokens::from_env(),
        ))),
    }
}

/// Whether `kind`'s keys go as `Authorization: Bearer` (OpenAI's and Bedrock's API keys).
fn bearer_auth(kind: ProviderKind) -> bool {
    matches!(kind, ProviderKind::Openai | ProviderKind::Bedrock)
}

/// A POST of JSON `body` to `url`, or a GET without one.
fn with_body(
    client: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    body: Option<Bytes>,
) -> reqwest::RequestBuilder {
    match body {
        Some(body) => client
            .post(url)
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .body(body),
        None => client.get(url),
    }
}

/// `body`, a JSON object whose `model` is `model`, with `deployment` as its `model` instead
/// (Azure's v1 API and Bedrock Mantle name the deployment in the body). The request path writes `model` first
/// (`UpstreamBodies`), so the name is spliced in without parsing the body; any other body is
/// parsed and encoded again.
fn naming_model(body: Bytes, model: &str, deployment: &str) -> Bytes {
    let field = |name: &str| {
        let mut start = String::from("{\"model\":");
        start.push_str(&serde_json::Value::from(name).to_string());
        start
    };
    let (old, new) = (field(model), field(deployment));
    if let Some(rest) = body.strip_prefix(old.as_bytes()) {
        if rest.first().is_some_and(|b| matches!(b, b',' | b'}')) {
            let mut spliced = Vec::with_capacity(body.len() + new.len());
            spliced.extend_from_slice(new.as_bytes());
            spliced.extend_from_slice(rest);
            return Bytes::from(spliced);
        }
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut object)) => {
            object.insert("model".into(), deployment.into());
            serde_json::to_vec(&object).map_or(body, Bytes::from)
        }
        _ => body,
    }
}

/// An Azure OpenAI URL: `{endpoint}/openai/deployments/{deployment}{op}?api-version=...` with
/// an `api_version`, else `{endpoint}/openai/v1{op}`. The deployment is percent-encoded, so a
/// model name cannot change the path.
fn azure_url(azure: &crate::config::AzureKeyConfig, op: UpstreamOp, model: &str) -> String {
    let endpoint = azure.endpoint.trim_end_matches('/');
    let path = op.path();
    match &azure.api_version {
        Some(version) => {
            let deployment = azure.deployments.get(model).map_or(model, String::as_str);
            format!(
                "{endpoint}/openai/deployments/{}{path}?api-version={}",
                percent_encode(deployment),
                percent_encode(version)
            )
        }
        None => format!("{endpoint}/openai/v1{path}"),
    }
}

/// Everything but RFC 3986's unreserved characters as `%XX`.
pub(super) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The URL of each operation (`UpstreamOp::index` order) at `base` (the provider's base URL,
/// or a self-hosted key's server; `field` names it in errors).
fn operation_urls_at(
    name: &str,
    config: &crate::config::ProviderConfig,
    base: &str,
    field: &str,
) -> Result<Vec<reqwest::Url>, GatewayError> {
    UpstreamOp::ALL
        .iter()
        .map(|op| {
            let url = config.request_url_at(base, name, op.request_type(), op.path());
            reqwest::Url::parse(&url).map_err(|e| {
                GatewayError::Config(format!(
                    "providers.{name}.{field}: \"{url}\" is not a usable URL: {e}"
                ))
            })
        })
        .collect()
}

/// A Vertex AI key's operation URLs under `publishers` (`.../publishers`): Google's models
/// for Gemini's operations, Anthropic's for `:rawPredict`.
fn vertex_urls(
    name: &str,
    config: &crate::config::ProviderConfig,
    publishers: &str,
    field: &str,
) -> Result<Vec<reqwest::Url>, GatewayError> {
    let google = operation_urls_at(name, config, &format!("{publishers}/google"), field)?;
    let anthropic = operation_urls_at(name, config, &format!("{publishers}/anthropic"), field)?;
    Ok(UpstreamOp::ALL
        .iter()
        .zip(google.into_iter().zip(anthropic))
        .map(|(op, (google, anthropic))| match op {
            UpstreamOp::RawPredict | UpstreamOp::StreamRawPredict => anthropic,
            _ => google,
        })
        .collect())
}

/// The key as a sensitive header value: `Bearer <key>` (OpenAI's `Authorization`) or the key
/// as it is (Anthropic's `x-api-key`, Azure's `api-key`); `None` for an empty key.
fn auth_header(value: &str, bearer: bool) -> Result<Option<HeaderValue>, ()> {
    if value.is_empty() {
        return Ok(None);
    }
    let text = if bearer {
        format!("Bearer {value}")
    } else {
        value.to_string()
    };
    let mut header = HeaderValue::try_from(text).map_err(|_| ())?;
    header.set_sensitive(true);
    Ok(Some(header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployment_replaces_the_model_in_a_v1_body() {
        let spliced = naming_model(
            Bytes::from_static(
                br#"{"model":"gpt-4o","messages":[{"role":"user","content":"gpt-4o"}]}"#,
            ),
            "gpt-4o",
            "prod-4o",
        );
        assert_eq!(
            spliced,
            Bytes::from_static(
                br#"{"model":"prod-4o","messages":[{"role":"user","content":"gpt-4o"}]}"#
            )
        );
        // A model that only starts the same is not replaced by splicing.
        let other = naming_model(
            Bytes::from_static(br#"{"model":"gpt-4o-mini"}"#),
            "gpt-4o",
            "d",
        );
        assert_eq!(other, Bytes::from_static(br#"{"model":"d"}"#));
        // Bodies laid out otherwise are parsed.
        let later = naming_model(Bytes::from_static(br#"{"n":1,"model":"m"}"#), "m", "d\"x");
        let parsed: serde_json::Value = serde_json::from_slice(&later).expect("JSON");
        assert_eq!(parsed["model"], "d\"x");
        assert_eq!(parsed["n"], 1);
    }
}
