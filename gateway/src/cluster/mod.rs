//! Cluster mode: membership and shared governance counters over `chitchat` gossip (UDP).
//!
//! Only started when `cluster_config.enabled`. The rest of the gateway sees two things: a
//! [`RemoteUsage`](crate::governance::counters::RemoteUsage) implementation ([`GossipUsage`])
//! that admission adds to local counts, and [`Cluster::status`] for `GET /cluster/status`.
//! chitchat types do not leak past this module.

pub mod counters;
pub mod discovery;
pub mod membership;
pub mod transport;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chitchat::{
    spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    ProtocolVersion,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ClusterConfig;
use crate::error::GatewayError;
use crate::governance::counters::UsageCounters;
use crate::telemetry::metrics::GossipMetrics;
pub use counters::GossipUsage;
use counters::{RemoteNode, RemoteSnapshot, RATE_LIMIT_PREFIX, SPEND_PREFIX};
use discovery::Discovery;
pub use membership::{ClusterStatus, NodeStatus};
use membership::{Membership, PeerObservation};
use transport::{AddressFilter, GossipSeal, SealedTransport};

/// How often a gossip round runs.
const GOSSIP_INTERVAL: Duration = Duration::from_millis(100);
/// How often this node's counters are written to its gossip state and the remote view rebuilt.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
/// How often peers' heartbeats are checked (one "check" of the success/failure thresholds).
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How long deleted keys (ended windows, flushed budgets) stay as tombstones.
const TOMBSTONE_GRACE: Duration = Duration::from_secs(3600);

/// Node metadata keys.
pub const NODE_HTTP_ADDR: &str = "node/http_addr";
/// This node's region.
pub const NODE_REGION: &str = "node/region";
/// The gateway version.
pub const NODE_VERSION: &str = "node/version";

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
    /// Settings for a node whose HTTP listener is bound to `http_addr`.
    pub async fn new(config: &ClusterConfig, http_addr: SocketAddr) -> Self {
        let node_id = config
            .node_id
            .clone()
            .filter(|id| !id.is_empty())
            .or_else(|| std::env::var("POD_NAME").ok().filter(|n| !n.is_empty()))
            .unwrap_or_else(hostname);
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
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
}

impl Cluster {
    /// Bind gossip, join through the seeds, and start publishing `counters` into the cluster and
    /// the other nodes' sums into `usage`.
    pub async fn start(
        settings: ClusterSettings,
        counters: Arc<UsageCounters>,
        usage: Arc<GossipUsage>,
        metrics: GossipMetrics,
    ) -> Result<Arc<Self>, GatewayError> {
        let config = &settings.config;
        let self_id = ChitchatId::new(
            settings.node_id.clone(),
            settings.generation,
            settings.gossip_advertise,
        );
        let discovery = Discovery::from_config(config);
        if let Discovery::NotImplemented(kind) = &discovery {
            let kind = serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            tracing::error!(
                method = %kind,
                "discovery failed: {kind} not implemented yet; running with static peers only"
            );
        }
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
        let metadata = vec![
            (NODE_HTTP_ADDR.to_string(), settings.http_addr.to_string()),
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
        });
        let mut tasks = vec![
            tokio::spawn(publish_usage(
                cluster.clone(),
                counters,
                usage,
                cluster.stop.subscribe(),
            )),
            tokio::spawn(check_health(cluster.clone(), cluster.stop.subscribe())),
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

    /// The cluster as this node sees it.
    pub async fn status(&self) -> ClusterStatus {
        let chitchat = self.chitchat.lock().await;
        let membership = self.membership.lock().unwrap_or_else(|p| p.into_inner());
        membership.status(&chitchat, &self.self_id)
    }

    /// Stop the background tasks and leave the gossip (peers see this node go silent).
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
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

/// Write this node's counters into its gossip state and rebuild the remote view, every
/// [`PUBLISH_INTERVAL`].
async fn publish_usage(
    cluster: Arc<Cluster>,
    counters: Arc<UsageCounters>,
    usage: Arc<GossipUsage>,
    mut stop: watch::Receiver<bool>,
) {
    let mut published: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PUBLISH_INTERVAL) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let keys = counters::local_keys(&counters.lock());
        let mut chitchat = cluster.chitchat.lock().await;
        let own = chitchat.self_node_state();
        for (key, value) in &keys {
            own.set(key, value);
        }
        // Ended windows and flushed budgets: tombstone them so peers stop counting them.
        for gone in published.iter().filter(|k| !keys.contains_key(*k)) {
            own.delete(gone);
        }
        published = keys.into_keys().collect();
        let live: BTreeSet<ChitchatId> = chitchat.live_nodes().cloned().collect();
        let snapshot = RemoteSnapshot::from_nodes(
            chitchat
                .node_states()
                .iter()
                .filter(|(id, _)| **id != cluster.self_id)
                .map(|(id, state)| RemoteNode {
                    live: live.contains(id),
                    key_values: Box::new(state.key_values().filter(|(k, _)| {
                        k.starts_with(RATE_LIMIT_PREFIX) || k.starts_with(SPEND_PREFIX)
                    })),
                }),
        );
        drop(chitchat);
        usage.update(snapshot);
    }
}

/// Check every peer's heartbeat each [`HEALTH_CHECK_INTERVAL`] and log joins, suspects and
/// health changes.
async fn check_health(cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
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
                        },
                    )
                })
                .collect()
        };
        let mut membership = cluster.membership.lock().unwrap_or_else(|p| p.into_inner());
        membership.observe(observations, Instant::now());
        let (alive, suspect, dead) = membership.members_by_state();
        cluster.metrics.set_members(alive, suspect, dead);
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
