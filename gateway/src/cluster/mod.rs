//! Cluster mode: membership and shared governance counters over `chitchat` gossip (UDP).
//!
//! Only started when `cluster_config.enabled`. The rest of the gateway sees two things: a
//! [`RemoteUsage`](crate::governance::counters::RemoteUsage) implementation ([`GossipUsage`])
//! that admission adds to local counts, and [`Cluster::status`] for `GET /cluster/status`.
//! chitchat types do not leak past this module.

pub mod counters;
pub mod discovery;
pub mod grpc;
pub mod health;
pub mod identity;
pub mod keys;
pub mod load;
pub mod membership;
pub mod publish;
pub mod recovery;
pub mod rpc;
pub mod snapshot;
#[cfg(test)]
mod testing;
pub mod transport;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chitchat::{
    spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, ProtocolVersion,
};
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::GatewayError;
use crate::governance::counters::UsageCounters;
use crate::governance::flush::SpendSource;
use crate::telemetry::metrics::GossipMetrics;
pub use counters::GossipUsage;
use discovery::Discovery;
pub use identity::{node_name, spend_source, ClusterSettings};
use keys::{LEAVING, NODE_STATE};
use membership::Membership;
pub use membership::{ClusterStatus, NodeStatus};
use transport::{AddressFilter, GossipSeal, SealedTransport};

/// How often a gossip round runs.
const GOSSIP_INTERVAL: Duration = Duration::from_millis(100);
/// How long deleted keys (ended windows, flushed budgets) stay as tombstones.
const TOMBSTONE_GRACE: Duration = Duration::from_secs(3600);

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
            failure_detector_config: health::failure_detector(config),
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
            .map_err(|e| GatewayError::Bind {
                what: "failed to join cluster: cannot listen for gRPC on tcp",
                addr: grpc_listen,
                reason: e.to_string(),
                setting: "cluster_config.grpc.port",
            })?;
        let metadata =
            keys::start_metadata(settings.http_addr, grpc_advertise, config.region.as_deref());
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
            .map_err(|e| GatewayError::Bind {
                what: "failed to join cluster: cannot start gossip on udp",
                addr: settings.gossip_listen,
                reason: format!("{e:#}"),
                setting: "cluster_config.gossip.port",
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
        });
        cluster.refresh_members(&[]).await;
        let mut tasks = vec![
            tokio::spawn(publish::publish_usage(
                cluster.clone(),
                counters,
                usage,
                cluster.stop.subscribe(),
            )),
            tokio::spawn(health::check_health(
                cluster.clone(),
                cluster.stop.subscribe(),
            )),
            tokio::spawn(grpc::serve_until_stopped(
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
            let greeter = cluster.clone();
            tasks.push(tokio::spawn(discovery::refresh_seeds(
                discovery,
                refresh,
                cluster.self_id.gossip_advertise_addr,
                cluster.address_filter.clone(),
                move |addr| greeter.handle.gossip(addr).map_err(|e| e.to_string()),
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
            publish::set_usage_keys(own, &keys);
            own.set(NODE_STATE, LEAVING);
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
