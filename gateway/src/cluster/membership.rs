//! Each peer's health from its gossiped heartbeat, the cluster's health, and the status view.
//!
//! chitchat's failure detector decides alive versus dead (after about `timeout_seconds` of
//! silence). On top of it, every check (twice a second) is good when a peer's heartbeat advanced
//! since the last one: a peer becomes healthy after `success_threshold` good checks in a row and
//! is marked suspect after `failure_threshold` bad ones, well before it is declared dead.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chitchat::{Chitchat, ChitchatId};
use serde::Serialize;

use super::keys::NodeStateExt;
use crate::config::GossipTuning;
pub use crate::governance::counters::ClusterView;

/// One check's view of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerObservation {
    /// Its heartbeat counter as gossiped.
    pub heartbeat: u64,
    /// Whether chitchat's failure detector considers it alive.
    pub live: bool,
    /// Whether it announced a graceful exit (`node/state = leaving`).
    pub left: bool,
}

/// A peer's state in `/cluster/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    /// Heartbeats arriving.
    Alive,
    /// Silent for `failure_threshold` checks, not dead yet.
    Suspect,
    /// Declared dead by the failure detector.
    Dead,
}

#[derive(Debug)]
struct PeerHealth {
    heartbeat: u64,
    last_seen: Instant,
    good: u32,
    bad: u32,
    healthy: bool,
    state: PeerState,
    left: bool,
    dead_since: Option<Instant>,
}

/// Health of every peer this node has heard of.
#[derive(Debug)]
pub struct Membership {
    tuning: GossipTuning,
    peers: BTreeMap<ChitchatId, PeerHealth>,
    started: Instant,
    expects_peers: bool,
    joined: bool,
    join_failure_logged: bool,
    last_health: Option<bool>,
    last_members: usize,
}

impl Membership {
    /// A node that has not heard from anyone yet; `expects_peers` when it has seeds.
    pub fn new(tuning: GossipTuning, expects_peers: bool) -> Self {
        Self {
            tuning,
            peers: BTreeMap::new(),
            started: Instant::now(),
            expects_peers,
            joined: false,
            join_failure_logged: false,
            last_health: None,
            last_members: 1,
        }
    }

    /// Apply one check of every peer at `now` and log what changed.
    pub fn observe(&mut self, observations: BTreeMap<ChitchatId, PeerObservation>, now: Instant) {
        self.peers.retain(|id, _| observations.contains_key(id));
        for (id, seen) in observations {
            let peer = self.peers.entry(id.clone()).or_insert_with(|| PeerHealth {
                heartbeat: seen.heartbeat,
                last_seen: now,
                good: 0,
                bad: 0,
                healthy: false,
                state: PeerState::Alive,
                left: false,
                dead_since: None,
            });
            peer.left = seen.left;
            if seen.heartbeat > peer.heartbeat || (peer.good == 0 && peer.bad == 0) {
                peer.heartbeat = seen.heartbeat;
                peer.last_seen = now;
                peer.good += 1;
                peer.bad = 0;
            } else {
                peer.bad += 1;
                peer.good = 0;
            }
            if peer.good >= self.tuning.success_threshold.max(1) {
                peer.healthy = true;
            }
            if peer.bad >= self.tuning.failure_threshold.max(1) {
                peer.healthy = false;
            }
            let state = if !seen.live {
                PeerState::Dead
            } else if peer.bad >= self.tuning.failure_threshold.max(1) {
                PeerState::Suspect
            } else {
                PeerState::Alive
            };
            if state != peer.state {
                match state {
                    PeerState::Suspect => tracing::warn!(
                        node_id = %id.node_id,
                        gossip_addr = %id.gossip_advertise_addr,
                        silent_ms = now.duration_since(peer.last_seen).as_millis() as u64,
                        "node marked as suspect"
                    ),
                    PeerState::Dead => tracing::warn!(
                        node_id = %id.node_id,
                        gossip_addr = %id.gossip_advertise_addr,
                        "node marked as dead"
                    ),
                    PeerState::Alive => tracing::info!(
                        node_id = %id.node_id,
                        gossip_addr = %id.gossip_advertise_addr,
                        "node is alive again"
                    ),
                }
                peer.state = state;
                peer.dead_since = (state == PeerState::Dead).then_some(now);
            }
        }
        self.log_changes(now);
    }

    fn log_changes(&mut self, now: Instant) {
        let (members, healthy) = self.counts();
        let live_peers = members - 1;
        if !self.joined && live_peers > 0 {
            self.joined = true;
            tracing::info!(
                peers = live_peers,
                "successfully joined {live_peers} peers on startup"
            );
        }
        let join_deadline = Duration::from_secs(self.tuning.timeout_seconds.max(1));
        if !self.joined
            && self.expects_peers
            && !self.join_failure_logged
            && now.duration_since(self.started) >= join_deadline
        {
            self.join_failure_logged = true;
            tracing::warn!(
                waited_seconds = join_deadline.as_secs(),
                "failed to join cluster: no peer answered yet; still trying"
            );
        }
        if members != self.last_members {
            tracing::info!(members, healthy, "cluster membership changed");
            self.last_members = members;
        }
        let is_healthy = cluster_is_healthy(members, healthy);
        if self.last_health != Some(is_healthy) {
            if is_healthy {
                tracing::info!(members, healthy, "cluster health: HEALTHY");
            } else {
                tracing::warn!(members, healthy, "cluster health: NOT HEALTHY");
            }
            self.last_health = Some(is_healthy);
        }
    }

    /// (alive, suspect, dead) peers, this node counted alive.
    pub fn members_by_state(&self) -> (usize, usize, usize) {
        let count = |state| self.peers.values().filter(|p| p.state == state).count();
        (
            1 + count(PeerState::Alive),
            count(PeerState::Suspect),
            count(PeerState::Dead),
        )
    }

    /// Whether this node has heard from a peer since it started, runs alone by config, or
    /// waited `timeout_seconds` for one in vain (the first node of a new cluster: it carries on
    /// alone, having logged `failed to join cluster`).
    pub fn joined(&self) -> bool {
        self.joined || !self.expects_peers || self.join_failure_logged
    }

    /// Since the stalest live peer's heartbeat last advanced (zero alone).
    pub fn convergence_lag(&self) -> Duration {
        let now = Instant::now();
        self.peers
            .values()
            .filter(|p| p.state != PeerState::Dead)
            .map(|p| now.duration_since(p.last_seen))
            .max()
            .unwrap_or_default()
    }

    /// Peers declared dead at least `for_at_least` before `now`.
    pub fn dead_peers(
        &self,
        for_at_least: Duration,
        now: Instant,
    ) -> impl Iterator<Item = &ChitchatId> {
        self.peers
            .iter()
            .filter(move |(_, p)| {
                p.dead_since
                    .is_some_and(|since| now.duration_since(since) >= for_at_least)
            })
            .map(|(id, _)| id)
    }

    /// Peers alive and past the success threshold.
    pub fn healthy_peers(&self) -> impl Iterator<Item = &ChitchatId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.state == PeerState::Alive && p.healthy)
            .map(|(id, _)| id)
    }

    /// Whether this node's view of the cluster's counters can be trusted, and how many members
    /// the cluster last had. Stale while it has not joined, while any peer is suspect, or while
    /// the members it still hears from are no majority of the members it knows (this node is
    /// on the small side of a partition). Peers that left gracefully are not counted; dead
    /// ones are, until chitchat forgets them.
    pub fn view(&self) -> ClusterView {
        let known = 1 + self.peers.values().filter(|p| !p.left).count();
        let live = 1 + self
            .peers
            .values()
            .filter(|p| !p.left && p.state != PeerState::Dead)
            .count();
        let suspect = self.peers.values().any(|p| p.state == PeerState::Suspect);
        let stale = !self.joined() || suspect || live * 2 <= known && known > 1;
        ClusterView {
            stale,
            known_members: known,
        }
    }

    /// (members not dead, healthy members), this node included in both.
    fn counts(&self) -> (usize, usize) {
        let members = 1 + self
            .peers
            .values()
            .filter(|p| p.state != PeerState::Dead)
            .count();
        let healthy = 1 + self
            .peers
            .values()
            .filter(|p| p.state == PeerState::Alive && p.healthy)
            .count();
        (members, healthy)
    }

    /// The status view, with node metadata from `chitchat`.
    pub fn status(&self, chitchat: &Chitchat, self_id: &ChitchatId) -> ClusterStatus {
        let now = Instant::now();
        let (members, healthy_members) = self.counts();
        let node = |id: &ChitchatId, state: PeerState, last_seen_ms_ago: u64| {
            let meta = chitchat.node_state(id);
            NodeStatus {
                id: id.node_id.to_string(),
                gossip_addr: id.gossip_advertise_addr.to_string(),
                http_addr: meta.and_then(|m| m.http_addr()).map(str::to_string),
                grpc_addr: meta.and_then(|m| m.grpc_addr()).map(|a| a.to_string()),
                region: meta.and_then(|m| m.region()).map(str::to_string),
                state,
                last_seen_ms_ago,
                version: meta.and_then(|m| m.gateway_version()).map(str::to_string),
                config_version: meta.and_then(|m| m.config_version()),
                load: meta.and_then(|m| {
                    Some(NodeLoad {
                        in_flight: m.in_flight()?,
                        rps: m.rps()?,
                        error_rate: m.error_rate()?,
                    })
                }),
            }
        };
        let mut nodes = vec![node(self_id, PeerState::Alive, 0)];
        nodes.extend(self.peers.iter().map(|(id, peer)| {
            node(
                id,
                peer.state,
                now.duration_since(peer.last_seen).as_millis() as u64,
            )
        }));
        ClusterStatus {
            cluster_mode: true,
            local_node: self_id.node_id.to_string(),
            members,
            healthy_members,
            cluster_health: health_word(cluster_is_healthy(members, healthy_members)),
            nodes,
        }
    }
}

/// A majority of the members that are not dead is healthy.
fn cluster_is_healthy(members: usize, healthy: usize) -> bool {
    healthy * 2 > members
}

fn health_word(healthy: bool) -> &'static str {
    if healthy {
        "HEALTHY"
    } else {
        "NOT HEALTHY"
    }
}

/// `GET /cluster/status`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// Whether cluster mode is on.
    pub cluster_mode: bool,
    /// This node's name.
    pub local_node: String,
    /// Members not declared dead, this node included.
    pub members: usize,
    /// Members whose heartbeats pass the success threshold, this node included.
    pub healthy_members: usize,
    /// `HEALTHY` when a majority of members is healthy, else `NOT HEALTHY`.
    pub cluster_health: &'static str,
    /// Every node this one knows, itself first.
    pub nodes: Vec<NodeStatus>,
}

impl ClusterStatus {
    /// A single gateway (cluster mode off).
    pub fn standalone(node_id: String, http_addr: Option<String>) -> Self {
        Self {
            cluster_mode: false,
            local_node: node_id.clone(),
            members: 1,
            healthy_members: 1,
            cluster_health: health_word(true),
            nodes: vec![NodeStatus {
                id: node_id,
                gossip_addr: String::new(),
                http_addr,
                grpc_addr: None,
                region: None,
                state: PeerState::Alive,
                last_seen_ms_ago: 0,
                version: Some(env!("CARGO_PKG_VERSION").to_string()),
                config_version: None,
                load: None,
            }],
        }
    }
}

/// One node in `/cluster/status`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Node name.
    pub id: String,
    /// Gossip address (`ip:port`).
    pub gossip_addr: String,
    /// HTTP address it published.
    pub http_addr: Option<String>,
    /// Region it published.
    pub region: Option<String>,
    /// Alive, suspect or dead.
    pub state: PeerState,
    /// Since its heartbeat last advanced (0 for this node).
    pub last_seen_ms_ago: u64,
    /// Gateway version it published.
    pub version: Option<String>,
    /// gRPC address it published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_addr: Option<String>,
    /// Store config version it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_version: Option<i64>,
    /// Its load over the last second (published once a second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<NodeLoad>,
}

/// A node's published load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NodeLoad {
    /// Requests in flight.
    pub in_flight: i64,
    /// Requests per second.
    pub rps: f64,
    /// Share of requests answered 5xx.
    pub error_rate: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> ChitchatId {
        ChitchatId::new(format!("gw-{port}"), 1, ([127, 0, 0, 1], port).into())
    }

    fn tuning() -> GossipTuning {
        GossipTuning {
            timeout_seconds: 10,
            success_threshold: 2,
            failure_threshold: 3,
        }
    }

    fn check(m: &mut Membership, heartbeat: u64, live: bool, at: Instant) {
        m.observe(
            BTreeMap::from([(
                peer(1),
                PeerObservation {
                    heartbeat,
                    live,
                    left: false,
                },
            )]),
            at,
        );
    }

    fn observe_all(m: &mut Membership, peers: &[(u16, u64, bool, bool)]) {
        let observations = peers
            .iter()
            .map(|&(port, heartbeat, live, left)| {
                (
                    peer(port),
                    PeerObservation {
                        heartbeat,
                        live,
                        left,
                    },
                )
            })
            .collect();
        m.observe(observations, Instant::now());
    }

    #[test]
    fn the_view_is_stale_until_joined_while_peers_are_suspect_and_on_a_minority_side() {
        let mut m = Membership::new(tuning(), true);
        assert!(m.view().stale, "not joined yet");
        let alone = Membership::new(tuning(), false);
        assert_eq!(
            alone.view(),
            ClusterView {
                stale: false,
                known_members: 1
            }
        );
        // Two peers heard from: fresh, 3 members.
        observe_all(&mut m, &[(1, 1, true, false), (2, 1, true, false)]);
        assert_eq!(
            m.view(),
            ClusterView {
                stale: false,
                known_members: 3
            }
        );
        // Peer 2 goes silent: suspect after failure_threshold (3) checks, stale meanwhile.
        for beat in 2..5 {
            observe_all(&mut m, &[(1, beat, true, false), (2, 1, true, false)]);
        }
        assert!(m.view().stale, "a suspect peer");
        // Declared dead: 2 of 3 still talk, a majority; fresh again.
        observe_all(&mut m, &[(1, 6, true, false), (2, 1, false, false)]);
        assert!(!m.view().stale);
        // Peer 1 dies too: 1 of 3 is no majority.
        observe_all(&mut m, &[(1, 6, false, false), (2, 1, false, false)]);
        assert_eq!(
            m.view(),
            ClusterView {
                stale: true,
                known_members: 3
            }
        );
        // Both had left gracefully (scale down): alone and fresh.
        observe_all(&mut m, &[(1, 6, false, true), (2, 1, false, true)]);
        assert_eq!(
            m.view(),
            ClusterView {
                stale: false,
                known_members: 1
            }
        );
    }

    #[test]
    fn a_peer_is_healthy_after_success_threshold_and_suspect_after_failure_threshold() {
        let mut m = Membership::new(tuning(), true);
        let t = Instant::now();
        check(&mut m, 1, true, t);
        assert_eq!(m.counts(), (2, 1), "one good check is not enough");
        check(&mut m, 2, true, t);
        assert_eq!(m.counts(), (2, 2));
        for _ in 0..2 {
            check(&mut m, 2, true, t);
        }
        assert_eq!(m.peers[&peer(1)].state, PeerState::Alive);
        check(&mut m, 2, true, t);
        assert_eq!(m.peers[&peer(1)].state, PeerState::Suspect);
        assert_eq!(m.counts(), (2, 1));
        check(&mut m, 2, false, t);
        assert_eq!(m.peers[&peer(1)].state, PeerState::Dead);
        assert_eq!(m.counts(), (1, 1), "dead nodes are not members");
        // Dead since this check: handed to spend recovery only after the delay.
        let after = |d: u64| m.dead_peers(Duration::from_secs(d), t).count();
        assert_eq!((after(0), after(3)), (1, 0));
        assert_eq!(
            m.dead_peers(Duration::from_secs(3), t + Duration::from_secs(3))
                .count(),
            1
        );
        check(&mut m, 3, true, t);
        assert_eq!(m.dead_peers(Duration::ZERO, t).count(), 0, "back alive");
    }

    #[test]
    fn health_needs_a_majority() {
        assert!(cluster_is_healthy(1, 1));
        assert!(cluster_is_healthy(3, 2));
        assert!(!cluster_is_healthy(3, 1));
        assert!(!cluster_is_healthy(2, 1));
    }
}
