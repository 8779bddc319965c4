//! The CRD as the API server sees it: the YAML in the repo matches the types, the samples pass
//! every schema check and CEL rule, and each forbidden spec is rejected with its message.

use std::path::PathBuf;

use kube_cel::Validator;
use serde_json::{json, Value};

use super::*;
use crate::instance::Instance;

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn schema() -> Value {
    let crd = serde_json::to_value(crd()).expect("CRD serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Problems the API server would report for `object`: out-of-range values and failed CEL rules
/// (defaults applied first, as the API server does).
fn rejections(object: &Value, old: Option<&Value>) -> Vec<String> {
    let schema = schema();
    let mut problems = Vec::new();
    check_ranges(&schema, object, "", &mut problems);
    if let Err(errors) = Validator::new().validate(&schema, object, old) {
        problems.extend(
            errors
                .iter()
                .map(|e| format!("{}: {}", e.field_path, e.message)),
        );
    }
    problems
}

/// `minimum`/`maximum`/`minLength` checks (the part of OpenAPI validation the rules rely on).
fn check_ranges(schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    if let Some(n) = value.as_f64() {
        if schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|min| n < min)
        {
            problems.push(format!("{path}: below minimum"));
        }
        if schema
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|max| n > max)
        {
            problems.push(format!("{path}: above maximum"));
        }
    }
    if let (Some(text), Some(min)) = (
        value.as_str(),
        schema.get("minLength").and_then(Value::as_u64),
    ) {
        if (text.len() as u64) < min {
            problems.push(format!("{path}: shorter than {min}"));
        }
    }
    match value {
        Value::Object(fields) => {
            for (key, child) in fields {
                let child_schema = schema
                    .get("properties")
                    .and_then(|p| p.get(key))
                    .or_else(|| schema.get("additionalProperties"));
                if let Some(child_schema) = child_schema {
                    check_ranges(child_schema, child, &format!("{path}.{key}"), problems);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_ranges(item_schema, item, &format!("{path}[{i}]"), problems);
                }
            }
        }
        _ => {}
    }
}

fn resource(spec: Value) -> Value {
    json!({
        "apiVersion": "bifrost.dev/v1alpha1",
        "kind": "BifrostCluster",
        "metadata": {"name": "gw", "namespace": "prod"},
        "spec": spec,
    })
}

fn postgres() -> Value {
    json!({"mode": "postgres", "postgres": {"host": "pg", "user": "u", "database": "d",
           "passwordSecret": {"name": "pg", "key": "password"}}})
}

/// Assert `spec` is rejected and one problem mentions `expected`.
fn assert_rejected(spec: Value, expected: &str) {
    let problems = rejections(&resource(spec.clone()), None);
    assert!(
        problems.iter().any(|p| p.contains(expected)),
        "spec {spec} should be rejected with \"{expected}\", got {problems:?}"
    );
}

fn samples() -> Vec<(String, Value)> {
    let dir = repo_file("config/samples");
    let mut samples: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{} readable: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("sample readable");
            let value: Value =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.display().to_string(), value)
        })
        .collect();
    samples.sort_by(|a, b| a.0.cmp(&b.0));
    samples
}

#[test]
fn crd_files_match_the_rust_types() {
    let expected = crd_yaml().expect("CRD renders");
    for path in [
        "crds/bifrostcluster.yaml",
        "charts/bifrost-operator/crds/bifrostcluster.yaml",
    ] {
        let file = repo_file(path);
        let found = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            found == expected,
            "{path} is out of date with the BifrostCluster types; run `make crds` and commit the result"
        );
    }
}

#[test]
fn crd_names_scope_subresources_and_columns() {
    let crd = crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("bifrostclusters.bifrost.dev")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["bfc".to_string()]));
    assert_eq!(crd.spec.names.categories, Some(vec!["bifrost".to_string()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    let subresources = version.subresources.as_ref().expect("subresources");
    assert!(subresources.status.is_some());
    let scale = subresources.scale.as_ref().expect("scale");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Replicas", "Ready", "Members", "Health", "Age"]);
}

#[test]
fn every_rule_is_in_the_crd() {
    let text = serde_json::to_string(&crd()).expect("json");
    for rule in all_rules() {
        let encoded = serde_json::to_string(&rule.rule).expect("json");
        assert!(text.contains(&encoded), "rule missing: {}", rule.rule);
    }
}

#[test]
fn embedded_gateway_config_has_no_defaults_and_no_schema_hint() {
    let schema = schema();
    let config = &schema["properties"]["spec"]["properties"]["config"];
    assert!(config["properties"].get("providers").is_some());
    assert!(config["properties"].get("$schema").is_none());
    assert!(!config.to_string().contains("\"default\""));
    assert!(!config.to_string().contains("uint"));
}

#[test]
fn the_samples_pass_every_rule_and_build_valid_children() {
    let samples = samples();
    assert!(
        samples.len() >= 3,
        "expected the three samples, found {}",
        samples.len()
    );
    for (path, sample) in samples {
        let problems = rejections(&sample, None);
        assert!(problems.is_empty(), "{path}: {problems:?}");
        let mut typed: BifrostCluster =
            serde_json::from_value(sample).unwrap_or_else(|e| panic!("{path}: {e}"));
        typed.metadata.namespace = Some("prod".into());
        typed.metadata.uid = Some("uid".into());
        let instance = Instance::new(&typed).expect("instance");
        crate::resources::desired(&instance).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

#[test]
fn an_empty_spec_is_a_valid_single_node() {
    assert_eq!(rejections(&resource(json!({})), None), Vec::<String>::new());
}

#[test]
fn cluster_mode_requires_postgres() {
    assert_rejected(
        json!({"cluster": {"enabled": true}}),
        "needs storage.mode: postgres",
    );
    let ok = resource(json!({"cluster": {"enabled": true}, "storage": postgres(), "replicas": 3}));
    assert_eq!(rejections(&ok, None), Vec::<String>::new());
}

#[test]
fn postgres_mode_requires_connection_details() {
    assert_rejected(
        json!({"storage": {"mode": "postgres"}}),
        "needs storage.postgres",
    );
}

#[test]
fn sqlite_runs_a_single_replica_without_autoscaling() {
    assert_rejected(
        json!({"replicas": 3}),
        "storage.mode: sqlite keeps state on one pod",
    );
    assert_rejected(
        json!({"autoscaling": {"maxReplicas": 3}, "resources": {"requests": {"cpu": "1"}}}),
        "storage.mode: sqlite keeps state on one pod",
    );
}

#[test]
fn autoscaling_min_must_not_exceed_max() {
    assert_rejected(
        json!({"storage": postgres(), "autoscaling": {"minReplicas": 5, "maxReplicas": 3},
               "resources": {"requests": {"cpu": "1"}}}),
        "minReplicas must not exceed autoscaling.maxReplicas",
    );
}

#[test]
fn autoscaling_needs_resource_requests() {
    assert_rejected(
        json!({"storage": postgres(), "autoscaling": {"minReplicas": 2, "maxReplicas": 3}}),
        "needs resources.requests",
    );
}

#[test]
fn pdb_min_available_must_stay_below_the_replica_count() {
    assert_rejected(
        json!({"storage": postgres(), "replicas": 3, "podDisruptionBudget": {"minAvailable": 3}}),
        "minAvailable must be below the replica count",
    );
    assert_rejected(
        json!({"storage": postgres(), "replicas": 10, "podDisruptionBudget": {"minAvailable": 3},
               "autoscaling": {"minReplicas": 3, "maxReplicas": 10}, "resources": {"requests": {"cpu": "1"}}}),
        "minAvailable must be below the replica count",
    );
    let ok = resource(
        json!({"storage": postgres(), "replicas": 3, "podDisruptionBudget": {"minAvailable": 2}}),
    );
    assert_eq!(rejections(&ok, None), Vec::<String>::new());
}

#[test]
fn pdb_takes_one_bound_only() {
    assert_rejected(
        json!({"storage": postgres(), "replicas": 3,
               "podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}),
        "not both",
    );
}

#[test]
fn kubernetes_discovery_label_selector_must_not_be_empty() {
    let spec = |selector: &str| {
        json!({"storage": postgres(), "replicas": 3, "cluster": {"enabled": true,
               "discovery": {"type": "kubernetes", "labelSelector": selector}}})
    };
    assert_rejected(spec(""), "labelSelector must not be empty");
    assert_eq!(
        rejections(&resource(spec("team=llm")), None),
        Vec::<String>::new()
    );
    let defaulted = json!({"storage": postgres(), "replicas": 3,
                           "cluster": {"enabled": true, "discovery": {"type": "kubernetes"}}});
    assert_eq!(rejections(&resource(defaulted), None), Vec::<String>::new());
}

#[test]
fn discovery_settings_must_match_the_method() {
    assert_rejected(
        json!({"storage": postgres(), "cluster": {"enabled": true, "discovery": {"labelSelector": "a=b"}}}),
        "applies only to discovery.type: kubernetes",
    );
    assert_rejected(
        json!({"storage": postgres(), "cluster": {"enabled": true, "discovery": {"dnsNames": ["x"]}}}),
        "applies only to discovery.type: dns",
    );
}

#[test]
fn ports_must_be_in_range_and_distinct() {
    assert_rejected(
        json!({"cluster": {"gossip": {"port": 70000}}}),
        "cluster.gossip.port: above maximum",
    );
    assert_rejected(
        json!({"cluster": {"grpc": {"port": 0}}}),
        "cluster.grpc.port: below minimum",
    );
    assert_rejected(
        json!({"service": {"port": 0}}),
        "service.port: below minimum",
    );
    assert_rejected(
        json!({"storage": postgres(), "cluster": {"gossip": {"port": 9000}, "grpc": {"port": 9000}}}),
        "must differ",
    );
    assert_rejected(
        json!({"cluster": {"grpc": {"port": 8080}}}),
        "8080 is the gateway's HTTP port",
    );
}

#[test]
fn pre_stop_sleep_must_be_shorter_than_the_grace_period() {
    assert_rejected(
        json!({"terminationGracePeriodSeconds": 20, "preStopSleepSeconds": 20}),
        "preStopSleepSeconds must be shorter",
    );
    let ok = json!({"terminationGracePeriodSeconds": 40, "preStopSleepSeconds": 5,
                    "config": {"server": {"drain_timeout_seconds": 30}}});
    assert_eq!(rejections(&resource(ok), None), Vec::<String>::new());
}

#[test]
fn an_existing_service_account_needs_a_name() {
    assert_rejected(
        json!({"serviceAccount": {"create": false}}),
        "serviceAccount.name is required",
    );
}

#[test]
fn storage_mode_cannot_change_after_creation() {
    let old = resource(json!({}));
    let new = resource(json!({"storage": postgres()}));
    let problems = rejections(&new, Some(&old));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("storage.mode cannot change")),
        "{problems:?}"
    );
    assert_eq!(rejections(&old, Some(&old)), Vec::<String>::new());
}
