//! Test fixtures: an in-process `Chitchat` state machine and its config, counter keys and
//! interface addresses written as text.

use std::collections::HashSet;
use std::time::Duration;

use std::sync::Arc;

use chitchat::{Chitchat, ChitchatConfig, ChitchatId, FailureDetectorConfig, ProtocolVersion};

use super::discovery::interfaces::LocalAddress;
use crate::governance::counters::{CounterKey, Metric, Scope};

/// The counter of `scope` (`vk` or `provider`) and `id` for `metric` in the window at
/// `window_start`.
pub fn counter(scope: &str, id: &str, metric: Metric, window_start: i64) -> CounterKey {
    CounterKey {
        scope: Scope::parse(scope).expect("test scope"),
        id: Arc::from(id),
        metric,
        window_start,
    }
}

/// A broadcast-capable interface address, e.g. `("10.0.0.5", 24, Some("10.0.0.255"))`.
pub fn local_address(ip: &str, prefix_len: u8, broadcast: Option<&str>) -> LocalAddress {
    LocalAddress {
        ip: ip.parse().expect("test address"),
        prefix_len,
        broadcast: broadcast.map(|b| b.parse().expect("test broadcast address")),
        point_to_point: false,
    }
}

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
