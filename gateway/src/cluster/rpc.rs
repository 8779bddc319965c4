//! What this node does with gRPC: answers peers ([`RpcHandler`]: snapshots, status, strict
//! admissions for the counters it owns), asks owners about strict limits
//! ([`Cluster::admit_strict`]), and pulls a snapshot when it joins ([`pull_join_snapshot`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chitchat::ChitchatId;

use super::grpc::{owner, AdmitDecision, AdmitRequest, ClusterRpc, Member, Snapshot};
use super::keys::{counter_key, parse_counter_key, NodeStateExt};
use super::publish::remote_view;
use super::snapshot::{apply_snapshot, snapshot_of};
use super::Cluster;
use crate::governance::counters::{CounterKey, RemoteUsage};
use crate::governance::now_ms;
use crate::governance::strict::{StrictLimits, StrictOutcome};

/// How long a starting node keeps trying to pull a join snapshot before leaving the catching
/// up to gossip alone.
pub const JOIN_SNAPSHOT_DEADLINE: Duration = Duration::from_secs(10);

/// The gRPC service of a running [`Cluster`] (weak: the server task must not keep it alive).
pub struct RpcHandler(pub Weak<Cluster>);

#[async_trait::async_trait]
impl ClusterRpc for RpcHandler {
    async fn snapshot(&self) -> Snapshot {
        let Some(cluster) = self.0.upgrade() else {
            return Snapshot::default();
        };
        let chitchat = cluster.chitchat.lock().await;
        snapshot_of(&chitchat, &cluster.self_id)
    }

    async fn status_json(&self) -> String {
        match self.0.upgrade() {
            Some(cluster) => serde_json::to_string(&cluster.status().await).unwrap_or_default(),
            None => String::new(),
        }
    }

    async fn admit(&self, request: AdmitRequest) -> AdmitDecision {
        match self.0.upgrade() {
            Some(cluster) => cluster.decide_strict(&request),
            // Shutting down: refuse nothing the asker could not also decide; it falls back.
            None => AdmitDecision {
                admitted: true,
                count: 0,
                limit: request.limit,
                retry_after_ms: 0,
            },
        }
    }
}

impl StrictLimits for Cluster {
    fn admit_one<'a>(
        &'a self,
        key: &'a CounterKey,
        limit: u64,
        window_end_ms: i64,
    ) -> futures_util::future::BoxFuture<'a, StrictOutcome> {
        Box::pin(async move {
            let outcome = self.admit_strict(key, limit, window_end_ms).await;
            match outcome {
                StrictOutcome::Admitted { .. } => self.metrics.strict_outcome("admitted"),
                StrictOutcome::Rejected => self.metrics.strict_outcome("rejected"),
                // Counted as a fallback where the owner could not be asked.
                StrictOutcome::Unavailable(_) => {}
            }
            outcome
        })
    }
}

impl Cluster {
    /// Ask `key`'s owner (rendezvous hashing over healthy members, this node's region first)
    /// to admit one request against `limit` in the window ending at `window_end_ms`.
    pub async fn admit_strict(
        &self,
        key: &CounterKey,
        limit: u64,
        window_end_ms: i64,
    ) -> StrictOutcome {
        let request = AdmitRequest {
            key: counter_key(key),
            window_start_ms: key.window_start,
            window_end_ms,
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
            cost: 1,
            from_node: self.node_id().to_string(),
        };
        let members = self.members.load();
        let Some(owner) = owner(&request.key, &members, self.region.as_deref()) else {
            return StrictOutcome::Unavailable("no healthy member to own the limit".into());
        };
        let decision = if owner.node_id == self.node_id() {
            self.decide_strict(&request)
        } else {
            match self.clients.admit(owner.grpc_addr, request).await {
                Ok(decision) => decision,
                Err(error) => {
                    self.metrics.strict_fallback();
                    return StrictOutcome::Unavailable(error.to_string());
                }
            }
        };
        if decision.admitted {
            StrictOutcome::Admitted {
                count_before: decision.count - 1,
            }
        } else {
            StrictOutcome::Rejected
        }
    }

    /// The owner's decision: its authoritative count, seeded from the gossiped cluster count
    /// the first time it sees the counter (after an ownership change).
    pub(super) fn decide_strict(&self, request: &AdmitRequest) -> AdmitDecision {
        let seed = || {
            parse_counter_key(&request.key).map_or(0, |key| {
                let local = self.counters.lock().window_count(&key);
                local + self.usage.counter(&key)
            })
        };
        let now = now_ms();
        let mut strict = self.strict.lock().unwrap_or_else(|p| p.into_inner());
        strict.prune(now);
        strict.admit(
            &request.key,
            request.window_start_ms,
            request.window_end_ms,
            request.limit,
            request.cost,
            seed,
            now,
        )
    }

    /// Rebuild the strict-mode member list: this node and every healthy peer that published
    /// a gRPC address.
    pub(super) async fn refresh_members(&self, healthy: &[ChitchatId]) {
        let chitchat = self.chitchat.lock().await;
        let mut members = vec![Member {
            node_id: self.node_id().to_string(),
            region: self.region.clone(),
            grpc_addr: self.grpc_advertise,
            healthy: true,
        }];
        for id in healthy {
            let Some(state) = chitchat.node_state(id) else {
                continue;
            };
            let Some(grpc_addr) = state.grpc_addr() else {
                continue;
            };
            members.push(Member {
                node_id: id.node_id.to_string(),
                region: state.region().map(str::to_string),
                grpc_addr,
                healthy: true,
            });
        }
        drop(chitchat);
        let addresses: BTreeSet<SocketAddr> = members.iter().map(|m| m.grpc_addr).collect();
        self.clients.retain(|addr| addresses.contains(addr));
        self.members.store(Arc::new(members));
    }
}

/// On start: as soon as gossip brings the first live peer with a gRPC address, ask it for a
/// snapshot of every node's keys (then the next peer if it fails) and apply it into this node's
/// gossip state, so limits and budgets count the other nodes' usage at once instead of after
/// the several gossip rounds a large state takes to arrive. Gives up after
/// [`JOIN_SNAPSHOT_DEADLINE`].
pub async fn pull_join_snapshot(
    cluster: Arc<Cluster>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let started = Instant::now();
    let mut asked: BTreeSet<SocketAddr> = BTreeSet::new();
    while started.elapsed() < JOIN_SNAPSHOT_DEADLINE {
        let peers: Vec<SocketAddr> = {
            let chitchat = cluster.chitchat.lock().await;
            chitchat
                .live_nodes()
                .filter(|id| **id != cluster.self_id)
                .filter_map(|id| chitchat.node_state(id)?.grpc_addr())
                .filter(|addr| !asked.contains(addr))
                .collect()
        };
        for peer in peers {
            asked.insert(peer);
            match cluster.clients.snapshot(peer).await {
                Ok(snapshot) => {
                    apply_join_snapshot(&cluster, peer, snapshot).await;
                    return;
                }
                Err(error) => tracing::debug!(%peer, %error, "no snapshot from this peer"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
    if asked.is_empty() {
        tracing::debug!("no peer to pull a snapshot from; gossip alone catches up");
    } else {
        tracing::info!(
            asked = asked.len(),
            "no peer answered a snapshot request; gossip alone catches up"
        );
    }
}

/// Apply the snapshot into this node's gossip state and rebuild the remote view from it at
/// once (admission sees it before the next publish round).
async fn apply_join_snapshot(cluster: &Cluster, peer: SocketAddr, snapshot: Snapshot) {
    let nodes = snapshot.nodes.len();
    let view = {
        let mut chitchat = cluster.chitchat.lock().await;
        let applied = apply_snapshot(&mut chitchat, &snapshot);
        tracing::info!(%peer, nodes, applied, "pulled a state snapshot on join");
        remote_view(&chitchat, &cluster.self_id)
    };
    cluster.usage.update(view);
}
