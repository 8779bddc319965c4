//! Cluster mode: membership and shared governance counters over `chitchat` gossip (UDP).
//!
//! Only started when `cluster_config.enabled`. The rest of the gateway sees two things: a
//! [`RemoteUsage`](crate::governance::counters::RemoteUsage) implementation ([`GossipUsage`])
//! that admission adds to local counts, and [`Cluster::status`] for `GET /cluster/status`.
//! chitchat types do not leak past this module.

pub mod counters;
pub mod discovery;
pub mod grpc;
pub mod load;
pub mod membership;
pub mod recovery;
pub mod rpc;
pub mod transport;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chitchat::{
    spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    ProtocolVersion,
};
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ClusterConfig;
use crate::error::GatewayError;
use crate::governance::counters::UsageCounters;
use crate::governance::flush::SpendSource;
use crate::telemetry::metrics::GossipMetrics;
pub use counters::GossipUsage;
use counters::{RemoteNode, RemoteSnapshot, RATE_LIMIT_PREFIX, SPEND_PREFIX};
use discovery::Discovery;
use load::LoadWindow;
pub use membership::{ClusterStatus, NodeStatus};
use membership::{Membership, PeerObservation};
use recovery::{recover_dead_spend, recovered_markers};
use transport::{AddressFilter, GossipSeal, SealedTransport};

/// How often a gossip round runs.
const GOSSIP_INTERVAL: Duration = Duration::from_millis(100);
/// How often this node's counters are written to its gossip state and the remote view rebuilt.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
/// How often peers' heartbeats are checked (one "check" of the success/failure thresholds).
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How long a peer stays dead before a survivor writes its unflushed spend (a peer declared
/// dead by a hiccup is usually back by then; writing early would be harmless but noisy).
const RECOVERY_DELAY: Duration = Duration::from_secs(3);
/// How long deleted keys (ended windows, flushed budgets) stay as tombstones.
const TOMBSTONE_GRACE: Duration = Duration::from_secs(3600);

/// Node metadata keys.
pub const NODE_HTTP_ADDR: &str = "node/http_addr";
/// This node's gRPC address (strict limits and snapshots are asked there).
pub const NODE_GRPC_ADDR: &str = "node/grpc_addr";
/// This node's region.
pub const NODE_REGION: &str = "node/region";
/// The gateway version.
pub const NODE_VERSION: &str = "node/version";
/// `leaving` once a node starts its graceful exit (peers then stop counting it as a member).
pub const NODE_STATE: &str = "node/state";

/// Requests in flight on the node.
pub const NODE_IN_FLIGHT: &str = "node/in_flight";
/// Requests per second over the last second.
pub const NODE_RPS: &str = "node/rps";
/// Share of requests answered 5xx over the last second.
pub const NODE_ERROR_RATE: &str = "node/error_rate";
/// The store config version the node runs.
pub const CONFIG_VERSION: &str = "cfg/version";

/// What the cluster needs from the rest of the gateway.
pub trait NodeHooks: Send + Sync + 'static {
    /// This node's traffic totals and loaded config version.
    fn report(&self) -> NodeReport;
    /// A peer runs a newer store config version than this node: reload from the store.
    fn newer_config_seen(&self, version: i64);
    /// Write a gateway process's cumulative spend totals to the store (idempotent per
    /// process; returns the USD added). A survivor calls it with a dead node's last gossiped
    /// totals.
    fn write_spend(
        &self,
        source: SpendSource,
        totals: Vec<(String, f64)>,
    ) -> BoxFuture<'static, Result<f64, String>>;
}

/// Counters the node publishes as `node/*` and `cfg/version`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeReport {
    /// Requests answered since start.
    pub requests: u64,
    /// Of those, answered with a 5xx.
    pub errors: u64,
    /// Requests in flight now.
    pub in_flight: i64,
    /// Store config version loaded.
    pub config_version: i64,
}

/// What a node needs to join the cluster, decided once at start.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `node_id`, env `POD_NAME`, or the hostname.
    pub node_id: String,
    /// Start time (Unix ms): a restarted node is a new generation of the same name.
    pub generation: u64,
    /// Where gossip listens.
    pub gossip_listen: SocketAddr,
    /// Where peers reach this node's gossip.
    pub gossip_advertise: SocketAddr,
    /// This node's HTTP address, published as `node/http_addr`.
    pub http_addr: SocketAddr,
    /// The whole `cluster_config` section.
    pub config: ClusterConfig,
}

impl ClusterSettings {
    /// Settings for the process `source` (its node id and generation) whose HTTP listener is
    /// bound to `http_addr`.
    pub async fn new(config: &ClusterConfig, http_addr: SocketAddr, source: &SpendSource) -> Self {
        let node_id = source.node_id.clone();
        let generation = u64::try_from(source.generation).unwrap_or(0);
        let port = config.gossip.port;
        let gossip_listen = SocketAddr::new(http_addr.ip(), port);
        let gossip_advertise = SocketAddr::new(advertise_ip(http_addr.ip(), port).await, port);
        Self {
            node_id,
            generation,
            gossip_listen,
            gossip_advertise,
            http_addr,
            config: config.clone(),
        }
    }
}

/// This node's name: `node_id`, env `POD_NAME`, or the hostname.
pub fn node_name(config: &ClusterConfig) -> String {
    config
        .node_id
        .clone()
        .filter(|id| !id.is_empty())
        .or_else(|| std::env::var("POD_NAME").ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(hostname)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "bifrost".to_string())
}

/// The address peers can reach: `POD_IP`, else the listener's own IP, else the hostname's first
/// non-loopback address, else loopback (a single-host cluster).
async fn advertise_ip(listen: IpAddr, port: u16) -> IpAddr {
    if let Some(ip) = std::env::var("POD_IP")
        .ok()
        .and_then(|ip| ip.parse::<IpAddr>().ok())
    {
        return ip;
    }
    if !listen.is_unspecified() {
        return listen;
    }
    if let Ok(addrs) = tokio::net::lookup_host((hostname(), port)).await {
        if let Some(addr) = addrs.into_iter().find(|a| !a.ip().is_loopback()) {
            return addr.ip();
        }
    }
    tracing::warn!(
        "cannot tell which address peers reach this node at (set POD_IP); advertising loopback"
    );
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// The failure detector from `gossip.config`: chitchat's phi is "silence / mean heartbeat
/// interval", and heartbeats arrive about once per gossip round, so a threshold of
/// `timeout / gossip interval` declares a peer dead after about `timeout_seconds` of silence.
fn failure_detector(config: &ClusterConfig) -> FailureDetectorConfig {
    let timeout = Duration::from_secs(config.gossip.config.timeout_seconds.max(1));
    FailureDetectorConfig {
        phi_threshold: timeout.as_secs_f64() / GOSSIP_INTERVAL.as_secs_f64(),
        sampling_window_size: 1_000,
        max_interval: timeout,
        initial_interval: GOSSIP_INTERVAL,
        // A dead node's state (its window counts) is kept this long before being forgotten.
        dead_node_grace_period: Duration::from_secs(24 * 3600),
    }
}

/// A running cluster member.
pub struct Cluster {
    handle: ChitchatHandle,
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    self_id: ChitchatId,
    membership: Arc<Mutex<Membership>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    metrics: GossipMetrics,
    address_filter: AddressFilter,
    usage: Arc<GossipUsage>,
    hooks: Arc<dyn NodeHooks>,
    counters: Arc<UsageCounters>,
    region: Option<String>,
    grpc_advertise: SocketAddr,
    clients: grpc::PeerClients,
    members: arc_swap::ArcSwap<Vec<grpc::Member>>,
    strict: Mutex<grpc::StrictCounters>,
    join_snapshot: Mutex<Option<(Instant, grpc::Snapshot)>>,
}

impl Cluster {
    /// Bind gossip, join through the seeds, and start publishing `counters` into the cluster and
    /// the other nodes' sums into `usage`; `hooks` report this node's load and config version,
    /// reload on a newer version, and write dead nodes' unflushed spend.
    pub async fn start(
        settings: ClusterSettings,
        counters: Arc<UsageCounters>,
        usage: Arc<GossipUsage>,
        metrics: GossipMetrics,
        hooks: Arc<dyn NodeHooks>,
    ) -> Result<Arc<Self>, GatewayError> {
        let config = &settings.config;
        let self_id = ChitchatId::new(
            settings.node_id.clone(),
            settings.generation,
            settings.gossip_advertise,
        );
        let discovery = Discovery::from_config(config);
        let chitchat_config = ChitchatConfig {
            chitchat_id: self_id.clone(),
            cluster_id: config.discovery.service_name.clone(),
            gossip_interval: GOSSIP_INTERVAL,
            listen_addr: settings.gossip_listen,
            seed_nodes: config.peers.clone(),
            failure_detector_config: failure_detector(config),
            marked_for_deletion_grace_period: TOMBSTONE_GRACE,
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V0,
        };
        let grpc_listen = SocketAddr::new(settings.gossip_listen.ip(), config.grpc.port);
        let grpc_advertise = SocketAddr::new(settings.gossip_advertise.ip(), config.grpc.port);
        let grpc_security = grpc::GrpcSecurity::from_config(config)?;
        let grpc_listener = tokio::net::TcpListener::bind(grpc_listen)
            .await
            .map_err(|e| {
                GatewayError::Config(format!(
                    "failed to join cluster: cannot listen for gRPC on tcp {grpc_listen}: {e} (choose another cluster_config.grpc.port)"
                ))
            })?;
        let metadata = vec![
            (NODE_HTTP_ADDR.to_string(), settings.http_addr.to_string()),
            (NODE_GRPC_ADDR.to_string(), grpc_advertise.to_string()),
            (
                NODE_REGION.to_string(),
                config.region.clone().unwrap_or_default(),
            ),
            (
                NODE_VERSION.to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
        ];
        let seal = match transport::cluster_key(config) {
            Some(key) => GossipSeal::new(&key, &config.discovery.service_name),
            None => {
                tracing::warn!(
                    "gossip is not encrypted: set cluster_config.gossip.encryption_key or BIFROST_CLUSTER_KEY"
                );
                GossipSeal::plaintext()
            }
        };
        let encrypted = seal.is_encrypted();
        let address_filter = AddressFilter::new(&config.discovery.allowed_address_space);
        let transport = SealedTransport::new(seal, address_filter.clone(), metrics.clone());
        let handle = spawn_chitchat(chitchat_config, metadata, &transport)
            .await
            .map_err(|e| {
                GatewayError::Config(format!(
                    "failed to join cluster: cannot start gossip on udp {}: {e:#} (choose another cluster_config.gossip.port)",
                    settings.gossip_listen
                ))
            })?;
        tracing::info!(
            node_id = %settings.node_id,
            generation = settings.generation,
            gossip_addr = %settings.gossip_advertise,
            cluster_id = %config.discovery.service_name,
            seeds = config.peers.len(),
            discovery = discovery.method(),
            encrypted,
            allowed_address_space = ?config.discovery.allowed_address_space,
            "gossip started"
        );
        if !config.peers.is_empty() {
            tracing::info!(method = "static", "discovered {} nodes", config.peers.len());
        }
        let (stop, _) = watch::channel(false);
        let cluster = Arc::new(Self {
            chitchat: handle.chitchat(),
            handle,
            self_id,
            membership: Arc::new(Mutex::new(Membership::new(
                config.gossip.config.clone(),
                !config.peers.is_empty() || discovery != Discovery::Static,
            ))),
            stop,
            tasks: Mutex::new(Vec::new()),
            metrics,
            address_filter,
            usage: usage.clone(),
            hooks,
            counters: counters.clone(),
            region: config.region.clone().filter(|r| !r.is_empty()),
            grpc_advertise,
            clients: grpc::PeerClients::new(grpc_security.clone()),
            members: arc_swap::ArcSwap::from_pointee(Vec::new()),
            strict: Mutex::new(grpc::StrictCounters::new()),
            join_snapshot: Mutex::new(None),
        });
        cluster.refresh_members(&[]).await;
        let mut tasks = vec![
            tokio::spawn(publish_usage(
                cluster.clone(),
                counters,
                usage,
                cluster.stop.subscribe(),
            )),
            tokio::spawn(check_health(cluster.clone(), cluster.stop.subscribe())),
            tokio::spawn(serve_grpc(
                grpc_listener,
                Arc::new(rpc::RpcHandler(Arc::downgrade(&cluster))),
                grpc_security,
                cluster.metrics.clone(),
                cluster.stop.subscribe(),
            )),
            tokio::spawn(rpc::pull_join_snapshot(
                cluster.clone(),
                cluster.stop.subscribe(),
            )),
        ];
        let record = discovery::NodeRecord {
            gossip_addr: settings.gossip_advertise.to_string(),
            http_addr: settings.http_addr.to_string(),
        };
        if let Some(registration) =
            discovery.registration(&settings.node_id, &record, cluster.stop.subscribe())
        {
            tasks.push(tokio::spawn(registration));
        }
        if discovery.refreshes() {
            let refresh = Duration::from_secs(config.discovery.refresh_interval_seconds.max(1));
            tasks.push(tokio::spawn(run_discovery(
                cluster.clone(),
                discovery,
                refresh,
                cluster.stop.subscribe(),
            )));
        }
        *cluster.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        Ok(cluster)
    }

    /// This node's name.
    pub fn node_id(&self) -> &str {
        &self.self_id.node_id
    }

    /// Whether this node has heard from a peer (or runs alone by config): `/ready` waits for it.
    pub fn joined(&self) -> bool {
        self.membership
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .joined()
    }

    /// The cluster as this node sees it.
    pub async fn status(&self) -> ClusterStatus {
        let chitchat = self.chitchat.lock().await;
        let membership = self.membership.lock().unwrap_or_else(|p| p.into_inner());
        membership.status(&chitchat, &self.self_id)
    }

    /// Stop the background tasks and leave the gossip: announce `node/state = leaving` with the
    /// counters as they are after the final flush, give peers a few rounds to hear it, go.
    pub async fn shutdown(&self, counters: &UsageCounters) {
        let _ = self.stop.send(true);
        {
            // Spend held in gossip after a flush would count until this node is declared dead:
            // leave with only what is really unflushed (peers see the rest at their next read).
            let keys = {
                let mut local = counters.lock();
                local.forget_held_spend();
                counters::local_keys(&local)
            };
            let mut chitchat = self.chitchat.lock().await;
            let own = chitchat.self_node_state();
            let stale: Vec<String> = own
                .key_values()
                .map(|(k, _)| k.to_string())
                .filter(|k| k.starts_with(SPEND_PREFIX) && !keys.contains_key(k))
                .collect();
            for key in stale {
                own.delete(&key);
            }
            for (key, value) in &keys {
                own.set(key, value);
            }
            own.set(NODE_STATE, "leaving");
        }
        tokio::time::sleep(GOSSIP_INTERVAL * 3).await;
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                tracing::warn!("a cluster task did not stop within 2s");
            }
        }
        if let Err(error) = self.handle.initiate_shutdown() {
            tracing::debug!(%error, "gossip already stopped");
        }
        tracing::info!("left the cluster");
    }
}

/// Answer peers' gRPC calls until `stop`.
async fn serve_grpc(
    listener: tokio::net::TcpListener,
    handler: Arc<dyn grpc::ClusterRpc>,
    security: grpc::GrpcSecurity,
    metrics: GossipMetrics,
    stop: watch::Receiver<bool>,
) {
    if let Err(error) = grpc::serve(listener, handler, security, metrics, stop).await {
        tracing::error!(%error, "the gRPC server stopped; strict limits fall back to gossip counts");
    }
}

/// Write this node's counters into its gossip state and rebuild the remote view, every
/// [`PUBLISH_INTERVAL`].
async fn publish_usage(
    cluster: Arc<Cluster>,
    counters: Arc<UsageCounters>,
    usage: Arc<GossipUsage>,
    mut stop: watch::Receiver<bool>,
) {
    let mut published: BTreeSet<String> = BTreeSet::new();
    let mut load = LoadWindow::default();
    let mut newest_config_seen = 0_i64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PUBLISH_INTERVAL) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let keys = counters::local_keys(&counters.lock());
        let report = cluster.hooks.report();
        let mut chitchat = cluster.chitchat.lock().await;
        let own = chitchat.self_node_state();
        for (key, value) in &keys {
            own.set(key, value);
        }
        own.set(CONFIG_VERSION, report.config_version.to_string());
        if let Some(rates) = load.sample(report, Instant::now()) {
            own.set(NODE_IN_FLIGHT, report.in_flight.to_string());
            own.set(NODE_RPS, format!("{:.0}", rates.rps));
            own.set(NODE_ERROR_RATE, format!("{:.3}", rates.error_rate));
        }
        // Ended windows and flushed budgets: tombstone them so peers stop counting them.
        for gone in published.iter().filter(|k| !keys.contains_key(*k)) {
            own.delete(gone);
        }
        published = keys.into_keys().collect();
        let newest_config = chitchat
            .node_states()
            .values()
            .filter_map(|state| state.get(CONFIG_VERSION)?.parse::<i64>().ok())
            .max()
            .unwrap_or(0);
        if newest_config > report.config_version && newest_config > newest_config_seen {
            newest_config_seen = newest_config;
            tracing::info!(
                version = newest_config,
                loaded = report.config_version,
                "a peer runs a newer config version; reloading from the store"
            );
            cluster.hooks.newer_config_seen(newest_config);
        }
        let live: BTreeSet<&ChitchatId> = chitchat.live_nodes().collect();
        // Markers only matter for dead nodes: skip the scan of every key while all are live.
        let recovered = if chitchat.node_states().keys().all(|id| live.contains(id)) {
            BTreeSet::new()
        } else {
            recovered_markers(&chitchat)
        };
        let known: BTreeSet<(String, u64)> = chitchat
            .node_states()
            .keys()
            .map(|id| (id.node_id.to_string(), id.generation_id))
            .collect();
        let from_snapshot = cluster.snapshot_fill(&known);
        let snapshot = RemoteSnapshot::from_nodes(
            chitchat
                .node_states()
                .iter()
                .filter(|(id, _)| **id != cluster.self_id)
                .map(|(id, state)| RemoteNode {
                    // A dead node's spend counts until a survivor wrote it to the store; a
                    // node declared dead by mistake counts again once it is back.
                    live: live.contains(id)
                        || !recovered.contains(&(id.node_id.to_string(), id.generation_id)),
                    key_values: Box::new(state.key_values().filter(|(k, _)| {
                        k.starts_with(RATE_LIMIT_PREFIX) || k.starts_with(SPEND_PREFIX)
                    })),
                })
                .chain(from_snapshot.iter().map(|node| RemoteNode {
                    live: node.live,
                    key_values: Box::new(
                        node.entries.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    ),
                })),
        );
        cluster.metrics.publish_rounds.inc();
        drop(chitchat);
        usage.update(snapshot);
    }
}

/// Check every peer's heartbeat each [`HEALTH_CHECK_INTERVAL`] and log joins, suspects and
/// health changes.
async fn check_health(cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
    let mut handled: BTreeSet<ChitchatId> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_CHECK_INTERVAL) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let observations: BTreeMap<ChitchatId, PeerObservation> = {
            let chitchat = cluster.chitchat.lock().await;
            let live: BTreeSet<&ChitchatId> = chitchat.live_nodes().collect();
            chitchat
                .node_states()
                .iter()
                .filter(|(id, _)| **id != cluster.self_id)
                .map(|(id, state)| {
                    (
                        id.clone(),
                        PeerObservation {
                            heartbeat: u64::from(state.heartbeat()),
                            live: live.contains(id),
                            left: state.get(NODE_STATE) == Some("leaving"),
                        },
                    )
                })
                .collect()
        };
        let (dead, healthy) = {
            let mut membership = cluster.membership.lock().unwrap_or_else(|p| p.into_inner());
            membership.observe(observations, Instant::now());
            let (alive, suspect, dead) = membership.members_by_state();
            cluster.metrics.set_members(alive, suspect, dead);
            cluster.usage.set_health(membership.view());
            cluster
                .metrics
                .convergence_lag
                .set(membership.convergence_lag().as_secs_f64());
            let dead: Vec<ChitchatId> = membership
                .dead_peers(RECOVERY_DELAY, Instant::now())
                .cloned()
                .collect();
            let healthy: Vec<ChitchatId> = membership.healthy_peers().cloned().collect();
            (dead, healthy)
        };
        cluster.refresh_members(&healthy).await;
        recover_dead_spend(&cluster, &dead, &healthy, &mut handled).await;
    }
}

/// Re-run discovery every `refresh` and greet every new address.
async fn run_discovery(
    cluster: Arc<Cluster>,
    discovery: Discovery,
    refresh: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut known: BTreeSet<SocketAddr> = BTreeSet::new();
    loop {
        match discovery.discover().await {
            Ok(found) => {
                let found: BTreeSet<SocketAddr> = found
                    .into_iter()
                    .filter(|a| *a != cluster.self_id.gossip_advertise_addr)
                    .filter(|a| cluster.address_filter.allows(a.ip()))
                    .collect();
                let new = found.difference(&known).count();
                if new > 0 {
                    tracing::info!(
                        method = discovery.method(),
                        new,
                        "discovered {} nodes",
                        found.len()
                    );
                } else {
                    tracing::debug!(method = discovery.method(), "no new nodes discovered");
                }
                // Greet every seed each round: chitchat only gossips with seeds it was given
                // at start, so this is how later-discovered peers are reached.
                for addr in &found {
                    if let Err(error) = cluster.handle.gossip(*addr) {
                        tracing::warn!(%addr, %error, "failed to broadcast to a discovered node");
                    }
                }
                known = found;
            }
            Err(error) => {
                tracing::warn!(method = discovery.method(), %error, "discovery failed")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(refresh) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}
