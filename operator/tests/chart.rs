//! The Helm chart renders what its values ask for. Uses the helm that `scripts/helm.sh` (run by
//! `make test`) fetches into `.tools/helm/helm`; without it the tests say so and pass.

use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::Deserialize;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn helm() -> Option<PathBuf> {
    let path = repo().join(".tools/helm/helm");
    if path.exists() {
        Some(path)
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} not found in CI: `make test` runs ./scripts/helm.sh first",
            path.display()
        );
        eprintln!(
            "skipped: {} not found; run ./scripts/helm.sh (make test does)",
            path.display()
        );
        None
    }
}

/// `helm template` with `--set` values; the rendered documents, or helm's error.
fn render(helm: &PathBuf, sets: &[&str]) -> Result<Vec<Value>, String> {
    let mut command = Command::new(helm);
    command.current_dir(repo()).args([
        "template",
        "ops",
        "charts/bifrost-operator",
        "--namespace",
        "operators",
    ]);
    for set in sets {
        command.args(["--set", set]);
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run helm: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = Value::deserialize(document).map_err(|e| format!("bad YAML from helm: {e}"))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

fn one<T: serde::de::DeserializeOwned>(documents: &[Value], kind: &str, name: &str) -> T {
    let found: Vec<&Value> = documents
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} {name}, found {}",
        found.len()
    );
    serde_json::from_value(found[0].clone()).unwrap_or_else(|e| panic!("{kind} {name}: {e}"))
}

fn kinds(documents: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = documents
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    kinds.sort();
    kinds
}

fn env(deployment: &Deployment, name: &str) -> Option<String> {
    deployment.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)?
        .value
        .clone()
}

fn verbs(rules: &[PolicyRule], group: &str, resource: &str) -> Vec<String> {
    rules
        .iter()
        .filter(|r| r.api_groups.iter().flatten().any(|g| g == group))
        .filter(|r| r.resources.iter().flatten().any(|x| x == resource))
        .flat_map(|r| r.verbs.clone())
        .collect()
}

/// Exactly what the operator touches: every child kind it applies, reads and deletes.
fn assert_least_privilege(rules: &[PolicyRule]) {
    let write = ["get", "list", "watch", "create", "patch", "delete"];
    for (group, resource, expected) in [
        (
            "bifrost.dev",
            "bifrostclusters",
            &["get", "list", "watch"][..],
        ),
        (
            "bifrost.dev",
            "bifrostclusters/status",
            &["get", "patch"][..],
        ),
        ("", "configmaps", &write[..]),
        ("", "services", &write[..]),
        ("", "serviceaccounts", &write[..]),
        ("", "pods", &["get", "list", "watch"][..]),
        ("", "secrets", &["get", "create"][..]),
        (
            "apps",
            "statefulsets",
            &["get", "list", "watch", "create", "patch"][..],
        ),
        ("policy", "poddisruptionbudgets", &write[..]),
        ("autoscaling", "horizontalpodautoscalers", &write[..]),
        ("rbac.authorization.k8s.io", "roles", &write[..]),
        ("rbac.authorization.k8s.io", "rolebindings", &write[..]),
        ("events.k8s.io", "events", &["create", "patch"][..]),
    ] {
        assert_eq!(
            verbs(rules, group, resource),
            expected,
            "{group}/{resource}"
        );
    }
    let resources: usize = rules
        .iter()
        .map(|r| r.resources.iter().flatten().count())
        .sum();
    assert_eq!(resources, 13, "no other resources");
    assert!(
        rules.iter().all(|r| !r.verbs.iter().any(|v| v == "*")),
        "no wildcard verbs"
    );
}

#[test]
fn default_values_run_two_leader_elected_replicas_with_a_cluster_role() {
    let Some(helm) = helm() else { return };
    let documents = render(&helm, &[]).expect("renders");
    assert_eq!(
        kinds(&documents),
        [
            "ClusterRole ops-bifrost-operator",
            "ClusterRoleBinding ops-bifrost-operator",
            "Deployment ops-bifrost-operator",
            "Role ops-bifrost-operator-leader-election",
            "RoleBinding ops-bifrost-operator-leader-election",
            "Service ops-bifrost-operator-metrics",
            "ServiceAccount ops-bifrost-operator",
        ]
    );
    let deployment: Deployment = one(&documents, "Deployment", "ops-bifrost-operator");
    let spec = deployment.spec.clone().expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.expect("pod");
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("ops-bifrost-operator")
    );
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("ghcr.io/bifrost-dev/bifrost-operator:0.1.0")
    );
    assert_eq!(container.args, Some(vec!["run".to_string()]));
    let security = container.security_context.clone().expect("security");
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        pod.security_context.and_then(|s| s.run_as_non_root),
        Some(true)
    );
    assert_eq!(env(&deployment, "LEADER_ELECTION").as_deref(), Some("true"));
    assert_eq!(env(&deployment, "WATCH_NAMESPACE").as_deref(), Some(""));
    assert_eq!(env(&deployment, "LOG_LEVEL").as_deref(), Some("info"));
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(
        probe_path(&container.liveness_probe).as_deref(),
        Some("/healthz")
    );
    assert_eq!(
        probe_path(&container.readiness_probe).as_deref(),
        Some("/readyz")
    );

    let role: ClusterRole = one(&documents, "ClusterRole", "ops-bifrost-operator");
    assert_least_privilege(&role.rules.expect("rules"));
    let binding: ClusterRoleBinding = one(&documents, "ClusterRoleBinding", "ops-bifrost-operator");
    let subject = &binding.subjects.expect("subjects")[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        ("ops-bifrost-operator", Some("operators"))
    );

    let leader: Role = one(&documents, "Role", "ops-bifrost-operator-leader-election");
    assert_eq!(leader.metadata.namespace.as_deref(), Some("operators"));
    let rules = leader.rules.expect("rules");
    assert_eq!(
        verbs(&rules, "coordination.k8s.io", "leases"),
        ["get", "create", "patch"]
    );

    let service: Service = one(&documents, "Service", "ops-bifrost-operator-metrics");
    let port = &service.spec.expect("spec").ports.expect("ports")[0];
    assert_eq!(port.port, 8080);
}

#[test]
fn a_watched_namespace_gets_a_role_there_and_nothing_cluster_wide() {
    let Some(helm) = helm() else { return };
    let documents = render(
        &helm,
        &[
            "watchNamespace=llm",
            "replicaCount=1",
            "leaderElection.enabled=false",
            "image.tag=dev",
            "logLevel=debug",
            "resources.limits.memory=256Mi",
        ],
    )
    .expect("renders");
    assert_eq!(
        kinds(&documents),
        [
            "Deployment ops-bifrost-operator",
            "Role ops-bifrost-operator",
            "RoleBinding ops-bifrost-operator",
            "Service ops-bifrost-operator-metrics",
            "ServiceAccount ops-bifrost-operator",
        ]
    );
    let role: Role = one(&documents, "Role", "ops-bifrost-operator");
    assert_eq!(role.metadata.namespace.as_deref(), Some("llm"));
    assert_least_privilege(&role.rules.expect("rules"));
    let binding: RoleBinding = one(&documents, "RoleBinding", "ops-bifrost-operator");
    assert_eq!(binding.metadata.namespace.as_deref(), Some("llm"));
    assert_eq!(
        binding.subjects.expect("subjects")[0].namespace.as_deref(),
        Some("operators")
    );

    let deployment: Deployment = one(&documents, "Deployment", "ops-bifrost-operator");
    assert_eq!(deployment.spec.as_ref().and_then(|s| s.replicas), Some(1));
    assert_eq!(env(&deployment, "WATCH_NAMESPACE").as_deref(), Some("llm"));
    assert_eq!(
        env(&deployment, "LEADER_ELECTION").as_deref(),
        Some("false")
    );
    assert_eq!(env(&deployment, "LOG_LEVEL").as_deref(), Some("debug"));
    let container = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod")
        .containers[0]
        .clone();
    assert_eq!(
        container.image.as_deref(),
        Some("ghcr.io/bifrost-dev/bifrost-operator:dev")
    );
    let limits = container.resources.and_then(|r| r.limits).expect("limits");
    assert_eq!(limits["memory"].0, "256Mi");
}

#[test]
fn an_existing_service_account_and_no_metrics_service() {
    let Some(helm) = helm() else { return };
    let documents = render(
        &helm,
        &[
            "serviceAccount.create=false",
            "serviceAccount.name=ops",
            "metrics.service.enabled=false",
        ],
    )
    .expect("renders");
    let names = kinds(&documents);
    assert!(
        !names
            .iter()
            .any(|k| k.starts_with("ServiceAccount ") || k.starts_with("Service ")),
        "{names:?}"
    );
    let deployment: Deployment = one(&documents, "Deployment", "ops-bifrost-operator");
    let pod = deployment.spec.and_then(|s| s.template.spec).expect("pod");
    assert_eq!(pod.service_account_name.as_deref(), Some("ops"));
}

#[test]
fn two_replicas_without_leader_election_are_refused() {
    let Some(helm) = helm() else { return };
    let err = render(&helm, &["leaderElection.enabled=false"]).expect_err("refused");
    assert!(err.contains("needs leaderElection.enabled"), "{err}");
}

#[test]
fn the_chart_installs_the_generated_crd() {
    let Some(helm) = helm() else { return };
    let output = Command::new(&helm)
        .current_dir(repo())
        .args(["show", "crds", "charts/bifrost-operator"])
        .output()
        .expect("helm runs");
    let shown = String::from_utf8_lossy(&output.stdout);
    let generated = bifrost_operator::crd::crd_yaml().expect("CRD renders");
    assert!(
        shown.contains(generated.trim()),
        "chart CRD differs; run `make crds`"
    );
}
