//! The reconciler against a fake API server: what it writes, when, and how it fails.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::controller::Action;
use serde_json::json;

use super::*;
use crate::crd::{BifrostCluster, PodDisruptionBudgetSpec};
use crate::metrics::Metrics;
use crate::probe::ClusterProbe;
use crate::testing::fake_api::{FakeApi, Recorded};
use crate::testing::{bifrost_cluster, pod};

const OPERATOR: &str = "bifrost-operator";

fn start(resource: &BifrostCluster) -> (Arc<Context>, FakeApi) {
    let (client, api) = FakeApi::start();
    api.put_cluster(resource);
    let ctx = Context::new(
        client,
        Arc::new(Metrics::new()),
        ClusterProbe::disabled(),
        Some("test".into()),
    );
    (Arc::new(ctx), api)
}

/// `plural/name` of every server-side apply of a child by the operator, in order.
fn child_applies(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.is_apply_by(OPERATOR) && !r.path.ends_with("/status"))
        .map(|r| short(&r.path))
        .collect()
}

fn short(path: &str) -> String {
    let mut parts = path.rsplit('/');
    let name = parts.next().unwrap_or_default();
    let plural = parts.next().unwrap_or_default();
    format!("{plural}/{name}")
}

fn events(requests: &[Recorded]) -> Vec<(String, String, String)> {
    requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/events"))
        .map(|r| {
            let text = |field: &str| r.body[field].as_str().unwrap_or_default().to_string();
            (text("type"), text("reason"), text("note"))
        })
        .collect()
}

fn writes(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method != "GET" && !r.path.ends_with("/events"))
        .map(|r| format!("{} {}", r.method, short(&r.path)))
        .collect()
}

fn full_cluster() -> BifrostCluster {
    bifrost_cluster("gw")
        .cluster_with_postgres()
        .autoscaling(3, 15)
        .with(|s| {
            s.pod_disruption_budget = Some(PodDisruptionBudgetSpec {
                enabled: true,
                min_available: Some(2),
                max_unavailable: None,
            })
        })
        .build()
}

/// The first reconciles of a new resource: children created, then (with autoscaling) the
/// StatefulSet's replicas handed to the autoscaler.
async fn settle(ctx: &Arc<Context>, api: &FakeApi) {
    reconcile_stored(ctx, api).await.expect("first");
    reconcile_stored(ctx, api).await.expect("hand-over");
}

async fn reconcile_stored(ctx: &Arc<Context>, api: &FakeApi) -> Result<Action, Error> {
    reconcile(Arc::new(api.cluster("prod", "gw")), Arc::clone(ctx)).await
}

/// A changed spec as the API server stores it: next generation, status kept.
fn changed(api: &FakeApi, change: impl FnOnce(&mut crate::crd::BifrostClusterSpec)) {
    let mut resource = api.cluster("prod", "gw");
    change(&mut resource.spec);
    resource.metadata.generation = resource.metadata.generation.map(|g| g + 1);
    api.put_cluster(&resource);
}

#[tokio::test]
async fn first_reconcile_creates_every_child_with_server_side_apply() {
    let (ctx, api) = start(&full_cluster());
    let action = reconcile_stored(&ctx, &api).await.expect("reconciles");
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));

    let requests = api.take_requests();
    assert_eq!(
        child_applies(&requests),
        [
            "serviceaccounts/gw",
            "configmaps/gw-config",
            "configmaps/gw-peers",
            "services/gw-headless",
            "services/gw",
            "statefulsets/gw",
            "poddisruptionbudgets/gw",
            "horizontalpodautoscalers/gw",
        ]
    );
    for apply in requests.iter().filter(|r| r.is_apply_by(OPERATOR)) {
        assert!(
            apply.query.contains("force=true"),
            "{}: {}",
            apply.path,
            apply.query
        );
        if !apply.path.ends_with("/status") {
            let owner = &apply.body["metadata"]["ownerReferences"][0];
            assert_eq!(owner["kind"], "BifrostCluster", "{}", apply.path);
            assert_eq!(owner["uid"], "uid-gw", "{}", apply.path);
            assert_eq!(owner["controller"], true, "{}", apply.path);
        }
    }
    let secret = requests
        .iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/secrets"))
        .expect("gossip key created");
    assert_eq!(secret.body["metadata"]["name"], "gw-gossip-key");
    assert!(
        secret.query.contains(&format!("fieldManager={OPERATOR}")),
        "the generated Secret is written under the operator's field manager: {}",
        secret.query
    );
    let sts = requests
        .iter()
        .find(|r| r.is_apply_by(OPERATOR) && r.path.ends_with("/statefulsets/gw"))
        .expect("sts applied");
    assert_eq!(
        sts.body["spec"]["replicas"], 3,
        "with autoscaling, a new StatefulSet starts at minReplicas, not Kubernetes' default 1"
    );

    let reasons: Vec<_> = events(&requests)
        .into_iter()
        .map(|(t, r, n)| format!("{t} {r} {n}"))
        .collect();
    assert!(
        reasons.contains(&"Normal Created created StatefulSet gw".to_string()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"Normal Created created Secret gw-gossip-key".to_string()),
        "{reasons:?}"
    );
    assert_eq!(
        reasons.len(),
        8,
        "one Event per child except the peers list: {reasons:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.is_apply_by(OPERATOR) && r.path.ends_with("/bifrostclusters/gw/status")),
        "status written"
    );
}

#[tokio::test]
async fn kubernetes_discovery_adds_the_role_and_its_binding() {
    let resource = bifrost_cluster("gw")
        .cluster_with_postgres()
        .with(|s| {
            s.cluster.discovery.discovery_type = bifrost_gateway::config::DiscoveryType::Kubernetes
        })
        .build();
    let (ctx, api) = start(&resource);
    reconcile_stored(&ctx, &api).await.expect("reconciles");
    let applies = child_applies(&api.take_requests());
    assert!(
        applies.contains(&"roles/gw-discovery".to_string()),
        "{applies:?}"
    );
    assert!(
        applies.contains(&"rolebindings/gw-discovery".to_string()),
        "{applies:?}"
    );
    assert!(
        !applies.contains(&"configmaps/gw-peers".to_string()),
        "{applies:?}"
    );
}

#[tokio::test]
async fn a_reconcile_without_changes_writes_nothing() {
    let (ctx, api) = start(&full_cluster());
    settle(&ctx, &api).await;
    api.take_requests();
    reconcile_stored(&ctx, &api).await.expect("second");
    let requests = api.take_requests();
    assert_eq!(writes(&requests), Vec::<String>::new());
    assert_eq!(events(&requests), []);
    let reads: Vec<_> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, short(&r.path)))
        .collect();
    assert_eq!(
        reads,
        ["GET prod/pods", "GET statefulsets/gw"],
        "a no-op costs two reads"
    );
}

#[tokio::test]
async fn an_image_change_patches_only_the_statefulset() {
    let (ctx, api) = start(&full_cluster());
    reconcile_stored(&ctx, &api).await.expect("first");
    api.take_requests();
    changed(&api, |s| s.image = "registry.local/bifrost:2".into());
    reconcile_stored(&ctx, &api).await.expect("second");
    let requests = api.take_requests();
    assert_eq!(child_applies(&requests), ["statefulsets/gw"]);
    let sts = requests
        .iter()
        .find(|r| r.path.ends_with("/statefulsets/gw") && r.method == "PATCH")
        .expect("sts");
    assert_eq!(
        sts.body["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local/bifrost:2"
    );
    assert_eq!(
        events(&requests),
        [(
            "Normal".into(),
            "Updated".into(),
            "updated StatefulSet gw".into()
        )]
    );
}

#[tokio::test]
async fn a_config_change_rewrites_the_config_and_rolls_the_pods() {
    let (ctx, api) = start(&full_cluster());
    reconcile_stored(&ctx, &api).await.expect("first");
    let before = api
        .get("/apis/apps/v1/namespaces/prod/statefulsets/gw")
        .expect("sts")["spec"]["template"]["metadata"]["annotations"]
        ["bifrost.dev/config-checksum"]
        .clone();
    api.take_requests();
    changed(&api, |s| s.config.client.enable_logging = false);
    reconcile_stored(&ctx, &api).await.expect("second");
    assert_eq!(
        child_applies(&api.take_requests()),
        ["configmaps/gw-config", "statefulsets/gw"]
    );
    let after = api
        .get("/apis/apps/v1/namespaces/prod/statefulsets/gw")
        .expect("sts")["spec"]["template"]["metadata"]["annotations"]
        ["bifrost.dev/config-checksum"]
        .clone();
    assert_ne!(before, after, "a new checksum rolls the pods");
}

#[tokio::test]
async fn new_pods_rewrite_only_the_peers_file() {
    let (ctx, api) = start(&full_cluster());
    settle(&ctx, &api).await;
    api.take_requests();
    api.set_pods(vec![
        pod("gw-0", Some("10.0.0.10"), true),
        pod("gw-1", Some("10.0.0.11"), false),
    ]);
    reconcile_stored(&ctx, &api).await.expect("second");
    let requests = api.take_requests();
    assert_eq!(child_applies(&requests), ["configmaps/gw-peers"]);
    assert_eq!(
        events(&requests),
        Vec::<(String, String, String)>::new(),
        "a peer list change is routine: no Event (docs/operations.md says so)"
    );
    let peers = requests
        .iter()
        .find(|r| r.is_apply_by(OPERATOR) && r.path.ends_with("/gw-peers"))
        .expect("peers");
    let file = bifrost_gateway::config::PeersFile::parse(
        peers.body["data"]["peers.json"].as_str().expect("data"),
    )
    .expect("the gateway reads it");
    let names: Vec<_> = file
        .peers
        .iter()
        .map(|p| (p.name.as_str(), p.ready))
        .collect();
    assert_eq!(names, [("gw-0", true), ("gw-1", false)]);
}

#[tokio::test]
async fn status_is_written_from_pods_and_statefulset() {
    let (ctx, api) = start(&bifrost_cluster("gw").cluster_with_postgres().build());
    api.set_pods(vec![
        pod("gw-0", Some("10.0.0.10"), true),
        pod("gw-1", Some("10.0.0.11"), true),
        pod("gw-2", Some("10.0.0.12"), false),
    ]);
    reconcile_stored(&ctx, &api).await.expect("reconciles");
    let requests = api.take_requests();
    let patch = requests
        .iter()
        .find(|r| r.path.ends_with("/status"))
        .expect("status patch");
    assert_eq!(patch.body["apiVersion"], "bifrost.dev/v1alpha1");
    assert_eq!(patch.body["kind"], "BifrostCluster");
    let status = api.cluster("prod", "gw").status.expect("status stored");
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!((status.replicas, status.ready_replicas), (3, 2));
    assert_eq!(
        status.selector,
        "app.kubernetes.io/instance=gw,app.kubernetes.io/name=bifrost"
    );
    assert_eq!(
        status.cluster_health.as_deref(),
        Some("Unknown"),
        "gateway not asked (probe off)"
    );
    let kinds: Vec<_> = status
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("Ready", "False"),
            ("Progressing", "True"),
            ("Degraded", "False")
        ]
    );
}

#[tokio::test]
async fn an_api_error_requeues_with_backoff_and_emits_a_warning_event() {
    let (ctx, api) = start(&full_cluster());
    api.fail("PATCH", "/statefulsets/gw", 403);
    let resource = Arc::new(api.cluster("prod", "gw"));
    let err = reconcile(Arc::clone(&resource), Arc::clone(&ctx))
        .await
        .expect_err("forbidden");
    assert_eq!(err.kind(), "forbidden");
    assert!(
        err.to_string()
            .starts_with("apply StatefulSet prod/gw failed"),
        "{err}"
    );

    let requests = api.take_requests();
    let warnings: Vec<_> = events(&requests)
        .into_iter()
        .filter(|(t, _, _)| t == "Warning")
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].1, "ReconcileFailed");
    assert!(
        warnings[0].2.contains("apply StatefulSet prod/gw failed"),
        "{warnings:?}"
    );

    assert_eq!(
        error_policy(Arc::clone(&resource), &err, Arc::clone(&ctx)),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        error_policy(Arc::clone(&resource), &err, Arc::clone(&ctx)),
        Action::requeue(Duration::from_secs(10))
    );

    let degraded = api
        .cluster("prod", "gw")
        .status
        .and_then(|s| s.condition(crate::crd::ConditionType::Degraded).cloned())
        .expect("degraded recorded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ReconcileFailed")
    );
    let text = ctx.metrics.encode();
    assert!(
        text.contains("bifrost_operator_reconcile_errors_total{kind=\"forbidden\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn after_a_failure_the_next_reconcile_writes_only_what_is_missing() {
    let (ctx, api) = start(&full_cluster());
    api.fail("PATCH", "/statefulsets/gw", 500);
    reconcile_stored(&ctx, &api)
        .await
        .expect_err("server error");
    api.clear_failures();
    api.take_requests();
    reconcile_stored(&ctx, &api).await.expect("recovers");
    assert_eq!(
        child_applies(&api.take_requests()),
        [
            "statefulsets/gw",
            "poddisruptionbudgets/gw",
            "horizontalpodautoscalers/gw"
        ]
    );
}

#[tokio::test]
async fn an_invalid_config_touches_no_child_and_waits_for_a_spec_change() {
    let resource = bifrost_cluster("gw")
        .with(|s| s.config.client.max_request_body_size_mb = 0)
        .build();
    let (ctx, api) = start(&resource);
    let resource = Arc::new(api.cluster("prod", "gw"));
    let err = reconcile(Arc::clone(&resource), Arc::clone(&ctx))
        .await
        .expect_err("invalid");
    assert!(
        err.to_string()
            .contains("spec.config.client.max_request_body_size_mb"),
        "{err}"
    );
    let requests = api.take_requests();
    assert_eq!(child_applies(&requests), Vec::<String>::new());
    let warnings: Vec<_> = events(&requests)
        .into_iter()
        .map(|(t, r, _)| format!("{t} {r}"))
        .collect();
    assert_eq!(warnings, ["Warning InvalidConfig"]);
    assert_eq!(error_policy(resource, &err, ctx), Action::await_change());
    let status = api.cluster("prod", "gw").status.expect("status written");
    let conditions: Vec<_> = status
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
        .collect();
    assert_eq!(
        conditions,
        [
            ("Ready", "False", "InvalidConfig"),
            ("Progressing", "False", "InvalidConfig"),
            ("Degraded", "True", "InvalidConfig"),
        ],
        "all three conditions say the spec was not applied"
    );
}

#[tokio::test]
async fn pods_the_scheduler_cannot_place_are_reported_in_the_conditions() {
    let (ctx, api) = start(&bifrost_cluster("gw").build());
    let mut pending = pod("gw-0", None, false);
    if let Some(status) = pending.status.as_mut() {
        status.phase = Some("Pending".into());
        status.conditions = Some(vec![k8s_openapi::api::core::v1::PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some("0/3 nodes are available: 3 Insufficient memory".into()),
            ..Default::default()
        }]);
    }
    api.set_pods(vec![pending]);
    settle(&ctx, &api).await;
    let status = api.cluster("prod", "gw").status.expect("status written");
    let degraded = status
        .condition(crate::crd::ConditionType::Degraded)
        .expect("degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "PodsUnschedulable")
    );
    assert!(
        degraded.message.contains("Insufficient memory"),
        "{}",
        degraded.message
    );
    let progressing = status
        .condition(crate::crd::ConditionType::Progressing)
        .expect("progressing");
    assert_eq!(progressing.status, "True");
    assert!(
        progressing.message.contains("Insufficient memory"),
        "{}",
        progressing.message
    );
}

#[tokio::test]
async fn turning_autoscaling_on_hands_replicas_over_before_dropping_them() {
    let (ctx, api) = start(&bifrost_cluster("gw").cluster_with_postgres().build());
    reconcile_stored(&ctx, &api).await.expect("first");
    // What the API server records for the operator's apply that set replicas.
    let path = "/apis/apps/v1/namespaces/prod/statefulsets/gw";
    let mut sts = api.get(path).expect("sts");
    sts["metadata"]["managedFields"] = json!([{"manager": OPERATOR, "operation": "Apply",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}}}]);
    api.put(path, sts);
    api.take_requests();

    changed(&api, |s| {
        s.autoscaling = crate::testing::bifrost_cluster("x")
            .autoscaling(3, 15)
            .build()
            .spec
            .autoscaling;
    });
    reconcile_stored(&ctx, &api).await.expect("second");
    let requests = api.take_requests();
    let handoff_index = requests
        .iter()
        .position(|r| r.is_apply_by(handoff::HANDOFF_MANAGER))
        .expect("replicas handed over");
    assert_eq!(requests[handoff_index].body["spec"], json!({"replicas": 3}));
    let sts_index = requests
        .iter()
        .position(|r| r.is_apply_by(OPERATOR) && r.path == path)
        .expect("sts applied");
    assert!(handoff_index < sts_index, "hand-over first");
    assert!(requests[sts_index].body["spec"].get("replicas").is_none());
    assert!(child_applies(&requests).contains(&"horizontalpodautoscalers/gw".to_string()));
}

#[tokio::test]
async fn a_child_no_longer_wanted_is_deleted() {
    let (ctx, api) = start(&full_cluster());
    reconcile_stored(&ctx, &api).await.expect("first");
    api.take_requests();
    changed(&api, |s| s.pod_disruption_budget = None);
    reconcile_stored(&ctx, &api).await.expect("second");
    let requests = api.take_requests();
    assert!(
        writes(&requests).contains(&"DELETE poddisruptionbudgets/gw".to_string()),
        "{:?}",
        writes(&requests)
    );
    assert!(events(&requests).contains(&(
        "Normal".into(),
        "Deleted".into(),
        "deleted PodDisruptionBudget gw".into()
    )));
    assert!(api
        .get("/apis/policy/v1/namespaces/prod/poddisruptionbudgets/gw")
        .is_none());
}

#[tokio::test]
async fn a_child_edited_by_someone_else_is_applied_again() {
    let (ctx, api) = start(&full_cluster());
    settle(&ctx, &api).await;
    api.take_requests();
    // The watch reports a newer version of the config map than the operator wrote.
    ctx.children.observe(&ConfigMap {
        metadata: ObjectMeta {
            name: Some("gw-config".into()),
            namespace: Some("prod".into()),
            resource_version: Some("999".into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    });
    reconcile_stored(&ctx, &api).await.expect("second");
    assert_eq!(
        child_applies(&api.take_requests()),
        ["configmaps/gw-config"]
    );
}

/// Operator-side cost of a reconcile against the in-memory API (no network): prints numbers,
/// never fails on timing. `cargo test -p bifrost-operator --release reconcile_cost -- --ignored --nocapture`
#[tokio::test]
#[ignore = "measurement; run by hand"]
async fn reconcile_cost() {
    let (ctx, api) = start(&full_cluster());
    api.set_pods(
        (0..3)
            .map(|i| pod(&format!("gw-{i}"), Some("10.0.0.1"), true))
            .collect(),
    );
    let first = std::time::Instant::now();
    reconcile_stored(&ctx, &api).await.expect("first");
    let first = first.elapsed();
    let mut samples = Vec::new();
    for _ in 0..1000 {
        let started = std::time::Instant::now();
        reconcile_stored(&ctx, &api).await.expect("no-op");
        samples.push(started.elapsed());
        api.take_requests();
    }
    samples.sort();
    println!(
        "first reconcile (creates 9 children): {first:?}; no-op reconcile p50 {:?} p99 {:?} max {:?}",
        samples[500], samples[990], samples[999]
    );
}

/// `resourceVersion` of every object the fake API server stores, by path.
fn versions(api: &FakeApi) -> Vec<(String, serde_json::Value)> {
    api.paths()
        .into_iter()
        .filter_map(|path| {
            let version = api.get(&path)?["metadata"]["resourceVersion"].clone();
            Some((path, version))
        })
        .collect()
}

#[tokio::test]
async fn a_restarted_operator_rewrites_no_child() {
    let (ctx, api) = start(&full_cluster());
    api.set_pods(vec![
        pod("gw-0", Some("10.0.0.10"), true),
        pod("gw-1", Some("10.0.0.11"), true),
    ]);
    reconcile_stored(&ctx, &api).await.expect("first");
    // The StatefulSet hand-over to the autoscaler settles on the second reconcile.
    reconcile_stored(&ctx, &api).await.expect("second");
    let before = versions(&api);
    api.take_requests();

    // A new process: empty child cache, same API server, a later clock.
    let restarted = Arc::new(Context::new(
        ctx.client.clone(),
        Arc::new(Metrics::new()),
        ClusterProbe::disabled(),
        Some("test".into()),
    ));
    reconcile_stored(&restarted, &api)
        .await
        .expect("after restart");
    assert_eq!(
        versions(&api),
        before,
        "no child changed: {:?}",
        writes(&api.take_requests())
    );
}

#[tokio::test]
async fn with_autoscaling_the_new_statefulset_starts_at_min_replicas_and_is_handed_over() {
    let (ctx, api) = start(&full_cluster());
    reconcile_stored(&ctx, &api).await.expect("first");
    let path = "/apis/apps/v1/namespaces/prod/statefulsets/gw";
    assert_eq!(api.get(path).expect("sts")["spec"]["replicas"], 3);
    // What the API server records for the operator's apply that set replicas.
    let mut sts = api.get(path).expect("sts");
    sts["metadata"]["managedFields"] = json!([{"manager": OPERATOR, "operation": "Apply",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}}}]);
    api.put(path, sts);
    api.take_requests();
    reconcile_stored(&ctx, &api).await.expect("second");
    let requests = api.take_requests();
    let handoff = requests
        .iter()
        .find(|r| r.is_apply_by(handoff::HANDOFF_MANAGER))
        .expect("replicas handed over to the autoscaler");
    assert_eq!(handoff.body["spec"], json!({"replicas": 3}));
    let applied = requests
        .iter()
        .find(|r| r.is_apply_by(OPERATOR) && r.path == path)
        .expect("sts applied without replicas");
    assert!(applied.body["spec"].get("replicas").is_none());
}
