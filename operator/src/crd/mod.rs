//! The `BifrostCluster` custom resource (`bifrost.dev/v1alpha1`): spec, status and the CRD
//! generated from them.
//!
//! The gateway's own config type is embedded as `spec.config`, so `kubectl apply` checks gateway
//! config against the schema the gateway parses. CEL rules ([`rules`]) reject combinations the
//! operator cannot build.

mod rules;
mod spec;
mod status;

use std::collections::BTreeMap;

use bifrost_gateway::config::GatewayConfig;
use k8s_openapi::api::core::v1::{
    Affinity, EnvFromSource, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use rules::{all_rules, CelRule};
pub use spec::{
    AutoscalingSpec, ClusterSpec, DiscoverySpec, GossipSpec, GrpcSpec, PodDisruptionBudgetSpec,
    PostgresSpec, SecretKeyRef, ServiceAccountSpec, ServiceSpec, ServiceType, SqliteSpec, SslMode,
    StorageMode, StorageSpec,
};
pub use status::{BifrostClusterStatus, ConditionType};

/// Image used when `spec.image` is not set: the gateway built from the same release as this
/// operator.
pub const DEFAULT_IMAGE: &str = concat!(
    "ghcr.io/bifrost-dev/bifrost-gateway:",
    env!("CARGO_PKG_VERSION")
);
/// The gateway's HTTP port inside the pod (API, health, readiness, metrics).
pub const HTTP_PORT: i32 = 8080;

/// Desired state of one Bifrost gateway deployment.
// Several printer columns share a `type_`; clippy reads them as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "bifrost.dev",
    version = "v1alpha1",
    kind = "BifrostCluster",
    plural = "bifrostclusters",
    namespaced,
    shortname = "bfc",
    category = "bifrost",
    status = "BifrostClusterStatus",
    derive = "PartialEq",
    doc = "A Bifrost LLM gateway deployment: one StatefulSet of gateways, optionally gossiping as a cluster.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Gateway pods"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Gateway pods passing /ready"
    ),
    printcolumn(
        name = "Members",
        type_ = "integer",
        json_path = ".status.members",
        description = "Cluster members seen by a gateway"
    ),
    printcolumn(
        name = "Health",
        type_ = "string",
        json_path = ".status.clusterHealth",
        description = "Cluster health reported by a gateway"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = rules::spec_rules)]
pub struct BifrostClusterSpec {
    /// Gateway container image (default: the gateway released with this operator).
    #[serde(default = "default_image")]
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never` (Kubernetes' default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Secrets for pulling the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Gateway pods; ignored while autoscaling is enabled (the HorizontalPodAutoscaler owns it).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// CPU and memory for the gateway container (requests are needed for autoscaling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Pod affinity; when unset, pods prefer to run on different nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Spread constraints for the pods (e.g. across zones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Priority class of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Extra annotations on the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
    /// Extra labels on the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// Extra environment variables for the gateway, e.g. provider keys that `spec.config` refers
    /// to as `env.OPENAI_API_KEY`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Environment variables from whole Secrets or ConfigMaps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// Gateway log level or filter (`BIFROST_LOG_LEVEL`), e.g. `info` or `bifrost=debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Where durable state lives; overrides `config.config_store`.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Secret holding the key that encrypts provider secrets at rest
    /// (`BIFROST_ENCRYPTION_KEY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key_secret: Option<SecretKeyRef>,
    /// Cluster mode; overrides the matching fields of `config.cluster_config`.
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// HorizontalPodAutoscaler for the gateway pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// PodDisruptionBudget for the gateway pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_disruption_budget: Option<PodDisruptionBudgetSpec>,
    /// Time a pod gets to finish in-flight requests after SIGTERM (preStop sleep included).
    #[serde(default = "default_termination_grace_period_seconds")]
    #[schemars(range(min = 1))]
    pub termination_grace_period_seconds: i64,
    /// Sleep before SIGTERM so load balancers stop sending traffic first.
    #[serde(default = "default_pre_stop_sleep_seconds")]
    #[schemars(range(min = 0))]
    pub pre_stop_sleep_seconds: i64,
    /// The client Service in front of the gateways.
    #[serde(default)]
    pub service: ServiceSpec,
    /// The pods' ServiceAccount.
    #[serde(default)]
    pub service_account: ServiceAccountSpec,
    /// The gateway config (same fields as the gateway's `config.json`). The operator fills
    /// `config_store` from `storage` and the cluster fields of `cluster_config` from `cluster`.
    #[serde(default)]
    #[schemars(transform = rules::embedded_config_schema)]
    pub config: GatewayConfig,
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_string()
}
fn default_replicas() -> i32 {
    1
}
fn default_termination_grace_period_seconds() -> i64 {
    90
}
fn default_pre_stop_sleep_seconds() -> i64 {
    20
}

impl BifrostClusterSpec {
    /// Whether a HorizontalPodAutoscaler owns the replica count.
    pub fn autoscaling_enabled(&self) -> bool {
        self.autoscaling.as_ref().is_some_and(|a| a.enabled)
    }
}

/// The CRD exactly as `make crds` writes it.
pub fn crd() -> CustomResourceDefinition {
    BifrostCluster::crd()
}

/// The CRD as YAML (what `bifrost-operator crd` prints and `crds/bifrostcluster.yaml` holds).
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let yaml = serde_yaml::to_string(&crd())?;
    Ok(format!(
        "# Generated by `bifrost-operator crd` (make crds). Do not edit.\n{yaml}"
    ))
}

#[cfg(test)]
mod tests;
