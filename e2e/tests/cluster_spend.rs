//! Budgets across a cluster: spend charged on every node lands in the store exactly once,
//! whether the nodes stop gracefully or one is killed with SIGKILL before it flushed (a
//! survivor then writes the dead node's last gossiped spend). Three real gateway processes on
//! loopback, one PostgreSQL store; skipped (with a printed reason) without a test PostgreSQL.

use std::time::{Duration, Instant};

use bifrost_e2e::harness::{
    any_provider, config_for, free_udp_ports, postgres_store, stored_budget_usage,
    wait_for_members, wait_until, ClusterNode, Deadline, Gateway, GossipTimings, MockProvider,
    CONVERGENCE_DEADLINE,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const CLUSTER_KEY: &str = "5d2a8f1c4e7b0a3d6f9c2e5b8a1d4f7c0e3b6a9d2c5f8e1b4a7d0c3f6e9b2a5d";
const VK: &str = "sk-bf-shared-budget";
/// What one `Gateway::chat_as` costs at the prices below (the mock's fixed usage).
const COST: f64 = 0.11;
/// Dead after about this much silence (sooner in practice; see cluster_faults.rs).
const TIMEOUT_SECONDS: u64 = 4;

fn base_config(store: &Value, mock: &MockProvider, flush_interval_ms: u64) -> Value {
    let mut config = config_for(mock);
    config["config_store"] = store.clone();
    config["governance"] = json!({
        "budgets": [{"id": "shared", "max_limit": 1000.0, "reset_duration": "1M"}],
        "virtual_keys": [{"id": "k", "value": VK, "provider_configs": any_provider(), "budget_id": "shared"}],
        "pricing": [{"model": "gpt-4o-mini", "input_cost_per_token": 0.01, "output_cost_per_token": 0.02}],
        "usage_flush_interval_ms": flush_interval_ms
    });
    config
}

async fn start_cluster(base: &Value) -> Vec<Gateway> {
    let ports = free_udp_ports(3);
    let timings = GossipTimings {
        timeout_seconds: TIMEOUT_SECONDS,
        success_threshold: 2,
        failure_threshold: 2,
    };
    let mut nodes = Vec::new();
    for index in 0..ports.len() {
        let config = ClusterNode::with_static_peers(&ports, index)
            .timings(timings)
            .service_name("bifrost-e2e-spend")
            .config(base);
        nodes.push(
            Gateway::start_with(
                &config,
                &[
                    ("BIFROST_ENCRYPTION_KEY", "cluster spend test key"),
                    ("BIFROST_CLUSTER_KEY", CLUSTER_KEY),
                ],
            )
            .await,
        );
    }
    wait_for_members(&nodes, 3).await;
    nodes
}

/// Poll `read` until it returns `want` (to the cent's billionth) or the deadline passes.
async fn wait_for_usd(what: &str, want: f64, read: impl AsyncFnMut() -> f64) {
    wait_until(
        &format!("{what} to show ${want}"),
        Deadline::after(CONVERGENCE_DEADLINE),
        read,
        |got| (got - want).abs() < 1e-9,
    )
    .await;
}

async fn stop(node: &mut Gateway) {
    node.signal("TERM");
    assert_eq!(
        node.wait_exit(Duration::from_secs(20)).await.code(),
        Some(0),
        "clean exit"
    );
}

#[tokio::test]
async fn a_killed_nodes_unflushed_spend_reaches_the_store_once() {
    let Some(store) = postgres_store() else {
        return;
    };
    let mock = MockProvider::start(&[]).await;
    // Nobody flushes on a timer during the test: all spend stays in memory and gossip.
    let mut nodes = start_cluster(&base_config(&store, &mock, 3_600_000)).await;
    for (index, count) in [(0, 2), (1, 1), (2, 5)] {
        for _ in 0..count {
            assert_eq!(nodes[index].chat_as(VK).await, StatusCode::OK);
        }
    }
    // Every node sees the cluster's 8 requests through gossip, and nothing is in the store.
    for node in &nodes {
        wait_for_usd("cluster-wide view", 8.0 * COST, async || {
            node.first_budget_usage().await
        })
        .await;
    }
    assert_eq!(stored_budget_usage(&store, "shared"), Some(0.0));

    let victim = nodes.pop().expect("three nodes");
    victim.signal("KILL");
    drop(victim);
    // A survivor writes node-2's 5 requests once it is declared dead.
    wait_for_usd("the store after node-2 died", 5.0 * COST, async || {
        stored_budget_usage(&store, "shared").unwrap_or(0.0)
    })
    .await;
    // The writer logs after its transaction commits: wait for the line, then check no other
    // survivor wrote too.
    const WROTE: &str = "wrote a dead node's unflushed spend to the store";
    let writers = wait_until(
        &format!("a survivor to log `{WROTE}` (observed: the survivors that did)"),
        Deadline::after(CONVERGENCE_DEADLINE),
        async || {
            (0..nodes.len())
                .filter(|i| nodes[*i].output.contains(WROTE))
                .collect::<Vec<usize>>()
        },
        |writers| !writers.is_empty(),
    )
    .await;
    assert_eq!(
        writers.len(),
        1,
        "exactly one survivor writes it: {writers:?}"
    );

    // The survivors' own spend lands at their final flush; nothing is counted twice.
    for node in &mut nodes {
        stop(node).await;
    }
    assert!(
        (stored_budget_usage(&store, "shared").unwrap_or(0.0) - 8.0 * COST).abs() < 1e-9,
        "every request charged once: {:?}",
        stored_budget_usage(&store, "shared")
    );
}

#[tokio::test]
async fn a_budget_is_charged_cluster_wide_and_exact_after_a_full_restart() {
    let Some(store) = postgres_store() else {
        return;
    };
    let mock = MockProvider::start(&[]).await;
    let mut nodes = start_cluster(&base_config(&store, &mock, 200)).await;
    for (index, node) in nodes.iter().enumerate() {
        for _ in 0..=index {
            assert_eq!(node.chat_as(VK).await, StatusCode::OK);
        }
    }
    for node in &nodes {
        wait_for_usd("cluster-wide view", 6.0 * COST, async || {
            node.first_budget_usage().await
        })
        .await;
    }
    // Flushes every 200 ms move the spend from gossip to the store: no node's view dips while
    // the others catch up with the store (the flushing node keeps gossiping what it wrote for
    // a flush interval).
    let watched = Instant::now();
    let mut lowest = f64::MAX;
    while watched.elapsed() < Duration::from_millis(1500) {
        for (index, node) in nodes.iter().enumerate() {
            let seen = node.first_budget_usage().await;
            if seen < 6.0 * COST - 1e-9 {
                eprintln!(
                    "node-{index} saw ${seen} {:?} into the watch",
                    watched.elapsed()
                );
            }
            lowest = lowest.min(seen);
        }
    }
    assert!(
        lowest >= 6.0 * COST - 1e-9,
        "a node's view dipped to ${lowest} while spend moved to the store"
    );
    // Everyone stops (final flushes; peers see them leave and write nothing more), everyone
    // comes back, one more request each.
    for node in &mut nodes {
        stop(node).await;
    }
    assert!((stored_budget_usage(&store, "shared").unwrap_or(0.0) - 6.0 * COST).abs() < 1e-9);
    for node in &mut nodes {
        node.restart().await;
    }
    wait_for_members(&nodes, 3).await;
    for node in &nodes {
        assert_eq!(node.chat_as(VK).await, StatusCode::OK);
    }
    for node in &nodes {
        wait_for_usd("view after the restart", 9.0 * COST, async || {
            node.first_budget_usage().await
        })
        .await;
    }
    for node in &mut nodes {
        stop(node).await;
    }
    let stored = stored_budget_usage(&store, "shared").unwrap_or(0.0);
    assert!(
        (stored - 9.0 * COST).abs() < 1e-9,
        "stored ${stored}, expected ${}",
        9.0 * COST
    );
}
