//! `udp` discovery end to end: real gateway processes on one host find each other through
//! broadcast beacons alone (no static peers). Every node listens on the same beacon port
//! (SO_REUSEPORT) and broadcasts to 127.255.255.255, which Linux delivers to every socket bound
//! to the port; `allowed_address_space` is loopback only, so no beacon leaves the host.
//! Skipped (with a printed reason) when no test PostgreSQL is configured.

use std::time::{Duration, Instant};

use bifrost_e2e::harness::{
    config_for, free_udp_ports, gateway_rejects, postgres_store, wait_for_members, ClusterNode,
    Gateway, MockProvider,
};
use serde_json::{json, Value};

/// The shared cluster key.
const CLUSTER_KEY: &str = "0d9f2a4c6e8b1d3f5a7c9e0b2d4f6a8c1e3b5d7f9a0c2e4b6d8f1a3c5e7b9d0f";
/// Cluster id of the nodes under test.
const CLUSTER: &str = "bifrost-beacons";
/// How long beacons from another cluster are watched for being (wrongly) admitted: three
/// beacon intervals and three discovery refreshes.
const NOT_ADMITTED_WATCH: Duration = Duration::from_secs(3);

/// Node `index` of cluster `service_name`, gossiping on `gossip_port`, discovering peers only
/// through beacons on `beacon_port`.
fn beacon_node(
    base: &Value,
    index: usize,
    gossip_port: u16,
    beacon_port: u16,
    service_name: &str,
) -> Value {
    ClusterNode::new(index, gossip_port)
        .discovery(json!({
            "type": "udp",
            "service_name": service_name,
            "udp_broadcast_port": beacon_port,
            "allowed_address_space": ["127.0.0.0/8"]
        }))
        .config(base)
}

fn base_config(store: Value, mock: &MockProvider) -> Value {
    let mut config = config_for(mock);
    config["config_store"] = store;
    config
}

/// Start a node with the config-store key and, when given, the cluster key.
async fn start(config: &Value, cluster_key: Option<&str>) -> Gateway {
    let mut env = vec![("BIFROST_ENCRYPTION_KEY", "beacon test key")];
    if let Some(key) = cluster_key {
        env.push(("BIFROST_CLUSTER_KEY", key));
    }
    Gateway::start_with(config, &env).await
}

/// Node ids in a node's `/cluster/status`, sorted.
async fn member_ids(node: &Gateway) -> Vec<String> {
    let status = node.cluster_status().await;
    let mut ids: Vec<String> = status["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| n["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Every node keeps exactly `expected` members for [`NOT_ADMITTED_WATCH`].
async fn membership_stays(nodes: &[(&Gateway, u64)]) {
    let deadline = Instant::now() + NOT_ADMITTED_WATCH;
    while Instant::now() < deadline {
        for (node, expected) in nodes {
            let status = node.cluster_status().await;
            assert_eq!(
                status["members"].as_u64(),
                Some(*expected),
                "a node of another cluster was admitted: {status:#}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn three_nodes_find_each_other_through_beacons_alone() {
    let Some(store) = postgres_store() else {
        return;
    };
    let mock = MockProvider::start(&[]).await;
    let base = base_config(store, &mock);
    let ports = free_udp_ports(4);
    let beacon_port = ports[3];
    let mut nodes = Vec::new();
    for (index, gossip_port) in ports[..3].iter().enumerate() {
        let config = beacon_node(&base, index, *gossip_port, beacon_port, CLUSTER);
        nodes.push(start(&config, Some(CLUSTER_KEY)).await);
    }
    let took = wait_for_members(&nodes, 3).await;
    eprintln!("3 nodes found each other through beacons in {took:?}");
    for node in &nodes {
        assert_eq!(member_ids(node).await, ["node-0", "node-1", "node-2"]);
        assert!(
            node.output.contains("listening for discovery beacons"),
            "{:#?}",
            node.output.lines()
        );
        let line = node
            .output
            .wait_for("discovered", Duration::from_secs(1))
            .await
            .expect("a discovered line");
        assert!(line.contains("udp"), "{line}");
        let targets = node
            .output
            .wait_for("broadcasting discovery beacons", Duration::from_secs(1))
            .await
            .expect("a targets line");
        assert!(
            targets.contains(&format!("127.255.255.255:{beacon_port}")),
            "only the loopback broadcast address: {targets}"
        );
        // 127.255.255.255 and nothing else (no 255.255.255.255, which would leave the host).
        assert_eq!(targets.matches("255.255.255:").count(), 1, "{targets}");
        assert!(
            !node.output.contains("failed to broadcast"),
            "{:#?}",
            node.output.lines()
        );
    }
}

#[tokio::test]
async fn a_node_of_another_cluster_is_not_admitted() {
    let Some(store) = postgres_store() else {
        return;
    };
    let mock = MockProvider::start(&[]).await;
    let base = base_config(store, &mock);
    let ports = free_udp_ports(4);
    let beacon_port = ports[3];
    // Without a cluster key beacons are plaintext, so the cluster id check itself is what
    // keeps the stranger out.
    let ours = [
        start(&beacon_node(&base, 0, ports[0], beacon_port, CLUSTER), None).await,
        start(&beacon_node(&base, 1, ports[1], beacon_port, CLUSTER), None).await,
    ];
    let stranger = start(
        &beacon_node(&base, 2, ports[2], beacon_port, "another-cluster"),
        None,
    )
    .await;
    wait_for_members(&ours, 2).await;
    // Proof the stranger's beacons reached us and ours reached it: each side drops the other's.
    for node in ours.iter().chain([&stranger]) {
        node.output
            .wait_for(
                "dropped a discovery beacon: beacon of another cluster",
                Duration::from_secs(5),
            )
            .await
            .unwrap_or_else(|| panic!("no beacon was dropped: {:#?}", node.output.lines()));
    }
    membership_stays(&[(&ours[0], 2), (&ours[1], 2), (&stranger, 1)]).await;
    assert_eq!(member_ids(&ours[0]).await, ["node-0", "node-1"]);
    assert_eq!(member_ids(&stranger).await, ["node-2"]);
}

#[tokio::test]
async fn a_node_without_the_cluster_key_is_not_admitted() {
    let Some(store) = postgres_store() else {
        return;
    };
    let mock = MockProvider::start(&[]).await;
    let base = base_config(store, &mock);
    let ports = free_udp_ports(4);
    let beacon_port = ports[3];
    let keyed = [
        start(
            &beacon_node(&base, 0, ports[0], beacon_port, CLUSTER),
            Some(CLUSTER_KEY),
        )
        .await,
        start(
            &beacon_node(&base, 1, ports[1], beacon_port, CLUSTER),
            Some(CLUSTER_KEY),
        )
        .await,
    ];
    let keyless = start(&beacon_node(&base, 2, ports[2], beacon_port, CLUSTER), None).await;
    wait_for_members(&keyed, 2).await;
    for node in keyed.iter().chain([&keyless]) {
        node.output
            .wait_for(
                "dropped a discovery beacon: failed authentication",
                Duration::from_secs(5),
            )
            .await
            .unwrap_or_else(|| panic!("no beacon was dropped: {:#?}", node.output.lines()));
    }
    membership_stays(&[(&keyed[0], 2), (&keyed[1], 2), (&keyless, 1)]).await;
}

#[tokio::test]
async fn udp_discovery_without_an_address_space_is_refused() {
    let config = json!({
        "config_store": {"type": "postgres", "config": {"host": "127.0.0.1", "user": "u", "db_name": "d"}},
        "cluster_config": {"enabled": true, "discovery": {
            "enabled": true, "type": "udp", "udp_broadcast_port": 10199}}
    });
    let (status, stderr) = gateway_rejects(&config.to_string()).await;
    assert!(!status.success());
    assert!(
        stderr.contains("cluster_config.discovery.allowed_address_space"),
        "{stderr}"
    );
    assert!(stderr.contains("fenced"), "{stderr}");
}
