//! Cluster numbers: how fast a counter converges across 5 nodes, how many gossip bytes 1,000
//! active virtual keys cost per node, how far a gossiped rate limit overshoots on 3 nodes, and
//! what strict (owner-admitted) limits add to latency. Real gateway processes on loopback
//! gossiping over UDP, one PostgreSQL store (`BIFROST_TEST_POSTGRES_URL`; `scripts/bench.sh`
//! starts one). Prints numbers and never fails on them.

mod load;
mod report;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::BenchArgs;
use crate::harness::{allow_all, free_udp_ports, ClusterNode, Gateway, MockProvider};
use report::{
    Bandwidth, ClusterResults, ClusterSettings, Convergence, LimitMode, LimitRun, NodeBandwidth,
    Pacing, CLUSTER_TARGETS,
};

/// Nodes of the convergence run.
const CONVERGENCE_NODES: usize = 5;
/// Nodes of the bandwidth and rate-limit runs.
const NODES: usize = 3;
/// The overshoot runs' limit, requests per minute.
const LIMIT: u64 = 300;
/// Concurrent clients of the overshoot runs.
const LIMIT_CLIENTS: usize = 8;
/// Total request rate of the spaced overshoot runs.
const PACED_RPS: u32 = 100;
/// How long one observer may take to see a request's spend before it counts as a timeout.
const CONVERGENCE_DEADLINE: Duration = Duration::from_secs(2);
/// Timeouts after which a convergence run stops (views that never converge would otherwise
/// cost the deadline for every remaining sample).
const MAX_TIMEOUTS: usize = 20;
/// Poll interval of the convergence observers.
const POLL: Duration = Duration::from_millis(5);
/// `governance.usage_flush_interval_ms` by default.
const DEFAULT_FLUSH_MS: u64 = 1000;
/// A flush interval longer than the run: spend reaches other nodes by gossip only.
const NO_FLUSH_MS: u64 = 3_600_000;
/// Length of each idle bandwidth phase.
const IDLE: Duration = Duration::from_secs(5);

/// Run every cluster scenario, print the tables and write the JSON. Skips (with a message)
/// when no PostgreSQL is configured, unless `--cluster-only` asked for nothing else.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let Some(pg) = PgServer::from_env()? else {
        let why = "BIFROST_TEST_POSTGRES_URL is not set (scripts/bench.sh starts a PostgreSQL)";
        if args.cluster_only {
            bail!("the cluster benchmark needs PostgreSQL: {why}");
        }
        eprintln!("bench: cluster runs skipped: {why}");
        return Ok(());
    };
    let samples = usize::try_from(args.convergence_samples).context("--convergence-samples")?;
    let keys = usize::try_from(args.cluster_keys).context("--cluster-keys")?;
    let settings = ClusterSettings {
        convergence_nodes: CONVERGENCE_NODES,
        convergence_samples: samples,
        bandwidth_nodes: NODES,
        bandwidth_keys: keys,
        bandwidth_rate: args.cluster_rate,
        bandwidth_duration_s: args.duration,
        limit_nodes: NODES,
        limit: LIMIT,
        limit_clients: LIMIT_CLIENTS,
        paced_rps: PACED_RPS,
        busy_before_percent: super::busy_percent(Duration::from_secs(1)).await,
    };
    let threads = args.mock_threads.max(2).to_string();
    let mut mock = MockProvider::start(&["--threads", &threads]).await;
    let bench = ClusterBench {
        pg,
        mock_base: mock.base.clone(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?,
    };
    eprintln!(
        "bench: cluster runs against PostgreSQL at {}:{}, mock at {}",
        bench.pg.host, bench.pg.port, bench.mock_base
    );

    eprintln!(
        "bench: cluster: counter convergence, {CONVERGENCE_NODES} nodes, {samples} samples, \
         with and without flushes"
    );
    let mut convergence = Vec::new();
    for flush_interval_ms in [DEFAULT_FLUSH_MS, NO_FLUSH_MS] {
        convergence.push(bench.convergence(samples, flush_interval_ms).await?);
    }
    eprintln!(
        "bench: cluster: gossip bandwidth, {NODES} nodes, {} keys, {} req/s",
        keys, args.cluster_rate
    );
    let bandwidth = bench
        .bandwidth(keys, args.cluster_rate, Duration::from_secs(args.duration))
        .await?;
    eprintln!("bench: cluster: rate limit {LIMIT}/min in gossip mode, {NODES} nodes");
    let mut limit_runs = bench.limit_runs(LimitMode::Gossip).await?;
    eprintln!("bench: cluster: rate limit {LIMIT}/min in strict mode, {NODES} nodes");
    let rejected = match bench.limit_runs(LimitMode::Strict).await {
        Ok(runs) => {
            limit_runs.extend(runs);
            None
        }
        Err(error) => Some(format!("{error:#}")),
    };
    mock.stop().await;

    let strict = report::strict_summary(&limit_runs, rejected);
    let results = ClusterResults {
        settings,
        convergence,
        bandwidth,
        limit_runs,
        strict,
        targets: CLUSTER_TARGETS,
    };
    print!("{}", report::table(&results));
    report::write_json(&results, &args.cluster_output)?;
    eprintln!(
        "bench: cluster results written to {}",
        args.cluster_output.display()
    );
    Ok(())
}

/// What every cluster scenario shares.
struct ClusterBench {
    pg: PgServer,
    mock_base: String,
    client: reqwest::Client,
}

impl ClusterBench {
    /// One request at a time with a budgeted key, round-robin over 5 nodes; after each, every
    /// other node's `/api/governance/usage` is polled until the budget shows the new spend.
    /// Nodes flush spend to the store every `flush_interval_ms`.
    async fn convergence(
        &self,
        samples: usize,
        flush_interval_ms: u64,
    ) -> anyhow::Result<Convergence> {
        const VK: &str = "sk-bf-bench-convergence";
        let governance = json!({
            "budgets": [{"id": "conv", "max_limit": 1.0e9, "reset_duration": "1M"}],
            "virtual_keys": [{"id": "conv", "value": VK, "provider_configs": allow_all(&["openai"]), "budget_id": "conv"}],
            "pricing": pricing(),
            "usage_flush_interval_ms": flush_interval_ms,
        });
        let cluster = self
            .start_cluster(CONVERGENCE_NODES, "bifrost-bench-convergence", governance)
            .await?;
        let bases = cluster.bases();

        // What one request costs (the first one, as its node sees it), and warm connections.
        self.expect_ok(&bases[0], VK).await?;
        let cost = budget_usage(&self.client, &bases[0]).await?;
        if cost <= 0.0 {
            bail!("a request cost nothing (${cost}): the bench's pricing does not apply");
        }
        for base in &bases[1..] {
            self.expect_ok(base, VK).await?;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;

        let mut latencies_ms = Vec::new();
        let (mut timeouts, mut dips, mut done) = (0, 0, 0);
        for sample in 0..samples {
            if timeouts >= MAX_TIMEOUTS {
                eprintln!(
                    "bench: cluster: convergence stopped after {done} samples: {timeouts} \
                     observations timed out"
                );
                break;
            }
            let origin = sample % bases.len();
            let observers: Vec<&String> = bases
                .iter()
                .enumerate()
                .filter(|(index, _)| *index != origin)
                .map(|(_, base)| base)
                .collect();
            // Each observer's view before the request; it must grow by one request's cost.
            let mut before = Vec::new();
            for base in &observers {
                before.push(budget_usage(&self.client, base).await?);
            }
            self.expect_ok(&bases[origin], VK).await?;
            let answered = Instant::now();
            let observed = observers
                .iter()
                .zip(&before)
                .map(|(base, before)| observe(&self.client, base, before + cost, cost, answered));
            for observed in futures_util::future::join_all(observed).await {
                let (seen, went_down) = observed?;
                dips += went_down;
                match seen {
                    Some(latency) => latencies_ms.push(latency.as_secs_f64() * 1e3),
                    None => timeouts += 1,
                }
            }
            done += 1;
        }
        cluster.stop();
        latencies_ms.sort_by(f64::total_cmp);
        Ok(Convergence {
            nodes: CONVERGENCE_NODES,
            flush_interval_ms: (flush_interval_ms < NO_FLUSH_MS).then_some(flush_interval_ms),
            samples: done,
            observations: latencies_ms.len(),
            p50_ms: report::percentile(&latencies_ms, 50.0),
            p99_ms: report::percentile(&latencies_ms, 99.0),
            max_ms: latencies_ms.last().copied().unwrap_or(f64::NAN),
            timeouts,
            dips,
        })
    }

    /// `bifrost_gossip_bytes_total` per node per second on 3 nodes with `keys` virtual keys,
    /// each with its own request limit and budget: idle, while requests go round-robin over
    /// every key on every node at `rate`, and idle again with all that state gossiped.
    async fn bandwidth(
        &self,
        keys: usize,
        rate: u32,
        duration: Duration,
    ) -> anyhow::Result<Vec<Bandwidth>> {
        let vk = |i: usize| format!("sk-bf-bench-gossip-{i:05}");
        let governance = json!({
            "budgets": (0..keys)
                .map(|i| json!({"id": format!("b-{i}"), "max_limit": 1.0e9, "reset_duration": "1M"}))
                .collect::<Vec<_>>(),
            "rate_limits": [{"id": "generous", "request_max_limit": 1_000_000_000u64,
                             "request_reset_duration": "1h"}],
            "virtual_keys": (0..keys)
                .map(|i| json!({"id": format!("vk-{i}"), "value": vk(i), "provider_configs": allow_all(&["openai"]),
                                "rate_limit_id": "generous", "budget_id": format!("b-{i}")}))
                .collect::<Vec<_>>(),
            "pricing": pricing(),
        });
        let cluster = self
            .start_cluster(NODES, "bifrost-bench-gossip", governance)
            .await?;
        let bases = cluster.bases();
        // Let the join's state transfer finish before the idle baseline.
        tokio::time::sleep(Duration::from_secs(2)).await;

        let mut phases = Vec::new();
        let before = self.bytes(&bases).await?;
        tokio::time::sleep(IDLE).await;
        phases.push(self.phase("idle before load", &bases, before, 0).await?);

        // Request j goes to node j % 3 with key j % keys: every key on every node.
        let targets: Vec<(String, String)> = (0..bases.len() * keys.max(1))
            .map(|j| (bases[j % bases.len()].clone(), vk(j % keys.max(1))))
            .collect();
        let before = self.bytes(&bases).await?;
        let (sent, ok) = load::paced_load(&self.client, &targets, rate, duration, 64).await;
        if ok < sent {
            eprintln!(
                "bench: cluster: {} of {sent} load requests failed",
                sent - ok
            );
        }
        phases.push(self.phase("under load", &bases, before, sent).await?);

        let before = self.bytes(&bases).await?;
        tokio::time::sleep(IDLE).await;
        phases.push(self.phase("idle after load", &bases, before, 0).await?);
        cluster.stop();
        Ok(phases)
    }

    /// Every node's gossip byte counters now.
    async fn bytes(&self, bases: &[String]) -> anyhow::Result<(Instant, Vec<(f64, f64)>)> {
        let mut bytes = Vec::new();
        for base in bases {
            bytes.push(load::gossip_bytes(&self.client, base).await?);
        }
        Ok((Instant::now(), bytes))
    }

    /// The phase since `before`, in which `requests` were sent.
    async fn phase(
        &self,
        name: &str,
        bases: &[String],
        before: (Instant, Vec<(f64, f64)>),
        requests: u64,
    ) -> anyhow::Result<Bandwidth> {
        let (after_at, after) = self.bytes(bases).await?;
        let seconds = after_at.duration_since(before.0).as_secs_f64().max(1e-9);
        let nodes = after
            .iter()
            .zip(&before.1)
            .enumerate()
            .map(|(index, (now, then))| NodeBandwidth {
                node: format!("node-{index}"),
                sent_bytes_per_s: (now.0 - then.0) / seconds,
                received_bytes_per_s: (now.1 - then.1) / seconds,
            })
            .collect();
        Ok(Bandwidth {
            phase: name.to_string(),
            seconds,
            request_rps: requests as f64 / seconds,
            nodes,
        })
    }

    /// A 300/min limit on 3 nodes in `mode`: once as fast as 8 clients go (3× the limit sent),
    /// once spaced to 100 req/s (1.5× the limit). Each run uses its own key, in one window.
    async fn limit_runs(&self, mode: LimitMode) -> anyhow::Result<Vec<LimitRun>> {
        let keys = ["warm", "fast", "paced"];
        let governance = json!({
            "rate_limits": [{"id": "limit", "request_max_limit": LIMIT,
                             "request_reset_duration": "1m", "cluster_mode": mode.name()}],
            "virtual_keys": keys
                .iter()
                .map(|k| json!({"id": k, "value": format!("sk-bf-bench-{k}"), "provider_configs": allow_all(&["openai"]), "rate_limit_id": "limit"}))
                .collect::<Vec<_>>(),
        });
        let service = format!("bifrost-bench-limit-{}", mode.name());
        let cluster = self.start_cluster(NODES, &service, governance).await?;
        let bases = cluster.bases();
        // Open connections (and, in strict mode, the gRPC channels to the owner) first.
        for base in &bases {
            for _ in 0..3 {
                self.expect_ok(base, "sk-bf-bench-warm").await?;
            }
        }
        let mut runs = Vec::new();
        for (key, total, pacing, needed) in [
            ("fast", LIMIT * 3, Pacing::Max, Duration::from_secs(10)),
            (
                "paced",
                LIMIT * 3 / 2,
                Pacing::Rps(PACED_RPS),
                Duration::from_secs_f64((LIMIT * 3 / 2) as f64 / f64::from(PACED_RPS) + 5.0),
            ),
        ] {
            wait_for_a_fresh_minute_if_less_than(needed).await;
            let run = load::limit_run(
                &self.client,
                &bases,
                &format!("sk-bf-bench-{key}"),
                mode,
                LIMIT,
                total,
                LIMIT_CLIENTS,
                pacing,
            )
            .await;
            eprintln!(
                "bench: cluster: {} {key}: {} sent, {} admitted, {} refused, {} errors, {:.0} req/s",
                mode.name(),
                run.sent,
                run.admitted,
                run.refused,
                run.errors,
                run.rps
            );
            runs.push(run);
        }
        cluster.stop();
        Ok(runs)
    }

    async fn expect_ok(&self, base: &str, vk: &str) -> anyhow::Result<()> {
        let status = load::chat(&self.client, base, vk).await?;
        if status != reqwest::StatusCode::OK {
            bail!("{base} answered {status} to a request with {vk}");
        }
        Ok(())
    }

    /// `size` gateways on loopback with static peers on a fresh database, members of one
    /// cluster before this returns.
    async fn start_cluster(
        &self,
        size: usize,
        service: &str,
        governance: Value,
    ) -> anyhow::Result<Cluster> {
        let database = self.pg.create_database()?;
        let base = json!({
            "client": {"enable_logging": false, "enforce_auth_on_inference": true},
            "providers": {"openai": {
                "keys": [{"name": "primary", "value": "sk-openai", "models": ["*"]}],
                "network_config": {"base_url": self.mock_base}
            }},
            "config_store": database.store.clone(),
            "governance": governance,
        });
        let gossip_ports = free_udp_ports(size);
        let grpc_ports = free_tcp_ports(size)?;
        let cluster_key: String = (0..64)
            .map(|_| char::from(b"0123456789abcdef"[fastrand::usize(..16)]))
            .collect();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            _database: database,
        };
        for (index, grpc_port) in grpc_ports.into_iter().enumerate() {
            let config = ClusterNode::with_static_peers(&gossip_ports, index)
                .grpc_port(grpc_port)
                .service_name(service)
                .config(&base);
            let env = [
                ("RUST_LOG", super::GATEWAY_LOG_FILTER.to_string()),
                ("BIFROST_LOG_LEVEL", "warn".to_string()),
                ("BIFROST_ENCRYPTION_KEY", "bench cluster key".to_string()),
                ("BIFROST_CLUSTER_KEY", cluster_key.clone()),
            ];
            // The harness panics when a gateway does not start (e.g. a rejected config); in
            // a task, that is an error here instead of the end of the benchmark.
            let node = tokio::spawn(async move {
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                Gateway::start_with(&config, &env).await
            })
            .await
            .map_err(|_| anyhow::anyhow!("node-{index} of {service} did not start"))?;
            cluster.nodes.push(node);
        }
        self.wait_for_members(&cluster.bases(), size).await?;
        Ok(cluster)
    }

    /// Poll `/cluster/status` until every node reports `size` healthy members.
    async fn wait_for_members(&self, bases: &[String], size: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut all = true;
            for base in bases {
                let status: Value = self
                    .client
                    .get(format!("{base}/cluster/status"))
                    .send()
                    .await
                    .with_context(|| format!("GET {base}/cluster/status"))?
                    .json()
                    .await
                    .context("status JSON")?;
                all &= status["healthy_members"].as_u64() == Some(size as u64);
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{size} nodes did not become healthy members of one cluster within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Poll the node at `base` every 5 ms until its view of budget `conv` reaches `expected` (within
/// a thousandth of one request's `cost`): how long after `since` that was (`None` after
/// [`CONVERGENCE_DEADLINE`]), and how often the view went down between two polls.
async fn observe(
    client: &reqwest::Client,
    base: &str,
    expected: f64,
    cost: f64,
    since: Instant,
) -> anyhow::Result<(Option<Duration>, usize)> {
    let tolerance = cost * 1e-3;
    let mut last = f64::MIN;
    let mut dips = 0;
    loop {
        let seen = budget_usage(client, base).await?;
        if seen >= expected - tolerance {
            return Ok((Some(since.elapsed()), dips));
        }
        if seen < last - tolerance {
            dips += 1;
        }
        last = seen;
        if since.elapsed() > CONVERGENCE_DEADLINE {
            return Ok((None, dips));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn budget_usage(client: &reqwest::Client, base: &str) -> anyhow::Result<f64> {
    load::budget_usage(client, base, "conv").await
}

/// Prices that make every request cost something (the mock answers with fixed usage).
fn pricing() -> Value {
    json!([{"model": "gpt-4o-mini", "input_cost_per_token": 0.01, "output_cost_per_token": 0.02}])
}

/// Gateways of one cluster and their database; dropping it kills the gateways and drops the
/// database.
struct Cluster {
    nodes: Vec<Gateway>,
    _database: Database,
}

impl Cluster {
    fn bases(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.base.clone()).collect()
    }

    /// Kill the gateways (nothing to flush: the database goes too).
    fn stop(self) {
        drop(self);
    }
}

/// The PostgreSQL server named by `BIFROST_TEST_POSTGRES_URL`
/// (`postgres://user@host:port/db`).
struct PgServer {
    url: String,
    user: String,
    host: String,
    port: u16,
}

impl PgServer {
    fn from_env() -> anyhow::Result<Option<Self>> {
        let Ok(url) = std::env::var("BIFROST_TEST_POSTGRES_URL") else {
            return Ok(None);
        };
        let parse = || -> Option<(String, String, u16)> {
            let rest = url.strip_prefix("postgres://")?;
            let (user, rest) = rest.split_once('@')?;
            let host_port = rest.split('/').next()?;
            let (host, port) = host_port.rsplit_once(':')?;
            Some((user.to_string(), host.to_string(), port.parse().ok()?))
        };
        let (user, host, port) = parse().with_context(|| {
            format!("BIFROST_TEST_POSTGRES_URL is not postgres://user@host:port/db: {url}")
        })?;
        Ok(Some(Self {
            url,
            user,
            host,
            port,
        }))
    }

    /// A fresh database and the gateway's `config_store` for it.
    fn create_database(&self) -> anyhow::Result<Database> {
        let name = format!("bench_{}", fastrand::u64(..));
        psql(&self.url, &format!("CREATE DATABASE {name}"))?;
        Ok(Database {
            url: self.url.clone(),
            store: json!({
                "enabled": true, "type": "postgres",
                "config": {"host": self.host, "port": self.port, "user": self.user,
                           "db_name": name, "ssl_mode": "disable"}
            }),
            name,
        })
    }
}

/// A database the benchmark created; dropped (connections and all) with this value.
struct Database {
    url: String,
    name: String,
    store: Value,
}

impl Drop for Database {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(error) = psql(&self.url, &sql) {
            eprintln!("bench: could not drop database {}: {error:#}", self.name);
        }
    }
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let output = std::process::Command::new("psql")
        .args([url, "-q", "-c", sql])
        .output()
        .context("running psql")?;
    if !output.status.success() {
        bail!(
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `n` distinct TCP ports free on 127.0.0.1 right now (for gRPC).
fn free_tcp_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("binding a free TCP port")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Skip to the next one-minute window when less than `needed` is left in this one.
async fn wait_for_a_fresh_minute_if_less_than(needed: Duration) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let left_ms = 60_000 - (now_ms % 60_000) as u64;
    if left_ms < needed.as_millis() as u64 {
        eprintln!(
            "bench: cluster: waiting {:.1} s for a fresh one-minute window",
            left_ms as f64 / 1e3
        );
        tokio::time::sleep(Duration::from_millis(left_ms + 100)).await;
    }
}
