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
}

impl ClientConfig {
    fn default_initial_pool_size() -> u32 {
        300
    }
    fn default_max_request_body_size_mb() -> u32 {
        100
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
