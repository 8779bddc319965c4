//! The operator against a real cluster: install the CRD, run the operator, apply the samples,
//! wait for every child, check status, scale, delete and check garbage collection.
//!
//! Needs `KUBECONFIG` pointing at a disposable cluster (kind, k3d, minikube), so it is
//! `#[ignore]`d (reported as skipped) in `make test`. Gateway pods need not become ready (no image pull or database is required): the test
//! checks what the operator controls. Run with `make operator-e2e`.

use std::future::Future;
use std::time::{Duration, Instant};

use bifrost_operator::crd::{self, BifrostCluster};
use bifrost_operator::run::{run_with_client, Options};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::conditions;
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use serde_json::{json, Value};

const MANAGER: &str = "bifrost-e2e";

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

async fn exists<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    matches!(api.get_opt(name).await, Ok(Some(_)))
}

fn sample(file: &str) -> Value {
    let path = format!("{}/../config/samples/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn secret(client: &Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let string_data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": string_data}))
    .expect("secret");
    api.create(&PostParams::default(), &secret)
        .await
        .expect("secret created");
}

#[tokio::test]
#[ignore = "needs a real cluster: KUBECONFIG=<disposable cluster> make operator-e2e"]
async fn operator_runs_samples_on_a_real_cluster() {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "KUBECONFIG is not set; point it at a disposable cluster (kind, k3d, minikube) and run `make operator-e2e`"
    );
    let client = Client::try_default()
        .await
        .expect("a client from KUBECONFIG");

    // 1. The CRD, exactly as `make crds` writes it.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let apply = PatchParams::apply(MANAGER).force();
    crds.patch(
        "bifrostclusters.bifrost.dev",
        &apply,
        &Patch::Apply(crd::crd()),
    )
    .await
    .expect("CRD installs (the API server accepts its schema and CEL rules)");
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(
            crds,
            "bifrostclusters.bifrost.dev",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("CRD established in time")
    .expect("watch works");

    // 2. A namespace of our own.
    let ns = format!("bifrost-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
    secret(
        &client,
        &ns,
        "llm-keys",
        &[("openai", "sk-test"), ("anthropic", "sk-ant-test")],
    )
    .await;
    secret(&client, &ns, "bifrost-postgres", &[("password", "pw")]).await;

    // 3. The operator, in this process, watching only that namespace.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = Options {
        namespace: Some(ns.clone()),
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        leader_election: None,
        probe_cluster_status: false,
        identity: Some("e2e".into()),
    };
    let operator = tokio::spawn(run_with_client(client.clone(), options, async {
        let _ = stopped.await;
    }));

    // 4. Samples: every child appears.
    let clusters: Api<BifrostCluster> = Api::namespaced(client.clone(), &ns);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    for (file, name, cluster_mode) in [
        ("single-node-sqlite.yaml", "bifrost", false),
        ("cluster-postgres.yaml", "bifrost-cluster", true),
    ] {
        clusters
            .patch(name, &apply, &Patch::Apply(sample(file)))
            .await
            .unwrap_or_else(|e| panic!("{file} accepted: {e}"));
        let took = eventually(
            &format!("children of {name}"),
            Duration::from_secs(30),
            || async {
                exists(&statefulsets, name).await
                    && exists(&services, name).await
                    && exists(&services, &format!("{name}-headless")).await
                    && exists(&config_maps, &format!("{name}-config")).await
                    && exists(&accounts, name).await
                    && (!cluster_mode || exists(&config_maps, &format!("{name}-peers")).await)
            },
        )
        .await;
        println!("{file}: every child exists {took:?} after kubectl apply (target: 2 s)");
        eventually(
            &format!("status of {name}"),
            Duration::from_secs(30),
            || async {
                clusters
                    .get(name)
                    .await
                    .ok()
                    .and_then(|c| c.status)
                    .is_some_and(|s| s.observed_generation == Some(1) && !s.selector.is_empty())
            },
        )
        .await;
    }

    // 5. A forbidden spec is refused by the API server's CEL rules.
    let mut bad = sample("single-node-sqlite.yaml");
    bad["metadata"]["name"] = json!("bad");
    bad["spec"]["cluster"] = json!({"enabled": true});
    let err = clusters
        .patch("bad", &apply, &Patch::Apply(bad))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("storage.mode: postgres"), "{err}");

    // 6. `kubectl scale bfc/bifrost-cluster --replicas=5` reaches the StatefulSet.
    clusters
        .patch_scale(
            "bifrost-cluster",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .expect("scale subresource");
    eventually(
        "StatefulSet scaled to 5",
        Duration::from_secs(30),
        || async {
            statefulsets
                .get("bifrost-cluster")
                .await
                .ok()
                .and_then(|s| s.spec)
                .and_then(|s| s.replicas)
                == Some(5)
        },
    )
    .await;

    // 7. Deleting the resource garbage-collects its children.
    clusters
        .delete("bifrost-cluster", &DeleteParams::foreground())
        .await
        .expect("deleted");
    eventually(
        "children garbage-collected",
        Duration::from_secs(60),
        || async {
            !exists(&statefulsets, "bifrost-cluster").await
                && !exists(&config_maps, "bifrost-cluster-config").await
                && !exists(&services, "bifrost-cluster-headless").await
        },
    )
    .await;

    let _ = stop.send(());
    operator
        .await
        .expect("operator task")
        .expect("operator stopped cleanly");
    let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
}
