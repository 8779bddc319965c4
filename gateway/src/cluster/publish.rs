//! This node's usage into its gossip state, and the other nodes' into the remote view.
//!
//! [`set_usage_keys`] is the one way this node's usage keys change: the publish loop calls it
//! every round, [`super::Cluster::shutdown`] once more on the way out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chitchat::{Chitchat, ChitchatId, NodeState};
use tokio::sync::watch;

use super::counters::{self, GossipUsage, RemoteNode, RemoteSnapshot};
use super::keys::{
    is_usage_key, NodeStateExt, CONFIG_VERSION, NODE_ERROR_RATE, NODE_IN_FLIGHT, NODE_RPS,
    USAGE_PREFIXES,
};
use super::load::LoadWindow;
use super::recovery::recovered_markers;
use super::Cluster;
use crate::governance::counters::UsageCounters;

/// How often this node's counters are written to its gossip state and the remote view rebuilt.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);

/// Make this node's keys under [`USAGE_PREFIXES`] equal `keys`: set every one (chitchat skips
/// unchanged values, so idle keys cost no bandwidth) and delete every other key under those
/// prefixes (ended windows, flushed budgets), which leaves a tombstone so peers stop counting
/// it. Keys outside the prefixes (`node/*`, `cfg/version`, `recovered/*`) are not touched.
pub fn set_usage_keys(own: &mut NodeState, keys: &BTreeMap<String, String>) {
    let gone: Vec<String> = USAGE_PREFIXES
        .iter()
        .flat_map(|prefix| own.iter_prefix(prefix))
        .map(|(key, _)| key)
        .filter(|key| !keys.contains_key(*key))
        .map(str::to_string)
        .collect();
    for key in gone {
        own.delete(&key);
    }
    for (key, value) in keys {
        own.set(key, value);
    }
}

/// The sums over every node but `self_id`, from what `chitchat` holds now.
pub fn remote_view(chitchat: &Chitchat, self_id: &ChitchatId) -> RemoteSnapshot {
    let live: BTreeSet<&ChitchatId> = chitchat.live_nodes().collect();
    // Markers only matter for dead nodes: skip the scan of every key while all are live.
    let recovered = if chitchat.node_states().keys().all(|id| live.contains(id)) {
        BTreeSet::new()
    } else {
        recovered_markers(chitchat)
    };
    RemoteSnapshot::from_nodes(
        chitchat
            .node_states()
            .iter()
            .filter(|(id, _)| *id != self_id)
            .map(|(id, state)| RemoteNode {
                // A dead node's spend counts until a survivor wrote it to the store; a node
                // declared dead by mistake counts again once it is back.
                live: live.contains(id)
                    || !recovered.contains(&(id.node_id.to_string(), id.generation_id)),
                key_values: Box::new(state.key_values().filter(|(k, _)| is_usage_key(k))),
            }),
    )
}

/// Write this node's counters into its gossip state and rebuild the remote view, every
/// [`PUBLISH_INTERVAL`]; reload when a peer runs a newer config version.
pub async fn publish_usage(
    cluster: Arc<Cluster>,
    counters: Arc<UsageCounters>,
    usage: Arc<GossipUsage>,
    mut stop: watch::Receiver<bool>,
) {
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
        set_usage_keys(own, &keys);
        own.set(CONFIG_VERSION, report.config_version.to_string());
        if let Some(rates) = load.sample(report, Instant::now()) {
            own.set(NODE_IN_FLIGHT, report.in_flight.to_string());
            own.set(NODE_RPS, format!("{:.0}", rates.rps));
            own.set(NODE_ERROR_RATE, format!("{:.3}", rates.error_rate));
        }
        let newest_config = chitchat
            .node_states()
            .values()
            .filter_map(NodeStateExt::config_version)
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
        let snapshot = remote_view(&chitchat, &cluster.self_id);
        cluster.metrics.publish_rounds.inc();
        drop(chitchat);
        usage.update(snapshot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::keys::{NODE_HTTP_ADDR, RATE_LIMIT_PREFIX};
    use crate::cluster::testing::chitchat;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Every key with its value, tombstones as `None`.
    fn state_of(state: &NodeState) -> BTreeMap<String, Option<String>> {
        state
            .key_values_including_deleted()
            .map(|(k, v)| (k.to_string(), (!v.is_deleted()).then(|| v.value.clone())))
            .collect()
    }

    #[test]
    fn usage_keys_become_the_map_and_the_rest_are_tombstoned() {
        let mut chitchat = chitchat("gw-0", 10101);
        let own = chitchat.self_node_state();
        own.set(NODE_HTTP_ADDR, "127.0.0.1:8080");
        own.set("recovered/gw-9/1", "2.5");
        set_usage_keys(
            own,
            &map(&[
                ("rl/vk/a/requests/0", "3"),
                ("rl/vk/a/requests/60000", "1"),
                ("spend/b", "1 5"),
            ]),
        );
        // The first window ended, budget b was flushed, budget c is new.
        set_usage_keys(
            own,
            &map(&[("rl/vk/a/requests/60000", "4"), ("spend/c", "0.5 0.5")]),
        );
        let state = state_of(own);
        assert_eq!(state["rl/vk/a/requests/60000"].as_deref(), Some("4"));
        assert_eq!(state["spend/c"].as_deref(), Some("0.5 0.5"));
        assert_eq!(state["rl/vk/a/requests/0"], None, "tombstoned");
        assert_eq!(state["spend/b"], None, "tombstoned");
        assert_eq!(state[NODE_HTTP_ADDR].as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(
            state["recovered/gw-9/1"].as_deref(),
            Some("2.5"),
            "not ours to drop"
        );
    }

    #[test]
    fn an_unchanged_map_changes_nothing() {
        let mut chitchat = chitchat("gw-0", 10101);
        let own = chitchat.self_node_state();
        let keys = map(&[("rl/vk/a/requests/0", "3"), ("spend/b", "1 5")]);
        set_usage_keys(own, &keys);
        let version = own.max_version();
        set_usage_keys(own, &keys);
        assert_eq!(
            own.max_version(),
            version,
            "no new version: nothing to gossip"
        );
        set_usage_keys(own, &BTreeMap::new());
        set_usage_keys(own, &BTreeMap::new());
        assert_eq!(
            own.max_version(),
            version + 2,
            "two tombstones, each written once"
        );
        assert_eq!(own.iter_prefix(RATE_LIMIT_PREFIX).count(), 0);
    }

    #[test]
    fn the_remote_view_leaves_out_this_node() {
        let mut chitchat = chitchat("gw-0", 10101);
        let self_id = chitchat.self_chitchat_id().clone();
        set_usage_keys(
            chitchat.self_node_state(),
            &map(&[("rl/vk/a/requests/0", "3"), ("spend/b", "1 5")]),
        );
        assert_eq!(remote_view(&chitchat, &self_id), RemoteSnapshot::default());
    }
}
