//! Cluster mode under faults: a node killed with SIGKILL, and a rolling restart under load.
//! Three real gateway processes on loopback gossiping over UDP, sharing one PostgreSQL store.
//! Skipped (with a printed reason) when no test PostgreSQL is configured.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bifrost_e2e::harness::{
    config_for, free_udp_ports, postgres_store, wait_for_healthy, wait_for_members, wait_until,
    ClusterNode, Deadline, Gateway, GossipTimings, MockProvider,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The shared cluster key (what an operator generates: 64 hex characters).
const CLUSTER_KEY: &str = "9c1e4b7a2d5f8e0b3c6a9d2f5e8b1c4a7d0e3f6b9c2a5d8e1f4b7c0a3d6e9f2b";
/// Failure detection used by these tests: suspect after 2 checks (500 ms each) without a
/// heartbeat, dead after about `TIMEOUT_SECONDS` of silence. Measured on 3 nodes, chitchat
/// declares a peer dead after only 50-70 % of `timeout_seconds` (each node hears a peer's
/// heartbeat from several gossipers, so the mean interval its phi divides by is under one
/// round); 4 s keeps "dead" well after "suspect".
const TIMEOUT_SECONDS: u64 = 4;
const SUCCESS_THRESHOLD: u64 = 2;
const FAILURE_THRESHOLD: u64 = 2;
/// The membership check runs every 500 ms (docs/architecture.md, Gossip).
const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Three nodes on a fresh PostgreSQL database, every one seeded with the other two.
async fn start_cluster(store: Value, mock: &MockProvider) -> Vec<Gateway> {
    let mut base = config_for(mock);
    base["config_store"] = store;
    let ports = free_udp_ports(3);
    let timings = GossipTimings {
        timeout_seconds: TIMEOUT_SECONDS,
        success_threshold: SUCCESS_THRESHOLD,
        failure_threshold: FAILURE_THRESHOLD,
    };
    let mut nodes = Vec::new();
    for index in 0..ports.len() {
        let config = ClusterNode::with_static_peers(&ports, index)
            .timings(timings)
            .service_name("bifrost-e2e-faults")
            .config(&base);
        nodes.push(
            Gateway::start_with(
                &config,
                &[
                    ("BIFROST_ENCRYPTION_KEY", "cluster fault test key"),
                    ("BIFROST_CLUSTER_KEY", CLUSTER_KEY),
                ],
            )
            .await,
        );
    }
    nodes
}

/// A small chat completion on `base`; the transport error, or the status.
async fn chat(client: &reqwest::Client, base: &str) -> Result<StatusCode, reqwest::Error> {
    client
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "openai/gpt-4o-mini",
                      "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .map(|response| response.status())
}

#[tokio::test]
async fn a_killed_node_is_marked_suspect_then_dead_and_the_others_keep_serving() {
    let Some(store) = postgres_store() else {
        return;
    };
    let mock = MockProvider::start(&[]).await;
    let mut nodes = start_cluster(store, &mock).await;
    wait_for_members(&nodes, 3).await;
    // Every survivor has seen the victim's heartbeat advance (it is healthy) before the kill.
    wait_for_healthy(&nodes[..2], 3).await;

    let victim = nodes.pop().expect("three nodes");
    let killed_at = Instant::now();
    victim.signal("KILL");
    drop(victim);

    // Suspect after `failure_threshold` silent checks; dead after about `timeout_seconds` of
    // silence. Margins: the heartbeat last seen may be up to one check old, chitchat's phi
    // detector needs a few gossip rounds beyond the threshold, and polling adds a little.
    let suspect_by = CHECK_INTERVAL * (FAILURE_THRESHOLD as u32 + 2);
    let dead_by = Duration::from_secs(TIMEOUT_SECONDS * 2 + 2);
    let client = reqwest::Client::new();
    // When each survivor first reported node-2 suspect, and dead.
    let (mut suspect_after, mut dead_after) = ([None; 2], [None; 2]);
    let (suspect_after, dead_after) = wait_until(
        "node-2 dead on every survivor (observed: when each saw it suspect, and dead)",
        Deadline::since(killed_at, dead_by),
        async || {
            let elapsed = killed_at.elapsed();
            for (index, node) in nodes.iter().enumerate() {
                match node.state_of("node-2").await.as_deref() {
                    Some("suspect") if suspect_after[index].is_none() => {
                        suspect_after[index] = Some(elapsed)
                    }
                    Some("dead") if dead_after[index].is_none() => {
                        dead_after[index] = Some(elapsed)
                    }
                    _ => {}
                }
                // The survivors keep serving the whole time.
                let answered = chat(&client, &node.base).await.expect("survivor answers");
                assert_eq!(
                    answered,
                    StatusCode::OK,
                    "node-{index} during failure detection"
                );
            }
            (suspect_after, dead_after)
        },
        |(_, dead_after)| dead_after.iter().all(Option::is_some),
    )
    .await;
    eprintln!(
        "kill -9 of node-2 (timeout_seconds {TIMEOUT_SECONDS}, failure_threshold \
         {FAILURE_THRESHOLD}): suspect after {suspect_after:?}, dead after {dead_after:?} \
         (node-0, node-1)"
    );
    for (index, node) in nodes.iter().enumerate() {
        let suspect = suspect_after[index]
            .unwrap_or_else(|| panic!("node-{index} never reported node-2 as suspect"));
        assert!(
            suspect < suspect_by,
            "node-{index}: suspect after {suspect:?}"
        );
        let dead = dead_after[index].expect("dead");
        assert!(suspect <= dead, "suspect comes before dead");
        // Seen by a poll that started within the deadline, not one just past it.
        assert!(dead < dead_by, "node-{index}: dead after {dead:?}");
        assert!(node.output.contains("node marked as suspect"));
        assert!(node.output.contains("node marked as dead"));
        let status = node.cluster_status().await;
        assert_eq!(
            status["members"], 2,
            "dead nodes are not members: {status:#}"
        );
        assert_eq!(status["cluster_health"], "HEALTHY", "{status:#}");
    }
    for node in &nodes {
        assert_eq!(
            chat(&client, &node.base).await.expect("answers"),
            StatusCode::OK
        );
    }
}

/// A round-robin client over the nodes' current addresses; a connection error (refused,
/// closed before an answer) moves the request to the next node, anything else counts.
struct SteadyLoad {
    bases: Arc<RwLock<Vec<String>>>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    retried: Arc<AtomicU64>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
}

impl SteadyLoad {
    fn new(nodes: &[Gateway]) -> Self {
        Self {
            bases: Arc::new(RwLock::new(nodes.iter().map(|n| n.base.clone()).collect())),
            stop: Arc::default(),
            sent: Arc::default(),
            retried: Arc::default(),
            failed: Arc::default(),
        }
    }

    /// Send one request every `every` until stopped; the task ends with the load.
    fn spawn(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let (bases, stop, sent, retried, failed) = (
            self.bases.clone(),
            self.stop.clone(),
            self.sent.clone(),
            self.retried.clone(),
            self.failed.clone(),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            let mut next = 0usize;
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                let mut outcome = None;
                // Every node may be tried a few times (one of them may be restarting).
                for _ in 0..30 {
                    let base = {
                        let bases = bases.read().expect("bases lock");
                        next = (next + 1) % bases.len();
                        bases[next].clone()
                    };
                    match chat(&client, &base).await {
                        Ok(status) => {
                            outcome = Some(Ok(status));
                            break;
                        }
                        Err(error) if error.is_connect() || error.is_request() => {
                            retried.fetch_add(1, Ordering::Relaxed);
                            outcome = Some(Err(format!("{base}: {error}")));
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(error) => {
                            outcome = Some(Err(format!("{base}: {error}")));
                            break;
                        }
                    }
                }
                match outcome {
                    Some(Ok(status)) if status.is_success() => {}
                    Some(Ok(status)) => failed.lock().expect("lock").push(status.to_string()),
                    Some(Err(error)) => failed.lock().expect("lock").push(error),
                    None => unreachable!("at least one attempt"),
                }
                tokio::time::sleep(every).await;
            }
        })
    }
}

#[tokio::test]
async fn rolling_restart_under_steady_load_fails_no_request() {
    let Some(store) = postgres_store() else {
        return;
    };
    let mock = MockProvider::start(&[]).await;
    let mut nodes = start_cluster(store, &mock).await;
    wait_for_members(&nodes, 3).await;

    let load = SteadyLoad::new(&nodes);
    let task = load.spawn(Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    for index in 0..nodes.len() {
        nodes[index].signal("TERM");
        let exit = nodes[index].wait_exit(Duration::from_secs(30)).await;
        assert!(exit.success(), "node-{index} exits 0 on SIGTERM: {exit:?}");
        nodes[index].restart().await;
        load.bases.write().expect("bases lock")[index] = nodes[index].base.clone();
        let rejoined = wait_for_members(&nodes, 3).await;
        eprintln!("node-{index} restarted; 3 members again on every node after {rejoined:?}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.stop.store(true, Ordering::Relaxed);
    task.await.expect("load task");

    let sent = load.sent.load(Ordering::Relaxed);
    let retried = load.retried.load(Ordering::Relaxed);
    let failed = load.failed.lock().expect("lock").clone();
    eprintln!(
        "rolling restart of 3 nodes in {:?}: {sent} requests sent, {retried} retried on a \
         connection error, {} failed",
        started.elapsed(),
        failed.len()
    );
    assert!(sent > 100, "the load kept going: {sent} requests");
    assert!(failed.is_empty(), "failed requests: {failed:#?}");
    assert_eq!(
        mock.requests().await,
        sent,
        "every request reached the provider once"
    );
}
