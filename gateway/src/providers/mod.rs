//! Upstream wire formats: how to address each provider's API, SSE and AWS event-stream
//! framing, and translation between the OpenAI, Anthropic, Gemini and Bedrock formats.

pub mod eventstream;
pub mod sse;
pub mod translate;

use http::{header, HeaderValue};

use crate::config::ProviderKind;
use crate::error::GatewayError;

/// Anthropic API version sent when the caller does not choose one.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// An upstream API operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOp {
    /// OpenAI `POST /v1/chat/completions`.
    ChatCompletions,
    /// OpenAI `POST /v1/embeddings`.
    Embeddings,
    /// Anthropic `POST /v1/messages`.
    Messages,
    /// `GET /v1/models` (OpenAI's and Anthropic's; Gemini's `GET /v1beta/models`).
    ListModels,
    /// Gemini `POST /v1beta/models/{model}:generateContent`.
    GenerateContent,
    /// Gemini `POST /v1beta/models/{model}:streamGenerateContent?alt=sse`.
    StreamGenerateContent,
    /// Gemini `POST /v1beta/models/{model}:batchEmbedContents`.
    BatchEmbedContents,
    /// Bedrock `POST /model/{modelId}/converse`.
    Converse,
    /// Bedrock `POST /model/{modelId}/converse-stream` (AWS event-stream framing).
    ConverseStream,
    /// Vertex AI `POST .../publishers/anthropic/models/{model}:rawPredict`: Anthropic's
    /// Messages API, the model in the path.
    RawPredict,
    /// Vertex AI `POST .../publishers/anthropic/models/{model}:streamRawPredict` (Anthropic's
    /// SSE).
    StreamRawPredict,
    /// Bedrock `POST /model/{modelId}/invoke`: the model's own body (embeddings: Titan's,
    /// Cohere's).
    InvokeModel,
}

impl UpstreamOp {
    /// Every operation, in [`UpstreamOp::index`] order.
    pub const ALL: [UpstreamOp; 12] = [
        UpstreamOp::ChatCompletions,
        UpstreamOp::Embeddings,
        UpstreamOp::Messages,
        UpstreamOp::ListModels,
        UpstreamOp::GenerateContent,
        UpstreamOp::StreamGenerateContent,
        UpstreamOp::BatchEmbedContents,
        UpstreamOp::Converse,
        UpstreamOp::ConverseStream,
        UpstreamOp::RawPredict,
        UpstreamOp::StreamRawPredict,
        UpstreamOp::InvokeModel,
    ];

    /// Position in [`UpstreamOp::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Path after the provider's base URL and API prefix (`/v1`). Gemini's, Bedrock's and
    /// Vertex AI's operations name the model in the path: theirs is the collection (`/models`,
    /// `/model`),
    /// to which each request adds the model and [`UpstreamOp::model_method`].
    pub fn path(self) -> &'static str {
        match self {
            UpstreamOp::ChatCompletions => "/chat/completions",
            UpstreamOp::Embeddings => "/embeddings",
            UpstreamOp::Messages => "/messages",
            UpstreamOp::ListModels
            | UpstreamOp::GenerateContent
            | UpstreamOp::StreamGenerateContent
            | UpstreamOp::BatchEmbedContents
            | UpstreamOp::RawPredict
            | UpstreamOp::StreamRawPredict => "/models",
            UpstreamOp::Converse | UpstreamOp::ConverseStream | UpstreamOp::InvokeModel => "/model",
        }
    }

    /// For an operation addressed by model (Gemini's, Bedrock's), what follows `/{model}` in
    /// the URL.
    pub fn model_method(self) -> Option<&'static str> {
        match self {
            UpstreamOp::GenerateContent => Some(":generateContent"),
            UpstreamOp::StreamGenerateContent => Some(":streamGenerateContent?alt=sse"),
            UpstreamOp::BatchEmbedContents => Some(":batchEmbedContents"),
            UpstreamOp::Converse => Some("/converse"),
            UpstreamOp::ConverseStream => Some("/converse-stream"),
            UpstreamOp::RawPredict => Some(":rawPredict"),
            UpstreamOp::StreamRawPredict => Some(":streamRawPredict"),
            UpstreamOp::InvokeModel => Some("/invoke"),
            _ => None,
        }
    }

    /// Vertex AI's `:rawPredict` operations (Claude in Anthropic's format).
    pub fn is_raw_predict(self) -> bool {
        matches!(self, UpstreamOp::RawPredict | UpstreamOp::StreamRawPredict)
    }

    /// Bifrost's name for the request type (the key of `request_path_overrides`); Anthropic's
    /// Messages and Gemini's generateContent are its chat completion.
    pub fn request_type(self) -> &'static str {
        match self {
            UpstreamOp::ChatCompletions
            | UpstreamOp::Messages
            | UpstreamOp::GenerateContent
            | UpstreamOp::StreamGenerateContent
            | UpstreamOp::Converse
            | UpstreamOp::ConverseStream
            | UpstreamOp::RawPredict
            | UpstreamOp::StreamRawPredict => "chat_completion",
            UpstreamOp::Embeddings | UpstreamOp::BatchEmbedContents | UpstreamOp::InvokeModel => {
                "embedding"
            }
            UpstreamOp::ListModels => "list_models",
        }
    }
}

/// What of the caller's request reaches a provider besides the body: Anthropic's versioning
/// headers and, where `client.allow_direct_keys` allows it, the caller's own provider key.
#[derive(Clone, Default)]
pub struct ForwardedHeaders {
    /// `anthropic-version`.
    pub anthropic_version: Option<HeaderValue>,
    /// `anthropic-beta`.
    pub anthropic_beta: Option<HeaderValue>,
    /// The caller's provider key (`x-bf-direct-key: true`), used instead of the configured
    /// keys.
    pub direct_key: Option<String>,
}

impl std::fmt::Debug for ForwardedHeaders {
    // The direct key never reaches logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardedHeaders")
            .field("anthropic_version", &self.anthropic_version)
            .field("anthropic_beta", &self.anthropic_beta)
            .field(
                "direct_key",
                &self.direct_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The header by which a caller asks to use its own provider key (Bifrost's name).
pub const DIRECT_KEY_HEADER: &str = "x-bf-direct-key";

/// The caller's own provider key when the request asks for one (`x-bf-direct-key: true`): the
/// first of `x-api-key`, `Authorization: Bearer`, `x-goog-api-key` that is not a virtual key
/// (`sk-bf-...`). Refused (403) when direct keys are not `allowed`; 400 when no key is sent.
pub fn direct_key(
    headers: &http::HeaderMap,
    allowed: bool,
) -> Result<Option<String>, GatewayError> {
    let asked = headers
        .get(DIRECT_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !asked {
        return Ok(None);
    }
    if !allowed {
        return Err(GatewayError::Forbidden(format!(
            "{DIRECT_KEY_HEADER}: direct provider keys are not allowed here (client.allow_direct_keys is off)"
        )));
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let bearer = text("authorization").and_then(|v| v.strip_prefix("Bearer "));
    [text("x-api-key"), bearer, text("x-goog-api-key")]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|key| !key.is_empty() && !key.starts_with("sk-bf-"))
        .map(|key| Some(key.to_string()))
        .ok_or_else(|| {
            GatewayError::InvalidRequest(format!(
                "{DIRECT_KEY_HEADER}: true needs the provider key in x-api-key or Authorization: Bearer (a virtual key, if any, in x-bf-vk)"
            ))
        })
}

impl ForwardedHeaders {
    /// Pick the forwarded headers out of a request's headers (no direct key: see
    /// [`direct_key`]).
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        Self {
            direct_key: None,
            anthropic_version: headers.get("anthropic-version").cloned(),
            anthropic_beta: headers.get("anthropic-beta").cloned(),
        }
    }
}

/// Add the headers `kind`'s wire format needs on every request: the key's `auth` value where
/// the format expects it (`Authorization`, `x-api-key` or Gemini's `x-goog-api-key`; a
/// Bedrock API key as a bearer) and, for
/// Anthropic, `anthropic-version`
/// (the caller's or [`ANTHROPIC_VERSION`]) and the caller's `anthropic-beta`.
pub fn with_wire_headers(
    mut request: reqwest::RequestBuilder,
    kind: ProviderKind,
    auth: Option<&HeaderValue>,
    forwarded: &ForwardedHeaders,
) -> reqwest::RequestBuilder {
    match kind {
        // Bedrock: an API key as a bearer token (IAM credentials sign the request instead).
        ProviderKind::Openai | ProviderKind::Bedrock => {
            if let Some(auth) = auth {
                request = request.header(header::AUTHORIZATION, auth.clone());
            }
        }
        ProviderKind::Anthropic => {
            if let Some(auth) = auth {
                request = request.header("x-api-key", auth.clone());
            }
            let version = forwarded
                .anthropic_version
                .clone()
                .unwrap_or(HeaderValue::from_static(ANTHROPIC_VERSION));
            request = request.header("anthropic-version", version);
            if let Some(beta) = &forwarded.anthropic_beta {
                request = request.header("anthropic-beta", beta.clone());
            }
        }
        ProviderKind::Gemini => {
            if let Some(auth) = auth {
                request = request.header("x-goog-api-key", auth.clone());
            }
        }
    }
    request
}
