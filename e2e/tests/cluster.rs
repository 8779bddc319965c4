//! Cluster mode: three real gateway processes on loopback gossiping over UDP, sharing one
//! PostgreSQL store. Skipped (with a printed reason) when no test PostgreSQL is configured.

use std::time::{Duration, Instant};

use bifrost_e2e::harness::{
    any_provider, config_for, free_udp_ports, postgres_store, wait_for_healthy, wait_for_members,
    wait_until, ClusterNode, Deadline, Gateway, MockProvider, CONVERGENCE_DEADLINE,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The shared cluster key (what an operator generates: 64 hex characters).
const CLUSTER_KEY: &str = "5f2b9c0e7a4d81f3b6c2e9a07d5f1b3c8e4a6d2f0b9c7e5a3d1f8b6c4e2a0d9f";

/// The cluster the nodes of these tests belong to.
const SERVICE: &str = "bifrost-e2e";

/// Start one gateway per gossip port, all with [`CLUSTER_KEY`].
async fn start_cluster(base: &Value, size: usize) -> Vec<Gateway> {
    start_nodes(base, &free_udp_ports(size), CLUSTER_KEY).await
}

/// Start one gateway per gossip port in `ports`, each seeded with the others, under `key`.
async fn start_nodes(base: &Value, ports: &[u16], key: &str) -> Vec<Gateway> {
    let mut nodes = Vec::new();
    for index in 0..ports.len() {
        nodes.push(
            start_node(
                ClusterNode::with_static_peers(ports, index)
                    .service_name(SERVICE)
                    .config(base),
                key,
            )
            .await,
        );
    }
    nodes
}

async fn start_node(config: Value, cluster_key: &str) -> Gateway {
    Gateway::start_with(
        &config,
        &[
            ("BIFROST_ENCRYPTION_KEY", "cluster test key"),
            ("BIFROST_CLUSTER_KEY", cluster_key),
        ],
    )
    .await
}

/// Skip to the next one-minute window when less than `needed` is left in this one.
async fn wait_for_a_fresh_window_if_less_than(needed: Duration) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let left_in_window = 60_000 - now_ms % 60_000;
    if left_in_window < needed.as_millis() as u64 {
        tokio::time::sleep(Duration::from_millis(left_in_window + 50)).await;
    }
}

fn base_config(store: Value, mock: &MockProvider, governance: Value) -> Value {
    let mut config = config_for(mock);
    config["config_store"] = store;
    config["client"]["enforce_auth_on_inference"] = json!(true);
    config["governance"] = governance;
    config
}

#[tokio::test]
async fn three_nodes_on_static_peers_see_each_other() {
    let Some(store) = postgres_store() else {
        return;
    };
    let mock = MockProvider::start(&[]).await;
    let nodes = start_cluster(&base_config(store, &mock, json!({})), 3).await;
    let took = wait_for_members(&nodes, 3).await;
    eprintln!("3 nodes converged to 3 members in {took:?}");
    for (index, node) in nodes.iter().enumerate() {
        let status = node.cluster_status().await;
        assert_eq!(status["cluster_mode"], true);
        assert_eq!(status["local_node"], format!("node-{index}"));
        let mut ids: Vec<&str> = status["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n["id"].as_str().expect("id"))
            .collect();
        ids.sort();
        assert_eq!(ids, ["node-0", "node-1", "node-2"], "{status:#}");
        for peer in status["nodes"].as_array().expect("nodes") {
            assert_eq!(peer["region"], "local", "{peer}");
            assert!(peer["http_addr"].as_str().is_some(), "{peer}");
            assert!(peer["version"].as_str().is_some(), "{peer}");
        }
    }
    // Healthy once every peer has passed the success threshold.
    let deadline = Deadline::after(CONVERGENCE_DEADLINE);
    for (index, node) in nodes.iter().enumerate() {
        wait_until(
            &format!("node-{index} to count 3 healthy members and report HEALTHY"),
            deadline,
            async || node.cluster_status().await,
            |status| status["healthy_members"] == 3 && status["cluster_health"] == "HEALTHY",
        )
        .await;
    }
    for node in &nodes {
        assert!(
            node.output.contains("successfully joined"),
            "{:#?}",
            node.output.lines()
        );
        assert!(node.output.contains("cluster health: HEALTHY"));
        let ready = reqwest::get(node.url("/ready"))
            .await
            .expect("ready answered");
        assert_eq!(ready.status(), StatusCode::OK, "joined nodes are ready");
    }
    // Each node publishes its load once a second; every node lists every node's.
    let deadline = Deadline::after(CONVERGENCE_DEADLINE).polling_every(Duration::from_millis(100));
    for (index, node) in nodes.iter().enumerate() {
        wait_until(
            &format!("node-{index} to list the load of all 3 nodes"),
            deadline,
            async || node.cluster_status().await,
            |status| {
                let loads = status["nodes"]
                    .as_array()
                    .expect("nodes")
                    .iter()
                    .filter(|n| n["load"]["rps"].is_number() && n["load"]["in_flight"].is_number())
                    .count();
                loads == 3
            },
        )
        .await;
    }
}

#[tokio::test]
async fn five_nodes_on_static_peers_agree_on_the_cluster() {
    let Some(store) = postgres_store() else {
        return;
    };
    let mock = MockProvider::start(&[]).await;
    let nodes = start_cluster(&base_config(store, &mock, json!({})), 5).await;
    let took = wait_for_members(&nodes, 5).await;
    eprintln!("5 nodes converged to 5 members in {took:?}");
    let deadline = Deadline::after(CONVERGENCE_DEADLINE);
    for (index, node) in nodes.iter().enumerate() {
        wait_until(
            &format!("node-{index} to see node-0 to node-4 alive and 5 healthy members"),
            deadline,
            async || node.cluster_status().await,
            |status| {
                let mut ids: Vec<&str> = status["nodes"]
                    .as_array()
                    .expect("nodes")
                    .iter()
                    .filter(|n| n["state"] == "alive")
                    .map(|n| n["id"].as_str().expect("id"))
                    .collect();
                ids.sort();
                ids == ["node-0", "node-1", "node-2", "node-3", "node-4"]
                    && status["healthy_members"] == 5
            },
        )
        .await;
    }
}

#[tokio::test]
async fn a_node_is_not_ready_until_it_joins_or_gives_up_waiting() {
    let Some(store) = postgres_store() else {
        return;
    };
    let mock = MockProvider::start(&[]).await;
    // Its only seed never answers.
    let ports = free_udp_ports(2);
    let node = start_node(
        ClusterNode::with_static_peers(&ports, 0)
            .service_name(SERVICE)
            .config(&base_config(store, &mock, json!({}))),
        CLUSTER_KEY,
    )
    .await;
    let started = Instant::now();
    let ready = reqwest::get(node.url("/ready")).await.expect("answered");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.expect("JSON");
    assert_eq!(body["status"], "joining", "{body}");
    // After gossip.config.timeout_seconds (5) alone it carries on as the first node.
    wait_until(
        "/ready to answer 200 on a node alone",
        Deadline::since(started, Duration::from_secs(15)).polling_every(Duration::from_millis(100)),
        async || {
            reqwest::get(node.url("/ready"))
                .await
                .expect("answered")
                .status()
        },
        |status| *status == StatusCode::OK,
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "ready before the join deadline"
    );
    assert!(node.output.contains("failed to join cluster"));
}

/// A key limited to 300 requests a minute in `mode` (`gossip` or `strict`), and 450 requests
/// spread over 3 nodes by 3 clients (one per node, `spacing` apart each) in one window: how
/// many the cluster admitted, and the mock's request count.
async fn shared_limit_run(mode: &str, spacing: Duration) -> Option<(usize, u64)> {
    let store = postgres_store()?;
    let mock = MockProvider::start(&[]).await;
    let governance = json!({
        "rate_limits": [{"id": "three-hundred", "request_max_limit": 300,
                         "request_reset_duration": "1m", "cluster_mode": mode}],
        "virtual_keys": [{"id": "shared", "value": "sk-bf-shared", "provider_configs": any_provider(), "rate_limit_id": "three-hundred"}]
    });
    let nodes = start_cluster(&base_config(store, &mock, governance), 3).await;
    wait_for_members(&nodes, 3).await;
    // Strict owners are chosen among healthy members: wait until every node counts all three.
    wait_for_healthy(&nodes, 3).await;
    // All requests in one one-minute window.
    wait_for_a_fresh_window_if_less_than(Duration::from_secs(30)).await;
    let started = Instant::now();
    let clients: Vec<_> = nodes
        .iter()
        .map(|node| {
            let url = node.url("/v1/chat/completions");
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let (mut admitted, mut refused) = (0_usize, 0_usize);
                for _ in 0..150 {
                    let status = client
                        .post(&url)
                        .bearer_auth("sk-bf-shared")
                        .json(&json!({"model": "openai/gpt-4o-mini",
                                      "messages": [{"role": "user", "content": "spend"}]}))
                        .send()
                        .await
                        .expect("answered")
                        .status();
                    match status {
                        StatusCode::OK => admitted += 1,
                        StatusCode::TOO_MANY_REQUESTS => refused += 1,
                        other => panic!("unexpected status {other}"),
                    }
                    tokio::time::sleep(spacing).await;
                }
                (admitted, refused)
            })
        })
        .collect();
    let mut admitted = 0;
    let mut per_node = Vec::new();
    for client in clients {
        let (node_admitted, node_refused) = client.await.expect("client task");
        admitted += node_admitted;
        per_node.push((node_admitted, node_refused));
    }
    eprintln!(
        "{mode}: 3 nodes, limit 300/min, 450 requests by 3 clients {spacing:?} apart in {:?}: \
         {admitted} admitted (overshoot {}), per node (admitted, refused) {per_node:?}",
        started.elapsed(),
        admitted as i64 - 300
    );
    for (index, node) in nodes.iter().enumerate() {
        let metrics = node.metrics().await;
        let strict: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("bifrost_strict_admissions_total"))
            .collect();
        eprintln!("node-{index}: {strict:?}");
    }
    Some((admitted, mock.requests().await))
}

#[tokio::test]
async fn a_gossip_limit_holds_across_three_nodes_within_a_small_overshoot() {
    let Some((admitted, upstream)) = shared_limit_run("gossip", Duration::from_millis(20)).await
    else {
        return;
    };
    assert!(admitted >= 300, "the limit admits 300: {admitted}");
    // Without sharing, three nodes would admit all 450. Each node learns the others' counts
    // ~100-300 ms late (publish + gossip round, more on a loaded CI machine): allow 10%.
    assert!(
        admitted <= 330,
        "gossip keeps the cluster within 300 + 10%: {admitted} admitted"
    );
    assert_eq!(upstream, admitted as u64);
}

#[tokio::test]
async fn a_strict_limit_admits_exactly_its_limit_across_three_nodes() {
    let Some((admitted, upstream)) = shared_limit_run("strict", Duration::from_millis(20)).await
    else {
        return;
    };
    assert_eq!(admitted, 300, "the owner node decides every request");
    assert_eq!(upstream, 300);
}

#[tokio::test]
async fn a_single_gateway_reports_cluster_mode_off() {
    let mock = MockProvider::start(&[]).await;
    let gateway = Gateway::start(&config_for(&mock)).await;
    let status = &gateway.cluster_status().await;
    assert_eq!(status["cluster_mode"], false, "{status:#}");
    assert_eq!(status["members"], 1);
    assert_eq!(status["nodes"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_node_with_the_wrong_cluster_key_cannot_join_or_change_counters() {
    let Some(store) = postgres_store() else {
        return;
    };
    let mock = MockProvider::start(&[]).await;
    let governance = json!({
        "rate_limits": [{"id": "ten", "request_max_limit": 10, "request_reset_duration": "1m"}],
        "virtual_keys": [{"id": "shared", "value": "sk-bf-shared", "provider_configs": any_provider(), "rate_limit_id": "ten"}]
    });
    let base = base_config(store, &mock, governance);
    let ports = free_udp_ports(3);
    let nodes = start_nodes(&base, &ports[..2], CLUSTER_KEY).await;
    wait_for_members(&nodes, 2).await;
    for node in &nodes {
        assert!(
            !node.output.contains("gossip is not encrypted"),
            "a keyed node does not warn"
        );
    }

    // Everything below happens in one one-minute rate-limit window.
    wait_for_a_fresh_window_if_less_than(Duration::from_secs(25)).await;

    // The intruder knows both nodes' gossip addresses but holds another key.
    let intruder = start_node(
        ClusterNode::with_static_peers(&ports, 2)
            .service_name(SERVICE)
            .config(&base),
        "0000000000000000000000000000000000000000000000000000000000000000",
    )
    .await;
    // It admits requests locally; none of them may reach the cluster's counters.
    for _ in 0..10 {
        assert_eq!(intruder.chat_as("sk-bf-shared").await, StatusCode::OK);
    }

    let dropped = r#"bifrost_gossip_packets_dropped_total{reason="auth"}"#;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for node in &nodes {
            let status = node.cluster_status().await;
            assert_eq!(status["members"], 2, "the intruder never joins: {status:#}");
            let ids: Vec<&str> = status["nodes"]
                .as_array()
                .expect("nodes")
                .iter()
                .map(|n| n["id"].as_str().expect("id"))
                .collect();
            assert!(!ids.contains(&"node-2"), "{status:#}");
        }
        let status = &intruder.cluster_status().await;
        assert_eq!(
            status["members"], 1,
            "the intruder sees only itself: {status:#}"
        );
        assert_eq!(
            status["nodes"].as_array().map(Vec::len),
            Some(1),
            "{status:#}"
        );
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for node in &nodes {
        let count = node.metric(dropped).await.unwrap_or(0.0);
        assert!(count > 0.0, "{dropped} is {count}");
    }

    // The intruder's 10 requests did not count: the cluster still admits its own 10 (plus at
    // most the usual gossip overshoot).
    let mut admitted = 0;
    for request in 0..14 {
        if nodes[request % 2].chat_as("sk-bf-shared").await == StatusCode::OK {
            admitted += 1;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        (10..=12).contains(&admitted),
        "only the cluster's own requests count: {admitted} admitted"
    );
    assert!(
        nodes[0]
            .output
            .contains("dropped a gossip packet that failed authentication"),
        "{:#?}",
        nodes[0].output.lines()
    );
}

#[tokio::test]
async fn a_node_without_a_cluster_key_warns_at_start() {
    let Some(store) = postgres_store() else {
        return;
    };
    let mock = MockProvider::start(&[]).await;
    let base = base_config(store, &mock, json!({}));
    let ports = free_udp_ports(1);
    let node = Gateway::start_with(
        &ClusterNode::with_static_peers(&[ports[0], ports[0] + 1], 0)
            .service_name(SERVICE)
            .config(&base),
        &[("BIFROST_ENCRYPTION_KEY", "cluster test key")],
    )
    .await;
    assert!(
        node.output
            .wait_for(
                "gossip is not encrypted: set cluster_config.gossip.encryption_key or BIFROST_CLUSTER_KEY",
                Duration::from_secs(5)
            )
            .await
            .is_some(),
        "{:#?}",
        node.output.lines()
    );
}

#[tokio::test]
async fn an_admin_change_on_one_node_reaches_every_node_through_gossip() {
    let Some(store) = postgres_store() else {
        return;
    };
    let mock = MockProvider::start(&[]).await;
    let mut base = base_config(store, &mock, json!({}));
    // The store poll at each flush would find the change too, but only after a minute: what
    // makes the others reload within seconds is the `cfg/version` they gossip.
    base["governance"]["usage_flush_interval_ms"] = json!(60_000);
    let nodes = start_cluster(&base, 3).await;
    wait_for_members(&nodes, 3).await;
    for node in &nodes {
        assert_eq!(
            node.chat_as("sk-bf-made-on-node-0").await,
            StatusCode::FORBIDDEN
        );
    }

    let changed_at = Instant::now();
    let response = reqwest::Client::new()
        .post(nodes[0].url("/api/governance/virtual-keys"))
        .json(&json!({"id": "made-on-node-0", "value": "sk-bf-made-on-node-0", "provider_configs": any_provider()}))
        .send()
        .await
        .expect("admin API answered");
    assert_eq!(response.status(), StatusCode::CREATED);
    let loaded_by = Deadline::since(changed_at, Duration::from_secs(10));
    for (index, node) in nodes.iter().enumerate() {
        wait_until(
            &format!("node-{index} to serve the new key"),
            loaded_by,
            async || {
                (
                    node.chat_as("sk-bf-made-on-node-0").await,
                    node.cluster_status().await,
                )
            },
            |(answer, _)| *answer == StatusCode::OK,
        )
        .await;
        eprintln!(
            "node-{index} serves the new key {:?} after the admin write",
            changed_at.elapsed()
        );
    }
    // Every node now runs, and publishes, the same config version.
    wait_until(
        "node-2 to list one config version for every node",
        Deadline::after(CONVERGENCE_DEADLINE).polling_every(Duration::from_millis(100)),
        async || nodes[2].cluster_status().await,
        |status| {
            let versions: Vec<&Value> = status["nodes"]
                .as_array()
                .expect("nodes")
                .iter()
                .map(|n| &n["config_version"])
                .collect();
            versions.iter().all(|v| v.is_i64() && *v == versions[0])
        },
    )
    .await;
    assert!(nodes[1]
        .output
        .contains("a peer runs a newer config version; reloading from the store"));
}

/// Junk on a node's gossip port: the 22-byte datagram that used to deafen a plaintext node for
/// good, then a spray of random ones. The node keeps hearing its peer, counts every junk
/// datagram as dropped (`parse`), and a third node joins afterwards.
async fn junk_on_the_gossip_port_never_deafens_a_node(cluster_key: &str, reason: &str) {
    let Some(store) = postgres_store() else {
        return;
    };
    let mock = MockProvider::start(&[]).await;
    let base = base_config(store, &mock, json!({}));
    let ports = free_udp_ports(3);
    let nodes = start_nodes(&base, &ports[..2], cluster_key).await;
    wait_for_healthy(&nodes, 2).await;

    let attacker = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let target = format!("127.0.0.1:{}", ports[0]);
    attacker
        .send_to(b"\x00\x01garbage-not-chitchat", &target)
        .expect("send");
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for n in 0..500u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 2_000) as usize;
        let junk: Vec<u8> = (0..len as u64).map(|i| (seed >> (i % 56)) as u8).collect();
        attacker.send_to(&junk, &target).expect("send");
        if n % 50 == 0 {
            // Paced so the socket buffer never overflows: every datagram must be counted.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let dropped = format!(r#"bifrost_gossip_packets_dropped_total{{reason="{reason}"}}"#);
    wait_until(
        &format!("node-0 to count all 501 junk datagrams in {dropped}"),
        Deadline::after(Duration::from_secs(10)),
        async || nodes[0].metric(&dropped).await.unwrap_or(0.0),
        |count| *count >= 501.0,
    )
    .await;

    // Longer than the failure detector needs to mark a silent peer dead (timeout 5 s; the
    // deafened node used to mark its peer dead ~1.5 s after the junk).
    let received = r#"bifrost_gossip_bytes_total{direction="received"}"#;
    let before = nodes[0].metric(received).await.unwrap_or(0.0);
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        let status = nodes[0].cluster_status().await;
        let peer = status["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["id"] == "node-1")
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(
            peer["state"], "alive",
            "node-0 still hears node-1: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        nodes[0].metric(received).await.unwrap_or(0.0) > before,
        "node-0 keeps receiving gossip"
    );

    let joiner = start_node(
        ClusterNode::with_static_peers(&ports, 2)
            .service_name(SERVICE)
            .config(&base),
        cluster_key,
    )
    .await;
    let all = [&nodes[0], &nodes[1], &joiner];
    wait_for_healthy(all, 3).await;
}

#[tokio::test]
async fn junk_datagrams_never_deafen_plaintext_gossip() {
    junk_on_the_gossip_port_never_deafens_a_node("", "parse").await;
}

#[tokio::test]
async fn junk_datagrams_never_deafen_sealed_gossip() {
    junk_on_the_gossip_port_never_deafens_a_node(CLUSTER_KEY, "auth").await;
}
