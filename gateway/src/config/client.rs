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
}

impl ServerConfig {
    fn default_drain_timeout_seconds() -> u64 {
        60
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            drain_timeout_seconds: Self::default_drain_timeout_seconds(),
            shutdown_delay_seconds: 0,
        }
    }
}

pub(crate) fn default_true() -> bool {
    true
}
