//! The gateway's configuration: one typed tree that reads Bifrost-style `config.json` (or the
//! same document in YAML).
//!
//! This module has no server dependencies: the operator embeds these types in its CRD so that
//! `kubectl apply` validates gateway config with the schema the gateway parses.

pub mod catalog;
mod client;
mod cluster;
mod compat;
mod error;
pub mod explain;
mod governance;
pub mod load;
mod peers;
mod period;
mod providers;
mod store;
mod typed;
mod validate;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use client::{ClientConfig, ServerConfig};
pub use cluster::{
    ClusterConfig, DiscoveryConfig, DiscoveryType, GossipConfig, GossipTuning, GrpcConfig, GrpcTls,
};
pub use error::{ConfigError, FieldError};
pub use governance::{
    AuthConfig, BudgetConfig, ClusterLimitMode, CustomerConfig, GovernanceConfig, ModelPrice,
    RateLimitConfig, StalePolicy, TeamConfig, VirtualKeyConfig, VirtualKeyProviderConfig,
};
pub use load::{parse_config, LoadedConfig};
pub use peers::{PeerEndpoint, PeersFile, PEERS_FILE_NAME, PEERS_FILE_VERSION};
pub use period::Period;
pub use providers::{
    AzureKeyConfig, BedrockKeyConfig, CircuitBreakerConfig, ConcurrencyConfig,
    CustomProviderConfig, KeyConfig, NetworkConfig, ProviderConfig, ProviderKind, ProxyConfig,
    ProxyType, SelfHostedKey, ServiceAccountKey, VertexCredentials, VertexKeyConfig,
    GOOGLE_APPLICATION_CREDENTIALS, SERVED_REQUEST_TYPES,
};
pub use store::{ConfigStoreConfig, StoreConnectionConfig, StoreType};
pub use validate::parse_cidr;

/// The root of a gateway config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GatewayConfig {
    /// JSON-schema hint for editors; ignored by the gateway.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Bifrost's allow-list semantics for this file: `2` (the default, Bifrost 1.5 and later):
    /// an empty or missing `models`, `provider_configs`, `allowed_models` or `key_ids` allows
    /// nothing and `["*"]` everything; `1` (Bifrost 1.4): an empty one allows everything. The
    /// admin API always uses `2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2))]
    pub version: Option<u8>,
    /// Key that encrypts secrets at rest (`env.NAME` allowed; env `BIFROST_ENCRYPTION_KEY`
    /// overrides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<String>,
    /// Process-wide request handling settings.
    #[serde(default)]
    pub client: ClientConfig,
    /// Upstream providers by name (`openai`, `anthropic`, or any custom name with a `base_url`).
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Where durable state lives.
    #[serde(default)]
    pub config_store: ConfigStoreConfig,
    /// Cluster mode: gossip membership, discovery and shared counters.
    #[serde(default)]
    pub cluster_config: ClusterConfig,
    /// Virtual keys, teams, customers, budgets, rate limits and admin auth.
    #[serde(default)]
    pub governance: GovernanceConfig,
    /// Listener lifecycle settings (not part of Bifrost's format).
    #[serde(default)]
    pub server: ServerConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_schema_describes_bifrost_field_names() {
        let schema = serde_json::to_value(schemars::schema_for!(GatewayConfig)).expect("schema");
        let text = schema.to_string();
        for field in [
            "providers",
            "network_config",
            "default_request_timeout_in_seconds",
            "retry_backoff_initial_ms",
            "enforce_auth_on_inference",
            "cluster_config",
            "k8s_label_selector",
        ] {
            assert!(text.contains(field), "schema lacks {field}");
        }
    }
}
