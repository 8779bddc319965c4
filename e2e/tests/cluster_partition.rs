//! A network partition: three gateways, each in its own network namespace, one PostgreSQL store
//! and the mock provider in the root namespace. Node-2 is cut off from node-0 and node-1 (but
//! not from the store or the provider); both sides keep serving, the rate limit holds within
//! the bound `cluster_stale_policy: local` promises, and after healing membership and counters
//! converge again.
//!
//! Needs root (network namespaces, through `ip` from iproute2) and a test PostgreSQL; without
//! them skipped with a printed reason, except in CI (`CI` set), where that is a failure.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use bifrost_e2e::harness::{
    any_provider, cluster_statuses, config_for, postgres_store, skip_unless_ci, wait_until,
    ClusterNode, Deadline, Gateway, GossipTimings, MockProvider, CONVERGENCE_DEADLINE,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

const CLUSTER_KEY: &str = "3e7a1c9f5b2d8e4a6c0f3b9d7e1a5c8f2b4d6e0a9c3f7b1d5e8a2c4f6b0d9e3a";
const ADMIN_TOKEN: &str = "partition-test-admin-token";
const NODES: usize = 3;
/// Every node gossips on this port of its own namespace's address.
const GOSSIP_PORT: u16 = 10101;
/// Suspect after 2 silent checks of 500 ms, dead after (in practice 50-70 % of) 4 s.
const TIMEOUT_SECONDS: u64 = 4;

/// The key under test: `LIMIT` requests per day, shared by the cluster.
const LIMITED: &str = "sk-bf-partition-limited";
const LIMIT: u64 = 30;
/// A key with a limit never reached: probes that must answer 200 on both sides, and whose
/// `x-ratelimit-remaining-requests` shows each node's view of the cluster count.
const COUNTED: &str = "sk-bf-partition-counted";
const COUNTED_LIMIT: u64 = 1000;
/// What one request costs at the prices below (the mock's fixed usage); both keys share the
/// budget `shared`.
const COST: f64 = 0.11;

/// Extra admissions on the majority side from gossip lag between node-0 and node-1. Requests
/// alternate between them 100 ms apart, so a node misses the other's admissions of the last
/// gossip delay: one or two at the usual ~200 ms (docs/architecture.md, Gossip), five allows a
/// delay of about a second on a loaded 2-core machine.
const MAJORITY_SLACK: u64 = 5;

#[tokio::test]
async fn a_partitioned_node_keeps_serving_within_its_share_and_converges_after_healing() {
    let Some(net) = Network::create(NODES) else {
        return;
    };
    let Some(store) = postgres_store() else {
        return;
    };
    let test_started = Instant::now();

    // The store and the mock listen on 127.0.0.1 of the root namespace; the namespaces reach
    // them through forwarders on the root side of the bridge.
    let mock = MockProvider::start(&[]).await;
    let mock_forward = TcpForward::start(net.root_ip, socket_addr(&mock.base)).await;
    let pg_target: SocketAddr = format!(
        "{}:{}",
        store["config"]["host"].as_str().expect("host"),
        store["config"]["port"]
    )
    .parse()
    .expect("PostgreSQL address");
    let pg_forward = TcpForward::start(net.root_ip, pg_target).await;

    let mut base = config_for(&mock);
    for provider in ["openai", "anthropic"] {
        base["providers"][provider]["network_config"]["base_url"] =
            json!(format!("http://{}", mock_forward.addr));
    }
    base["config_store"] = store.clone();
    base["config_store"]["config"]["host"] = json!(net.root_ip.to_string());
    base["config_store"]["config"]["port"] = json!(pg_forward.addr.port());
    base["client"]["enforce_auth_on_inference"] = json!(true);
    base["governance"] = json!({
        "budgets": [{"id": "shared", "max_limit": 1000.0, "reset_duration": "1M"}],
        "rate_limits": [
            {"id": "limited", "request_max_limit": LIMIT, "request_reset_duration": "1d"},
            {"id": "counted", "request_max_limit": COUNTED_LIMIT, "request_reset_duration": "1d"}
        ],
        "virtual_keys": [
            {"id": "limited", "value": LIMITED, "provider_configs": any_provider(), "rate_limit_id": "limited", "budget_id": "shared"},
            {"id": "counted", "value": COUNTED, "provider_configs": any_provider(), "rate_limit_id": "counted", "budget_id": "shared"}
        ],
        "pricing": [{"model": "gpt-4o-mini", "input_cost_per_token": 0.01, "output_cost_per_token": 0.02}],
        "usage_flush_interval_ms": 500
    });

    // Everything counted below happens in one daily window.
    wait_for_a_fresh_day_if_less_than(Duration::from_secs(60)).await;

    let timings = GossipTimings {
        timeout_seconds: TIMEOUT_SECONDS,
        success_threshold: 2,
        failure_threshold: 2,
    };
    let mut nodes = Vec::new();
    for index in 0..NODES {
        let peers = (0..NODES)
            .filter(|peer| *peer != index)
            .map(|peer| format!("{}:{GOSSIP_PORT}", net.node_ip(peer)))
            .collect();
        let config = ClusterNode::new(index, GOSSIP_PORT)
            .peers(peers)
            .timings(timings)
            .service_name("bifrost-e2e-partition")
            .config(&base);
        nodes.push(
            Gateway::start_in_netns(
                &net.namespace(index),
                &net.node_ip(index).to_string(),
                &config,
                &[
                    ("BIFROST_ENCRYPTION_KEY", "partition test key"),
                    ("BIFROST_CLUSTER_KEY", CLUSTER_KEY),
                    ("BIFROST_ADMIN_TOKEN", ADMIN_TOKEN),
                ],
            )
            .await,
        );
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    wait_until(
        "3 healthy members on every node",
        Deadline::after(CONVERGENCE_DEADLINE),
        async || cluster_statuses(&nodes).await,
        |statuses| {
            statuses
                .iter()
                .all(|status| status["members"] == 3 && status["healthy_members"] == 3)
        },
    )
    .await;

    // Before the partition: one request per node on each key, seen everywhere.
    let mut admitted_total = 0u64; // every 200, both keys (all charge the budget)
    let mut counted_admitted = 0u64;
    for node in &nodes {
        for key in [LIMITED, COUNTED] {
            assert_eq!(chat(&client, node, key).await.0, StatusCode::OK);
            admitted_total += 1;
        }
        counted_admitted += 1;
    }
    let before = NODES as u64; // requests on LIMITED, one per node
    wait_for_usage(&client, &nodes, admitted_total as f64 * COST).await;

    // Cut node-2 off from node-0 and node-1; every node still reaches the root namespace.
    net.partition(2, &[0, 1]);
    let partitioned_at = Instant::now();
    eprintln!("partitioned node-2 from node-0 and node-1");

    // Until every side has declared the other dead, both keep answering (COUNTED's limit is
    // far away, even at a third of it).
    let dead_by = Duration::from_secs(TIMEOUT_SECONDS * 2 + 2);
    let mut suspect_seen = [false; NODES];
    wait_until(
        "the two sides to declare each other dead (observed: who sees whom how)",
        Deadline::since(partitioned_at, dead_by).polling_every(Duration::from_millis(100)),
        async || {
            let mut seen = Vec::new();
            for (index, node) in nodes.iter().enumerate() {
                let others: &[&str] = if index == 2 {
                    &["node-0", "node-1"]
                } else {
                    &["node-2"]
                };
                for other in others {
                    let state = node.state_of(other).await;
                    suspect_seen[index] |= matches!(state.as_deref(), Some("suspect" | "dead"));
                    seen.push((format!("node-{index} sees {other}"), state));
                }
                let (status, _) = chat(&client, node, COUNTED).await;
                assert_eq!(status, StatusCode::OK, "node-{index} during the partition");
                admitted_total += 1;
                counted_admitted += 1;
            }
            seen
        },
        |seen| {
            seen.iter()
                .all(|(_, state)| state.as_deref() == Some("dead"))
        },
    )
    .await;
    assert!(suspect_seen.iter().all(|seen| *seen));
    eprintln!(
        "both sides see the other dead after {:?}",
        partitioned_at.elapsed()
    );
    for (index, node) in nodes.iter().enumerate() {
        let members = node.cluster_status().await["members"].clone();
        let expected = if index == 2 { 1 } else { 2 };
        assert_eq!(members, expected, "node-{index} during the partition");
    }

    // Load on both sides at once. The majority (fresh view: node-0 + node-1 + node-2's last
    // gossiped count) admits the rest of the limit, the minority (stale view, policy `local`)
    // admits up to a third of the limit on its own counts.
    let majority = async {
        let (mut admitted, mut refused) = ([0u64; 2], 0u64);
        for request in 0..(LIMIT + 2 * MAJORITY_SLACK) as usize {
            match chat(&client, &nodes[request % 2], LIMITED).await.0 {
                StatusCode::OK => admitted[request % 2] += 1,
                StatusCode::TOO_MANY_REQUESTS => refused += 1,
                other => panic!("majority answered {other}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (admitted, refused)
    };
    let minority = async {
        let (mut admitted, mut refused) = (0u64, 0u64);
        for _ in 0..LIMIT / 2 {
            match chat(&client, &nodes[2], LIMITED).await.0 {
                StatusCode::OK => admitted += 1,
                StatusCode::TOO_MANY_REQUESTS => refused += 1,
                other => panic!("minority answered {other}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (admitted, refused)
    };
    let ((majority_admitted, majority_refused), (minority_admitted, minority_refused)) =
        tokio::join!(majority, minority);
    let majority_sum: u64 = majority_admitted.iter().sum();
    let cluster_total = before + majority_sum + minority_admitted;
    let minority_share = LIMIT / NODES as u64;
    // The majority counts all `before` requests; node-2 counts only its own one.
    let majority_allowed = LIMIT - before;
    let minority_allowed = minority_share - 1;
    let bound = LIMIT + minority_allowed + MAJORITY_SLACK;
    eprintln!(
        "partition, limit {LIMIT}/day, {before} admitted before: majority admitted \
         {majority_sum} (node-0 {}, node-1 {}; {majority_refused} refused), minority admitted \
         {minority_admitted} ({minority_refused} refused); cluster total {cluster_total} \
         (bound {bound}: limit + minority share {minority_share} - its 1 before + slack \
         {MAJORITY_SLACK})",
        majority_admitted[0], majority_admitted[1]
    );
    admitted_total += majority_sum + minority_admitted;
    // On local counts only, node-2 stops exactly at its share: 1 before + the rest now.
    assert_eq!(
        minority_admitted, minority_allowed,
        "node-2 admits up to limit / 3 on its own counts"
    );
    assert!(
        (majority_allowed..=majority_allowed + MAJORITY_SLACK).contains(&majority_sum),
        "the majority shares the rest of the limit: {majority_sum} admitted, expected \
         {majority_allowed} + at most {MAJORITY_SLACK}"
    );
    assert!(majority_admitted.iter().all(|n| *n > 0), "both serve");
    assert!(cluster_total <= bound, "{cluster_total} > {bound}");

    // Heal: every node lists all three alive again.
    net.heal(2, &[0, 1]);
    let healed_at = Instant::now();
    wait_until(
        "3 alive members on every node",
        Deadline::after(CONVERGENCE_DEADLINE),
        async || cluster_statuses(&nodes).await,
        |statuses| {
            statuses.iter().all(|status| {
                status["members"] == 3
                    && status["nodes"]
                        .as_array()
                        .is_some_and(|n| n.len() == 3 && n.iter().all(|n| n["state"] == "alive"))
            })
        },
    )
    .await;
    eprintln!(
        "healed: 3 alive members everywhere after {:?}",
        healed_at.elapsed()
    );

    // Every node's view of COUNTED's window count converges to the cluster's: its remaining
    // requests after one more request is the limit minus everything admitted so far. A probe
    // that finds a node behind is admitted too, and counted.
    for (index, node) in nodes.iter().enumerate() {
        wait_until(
            &format!(
                "node-{index} to report the cluster's remaining requests (observed: what it \
                 reports, what the cluster has left)"
            ),
            Deadline::after(CONVERGENCE_DEADLINE).polling_every(Duration::from_millis(100)),
            async || {
                let (status, remaining) = chat(&client, node, COUNTED).await;
                assert_eq!(status, StatusCode::OK);
                admitted_total += 1;
                counted_admitted += 1;
                (remaining, COUNTED_LIMIT - counted_admitted)
            },
            |(remaining, expected)| *remaining == Some(*expected),
        )
        .await;
    }
    // The limited key is over its limit cluster-wide now, on every node.
    for (index, node) in nodes.iter().enumerate() {
        let (status, remaining) = chat(&client, node, LIMITED).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "node-{index}");
        assert_eq!(remaining, Some(0), "node-{index}");
    }
    // And every node's view of the budget is the exact cluster-wide spend.
    wait_for_usage(&client, &nodes, admitted_total as f64 * COST).await;
    eprintln!(
        "converged after healing in {:?}: {counted_admitted} requests counted on every node, \
         ${:.2} spent; test took {:?}",
        healed_at.elapsed(),
        admitted_total as f64 * COST,
        test_started.elapsed()
    );
    assert_eq!(mock.requests().await, admitted_total);
}

/// A chat completion with virtual key `vk` on `node`: the status and
/// `x-ratelimit-remaining-requests`.
async fn chat(client: &reqwest::Client, node: &Gateway, vk: &str) -> (StatusCode, Option<u64>) {
    let response = client
        .post(node.url("/v1/chat/completions"))
        .bearer_auth(vk)
        .json(&json!({"model": "openai/gpt-4o-mini",
                      "messages": [{"role": "user", "content": "partition"}]}))
        .send()
        .await
        .unwrap_or_else(|error| panic!("{} does not answer: {error}", node.base));
    let remaining = response
        .headers()
        .get("x-ratelimit-remaining-requests")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (response.status(), remaining)
}

/// Budget `shared`'s `current_usage` as `node` sees it (the admin API, with the token: the
/// test reaches the nodes from outside their loopback).
async fn budget_usage(client: &reqwest::Client, node: &Gateway) -> f64 {
    let usage: Value = client
        .get(node.url("/api/governance/usage"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("usage answered")
        .json()
        .await
        .expect("usage JSON");
    usage["budgets"]
        .as_array()
        .and_then(|budgets| budgets.iter().find(|b| b["id"] == "shared"))
        .and_then(|b| b["current_usage"].as_f64())
        .unwrap_or(-1.0)
}

/// Wait until every node's view of the budget is `want` USD.
async fn wait_for_usage(client: &reqwest::Client, nodes: &[Gateway], want: f64) {
    let deadline = Deadline::after(CONVERGENCE_DEADLINE);
    for (index, node) in nodes.iter().enumerate() {
        wait_until(
            &format!("node-{index} to see the ${want} the cluster spent"),
            deadline,
            async || budget_usage(client, node).await,
            |got| (got - want).abs() < 1e-9,
        )
        .await;
    }
}

/// Skip to the next UTC day when less than `needed` is left of this one.
async fn wait_for_a_fresh_day_if_less_than(needed: Duration) {
    const DAY_MS: u64 = 24 * 3600 * 1000;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let left = DAY_MS - now_ms % DAY_MS;
    if left < needed.as_millis() as u64 {
        tokio::time::sleep(Duration::from_millis(left + 50)).await;
    }
}

/// `127.0.0.1:port` of an `http://127.0.0.1:port` base URL.
fn socket_addr(base: &str) -> SocketAddr {
    base.trim_start_matches("http://")
        .parse()
        .expect("host:port")
}

/// Forwards TCP connections from `addr` (on the bridge, reachable from every namespace) to a
/// server on the root namespace's loopback. Stops, with its connections, when dropped.
struct TcpForward {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TcpForward {
    async fn start(ip: IpAddr, target: SocketAddr) -> Self {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind forwarder");
        let addr = listener.local_addr().expect("forwarder address");
        let task = tokio::spawn(async move {
            // Dropped with the task: aborts every connection.
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Self { addr, task }
    }
}

impl Drop for TcpForward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One network namespace per node and a hub namespace holding a bridge they all plug into,
/// plus a veth from the root namespace to the bridge (`root_ip`). The bridge sits in its own
/// namespace so the root namespace's firewall (e.g. Docker's FORWARD policy with
/// `br_netfilter`) never sees the traffic between nodes. Names carry this process's id; all
/// of it is deleted on drop, also after a panic.
struct Network {
    prefix: String,
    /// `198.18.x.y`: the benchmarking range (RFC 2544), one /24 per process id.
    subnet: [u8; 3],
    root_ip: IpAddr,
    /// Namespaces created so far (deleted on drop).
    created: Vec<String>,
    root_link: Option<String>,
}

impl Network {
    /// Set up `nodes` namespaces. When this process may not create namespaces: `None` (with
    /// the reason printed), or in CI a panic. Any later failure panics.
    fn create(nodes: usize) -> Option<Self> {
        if !running_as_root() {
            return skip_unless_ci(
                "not running as root, which network namespaces need",
                "run the tests as root",
            );
        }
        sweep_leftovers();
        let pid = std::process::id();
        let index = pid % 512;
        let subnet = [198, 18 + (index / 256) as u8, (index % 256) as u8];
        let mut net = Self {
            prefix: format!("bfpart{pid}"),
            subnet,
            root_ip: IpAddr::from([subnet[0], subnet[1], subnet[2], 254]),
            created: Vec::new(),
            root_link: None,
        };
        let hub = net.hub();
        if let Err(error) = ip(&["netns", "add", &hub]) {
            return skip_unless_ci(
                &format!("`ip netns add` failed: {error}"),
                "scripts/test-deps.sh installs iproute2; namespaces need CAP_SYS_ADMIN (a VM or \
                 a privileged container)",
            );
        }
        net.created.push(hub.clone());
        net.setup(nodes)
            .unwrap_or_else(|error| panic!("setting up the network namespaces: {error}"));
        Some(net)
    }

    fn setup(&mut self, nodes: usize) -> Result<(), String> {
        let hub = self.hub();
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for index in 0..nodes {
            let ns = self.namespace(index);
            ip(&["netns", "add", &ns])?;
            self.created.push(ns.clone());
            let (inside, port) = (format!("{}n{index}", self.prefix), format!("p{index}"));
            ip(&[
                "link", "add", &inside, "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &hub,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
            let cidr = format!("{}/24", self.node_ip(index));
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", &inside])?;
            ip(&["-n", &ns, "link", "set", &inside, "up"])?;
            // Sealed gossip relays every datagram through loopback sockets.
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        let root_link = format!("{}r", self.prefix);
        ip(&[
            "link", "add", &root_link, "type", "veth", "peer", "name", "root", "netns", &hub,
        ])?;
        self.root_link = Some(root_link.clone());
        ip(&["-n", &hub, "link", "set", "root", "master", "br0", "up"])?;
        let cidr = format!("{}/24", self.root_ip);
        ip(&["addr", "add", &cidr, "dev", &root_link])?;
        ip(&["link", "set", &root_link, "up"])?;
        Ok(())
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    /// The namespace of node `index`.
    fn namespace(&self, index: usize) -> String {
        format!("{}-n{index}", self.prefix)
    }

    /// The address of node `index`.
    fn node_ip(&self, index: usize) -> IpAddr {
        let [a, b, c] = self.subnet;
        IpAddr::from([a, b, c, index as u8 + 1])
    }

    /// Drop all traffic between `node` and each of `others` (blackhole routes on both sides);
    /// the root namespace stays reachable from all of them.
    fn partition(&self, node: usize, others: &[usize]) {
        self.blackholes("add", node, others);
    }

    /// Undo [`Network::partition`].
    fn heal(&self, node: usize, others: &[usize]) {
        self.blackholes("del", node, others);
    }

    fn blackholes(&self, action: &str, node: usize, others: &[usize]) {
        for &other in others {
            for (from, to) in [(node, other), (other, node)] {
                let dest = format!("{}/32", self.node_ip(to));
                ip(&[
                    "-n",
                    &self.namespace(from),
                    "route",
                    action,
                    "blackhole",
                    &dest,
                ])
                .unwrap_or_else(|error| panic!("route {action} blackhole: {error}"));
            }
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Some(link) = &self.root_link {
            let _ = ip(&["link", "del", link]);
        }
        for ns in self.created.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Delete namespaces left by runs of this test whose process is gone (killed before its drop).
fn sweep_leftovers() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix("bfpart")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Run `ip` with `args`; its stderr on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|error| format!("cannot run ip: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Whether the effective user id (`/proc/self/status`, `Uid:` real, effective, ...) is 0.
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uids = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))?
                .to_string();
            uids.split_whitespace().nth(1).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}
