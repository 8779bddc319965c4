//! Test clusters: the `cluster_config` of one node, and waiting until the nodes agree.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::{free_tcp_ports, wait_until, Deadline, Gateway};

/// How long a test cluster may take to agree on its membership.
pub const CONVERGENCE_DEADLINE: Duration = Duration::from_secs(20);

/// Failure-detection settings of a test cluster (`cluster_config.gossip.config`).
#[derive(Debug, Clone, Copy)]
pub struct GossipTimings {
    /// `timeout_seconds`.
    pub timeout_seconds: u64,
    /// `success_threshold`.
    pub success_threshold: u64,
    /// `failure_threshold`.
    pub failure_threshold: u64,
}

impl Default for GossipTimings {
    /// What most cluster tests use: suspect after 5 s of silence, healthy after 2 good checks,
    /// unhealthy after 3 bad ones.
    fn default() -> Self {
        Self {
            timeout_seconds: 5,
            success_threshold: 2,
            failure_threshold: 3,
        }
    }
}

/// The `cluster_config` of node `index` (`node-<index>`, region `local`) of a test cluster on
/// one host, built up and then laid over a base config with [`ClusterNode::config`].
#[derive(Debug, Clone)]
pub struct ClusterNode {
    index: usize,
    gossip_port: u16,
    peers: Vec<String>,
    grpc_port: Option<u16>,
    timings: GossipTimings,
    discovery: Map<String, Value>,
}

impl ClusterNode {
    /// Node `index` gossiping on `gossip_port`, with no static peers, discovery off and
    /// [`GossipTimings::default`].
    pub fn new(index: usize, gossip_port: u16) -> Self {
        Self {
            index,
            gossip_port,
            peers: Vec::new(),
            grpc_port: None,
            timings: GossipTimings::default(),
            discovery: Map::new(),
        }
    }

    /// Node `index` of a loopback cluster gossiping on `ports` (its own is `ports[index]`),
    /// seeded with every other one on 127.0.0.1: static peers.
    pub fn with_static_peers(ports: &[u16], index: usize) -> Self {
        let peers = ports
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, port)| format!("127.0.0.1:{port}"))
            .collect();
        Self {
            peers,
            ..Self::new(index, ports[index])
        }
    }

    /// Seed with `peers` (`host:port`) instead.
    pub fn peers(mut self, peers: Vec<String>) -> Self {
        self.peers = peers;
        self
    }

    /// Detect failures with `timings`.
    pub fn timings(mut self, timings: GossipTimings) -> Self {
        self.timings = timings;
        self
    }

    /// Serve gRPC on `port` (otherwise on a port free when the config is built: nodes share
    /// one host, so each needs its own).
    pub fn grpc_port(mut self, port: u16) -> Self {
        self.grpc_port = Some(port);
        self
    }

    /// Belong to cluster `name` (`discovery.service_name`).
    pub fn service_name(self, name: &str) -> Self {
        self.discovery_fields(json!({ "service_name": name }))
    }

    /// Find peers through `discovery` (its fields: `type` and what that method needs), turned
    /// on and refreshed every second.
    pub fn discovery(self, discovery: Value) -> Self {
        self.discovery_fields(discovery)
            .discovery_fields(json!({"enabled": true, "refresh_interval_seconds": 1}))
    }

    fn discovery_fields(mut self, fields: Value) -> Self {
        let Value::Object(fields) = fields else {
            panic!("discovery settings are a JSON object: {fields}");
        };
        self.discovery.extend(fields);
        self
    }

    /// `base` with this node's `cluster_config`.
    pub fn config(&self, base: &Value) -> Value {
        let grpc_port = self.grpc_port.unwrap_or_else(|| free_tcp_ports(1)[0]);
        let timings = self.timings;
        let mut config = base.clone();
        config["cluster_config"] = json!({
            "enabled": true,
            "node_id": format!("node-{}", self.index),
            "region": "local",
            "peers": self.peers,
            "grpc": {"port": grpc_port},
            "gossip": {"port": self.gossip_port,
                       "config": {"timeout_seconds": timings.timeout_seconds,
                                  "success_threshold": timings.success_threshold,
                                  "failure_threshold": timings.failure_threshold}},
            "discovery": self.discovery,
        });
        config
    }
}

impl Gateway {
    /// `GET /cluster/status`.
    pub async fn cluster_status(&self) -> Value {
        reqwest::get(self.url("/cluster/status"))
            .await
            .expect("status answered")
            .json()
            .await
            .expect("status JSON")
    }

    /// The state (`alive`, `suspect`, `dead`) this node reports for node `id`, if it lists it.
    pub async fn state_of(&self, id: &str) -> Option<String> {
        self.cluster_status().await["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["id"] == id)?["state"]
            .as_str()
            .map(str::to_string)
    }
}

/// `GET /cluster/status` of every node in `nodes`, in order.
pub async fn cluster_statuses<'a>(nodes: impl IntoIterator<Item = &'a Gateway>) -> Vec<Value> {
    let mut statuses = Vec::new();
    for node in nodes {
        statuses.push(node.cluster_status().await);
    }
    statuses
}

/// Poll until every node in `nodes` counts `size` healthy members (every peer passed the
/// success threshold). Panics with the status of the first node that does not, after
/// [`CONVERGENCE_DEADLINE`].
pub async fn wait_for_healthy<'a>(nodes: impl IntoIterator<Item = &'a Gateway>, size: u64) {
    let deadline = Deadline::after(CONVERGENCE_DEADLINE);
    for node in nodes {
        wait_until(
            &format!("{size} healthy members on {}", node.base),
            deadline,
            async || node.cluster_status().await,
            |status| status["healthy_members"] == size,
        )
        .await;
    }
}

/// Poll until every node in `nodes` reports `size` members; how long that took. Panics with
/// every node's status after [`CONVERGENCE_DEADLINE`].
pub async fn wait_for_members<'a>(
    nodes: impl IntoIterator<Item = &'a Gateway>,
    size: u64,
) -> Duration {
    let started = Instant::now();
    let nodes: Vec<&Gateway> = nodes.into_iter().collect();
    wait_until(
        &format!("{size} members on every node"),
        Deadline::since(started, CONVERGENCE_DEADLINE),
        async || cluster_statuses(nodes.iter().copied()).await,
        |statuses| statuses.iter().all(|s| s["members"].as_u64() == Some(size)),
    )
    .await;
    started.elapsed()
}
