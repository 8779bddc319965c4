//! The gateway's error type. Rendering to HTTP (in the caller's wire format) happens in one
//! place: `http::errors`.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use crate::config::ProviderKind;

/// What a governance 429 ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitMetric {
    /// Requests per window.
    Requests,
    /// Tokens per window.
    Tokens,
    /// The virtual key's requests in flight (`max_in_flight`).
    InFlight,
}

impl LimitMetric {
    /// `requests`, `tokens` or `in_flight` (headers, metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            LimitMetric::Requests => "requests",
            LimitMetric::Tokens => "tokens",
            LimitMetric::InFlight => "in_flight",
        }
    }
}

/// Where a budget hangs in the governance hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetLevel {
    /// The virtual key itself.
    VirtualKey,
    /// The virtual key's use of one provider.
    Provider,
    /// The key's team.
    Team,
    /// The key's (or its team's) customer.
    Customer,
}

impl BudgetLevel {
    /// Lower-case name for messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetLevel::VirtualKey => "virtual_key",
            BudgetLevel::Provider => "provider",
            BudgetLevel::Team => "team",
            BudgetLevel::Customer => "customer",
        }
    }
}

/// Everything that can go wrong while serving a request or starting up.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed (400).
    #[error("{0}")]
    InvalidRequest(String),
    /// The client stopped sending the request body for longer than
    /// `server.body_read_timeout_seconds` (408).
    #[error("the request body stalled: nothing arrived for {seconds}s (server.body_read_timeout_seconds)")]
    RequestTimeout {
        /// The timeout.
        seconds: u64,
    },
    /// Unknown provider or model (404).
    #[error("{0}")]
    NotFound(String),
    /// The body exceeds `client.max_request_body_size_mb` (413).
    #[error(
        "request body is larger than the {limit_mb} MiB limit (client.max_request_body_size_mb)"
    )]
    PayloadTooLarge {
        /// The limit in MiB.
        limit_mb: u32,
    },
    /// The provider's concurrency and wait buffer are full (429).
    #[error("provider \"{provider}\" is at its concurrency limit; retry later")]
    ProviderBusy {
        /// Provider name.
        provider: String,
    },
    /// Every key of the provider has an open circuit (503).
    #[error("every key of provider \"{provider}\" has an open circuit after repeated failures; retry in {}s", retry_after.as_secs().max(1))]
    CircuitOpen {
        /// Provider name.
        provider: String,
        /// When the first circuit will let a probe through.
        retry_after: Duration,
    },
    /// The last upstream attempt timed out (504).
    #[error("upstream \"{provider}\" did not answer within {seconds}s (network_config.default_request_timeout_in_seconds)")]
    UpstreamTimeout {
        /// Provider name.
        provider: String,
        /// The timeout.
        seconds: u64,
    },
    /// Every attempt on every target failed (502).
    #[error("all upstreams failed; last error: {last}")]
    UpstreamsFailed {
        /// What the last attempt saw.
        last: String,
    },
    /// The upstream rejected the request as malformed: its status, passed on to the caller.
    #[error("upstream \"{provider}\" rejected the request ({status}): {message}")]
    UpstreamRejected {
        /// Provider name.
        provider: String,
        /// Provider wire format (the body is in it).
        kind: ProviderKind,
        /// Upstream status.
        status: StatusCode,
        /// Message extracted from the body.
        message: String,
        /// The upstream's error body.
        body: Bytes,
    },
    /// The upstream answered with something we cannot read (502).
    #[error("upstream \"{provider}\" sent an unreadable response: {message}")]
    BadUpstreamResponse {
        /// Provider name.
        provider: String,
        /// What was wrong.
        message: String,
    },
    /// The operation is not available on this provider (400).
    #[error("{0}")]
    Unsupported(String),
    /// The provider refused the content (a safety block on the prompt) (400, code
    /// `content_filter` as OpenAI's own content filter answers).
    #[error("upstream \"{provider}\" blocked the request: {message}")]
    ContentBlocked {
        /// Provider name.
        provider: String,
        /// Why, as the provider said.
        message: String,
    },
    /// Config could not be turned into a runnable state.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A socket could not be opened at start (the address is taken, not permitted, or not
    /// local). Worded as it was when this was a config error, so operators' log searches keep
    /// matching: `invalid configuration: <what> <addr>: <reason> (choose another <setting>)`.
    #[error("invalid configuration: {what} {addr}: {reason} (choose another {setting})")]
    Bind {
        /// What could not be opened, e.g. `cannot listen on`.
        what: &'static str,
        /// The address it was to be opened on.
        addr: SocketAddr,
        /// Why (the OS error).
        reason: String,
        /// The setting that picks another address.
        setting: &'static str,
    },
    /// No virtual key where one is required (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The virtual key is unknown or inactive, or does not allow this provider/model (403).
    #[error("{0}")]
    Forbidden(String),
    /// A rate limit or in-flight cap is reached (429).
    #[error("{message}")]
    RateLimited {
        /// What was reached and when it resets.
        message: String,
        /// What ran out.
        metric: LimitMetric,
        /// The limit.
        limit: u64,
        /// Time until the window resets.
        reset_after: Duration,
    },
    /// A budget on the virtual key's path is spent (402).
    #[error("{message}")]
    BudgetExhausted {
        /// Which budget, at which level, and when it resets.
        message: String,
        /// Where the budget hangs.
        level: BudgetLevel,
        /// Time until the budget resets.
        reset_after: Duration,
    },
    /// The change clashes with existing state (409).
    #[error("{0}")]
    Conflict(String),
    /// The body is not in a media type the route accepts (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The config store failed (500 on the admin API; fatal at start-up).
    #[error("config store: {0}")]
    Store(String),
    /// The process is shutting down (503).
    #[error("the gateway is shutting down; retry on another replica")]
    ShuttingDown,
    /// A limit with `cluster_stale_policy: closed` while this node's cluster view is stale, or
    /// a strict limit whose owner cannot be asked (503).
    #[error("{message}")]
    ClusterUnavailable {
        /// Which limit and why.
        message: String,
    },
}

impl GatewayError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::InvalidRequest(_)
            | GatewayError::Unsupported(_)
            | GatewayError::ContentBlocked { .. } => StatusCode::BAD_REQUEST,
            GatewayError::NotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            GatewayError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Conflict(_) => StatusCode::CONFLICT,
            GatewayError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GatewayError::Forbidden(_) => StatusCode::FORBIDDEN,
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::BudgetExhausted { .. } => StatusCode::PAYMENT_REQUIRED,
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::ProviderBusy { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::CircuitOpen { .. }
            | GatewayError::ShuttingDown
            | GatewayError::ClusterUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::UpstreamsFailed { .. } | GatewayError::BadUpstreamResponse { .. } => {
                StatusCode::BAD_GATEWAY
            }
            GatewayError::UpstreamRejected { status, .. } => *status,
            GatewayError::Config(_) | GatewayError::Bind { .. } | GatewayError::Store(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// A short machine-readable code for the error body.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::InvalidRequest(_) => "invalid_request",
            GatewayError::Unsupported(_) => "unsupported_operation",
            GatewayError::ContentBlocked { .. } => "content_filter",
            GatewayError::NotFound(_) => "model_not_found",
            GatewayError::RequestTimeout { .. } => "request_timeout",
            GatewayError::Unauthorized(_) => "unauthorized",
            GatewayError::Conflict(_) => "conflict",
            GatewayError::UnsupportedMediaType(_) => "unsupported_media_type",
            GatewayError::Forbidden(_) => "virtual_key_forbidden",
            GatewayError::RateLimited { .. } => "rate_limit_exceeded",
            GatewayError::BudgetExhausted { .. } => "budget_exceeded",
            GatewayError::PayloadTooLarge { .. } => "request_too_large",
            GatewayError::ProviderBusy { .. } => "provider_busy",
            GatewayError::CircuitOpen { .. } => "circuit_open",
            GatewayError::ShuttingDown => "shutting_down",
            GatewayError::ClusterUnavailable { .. } => "cluster_unavailable",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::UpstreamsFailed { .. } => "upstream_failed",
            GatewayError::BadUpstreamResponse { .. } => "bad_upstream_response",
            GatewayError::UpstreamRejected { .. } => "upstream_rejected",
            GatewayError::Config(_) => "config_error",
            GatewayError::Bind { .. } => "bind_error",
            GatewayError::Store(_) => "store_error",
        }
    }
}

/// An error and its sources, `outer: inner: ...`, skipping a source whose text the previous
/// part already contains (many errors repeat their source in their own message).
pub fn error_chain(error: &dyn StdError) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn layers(texts: &[&'static str]) -> Layer {
        texts
            .iter()
            .rev()
            .fold(None, |source, text| {
                Some(Layer {
                    text,
                    source: source.map(Box::new),
                })
            })
            .expect("at least one layer")
    }

    #[test]
    fn an_error_chain_names_every_source_once() {
        assert_eq!(error_chain(&layers(&["outer"])), "outer");
        assert_eq!(
            error_chain(&layers(&[
                "connect failed",
                "tls handshake",
                "bad certificate"
            ])),
            "connect failed: tls handshake: bad certificate"
        );
        assert_eq!(
            error_chain(&layers(&["read failed: timed out", "timed out"])),
            "read failed: timed out",
            "a source already in its parent's message"
        );
    }

    #[test]
    fn a_bind_error_reads_as_before() {
        let error = GatewayError::Bind {
            what: "cannot listen on",
            addr: "127.0.0.1:8080".parse().expect("addr"),
            reason: "Address already in use (os error 98)".to_string(),
            setting: "--port / BIFROST_PORT",
        };
        assert_eq!(
            error.to_string(),
            "invalid configuration: cannot listen on 127.0.0.1:8080: Address already in use (os error 98) (choose another --port / BIFROST_PORT)"
        );
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
