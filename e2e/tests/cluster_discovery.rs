//! Cluster mode with the discovery methods that need no static peers: three real gateways
//! find each other through `consul` (against an in-process fake of the agent's HTTP API),
//! `kubernetes` (against an in-process fake API server reached through a kubeconfig), `dns`
//! (the name `localhost`) and `operator` (a peers file). Skipped (with a printed reason) when
//! PostgreSQL is not configured.
//!
//! Nodes that must share one gossip port (DNS and Kubernetes give one port for every address)
//! listen on 127.0.0.1, 127.0.0.2 and 127.0.0.3: Linux loopback answers on all of 127.0.0.0/8.

use std::time::{Duration, Instant};

use bifrost_e2e::fake_consul::FakeConsul;
use bifrost_e2e::fake_kube::{pod, FakeKube};
use bifrost_e2e::harness::{
    config_for, free_tcp_ports, free_udp_and_tcp_ports, free_udp_ports, postgres_store,
    wait_for_members, wait_until, ClusterNode, Deadline, Gateway, MockProvider,
};
use serde_json::{json, Value};

const CLUSTER_KEY: &str = "0c1d2e3f405162738495a6b7c8d9eafb0c1d2e3f405162738495a6b7c8d9eafb";
/// A SIGTERM'd node deregisters on the way out; far below Consul's 1 min critical reaping.
const DEREGISTER_DEADLINE: Duration = Duration::from_secs(5);
/// Two 5 s check intervals: the first run is staggered within one.
const CHECKS_PASS_DEADLINE: Duration = Duration::from_secs(11);
/// How long a log line may take to show up once the cluster has converged.
const LOG_DEADLINE: Duration = Duration::from_secs(5);

/// The base config on the test PostgreSQL, or `None` (skip) without one.
async fn base() -> Option<(Value, MockProvider)> {
    let store = postgres_store()?;
    let mock = MockProvider::start(&[]).await;
    let mut base = config_for(&mock);
    base["config_store"] = store;
    Some((base, mock))
}

/// Every node logged `discovered N nodes` for all the others, and never one more.
async fn each_discovered_exactly_the_others(nodes: &[Gateway]) {
    let others = nodes.len() - 1;
    for node in nodes {
        assert!(
            node.output
                .wait_for(&format!("discovered {others} nodes"), LOG_DEADLINE)
                .await
                .is_some(),
            "{:#?}",
            node.output.lines()
        );
        assert!(
            !node
                .output
                .contains(&format!("discovered {} nodes", others + 1)),
            "{:#?}",
            node.output.lines()
        );
    }
}

#[tokio::test]
async fn three_nodes_form_a_cluster_through_consul() {
    let Some((base, _mock)) = base().await else {
        return;
    };
    const SERVICE: &str = "bifrost-e2e-consul";
    const TOKEN: &str = "e2e-acl-token";
    let consul = FakeConsul::start_with_token(Some(TOKEN)).await;
    // Consul's TCP check probes the gossip port number over TCP: free for both.
    let gossip = free_udp_and_tcp_ports(3);
    let grpc = free_tcp_ports(3);
    let started = Instant::now();
    let mut nodes = Vec::new();
    for index in 0..3 {
        let discovery = json!({"type": "consul", "service_name": SERVICE,
                               "consul_address": consul.address});
        let config = ClusterNode::new(index, gossip[index])
            .grpc_port(grpc[index])
            .discovery(discovery)
            .config(&base);
        nodes.push(
            Gateway::start_with(
                &config,
                &[
                    ("BIFROST_ENCRYPTION_KEY", "cluster test key"),
                    ("BIFROST_CLUSTER_KEY", CLUSTER_KEY),
                    ("CONSUL_HTTP_TOKEN", TOKEN),
                ],
            )
            .await,
        );
    }
    let converged = wait_for_members(&nodes, 3).await;
    eprintln!(
        "3 nodes through consul: 3 members everywhere {converged:?} after the last start ({:?} in all)",
        started.elapsed()
    );

    // Each node's TCP check listener makes its instance pass. Gossip can converge before the
    // last check has run (the first run is staggered within the 5 s interval), so poll.
    let ids: Vec<String> = (0..3).map(|i| format!("{SERVICE}-node-{i}")).collect();
    wait_until(
        &format!("every instance of {SERVICE} to pass its check"),
        Deadline::after(CHECKS_PASS_DEADLINE).polling_every(Duration::from_millis(100)),
        async || consul.passing_ids(SERVICE).await,
        |passing| *passing == ids,
    )
    .await;
    let entries = consul.health(SERVICE, true).await;
    for (entry, port) in entries.iter().zip(&gossip) {
        assert_eq!(entry["Service"]["Address"], "127.0.0.1");
        assert_eq!(entry["Service"]["Port"], *port);
        assert!(entry["Service"]["Meta"]["http_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")));
    }
    assert!(consul
        .requests()
        .iter()
        .any(|r| r == &format!("GET /v1/health/service/{SERVICE}?passing=true")));
    each_discovered_exactly_the_others(&nodes).await;
    for node in &nodes {
        assert!(node.output.contains("registered in consul"));
    }

    // SIGTERM deregisters at once (the check going critical would take a minute to remove it).
    let stopped = Instant::now();
    nodes[1].signal("TERM");
    let registered = wait_until(
        &format!("{} deregistered after SIGTERM", ids[1]),
        Deadline::since(stopped, DEREGISTER_DEADLINE),
        async || consul.registered_ids(SERVICE),
        |registered| !registered.contains(&ids[1]),
    )
    .await;
    assert_eq!(registered, [ids[0].clone(), ids[2].clone()]);
    eprintln!("node-1 deregistered {:?} after SIGTERM", stopped.elapsed());
    nodes[1].wait_exit(Duration::from_secs(10)).await;
    assert!(nodes[1].output.contains("deregistered from consul"));
    assert!(consul
        .requests()
        .contains(&format!("PUT /v1/agent/service/deregister/{}", ids[1])));
}

#[tokio::test]
async fn three_nodes_form_a_cluster_through_the_kubernetes_api() {
    let Some((base, _mock)) = base().await else {
        return;
    };
    const NAMESPACE: &str = "bifrost-e2e";
    const SELECTOR: &str = "app.kubernetes.io/name=bifrost,app.kubernetes.io/instance=e2e";
    let labels = [
        ("app.kubernetes.io/name", "bifrost"),
        ("app.kubernetes.io/instance", "e2e"),
    ];
    let kube = FakeKube::start().await;
    for index in 0..3 {
        let ip = format!("127.0.0.{}", index + 1);
        kube.add_pod(pod(
            NAMESPACE,
            &format!("gw-{index}"),
            &labels,
            "Running",
            Some(&ip),
        ));
    }
    // Pods that must not become seeds: not running, no IP yet, another app, another namespace.
    kube.add_pod(pod(
        NAMESPACE,
        "gw-pending",
        &labels,
        "Pending",
        Some("127.0.0.9"),
    ));
    kube.add_pod(pod(NAMESPACE, "gw-new", &labels, "Running", None));
    kube.add_pod(pod(
        NAMESPACE,
        "other",
        &[("app.kubernetes.io/name", "other")],
        "Running",
        Some("127.0.0.8"),
    ));
    kube.add_pod(pod(
        "elsewhere",
        "gw-x",
        &labels,
        "Running",
        Some("127.0.0.7"),
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    // The kubeconfig's namespace differs: the gateway must take POD_NAMESPACE.
    let kubeconfig = kube.write_kubeconfig(dir.path(), "default");
    let kubeconfig = kubeconfig.display().to_string();

    // One gossip port for all: the pod list gives IPs only.
    let port = free_udp_ports(1)[0];
    let grpc = free_tcp_ports(3);
    let mut nodes = Vec::new();
    for (index, grpc_port) in grpc.into_iter().enumerate() {
        let discovery = json!({"type": "kubernetes", "k8s_label_selector": SELECTOR});
        let config = ClusterNode::new(index, port)
            .grpc_port(grpc_port)
            .discovery(discovery)
            .config(&base);
        let host = format!("127.0.0.{}", index + 1);
        nodes.push(
            Gateway::start_on(
                &host,
                &config,
                &[
                    ("BIFROST_ENCRYPTION_KEY", "cluster test key"),
                    ("BIFROST_CLUSTER_KEY", CLUSTER_KEY),
                    ("KUBECONFIG", &kubeconfig),
                    ("POD_NAMESPACE", NAMESPACE),
                ],
            )
            .await,
        );
    }
    let converged = wait_for_members(&nodes, 3).await;
    eprintln!("3 nodes through the Kubernetes API: 3 members everywhere {converged:?} after the last start");

    each_discovered_exactly_the_others(&nodes).await;
    for node in &nodes {
        assert!(
            !node.output.contains("discovery failed"),
            "{:#?}",
            node.output.lines()
        );
    }
    let expected = format!("GET /api/v1/namespaces/{NAMESPACE}/pods?labelSelector={SELECTOR}");
    let requests = kube.requests();
    assert!(requests.contains(&expected), "{requests:#?}");
    assert!(requests.iter().all(|r| r == &expected), "{requests:#?}");
}

#[tokio::test]
async fn three_nodes_form_a_cluster_through_dns() {
    form_a_cluster_through_dns(3).await;
}

#[tokio::test]
async fn five_nodes_form_a_cluster_through_dns() {
    form_a_cluster_through_dns(5).await;
}

async fn form_a_cluster_through_dns(size: usize) {
    let Some((base, _mock)) = base().await else {
        return;
    };
    // `localhost` gives 127.0.0.1 only: the others find node 0, and gossip tells everyone
    // about everyone.
    let port = free_udp_ports(1)[0];
    let grpc = free_tcp_ports(size);
    let mut nodes = Vec::new();
    for (index, grpc_port) in grpc.into_iter().enumerate() {
        let discovery = json!({"type": "dns", "dns_names": ["localhost"]});
        let config = ClusterNode::new(index, port)
            .grpc_port(grpc_port)
            .discovery(discovery)
            .config(&base);
        let host = format!("127.0.0.{}", index + 1);
        nodes.push(
            Gateway::start_on(
                &host,
                &config,
                &[
                    ("BIFROST_ENCRYPTION_KEY", "cluster test key"),
                    ("BIFROST_CLUSTER_KEY", CLUSTER_KEY),
                ],
            )
            .await,
        );
    }
    let converged = wait_for_members(&nodes, size as u64).await;
    eprintln!(
        "{size} nodes through dns: {size} members everywhere {converged:?} after the last start"
    );
    for node in &nodes[1..] {
        assert!(
            node.output
                .wait_for("discovered 1 nodes", LOG_DEADLINE)
                .await
                .is_some(),
            "{:#?}",
            node.output.lines()
        );
    }
}

#[tokio::test]
async fn three_nodes_form_a_cluster_through_the_operator_peers_file() {
    form_a_cluster_through_the_operator_peers_file(3).await;
}

#[tokio::test]
async fn five_nodes_form_a_cluster_through_the_operator_peers_file() {
    form_a_cluster_through_the_operator_peers_file(5).await;
}

async fn form_a_cluster_through_the_operator_peers_file(size: usize) {
    let Some((base, _mock)) = base().await else {
        return;
    };
    let gossip = free_udp_ports(size);
    let grpc = free_tcp_ports(size);
    let dir = tempfile::tempdir().expect("temp dir");
    let peers_file = dir.path().join("peers.json");
    let peers: Vec<Value> = (0..size)
        .map(|i| {
            json!({"name": format!("node-{i}"), "ip": "127.0.0.1", "gossip_port": gossip[i],
                   "grpc_port": grpc[i], "ready": true})
        })
        .collect();
    std::fs::write(
        &peers_file,
        json!({"version": 1, "generated_at": "2026-01-01T00:00:00Z", "peers": peers}).to_string(),
    )
    .expect("write peers file");
    let mut nodes = Vec::new();
    for index in 0..size {
        let discovery = json!({"type": "operator", "peers_file": peers_file.display().to_string()});
        let config = ClusterNode::new(index, gossip[index])
            .grpc_port(grpc[index])
            .discovery(discovery)
            .config(&base);
        nodes.push(
            Gateway::start_with(
                &config,
                &[
                    ("BIFROST_ENCRYPTION_KEY", "cluster test key"),
                    ("BIFROST_CLUSTER_KEY", CLUSTER_KEY),
                ],
            )
            .await,
        );
    }
    let converged = wait_for_members(&nodes, size as u64).await;
    eprintln!(
        "{size} nodes through the peers file: {size} members everywhere {converged:?} after the last start"
    );
    each_discovered_exactly_the_others(&nodes).await;
}
