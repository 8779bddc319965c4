use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `cluster_config` section: several replicas sharing limits and budgets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClusterConfig {
    /// Turn cluster mode on (requires a PostgreSQL store and `peers` or `discovery`).
    #[serde(default)]
    pub enabled: bool,
    /// This node's region; strict rate limiting prefers owners in the same region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// This node's name in the cluster (default: env `POD_NAME`, then the hostname).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Static gossip seeds, `host:port`.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Gossip membership over UDP.
    #[serde(default)]
    pub gossip: GossipConfig,
    /// Point-to-point gRPC between nodes.
    #[serde(default)]
    pub grpc: GrpcConfig,
    /// How nodes find each other.
    #[serde(default)]
    pub discovery: DiscoveryConfig,
}

/// Gossip transport settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GossipConfig {
    /// UDP port for gossip.
    #[serde(default = "GossipConfig::default_port")]
    pub port: u16,
    /// Shared cluster key that authenticates and encrypts gossip (`env.NAME` allowed; env
    /// `BIFROST_CLUSTER_KEY` overrides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<String>,
    /// Failure detection.
    #[serde(default)]
    pub config: GossipTuning,
}

impl GossipConfig {
    /// Default UDP gossip port (`gossip.port`).
    pub const DEFAULT_PORT: u16 = 10101;

    fn default_port() -> u16 {
        Self::DEFAULT_PORT
    }
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            port: Self::default_port(),
            encryption_key: None,
            config: GossipTuning::default(),
        }
    }
}

/// Failure-detection thresholds for peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GossipTuning {
    /// Silence after which a peer is suspected.
    #[serde(default = "GossipTuning::default_timeout")]
    pub timeout_seconds: u64,
    /// Consecutive good checks before a peer counts as healthy.
    #[serde(default = "GossipTuning::default_threshold")]
    pub success_threshold: u32,
    /// Consecutive bad checks before a peer counts as unhealthy.
    #[serde(default = "GossipTuning::default_threshold")]
    pub failure_threshold: u32,
}

impl GossipTuning {
    /// Default `timeout_seconds`.
    pub const DEFAULT_TIMEOUT_SECONDS: u64 = 10;
    /// Default `success_threshold` and `failure_threshold`.
    pub const DEFAULT_THRESHOLD: u32 = 3;
    /// Largest accepted `timeout_seconds` (an hour).
    pub const MAX_TIMEOUT_SECONDS: u64 = 3600;
    /// Largest accepted `success_threshold` and `failure_threshold`.
    pub const MAX_THRESHOLD: u32 = 1000;

    fn default_timeout() -> u64 {
        Self::DEFAULT_TIMEOUT_SECONDS
    }
    fn default_threshold() -> u32 {
        Self::DEFAULT_THRESHOLD
    }
}

impl Default for GossipTuning {
    fn default() -> Self {
        Self {
            timeout_seconds: Self::default_timeout(),
            success_threshold: Self::default_threshold(),
            failure_threshold: Self::default_threshold(),
        }
    }
}

/// Point-to-point gRPC settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GrpcConfig {
    /// TCP port for gRPC.
    #[serde(default = "GrpcConfig::default_port")]
    pub port: u16,
    /// Serve and call peers over TLS (default: plaintext, authenticated with the cluster key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<GrpcTls>,
}

impl GrpcConfig {
    /// Default TCP port for gRPC between nodes (`grpc.port`).
    pub const DEFAULT_PORT: u16 = 10102;

    fn default_port() -> u16 {
        Self::DEFAULT_PORT
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            port: Self::default_port(),
            tls: None,
        }
    }
}

/// TLS between nodes: each node serves `cert_file`/`key_file` and checks its peers' certificates
/// against `ca_file`. Peers are dialled by IP, so node certificates need the pod IP (or the
/// address peers use) as a subject alternative name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GrpcTls {
    /// PEM certificate chain this node serves.
    pub cert_file: String,
    /// PEM private key of `cert_file`.
    pub key_file: String,
    /// PEM CA certificate(s) that peers' certificates must chain to.
    pub ca_file: String,
}

/// Peer discovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DiscoveryConfig {
    /// Turn discovery on.
    #[serde(default)]
    pub enabled: bool,
    /// The discovery method.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub discovery_type: Option<DiscoveryType>,
    /// Cluster identity; also the service name registered with Consul/etcd.
    #[serde(default = "DiscoveryConfig::default_service_name")]
    pub service_name: String,
    /// `operator`: path of the peers file the operator keeps current.
    #[serde(default = "DiscoveryConfig::default_peers_file")]
    pub peers_file: String,
    /// `kubernetes`: namespace to list pods in (default: env `POD_NAMESPACE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_namespace: Option<String>,
    /// `kubernetes`: label selector for the gateway's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_label_selector: Option<String>,
    /// `dns`: names to resolve (A/AAAA, or SRV for `_service._proto.name`).
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// Port appended to discovered addresses that carry none (default: the gossip port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_port: Option<u16>,
    /// `udp`: port for broadcast beacons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_broadcast_port: Option<u16>,
    /// `consul`: agent address, `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consul_address: Option<String>,
    /// `etcd`: endpoints, `http://host:port`.
    #[serde(default)]
    pub etcd_endpoints: Vec<String>,
    /// `mdns`: service type.
    #[serde(default = "DiscoveryConfig::default_mdns_service")]
    pub mdns_service: String,
    /// CIDRs that discovered addresses and incoming gossip must fall in (empty: any).
    #[serde(default)]
    pub allowed_address_space: Vec<String>,
    /// How often discovery runs again.
    #[serde(default = "DiscoveryConfig::default_refresh_interval")]
    pub refresh_interval_seconds: u64,
}

impl DiscoveryConfig {
    /// Default `refresh_interval_seconds`.
    pub const DEFAULT_REFRESH_INTERVAL_SECONDS: u64 = 10;
    /// Largest accepted `refresh_interval_seconds` (an hour).
    pub const MAX_REFRESH_INTERVAL_SECONDS: u64 = 3600;

    fn default_service_name() -> String {
        "bifrost".to_string()
    }
    fn default_peers_file() -> String {
        "/etc/bifrost/peers/peers.json".to_string()
    }
    fn default_mdns_service() -> String {
        "_bifrost._tcp".to_string()
    }
    fn default_refresh_interval() -> u64 {
        Self::DEFAULT_REFRESH_INTERVAL_SECONDS
    }
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            discovery_type: None,
            service_name: Self::default_service_name(),
            peers_file: Self::default_peers_file(),
            k8s_namespace: None,
            k8s_label_selector: None,
            dns_names: Vec::new(),
            bind_port: None,
            udp_broadcast_port: None,
            consul_address: None,
            etcd_endpoints: Vec::new(),
            mdns_service: Self::default_mdns_service(),
            allowed_address_space: Vec::new(),
            refresh_interval_seconds: Self::default_refresh_interval(),
        }
    }
}

/// Discovery methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryType {
    /// A peers file kept current by the operator.
    Operator,
    /// Pods listed through the Kubernetes API.
    Kubernetes,
    /// DNS A/AAAA/SRV records.
    Dns,
    /// Consul's catalog of healthy instances.
    Consul,
    /// Leased keys under `/services/<service_name>/` in etcd.
    Etcd,
    /// UDP broadcast beacons.
    Udp,
    /// Multicast DNS.
    Mdns,
}
