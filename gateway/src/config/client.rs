use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `client` section: how the gateway handles inference requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClientConfig {
    /// Idle upstream connections kept per provider host.
    #[serde(default = "ClientConfig::default_initial_pool_size")]
    pub initial_pool_size: u32,
    /// Reject with 429 instead of queueing when a provider's concurrency is exhausted.
    #[serde(default)]
    pub drop_excess_requests: bool,
    /// Log one line per inference request at info level (debug otherwise).
    #[serde(default = "default_true")]
    pub enable_logging: bool,
    /// Require a virtual key on inference routes (older name `enforce_governance_header`).
    #[serde(default, alias = "enforce_governance_header")]
    pub enforce_auth_on_inference: bool,
    /// Largest accepted request body, in MiB; larger bodies get 413.
    #[serde(default = "ClientConfig::default_max_request_body_size_mb")]
    pub max_request_body_size_mb: u32,
    /// Most entries of `messages` in one chat or messages request; more get 400.
    #[serde(default = "ClientConfig::default_max_messages_per_request")]
    pub max_messages_per_request: u32,
    /// Most content blocks (content parts, tool calls, tool-result blocks and `system` blocks)
    /// in one request, counted across all messages; more get 400.
    #[serde(default = "ClientConfig::default_max_content_blocks_per_request")]
    pub max_content_blocks_per_request: u32,
    /// Most entries of `tools` in one request; more get 400.
    #[serde(default = "ClientConfig::default_max_tools_per_request")]
    pub max_tools_per_request: u32,
    /// Most stop sequences (`stop`, `stop_sequences`) in one request; more get 400.
    #[serde(default = "ClientConfig::default_max_stop_sequences_per_request")]
    pub max_stop_sequences_per_request: u32,
    /// Most JSON values (objects, arrays, strings, numbers, ...) anywhere in one request body,
    /// which bounds the memory a parsed body takes whatever field holds them; more get 400.
    #[serde(default = "ClientConfig::default_max_json_values_per_request")]
    pub max_json_values_per_request: u32,
    /// Browser origins (`scheme://host[:port]`, or `*` for any) whose pages may call the
    /// inference API (CORS, as Bifrost's `allowed_origins`); empty: no CORS headers, so
    /// browsers refuse cross-origin calls. The admin API has its own list
    /// (`governance.auth_config.admin_allowed_origins`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Request headers allowed in CORS requests besides the ones the API reads
    /// (`authorization`, `content-type`, `x-api-key`, `x-bf-vk`, `x-bf-direct-key`, `anthropic-version`,
    /// `anthropic-beta`), as Bifrost's `allowed_headers`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,
    /// Let callers bring their own provider key (Bifrost's `allow_direct_keys`): a request with
    /// `x-bf-direct-key: true` is sent with the key it carries in `x-api-key` or
    /// `Authorization: Bearer` instead of a configured one. Governance still applies.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_direct_keys: bool,
}

impl ClientConfig {
    /// Largest accepted `initial_pool_size`.
    pub const MAX_INITIAL_POOL_SIZE: u32 = 100_000;
    /// Largest accepted messages, content blocks, tools or stop sequences cap.
    pub const MAX_ELEMENTS_PER_REQUEST: u32 = 1_000_000;
    /// Largest accepted `max_json_values_per_request`.
    pub const MAX_JSON_VALUES_PER_REQUEST: u32 = 10_000_000;
    /// Largest accepted `max_request_body_size_mb` (4 GiB; bodies are held in memory).
    pub const MAX_REQUEST_BODY_SIZE_MB: u32 = 4096;

    fn default_initial_pool_size() -> u32 {
        300
    }
    fn default_max_request_body_size_mb() -> u32 {
        100
    }
    // A long real conversation has a few thousand turns.
    fn default_max_messages_per_request() -> u32 {
        10_000
    }
    fn default_max_content_blocks_per_request() -> u32 {
        10_000
    }
    // OpenAI accepts 128 tools; generous for other providers.
    fn default_max_tools_per_request() -> u32 {
        1_000
    }
    // OpenAI accepts 4 stop sequences; Anthropic documents no limit but a few dozen is plenty.
    fn default_max_stop_sequences_per_request() -> u32 {
        1_000
    }
    // Room for a body at every other cap (10,000 messages with 10,000 blocks and 1,000 tool
    // schemas), while a parsed body stays under ~200 MB however its values are nested.
    fn default_max_json_values_per_request() -> u32 {
        500_000
    }
    /// The body limit in bytes.
    pub fn max_request_body_bytes(&self) -> usize {
        (self.max_request_body_size_mb as usize).saturating_mul(1024 * 1024)
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            initial_pool_size: Self::default_initial_pool_size(),
            drop_excess_requests: false,
            enable_logging: true,
            enforce_auth_on_inference: false,
            max_request_body_size_mb: Self::default_max_request_body_size_mb(),
            max_messages_per_request: Self::default_max_messages_per_request(),
            max_content_blocks_per_request: Self::default_max_content_blocks_per_request(),
            max_tools_per_request: Self::default_max_tools_per_request(),
            max_stop_sequences_per_request: Self::default_max_stop_sequences_per_request(),
            max_json_values_per_request: Self::default_max_json_values_per_request(),
            allowed_origins: Vec::new(),
            allowed_headers: Vec::new(),
            allow_direct_keys: false,
        }
    }
}

/// The `server` section (our extension): listener lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServerConfig {
    /// After SIGTERM, how long in-flight requests and streams may take before the process
    /// exits anyway.
    #[serde(default = "ServerConfig::default_drain_timeout_seconds")]
    pub drain_timeout_seconds: u64,
    /// After SIGTERM, keep accepting connections for this long with `/ready` answering 503, so
    /// load balancers stop sending traffic before the listener closes. Under Kubernetes the
    /// pod's preStop sleep does this job and 0 is right.
    #[serde(default)]
    pub shutdown_delay_seconds: u64,
    /// A new connection must deliver its first request line and headers within this time, and a
    /// started request head must complete within it; otherwise the connection is closed.
    #[serde(default = "ServerConfig::default_header_read_timeout_seconds")]
    pub header_read_timeout_seconds: u64,
    /// Longest pause between two chunks of a request body while the gateway waits for it; a
    /// longer stall is answered with 408 and the connection closed.
    #[serde(default = "ServerConfig::default_body_read_timeout_seconds")]
    pub body_read_timeout_seconds: u64,
    /// A keep-alive connection with no request for this long is closed.
    #[serde(default = "ServerConfig::default_idle_timeout_seconds")]
    pub idle_timeout_seconds: u64,
    /// Open client connections at most; further ones are closed as soon as they are accepted.
    #[serde(default = "ServerConfig::default_max_connections")]
    pub max_connections: u32,
}

impl ServerConfig {
    /// Largest accepted `header_read_timeout_seconds`.
    pub const MAX_HEADER_READ_TIMEOUT_SECONDS: u64 = 300;
    /// Largest accepted `body_read_timeout_seconds`.
    pub const MAX_BODY_READ_TIMEOUT_SECONDS: u64 = 3600;
    /// Largest accepted `idle_timeout_seconds`.
    pub const MAX_IDLE_TIMEOUT_SECONDS: u64 = 3600;
    /// Largest accepted `max_connections`.
    pub const MAX_MAX_CONNECTIONS: u32 = 1_000_000;
    /// Largest accepted `drain_timeout_seconds` (an hour).
    pub const MAX_DRAIN_TIMEOUT_SECONDS: u64 = 3600;
    /// Largest accepted `shutdown_delay_seconds` (an hour).
    pub const MAX_SHUTDOWN_DELAY_SECONDS: u64 = 3600;

    fn default_drain_timeout_seconds() -> u64 {
        60
    }
    // Slow but honest clients send a request head in well under a second; slowloris ones are
    // cut off after 10 s.
    fn default_header_read_timeout_seconds() -> u64 {
        10
    }
    // Clients stream bodies from memory; 30 s without a byte is a dead or stalled client.
    fn default_body_read_timeout_seconds() -> u64 {
        30
    }
    // Above the 60 s idle timeout of common load balancers (AWS ALB, nginx upstream keep-alive
    // users), so the balancer, not the gateway, closes a shared idle connection first and never
    // sends a request into one the gateway is closing.
    fn default_idle_timeout_seconds() -> u64 {
        75
    }
    // Well under the usual 65536-descriptor limit of a container, leaving room for upstream,
    // store and cluster sockets.
    fn default_max_connections() -> u32 {
        10_000
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            drain_timeout_seconds: Self::default_drain_timeout_seconds(),
            shutdown_delay_seconds: 0,
            header_read_timeout_seconds: Self::default_header_read_timeout_seconds(),
            body_read_timeout_seconds: Self::default_body_read_timeout_seconds(),
            idle_timeout_seconds: Self::default_idle_timeout_seconds(),
            max_connections: Self::default_max_connections(),
        }
    }
}

pub(crate) fn default_true() -> bool {
    true
}
