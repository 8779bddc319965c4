//! Upstream wire formats: how to address each provider's API, SSE framing, and translation
//! between the OpenAI and Anthropic formats.

pub mod sse;
pub mod translate;

use http::{header, HeaderValue};

use crate::config::ProviderKind;

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
    /// `GET /v1/models` (both formats).
    ListModels,
}

impl UpstreamOp {
    /// Every operation, in [`UpstreamOp::index`] order.
    pub const ALL: [UpstreamOp; 4] = [
        UpstreamOp::ChatCompletions,
        UpstreamOp::Embeddings,
        UpstreamOp::Messages,
        UpstreamOp::ListModels,
    ];

    /// Position in [`UpstreamOp::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Path after the provider's base URL and API prefix (`/v1`).
    pub fn path(self) -> &'static str {
        match self {
            UpstreamOp::ChatCompletions => "/chat/completions",
            UpstreamOp::Embeddings => "/embeddings",
            UpstreamOp::Messages => "/messages",
            UpstreamOp::ListModels => "/models",
        }
    }

    /// Bifrost's name for the request type (the key of `request_path_overrides`); Anthropic's
    /// Messages is its chat completion.
    pub fn request_type(self) -> &'static str {
        match self {
            UpstreamOp::ChatCompletions | UpstreamOp::Messages => "chat_completion",
            UpstreamOp::Embeddings => "embedding",
            UpstreamOp::ListModels => "list_models",
        }
    }
}

/// Caller headers that are forwarded upstream (only Anthropic's versioning headers; nothing
/// else of the caller's reaches a provider).
#[derive(Debug, Clone, Default)]
pub struct ForwardedHeaders {
    /// `anthropic-version`.
    pub anthropic_version: Option<HeaderValue>,
    /// `anthropic-beta`.
    pub anthropic_beta: Option<HeaderValue>,
}

impl ForwardedHeaders {
    /// Pick the forwarded headers out of a request's headers.
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        Self {
            anthropic_version: headers.get("anthropic-version").cloned(),
            anthropic_beta: headers.get("anthropic-beta").cloned(),
        }
    }
}

/// Add the headers `kind`'s wire format needs on every request: the key's `auth` value where
/// the format expects it (`Authorization` or `x-api-key`) and, for Anthropic, `anthropic-version`
/// (the caller's or [`ANTHROPIC_VERSION`]) and the caller's `anthropic-beta`.
pub fn with_wire_headers(
    mut request: reqwest::RequestBuilder,
    kind: ProviderKind,
    auth: Option<&HeaderValue>,
    forwarded: &ForwardedHeaders,
) -> reqwest::RequestBuilder {
    match kind {
        ProviderKind::Openai => {
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
    }
    request
}
