//! Point-to-point gRPC between nodes (`bifrost.cluster.v1.Cluster`, `proto/cluster.proto`), for
//! what gossip does badly: a full snapshot for a joining node, strict (owner-decided) rate
//! limiting, and status queries.
//!
//! The rest of the gateway sees plain Rust types: it implements [`ClusterRpc`] for the server
//! side ([`serve`]) and calls peers through [`PeerClients`]. tonic and prost types stay inside
//! this module. Every call is authenticated with the cluster key ([`auth`]) and optionally runs
//! over TLS ([`GrpcSecurity`]).

pub mod auth;
mod client;
pub mod owner;
mod proto;
mod security;
mod server;
pub mod strict;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use client::{PeerClients, RpcError, RpcErrorKind, RpcTimeouts};
pub use owner::{owner, Member};
pub use security::{GrpcSecurity, TlsMaterial};
pub use server::{serve, serve_until_stopped};
pub use strict::StrictCounters;

/// What a node answers when a peer asks for a snapshot: every node's published keys as it knows
/// them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The answering node.
    pub node_id: String,
    /// Every node the answering node knows, itself included.
    pub nodes: Vec<NodeSnapshot>,
}

/// One node's published state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// The node's name.
    pub node_id: String,
    /// Its start time (Unix ms): a restarted node is a new generation of the same name.
    pub generation: u64,
    /// Where it gossips.
    pub gossip_addr: String,
    /// Its published keys (`rl/...`, `spend/...`, `node/...`), tombstones left out.
    pub entries: BTreeMap<String, SnapshotEntry>,
    /// Whether the answering node considers it alive.
    pub live: bool,
    /// The highest gossip version of its state the answering node holds (0 from a peer that
    /// predates versioned snapshots).
    pub max_version: u64,
}

/// One key of a [`NodeSnapshot`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// Its value.
    pub value: String,
    /// The gossip version it was written at.
    pub version: u64,
}

/// A strict-mode admission asked of a counter's owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmitRequest {
    /// The counter.
    pub key: String,
    /// Window start (Unix ms).
    pub window_start_ms: i64,
    /// Window end (Unix ms).
    pub window_end_ms: i64,
    /// The limit for the window.
    pub limit: i64,
    /// What this request adds (1 request, or estimated tokens).
    pub cost: i64,
    /// The asking node.
    pub from_node: String,
}

/// The owner's answer to an [`AdmitRequest`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmitDecision {
    /// Whether the cost was admitted (and counted).
    pub admitted: bool,
    /// The count after this request when admitted, as it stands when rejected.
    pub count: i64,
    /// The limit the decision was taken against.
    pub limit: i64,
    /// When rejected: milliseconds until the window ends (0 when admitted).
    pub retry_after_ms: i64,
}

/// What a node serves to its peers; implemented by the cluster.
#[async_trait::async_trait]
pub trait ClusterRpc: Send + Sync + 'static {
    /// Everything this node knows about every node.
    async fn snapshot(&self) -> Snapshot;
    /// This node's `ClusterStatus` as JSON (the `/cluster/status` body).
    async fn status_json(&self) -> String;
    /// Decide a strict-mode admission for a counter this node owns.
    async fn admit(&self, request: AdmitRequest) -> AdmitDecision;
}
