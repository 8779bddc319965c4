//! `BifrostCluster.status`, written by the operator only.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the operator last saw.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BifrostClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Gateway pods that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Gateway pods passing `/ready`.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Cluster members a gateway reports (cluster mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<i32>,
    /// `HEALTHY`, `NOT HEALTHY` or `Unknown` as a gateway reports it (cluster mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_health: Option<String>,
    /// Label selector of the pods (for the scale subresource and HorizontalPodAutoscalers).
    #[serde(default)]
    pub selector: String,
    /// `Ready`, `Progressing` and `Degraded`, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The condition types the operator maintains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    /// Every desired pod is ready.
    Ready,
    /// A rollout or scale is under way.
    Progressing,
    /// Something needs a human: invalid config, failed apply, unhealthy cluster, crashing pods.
    Degraded,
}

impl ConditionType {
    /// The `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Progressing => "Progressing",
            ConditionType::Degraded => "Degraded",
        }
    }
}

impl BifrostClusterStatus {
    /// The condition of this type, if present.
    pub fn condition(&self, kind: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == kind.as_str())
    }
}
