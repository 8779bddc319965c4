//! The nested parts of `BifrostClusterSpec`.

use std::collections::BTreeMap;

use bifrost_gateway::config::{DiscoveryType, GossipConfig, GossipTuning, GrpcConfig};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rules;

/// A key inside a Secret in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// Where the gateways keep durable state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = rules::storage_rules)]
pub struct StorageSpec {
    /// `sqlite` (one replica, a volume per pod) or `postgres` (shared; required for cluster
    /// mode). Cannot be changed after creation.
    #[serde(default)]
    pub mode: StorageMode,
    /// SQLite volume settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<SqliteSpec>,
    /// PostgreSQL connection (required with `mode: postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSpec>,
}

/// Storage backends.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StorageMode {
    /// An SQLite file on a PersistentVolume per pod.
    #[default]
    Sqlite,
    /// A PostgreSQL server shared by every replica.
    Postgres,
}

/// The PersistentVolumeClaim that holds the SQLite file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqliteSpec {
    /// Volume size (default `1Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Quantity>,
    /// StorageClass (default: the cluster's default class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// How to reach PostgreSQL.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// Server host name.
    #[schemars(length(min = 1))]
    pub host: String,
    /// Server port.
    #[serde(default = "default_postgres_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// User name.
    #[schemars(length(min = 1))]
    pub user: String,
    /// Database name.
    #[schemars(length(min = 1))]
    pub database: String,
    /// TLS mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<SslMode>,
    /// Secret key holding the password (injected as `BIFROST_PG_PASSWORD`).
    pub password_secret: SecretKeyRef,
}

fn default_postgres_port() -> i32 {
    5432
}

/// PostgreSQL `sslmode` values.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS only if the server insists.
    Allow,
    /// TLS when the server offers it.
    Prefer,
    /// TLS without certificate checks.
    Require,
    /// TLS with a CA check.
    VerifyCa,
    /// TLS with CA and host name checks.
    VerifyFull,
}

impl SslMode {
    /// The value PostgreSQL (and the gateway config) expects.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Cluster mode: the gateways gossip to share rate limits, budgets and config versions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = rules::cluster_rules)]
pub struct ClusterSpec {
    /// Turn cluster mode on (needs `storage.mode: postgres`).
    #[serde(default)]
    pub enabled: bool,
    /// Region of these gateways (strict rate limiting prefers owners in the same region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Gossip (UDP) settings.
    #[serde(default)]
    pub gossip: GossipSpec,
    /// gRPC between gateways.
    #[serde(default)]
    pub grpc: GrpcSpec,
    /// How gateways find each other.
    #[serde(default)]
    pub discovery: DiscoverySpec,
    /// CIDRs that peers' addresses must fall in (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_address_space: Vec<String>,
    /// Secret key holding the gossip encryption key (`BIFROST_CLUSTER_KEY`). When unset the
    /// operator generates a Secret `<name>-gossip-key` once and keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gossip_key_secret: Option<SecretKeyRef>,
}

/// Gossip transport and failure detection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GossipSpec {
    /// UDP port.
    #[serde(default = "default_gossip_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Silence after which a peer is suspected.
    #[serde(default = "default_gossip_timeout_seconds")]
    #[schemars(range(min = 1))]
    pub timeout_seconds: i64,
    /// Consecutive good checks before a peer counts as healthy.
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 1))]
    pub success_threshold: i32,
    /// Consecutive bad checks before a peer counts as unhealthy.
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 1))]
    pub failure_threshold: i32,
}

impl Default for GossipSpec {
    fn default() -> Self {
        Self {
            port: default_gossip_port(),
            timeout_seconds: default_gossip_timeout_seconds(),
            success_threshold: default_threshold(),
            failure_threshold: default_threshold(),
        }
    }
}

// The gateway's own defaults, so a spec that leaves them out means what the gateway would.
fn default_gossip_port() -> i32 {
    i32::from(GossipConfig::DEFAULT_PORT)
}
fn default_gossip_timeout_seconds() -> i64 {
    i64::try_from(GossipTuning::DEFAULT_TIMEOUT_SECONDS)
        .expect("the gateway's default gossip timeout fits in an i64")
}
fn default_threshold() -> i32 {
    i32::try_from(GossipTuning::DEFAULT_THRESHOLD)
        .expect("the gateway's default gossip threshold fits in an i32")
}

/// Point-to-point gRPC between gateways.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct GrpcSpec {
    /// TCP port.
    #[serde(default = "default_grpc_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

impl Default for GrpcSpec {
    fn default() -> Self {
        Self {
            port: default_grpc_port(),
        }
    }
}

fn default_grpc_port() -> i32 {
    i32::from(GrpcConfig::DEFAULT_PORT)
}

/// Peer discovery. `operator` (default): the operator writes the pods into a mounted peers
/// file. `kubernetes`: gateways list pods themselves (the operator adds a Role). `dns`: the
/// headless Service's records. Other methods take their settings from
/// `config.cluster_config.discovery`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = rules::discovery_rules)]
pub struct DiscoverySpec {
    /// Discovery method.
    #[serde(default = "default_discovery_type", rename = "type")]
    pub discovery_type: DiscoveryType,
    /// `kubernetes`: label selector for the gateway pods (default: this resource's pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// `dns`: names to resolve (default: the headless Service).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
}

impl Default for DiscoverySpec {
    fn default() -> Self {
        Self {
            discovery_type: default_discovery_type(),
            label_selector: None,
            dns_names: Vec::new(),
        }
    }
}

fn default_discovery_type() -> DiscoveryType {
    DiscoveryType::Operator
}

/// HorizontalPodAutoscaler settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = rules::autoscaling_rules)]
pub struct AutoscalingSpec {
    /// Create the autoscaler (and stop setting the StatefulSet's replicas).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Lower bound.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Upper bound.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Average CPU use, in percent of requests (default 80 when no target is set).
    #[serde(
        default,
        rename = "targetCPUUtilizationPercentage",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1))]
    pub target_cpu_utilization_percentage: Option<i32>,
    /// Average memory use, in percent of requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_memory_utilization_percentage: Option<i32>,
    /// Scale-up and scale-down behaviour, as in `autoscaling/v2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HorizontalPodAutoscalerBehavior>,
}

fn default_true() -> bool {
    true
}
fn default_min_replicas() -> i32 {
    1
}

/// PodDisruptionBudget settings; with neither bound set, `maxUnavailable: 1`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = rules::pdb_rules)]
pub struct PodDisruptionBudgetSpec {
    /// Create the budget.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Pods that must stay available during voluntary disruptions (below the replica count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_available: Option<i32>,
    /// Pods that may be unavailable during voluntary disruptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_unavailable: Option<i32>,
}

/// The client Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type.
    #[serde(default, rename = "type")]
    pub service_type: ServiceType,
    /// Port clients connect to (forwarded to the gateway's 8080).
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Annotations (e.g. for a cloud load balancer).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Load balancer implementation (`type: LoadBalancer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            service_type: ServiceType::default(),
            port: default_service_port(),
            annotations: BTreeMap::new(),
            load_balancer_class: None,
        }
    }
}

fn default_service_port() -> i32 {
    8080
}

/// Kubernetes Service types.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster.
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// Also through a cloud load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The value Kubernetes expects.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// The pods' ServiceAccount.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = rules::service_account_rules)]
pub struct ServiceAccountSpec {
    /// Create (and own) the ServiceAccount; otherwise use an existing one named `name`.
    #[serde(default = "default_true")]
    pub create: bool,
    /// Name (default: the resource's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Annotations on a created ServiceAccount (e.g. cloud workload identity).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for ServiceAccountSpec {
    fn default() -> Self {
        Self {
            create: true,
            name: None,
            annotations: BTreeMap::new(),
        }
    }
}
