//! Providers known by name, as Bifrost knows them: where the gateway finds the ones it speaks
//! to (wire format, default address, API path), and why it refuses or ignores the others.
//!
//! A provider whose name is not here is a custom provider: OpenAI's format (or
//! `custom_provider_config.base_provider_type`) at the `network_config.base_url` it must give.

use super::ProviderKind;

/// How the gateway reaches a provider it speaks to by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Wire format.
    pub kind: ProviderKind,
    /// Default `network_config.base_url`.
    pub base_url: &'static str,
    /// Path between the base URL and the operation (`/chat/completions`, ...): `/v1` for most;
    /// empty for upstreams whose OpenAI-compatible API has no version segment.
    pub api_prefix: &'static str,
    /// How a request is addressed and signed.
    pub addressing: Addressing,
}

/// How requests to a provider are addressed and carry the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Addressing {
    /// `{base_url}{api_prefix}/chat/completions`, the key as the format's auth header.
    #[default]
    Standard,
    /// Azure OpenAI: each key names its resource (`azure_key_config.endpoint`); the model's
    /// deployment is in the path (`/openai/deployments/{deployment}/...?api-version=`), or the
    /// `/openai/v1/` API without an `api_version`; the key goes in `api-key`.
    Azure,
    /// Bedrock Mantle, AWS Bedrock's OpenAI-compatible API: each key's region names its
    /// endpoint (`https://bedrock-mantle.{region}.api.aws/v1/...`); IAM credentials sign with
    /// SigV4 (service `bedrock-mantle`), a Bedrock API key goes as a bearer token.
    Mantle,
    /// Vertex AI: each key names its project and region (`vertex_key_config`); Gemini models
    /// at `{endpoint}/v1/projects/{p}/locations/{r}/publishers/google/models/{model}:...`,
    /// with a service account's OAuth2 token.
    Vertex,
}

/// What a provider name means to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownProvider {
    /// Spoken to in a format the gateway has.
    Speaks(Endpoint),
    /// Bifrost speaks this provider's own API, which the gateway does not speak yet.
    NotSpoken {
        /// The API, for the refusal.
        api: &'static str,
    },
    /// Bifrost uses this provider only for operations the gateway does not serve.
    NotServed {
        /// Those operations, for the warning.
        operations: &'static str,
    },
}

/// The API path prefix of custom providers (OpenAI's and Anthropic's layout).
pub const DEFAULT_API_PREFIX: &str = "/v1";

const fn openai(base_url: &'static str) -> KnownProvider {
    KnownProvider::Speaks(Endpoint {
        kind: ProviderKind::Openai,
        base_url,
        api_prefix: DEFAULT_API_PREFIX,
        addressing: Addressing::Standard,
    })
}

const PROVIDERS: &[(&str, KnownProvider)] = &[
    ("openai", openai("https://api.openai.com")),
    (
        "anthropic",
        KnownProvider::Speaks(Endpoint {
            kind: ProviderKind::Anthropic,
            base_url: "https://api.anthropic.com",
            api_prefix: DEFAULT_API_PREFIX,
            addressing: Addressing::Standard,
        }),
    ),
    // OpenAI-compatible services, at their public OpenAI-compatible address.
    ("groq", openai("https://api.groq.com/openai")),
    ("mistral", openai("https://api.mistral.ai")),
    ("deepseek", openai("https://api.deepseek.com")),
    ("openrouter", openai("https://openrouter.ai/api")),
    ("xai", openai("https://api.x.ai")),
    ("cerebras", openai("https://api.cerebras.ai")),
    ("parasail", openai("https://api.parasail.io")),
    ("nebius", openai("https://api.studio.nebius.com")),
    ("huggingface", openai("https://router.huggingface.co")),
    ("fireworks", openai("https://api.fireworks.ai/inference")),
    ("together", openai("https://api.together.xyz")),
    // Cohere's OpenAI-compatible "compatibility API" (chat completions and embeddings).
    ("cohere", openai("https://api.cohere.ai/compatibility")),
    (
        "perplexity",
        KnownProvider::Speaks(Endpoint {
            kind: ProviderKind::Openai,
            base_url: "https://api.perplexity.ai",
            api_prefix: "",
            addressing: Addressing::Standard,
        }),
    ),
    // Self-hosted model servers, at their default local ports.
    ("ollama", openai("http://localhost:11434")),
    ("vllm", openai("http://localhost:8000")),
    ("sgl", openai("http://localhost:30000")),
    ("lmstudio", openai("http://localhost:1234")),
    // Google AI Studio's Gemini API: the model in the path, the key in `x-goog-api-key`.
    (
        "gemini",
        KnownProvider::Speaks(Endpoint {
            kind: ProviderKind::Gemini,
            base_url: "https://generativelanguage.googleapis.com",
            api_prefix: "/v1beta",
            addressing: Addressing::Standard,
        }),
    ),
    // No base URL: each key names its resource.
    (
        "azure",
        KnownProvider::Speaks(Endpoint {
            kind: ProviderKind::Openai,
            base_url: "",
            api_prefix: "",
            addressing: Addressing::Azure,
        }),
    ),
    // No provider-wide address: each key's region names its endpoint (or base_url).
    (
        "bedrock",
        KnownProvider::Speaks(Endpoint {
            kind: ProviderKind::Bedrock,
            base_url: "",
            api_prefix: "",
            addressing: Addressing::Standard,
        }),
    ),
    // OpenAI's format at each key's region (bedrock_mantle_key_config).
    (
        "bedrock_mantle",
        KnownProvider::Speaks(Endpoint {
            kind: ProviderKind::Openai,
            base_url: "",
            api_prefix: DEFAULT_API_PREFIX,
            addressing: Addressing::Mantle,
        }),
    ),
    // Gemini's format; each key names its project and region (vertex_key_config).
    (
        "vertex",
        KnownProvider::Speaks(Endpoint {
            kind: ProviderKind::Gemini,
            base_url: "",
            api_prefix: "",
            addressing: Addressing::Vertex,
        }),
    ),
    (
        "replicate",
        KnownProvider::NotSpoken {
            api: "Replicate's predictions API",
        },
    ),
    (
        "elevenlabs",
        KnownProvider::NotServed {
            operations: "speech and transcription",
        },
    ),
    (
        "runway",
        KnownProvider::NotServed {
            operations: "video generation",
        },
    ),
    (
        "runware",
        KnownProvider::NotServed {
            operations: "image and video generation",
        },
    ),
    (
        "deepgram",
        KnownProvider::NotServed {
            operations: "speech recognition and synthesis",
        },
    ),
];

/// What `name` means, when it is a name the gateway (or Bifrost) knows.
pub fn lookup(name: &str) -> Option<KnownProvider> {
    PROVIDERS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, provider)| *provider)
}

/// The endpoint of a provider the gateway speaks to by name.
pub fn endpoint(name: &str) -> Option<Endpoint> {
    match lookup(name)? {
        KnownProvider::Speaks(endpoint) => Some(endpoint),
        _ => None,
    }
}

/// Names of the providers spoken to by name, comma-separated (for messages).
pub fn spoken_names() -> String {
    PROVIDERS
        .iter()
        .filter(|(_, provider)| matches!(provider, KnownProvider::Speaks(_)))
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_addresses_are_urls_without_a_trailing_slash() {
        let mut seen = std::collections::HashSet::new();
        for (name, provider) in PROVIDERS {
            assert!(seen.insert(name), "{name} twice");
            if let KnownProvider::Speaks(endpoint) = provider {
                // Azure's keys name their resources, Bedrock's and Vertex's their regions.
                if matches!(
                    endpoint.addressing,
                    Addressing::Azure | Addressing::Vertex | Addressing::Mantle
                ) || endpoint.kind == ProviderKind::Bedrock
                {
                    continue;
                }
                assert!(
                    endpoint.base_url.starts_with("http://")
                        || endpoint.base_url.starts_with("https://"),
                    "{name}"
                );
                assert!(!endpoint.base_url.ends_with('/'), "{name}");
                assert!(
                    endpoint.api_prefix.is_empty() || endpoint.api_prefix.starts_with('/'),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn perplexity_has_no_version_segment_and_replicate_is_not_spoken() {
        assert_eq!(endpoint("perplexity").map(|e| e.api_prefix), Some(""));
        assert_eq!(endpoint("xai").map(|e| e.api_prefix), Some("/v1"));
        assert_eq!(
            endpoint("azure").map(|e| e.addressing),
            Some(Addressing::Azure)
        );
        assert!(matches!(
            lookup("replicate"),
            Some(KnownProvider::NotSpoken { .. })
        ));
        assert_eq!(
            endpoint("vertex").map(|e| e.addressing),
            Some(Addressing::Vertex)
        );
        assert_eq!(
            endpoint("bedrock").map(|e| e.kind),
            Some(ProviderKind::Bedrock)
        );
        assert_eq!(lookup("my-llm"), None);
        assert!(spoken_names().contains("cerebras"));
    }
}
