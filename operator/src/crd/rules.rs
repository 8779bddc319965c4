//! CEL validation rules (`x-kubernetes-validations`) and the other schema adjustments of the CRD.
//!
//! Rules are data: each schema node's rules live in one list here and are attached by a
//! schemars transform, so the CRD, the docs and the tests read the same strings. The API server
//! applies schema defaults before it evaluates rules, so rules may rely on defaulted fields.

use schemars::Schema;
use serde_json::{json, Value};

/// One `x-kubernetes-validations` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelRule {
    /// The schema node the rule is attached to (`spec`, `spec.storage`, ...).
    pub scope: &'static str,
    /// The CEL expression; `self` is the node.
    pub rule: String,
    /// What `kubectl apply` prints when the rule fails.
    pub message: &'static str,
    /// Field the error points at, relative to the node.
    pub field_path: Option<&'static str>,
}

impl CelRule {
    fn new(scope: &'static str, rule: impl Into<String>, message: &'static str) -> Self {
        Self {
            scope,
            rule: rule.into(),
            message,
            field_path: None,
        }
    }

    fn at(mut self, field_path: &'static str) -> Self {
        self.field_path = Some(field_path);
        self
    }

    fn to_json(&self) -> Value {
        let mut rule = json!({"rule": self.rule, "message": self.message});
        if let Some(path) = self.field_path {
            rule["fieldPath"] = json!(path);
        }
        rule
    }
}

const AUTOSCALING_ON: &str = "(has(self.autoscaling) && self.autoscaling.enabled)";

/// Rules on `spec`. Rules only name camelCase fields of the spec: the API server escapes
/// underscores in property names (the gateway config's snake_case fields), so checks on
/// `spec.config` happen in the operator instead ([`crate::resources::validate_spec`]).
pub fn spec() -> Vec<CelRule> {
    vec![
        CelRule::new(
            "spec",
            "!self.cluster.enabled || self.storage.mode == 'postgres'",
            "cluster mode (cluster.enabled: true) needs storage.mode: postgres, because every replica must share durable state",
        )
        .at(".storage.mode"),
        CelRule::new(
            "spec",
            format!("self.storage.mode != 'sqlite' || (self.replicas <= 1 && !{AUTOSCALING_ON})"),
            "storage.mode: sqlite keeps state on one pod's volume, so it runs one replica without autoscaling; use storage.mode: postgres for more",
        )
        .at(".replicas"),
        CelRule::new(
            "spec",
            format!(
                "!has(self.podDisruptionBudget) || !self.podDisruptionBudget.enabled || !has(self.podDisruptionBudget.minAvailable) \
                 || self.podDisruptionBudget.minAvailable < ({AUTOSCALING_ON} ? self.autoscaling.minReplicas : self.replicas)"
            ),
            "podDisruptionBudget.minAvailable must be below the replica count (autoscaling.minReplicas when autoscaling), or no pod could ever be evicted and node drains would hang",
        )
        .at(".podDisruptionBudget.minAvailable"),
        CelRule::new(
            "spec",
            format!("!{AUTOSCALING_ON} || (has(self.resources) && has(self.resources.requests))"),
            "autoscaling on CPU/memory utilization needs resources.requests for the gateway container",
        )
        .at(".resources"),
        CelRule::new(
            "spec",
            "self.preStopSleepSeconds < self.terminationGracePeriodSeconds",
            "preStopSleepSeconds must be shorter than terminationGracePeriodSeconds, or pods are killed before they drain",
        )
        .at(".preStopSleepSeconds"),
    ]
}

/// Rules on `spec.storage`.
pub fn storage() -> Vec<CelRule> {
    vec![
        CelRule::new(
            "spec.storage",
            "self.mode != 'postgres' || has(self.postgres)",
            "storage.mode: postgres needs storage.postgres (host, user, database, passwordSecret)",
        )
        .at(".postgres"),
        CelRule::new(
            "spec.storage",
            "self.mode == oldSelf.mode",
            "storage.mode cannot change after creation (the StatefulSet's volumes are fixed); create a new BifrostCluster instead",
        )
        .at(".mode"),
    ]
}

/// Rules on `spec.cluster`.
pub fn cluster() -> Vec<CelRule> {
    vec![
        CelRule::new(
            "spec.cluster",
            "self.gossip.port != self.grpc.port",
            "cluster.gossip.port and cluster.grpc.port must differ",
        )
        .at(".grpc.port"),
        CelRule::new(
            "spec.cluster",
            "self.gossip.port != 8080 && self.grpc.port != 8080",
            "port 8080 is the gateway's HTTP port; choose other cluster.gossip.port and cluster.grpc.port values",
        ),
    ]
}

/// Rules on `spec.cluster.discovery`.
pub fn discovery() -> Vec<CelRule> {
    vec![
        CelRule::new(
            "spec.cluster.discovery",
            "!has(self.labelSelector) || size(self.labelSelector) > 0",
            "discovery.labelSelector must not be empty; omit it to select this resource's own pods",
        )
        .at(".labelSelector"),
        CelRule::new(
            "spec.cluster.discovery",
            "!has(self.labelSelector) || self.type == 'kubernetes'",
            "discovery.labelSelector applies only to discovery.type: kubernetes",
        )
        .at(".labelSelector"),
        CelRule::new(
            "spec.cluster.discovery",
            "!has(self.dnsNames) || size(self.dnsNames) == 0 || self.type == 'dns'",
            "discovery.dnsNames applies only to discovery.type: dns",
        )
        .at(".dnsNames"),
    ]
}

/// Rules on `spec.autoscaling`.
pub fn autoscaling() -> Vec<CelRule> {
    vec![CelRule::new(
        "spec.autoscaling",
        "self.minReplicas <= self.maxReplicas",
        "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
    )
    .at(".minReplicas")]
}

/// Rules on `spec.podDisruptionBudget`.
pub fn pdb() -> Vec<CelRule> {
    vec![CelRule::new(
        "spec.podDisruptionBudget",
        "!(has(self.minAvailable) && has(self.maxUnavailable))",
        "set podDisruptionBudget.minAvailable or podDisruptionBudget.maxUnavailable, not both",
    )]
}

/// Rules on `spec.serviceAccount`.
pub fn service_account() -> Vec<CelRule> {
    vec![CelRule::new(
        "spec.serviceAccount",
        "self.create || has(self.name)",
        "serviceAccount.name is required when serviceAccount.create is false",
    )
    .at(".name")]
}

/// Every rule of the CRD.
pub fn all_rules() -> Vec<CelRule> {
    [
        spec(),
        storage(),
        cluster(),
        discovery(),
        autoscaling(),
        pdb(),
        service_account(),
    ]
    .concat()
}

fn attach(schema: &mut Schema, rules: Vec<CelRule>) {
    let rules: Vec<Value> = rules.iter().map(CelRule::to_json).collect();
    schema.insert("x-kubernetes-validations".to_string(), Value::Array(rules));
}

pub(super) fn spec_rules(schema: &mut Schema) {
    attach(schema, spec());
}
pub(super) fn storage_rules(schema: &mut Schema) {
    attach(schema, storage());
}
pub(super) fn cluster_rules(schema: &mut Schema) {
    attach(schema, cluster());
}
pub(super) fn discovery_rules(schema: &mut Schema) {
    attach(schema, discovery());
}
pub(super) fn autoscaling_rules(schema: &mut Schema) {
    attach(schema, autoscaling());
}
pub(super) fn pdb_rules(schema: &mut Schema) {
    attach(schema, pdb());
}
pub(super) fn service_account_rules(schema: &mut Schema) {
    attach(schema, service_account());
}

/// The gateway config as the CRD embeds it: without defaults (the gateway applies its own, so
/// stored objects do not freeze today's defaults), without the `$schema` editor hint, and
/// without unsigned integer formats Kubernetes does not know.
pub(super) fn embedded_config_schema(schema: &mut Schema) {
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        properties.remove("$schema");
    }
    let mut value = schema.as_value().clone();
    strip_defaults_and_formats(&mut value);
    if let Ok(stripped) = Schema::try_from(value) {
        *schema = stripped;
    }
}

fn strip_defaults_and_formats(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("default");
            let unsigned = map
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| f.starts_with("uint"));
            if unsigned {
                map.remove("format");
            }
            // Property names are data, not keywords: only recurse into their schemas.
            for (key, child) in map.iter_mut() {
                if key == "properties" {
                    if let Value::Object(props) = child {
                        props.values_mut().for_each(strip_defaults_and_formats);
                    }
                } else {
                    strip_defaults_and_formats(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_defaults_and_formats),
        _ => {}
    }
}
