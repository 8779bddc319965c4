//! Cluster mode with `etcd` discovery: a real etcd (Debian's `etcd-server`) on loopback and three
//! gateways with no static peers that find each other through it. Skipped (with a printed
//! reason) when PostgreSQL is not configured or, outside CI, when `etcd` is not installed.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bifrost_e2e::harness::{
    config_for, free_tcp_ports, free_udp_ports, postgres_store, skip_unless_ci, wait_until,
    ClusterNode, Deadline, Gateway, MockProvider,
};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// How long three nodes may take to see each other.
const CONVERGENCE_DEADLINE: Duration = Duration::from_secs(20);
/// How long etcd may take to answer after start.
const ETCD_START_DEADLINE: Duration = Duration::from_secs(20);
/// A SIGTERM'd node revokes its lease on the way out; its key must be gone this fast (far below
/// the 30 s lease TTL, so expiry cannot pass for revocation).
const DEREGISTER_DEADLINE: Duration = Duration::from_secs(5);
const SERVICE_NAME: &str = "bifrost-e2e-etcd";

/// A single-member etcd on free loopback ports with a temporary data directory; killed on drop.
struct Etcd {
    _child: Child,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:<client port>`
    endpoint: String,
    http: reqwest::Client,
}

impl Etcd {
    /// Start one, or `None` (after printing why) when `etcd` is not installed outside CI.
    async fn start() -> Option<Self> {
        if !on_path("etcd") {
            return skip_unless_ci(
                "etcd is not on PATH",
                "run scripts/test-deps.sh as root, which installs etcd-server",
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_tcp_ports(2);
        let (client, peer) = (ports[0], ports[1]);
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "e2e"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("e2e={peer_url}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log file"),
            ))
            .kill_on_drop(true)
            .spawn()
            .expect("etcd starts");
        let etcd = Self {
            _child: child,
            endpoint: client_url,
            _dir: dir,
            http: reqwest::Client::new(),
        };
        wait_until(
            "etcd to answer (observed: the error and etcd's log)",
            Deadline::after(ETCD_START_DEADLINE).polling_every(Duration::from_millis(100)),
            async || {
                let error = etcd.try_keys().await.err()?;
                let log = std::fs::read_to_string(etcd._dir.path().join("etcd.log"));
                Some(format!("{error}; etcd.log: {}", log.unwrap_or_default()))
            },
            Option::is_none,
        )
        .await;
        Some(etcd)
    }

    /// `(key, lease id)` under `/services/<SERVICE_NAME>/`.
    async fn try_entries(&self) -> Result<Vec<(String, String)>, String> {
        let prefix = format!("/services/{SERVICE_NAME}/");
        let mut end = prefix.clone().into_bytes();
        *end.last_mut().expect("non-empty prefix") += 1;
        let body: Value = self
            .http
            .post(format!("{}/v3/kv/range", self.endpoint))
            .json(
                &json!({"key": BASE64.encode(&prefix), "range_end": BASE64.encode(end),
                          "keys_only": true}),
            )
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let kvs = body["kvs"].as_array().cloned().unwrap_or_default();
        Ok(kvs
            .iter()
            .map(|kv| {
                let key = BASE64
                    .decode(kv["key"].as_str().expect("key"))
                    .expect("base64 key");
                let lease = kv["lease"].as_str().unwrap_or("0").to_string();
                (String::from_utf8(key).expect("utf-8 key"), lease)
            })
            .collect())
    }

    async fn try_keys(&self) -> Result<Vec<String>, String> {
        Ok(self
            .try_entries()
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// The lease `key` is attached to, if the key exists.
    async fn lease_of(&self, key: &str) -> Option<String> {
        let entries = self.try_entries().await.expect("etcd answers");
        entries.into_iter().find(|(k, _)| k == key).map(|(_, l)| l)
    }

    /// Revoke `lease` behind the gateway's back (as an etcd restart or a long partition would
    /// lose it).
    async fn revoke(&self, lease: &str) {
        let response = self
            .http
            .post(format!("{}/v3/lease/revoke", self.endpoint))
            .json(&json!({"ID": lease}))
            .send()
            .await
            .expect("etcd answers");
        assert!(
            response.status().is_success(),
            "revoke {lease}: {response:?}"
        );
    }

    /// Keys under `/services/<SERVICE_NAME>/`, sorted.
    async fn keys(&self) -> Vec<String> {
        let mut keys = self.try_keys().await.expect("etcd answers");
        keys.sort();
        keys
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| Path::new(&dir).join(program).is_file())
    })
}

/// Node `index`, gossiping on `gossip_port`, with no static peers: it finds the others in
/// `etcd`.
fn etcd_node(index: usize, gossip_port: u16, etcd: &Etcd) -> ClusterNode {
    ClusterNode::new(index, gossip_port).discovery(json!({
        "type": "etcd", "service_name": SERVICE_NAME, "etcd_endpoints": [etcd.endpoint]
    }))
}

async fn members(node: &Gateway) -> Option<u64> {
    let status: Value = reqwest::get(node.url("/cluster/status"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    status["members"].as_u64()
}

#[tokio::test]
async fn three_nodes_form_a_cluster_through_etcd() {
    form_a_cluster_through_etcd(3).await;
}

#[tokio::test]
async fn five_nodes_form_a_cluster_through_etcd() {
    form_a_cluster_through_etcd(5).await;
}

async fn form_a_cluster_through_etcd(size: usize) {
    let Some(store) = postgres_store() else {
        return;
    };
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let mock = MockProvider::start(&[]).await;
    let mut base = config_for(&mock);
    base["config_store"] = store;

    let started = Instant::now();
    let mut nodes = Vec::new();
    for (index, port) in free_udp_ports(size).into_iter().enumerate() {
        nodes.push(
            Gateway::start_with(
                &etcd_node(index, port, &etcd).config(&base),
                &[("BIFROST_ENCRYPTION_KEY", "cluster test key")],
            )
            .await,
        );
    }
    let all_started = started.elapsed();

    wait_until(
        &format!("{size} members on every node (observed: each node's count)"),
        Deadline::since(started, CONVERGENCE_DEADLINE),
        async || {
            let mut counts = Vec::new();
            for node in &nodes {
                counts.push(members(node).await);
            }
            counts
        },
        |counts| counts.iter().all(|c| *c == Some(size as u64)),
    )
    .await;
    eprintln!(
        "{size} nodes through etcd: all started in {all_started:?}, {size} members everywhere \
         {:?} after the first start",
        started.elapsed()
    );

    assert_eq!(
        etcd.keys().await,
        (0..size)
            .map(|i| format!("/services/{SERVICE_NAME}/node-{i}"))
            .collect::<Vec<_>>(),
    );
    for node in &nodes {
        assert!(node.output.contains("registered in etcd"));
        assert!(
            node.output
                .wait_for(
                    &format!("discovered {} nodes", size - 1),
                    Duration::from_secs(5)
                )
                .await
                .is_some(),
            "{:#?}",
            node.output.lines()
        );
        assert!(!node.output.contains("discovery failed"));
    }

    // SIGTERM revokes the lease: the key goes at once, not when the 30 s TTL runs out.
    let stopped = Instant::now();
    nodes[1].signal("TERM");
    let gone = format!("/services/{SERVICE_NAME}/node-1");
    let keys = wait_until(
        &format!("{gone} gone after SIGTERM"),
        Deadline::since(stopped, DEREGISTER_DEADLINE),
        async || etcd.keys().await,
        |keys| !keys.contains(&gone),
    )
    .await;
    assert_eq!(keys.len(), size - 1, "{keys:?}");
    eprintln!("node-1's key gone {:?} after SIGTERM", stopped.elapsed());
    nodes[1].wait_exit(Duration::from_secs(10)).await;
    assert!(nodes[1].output.contains("revoked etcd lease"));
}

#[tokio::test]
async fn a_node_registers_again_after_losing_its_lease() {
    let Some(store) = postgres_store() else {
        return;
    };
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let mock = MockProvider::start(&[]).await;
    let mut base = config_for(&mock);
    base["config_store"] = store;
    let port = free_udp_ports(1)[0];
    let node = Gateway::start_with(
        &etcd_node(0, port, &etcd).config(&base),
        &[("BIFROST_ENCRYPTION_KEY", "cluster test key")],
    )
    .await;
    let key = format!("/services/{SERVICE_NAME}/node-0");
    let first = wait_until(
        &format!("{key} registered"),
        Deadline::after(Duration::from_secs(5)),
        async || etcd.lease_of(&key).await,
        Option::is_some,
    )
    .await
    .expect("a lease");

    let lost = Instant::now();
    etcd.revoke(&first).await;
    // The next keep-alive (every 10 s) finds the lease gone and registers under a new one.
    wait_until(
        &format!("{key} registered again under a new lease"),
        Deadline::since(lost, Duration::from_secs(15)).polling_every(Duration::from_millis(100)),
        async || etcd.lease_of(&key).await,
        |lease| lease.as_ref().is_some_and(|lease| *lease != first),
    )
    .await;
    eprintln!(
        "registered again {:?} after the lease was revoked",
        lost.elapsed()
    );
    assert!(node
        .output
        .contains("etcd lease expired; registering again"));
}
