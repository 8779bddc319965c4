//! The code generated from `proto/cluster.proto` (by `build.rs`) and conversions between its
//! messages and the module's plain types.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

include!(concat!(env!("OUT_DIR"), "/bifrost.cluster.v1.rs"));

impl From<super::Snapshot> for SnapshotResponse {
    fn from(snapshot: super::Snapshot) -> Self {
        Self {
            node_id: snapshot.node_id,
            nodes: snapshot.nodes.into_iter().map(NodeState::from).collect(),
        }
    }
}

impl From<SnapshotResponse> for super::Snapshot {
    fn from(response: SnapshotResponse) -> Self {
        Self {
            node_id: response.node_id,
            nodes: response
                .nodes
                .into_iter()
                .map(super::NodeSnapshot::from)
                .collect(),
        }
    }
}

impl From<super::NodeSnapshot> for NodeState {
    fn from(node: super::NodeSnapshot) -> Self {
        Self {
            node_id: node.node_id,
            generation: node.generation,
            gossip_addr: node.gossip_addr,
            entries: node
                .entries
                .into_iter()
                .map(|(key, entry)| KeyValue {
                    key,
                    value: entry.value,
                    version: entry.version,
                })
                .collect(),
            live: node.live,
            max_version: node.max_version,
        }
    }
}

impl From<NodeState> for super::NodeSnapshot {
    fn from(node: NodeState) -> Self {
        Self {
            node_id: node.node_id,
            generation: node.generation,
            gossip_addr: node.gossip_addr,
            entries: node
                .entries
                .into_iter()
                .map(|entry| {
                    (
                        entry.key,
                        super::SnapshotEntry {
                            value: entry.value,
                            version: entry.version,
                        },
                    )
                })
                .collect(),
            live: node.live,
            max_version: node.max_version,
        }
    }
}

impl From<super::AdmitRequest> for AdmitRequest {
    fn from(request: super::AdmitRequest) -> Self {
        Self {
            key: request.key,
            window_start_ms: request.window_start_ms,
            window_end_ms: request.window_end_ms,
            limit: request.limit,
            cost: request.cost,
            from_node: request.from_node,
        }
    }
}

impl From<AdmitRequest> for super::AdmitRequest {
    fn from(request: AdmitRequest) -> Self {
        Self {
            key: request.key,
            window_start_ms: request.window_start_ms,
            window_end_ms: request.window_end_ms,
            limit: request.limit,
            cost: request.cost,
            from_node: request.from_node,
        }
    }
}

impl From<super::AdmitDecision> for AdmitResponse {
    fn from(decision: super::AdmitDecision) -> Self {
        Self {
            admitted: decision.admitted,
            count: decision.count,
            limit: decision.limit,
            retry_after_ms: decision.retry_after_ms,
        }
    }
}

impl From<AdmitResponse> for super::AdmitDecision {
    fn from(response: AdmitResponse) -> Self {
        Self {
            admitted: response.admitted,
            count: response.count,
            limit: response.limit,
            retry_after_ms: response.retry_after_ms,
        }
    }
}
