//! Test fixtures: an in-process `Chitchat` state machine and its config.

use std::collections::HashSet;
use std::time::Duration;

use chitchat::{Chitchat, ChitchatConfig, ChitchatId, FailureDetectorConfig, ProtocolVersion};

/// The id of node `node_id` gossiping on loopback `port`, generation 1.
pub fn node_id(node_id: &str, port: u16) -> ChitchatId {
    ChitchatId::new(node_id.to_string(), 1, ([127, 0, 0, 1], port).into())
}

/// A `Chitchat` state machine for node `node_id` on `port`, nothing heard yet.
pub fn chitchat(node_id_text: &str, port: u16) -> Chitchat {
    let (_seeds, seed_addrs) = tokio::sync::watch::channel(HashSet::new());
    Chitchat::with_chitchat_id_and_seeds(config(node_id_text, port), seed_addrs, Vec::new())
}

/// The config of node `node_id` on `port`: no seeds, 100 ms rounds.
pub fn config(node_id_text: &str, port: u16) -> ChitchatConfig {
    let id = node_id(node_id_text, port);
    ChitchatConfig {
        listen_addr: id.gossip_advertise_addr,
        chitchat_id: id,
        cluster_id: "bifrost-test".to_string(),
        gossip_interval: Duration::from_millis(100),
        seed_nodes: Vec::new(),
        failure_detector_config: FailureDetectorConfig::default(),
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V0,
    }
}
