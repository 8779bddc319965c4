//! Governance counters in the gossip key space, and the cluster's "remote usage" view.
//!
//! Each node publishes only its own keys (their names are built and parsed in [`super::keys`]):
//! - `rl/<scope>/<id>/<metric>/<window_start>` → requests or tokens it admitted in that window;
//! - `spend/<budget_id>` → `"<unflushed> <total>"`: its pending + flushing + reserved spend,
//!   plus spend flushed in the last flush interval or so (what the others add to their view;
//!   they may not have re-read the store yet), then every USD it settled against the budget since
//!   it started (what a survivor writes to the store if it dies; the store adds only what that
//!   process had not flushed itself);
//! - `recovered/<node_id>/<generation>` → set by the survivor that wrote a dead node's spend;
//!   from then on nobody counts that node's spend from gossip.
//!
//! The remote view is the sum of those keys over the other nodes, computed off the request path
//! (see [`RemoteSnapshot::from_nodes`]) and swapped in whole; admission only reads it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::keys::{counter_key, parse_counter_key, spend_key, RATE_LIMIT_PREFIX, SPEND_PREFIX};
use crate::governance::counters::{ClusterView, CounterKey, LocalUsage, RemoteUsage};

/// The keys and values this node publishes for its local usage.
pub fn local_keys(local: &LocalUsage) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    for (key, count) in local.window_counts() {
        keys.insert(counter_key(key), count.to_string());
    }
    for spend in local.published_spend() {
        keys.insert(
            spend_key(&spend.budget_id),
            format!("{} {}", spend.unflushed, spend.settled_total),
        );
    }
    keys
}

/// One other node's published keys, as the remote view needs them.
pub struct RemoteNode<'a> {
    /// Whether its spend still counts: false once a survivor wrote a dead node's spend to the
    /// store. Window counts of dead nodes count until the window ends either way.
    pub live: bool,
    /// Its key-value pairs.
    pub key_values: Box<dyn Iterator<Item = (&'a str, &'a str)> + 'a>,
}

/// Sums over other nodes, built on every publish round.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RemoteSnapshot {
    /// Rate-limit counters.
    pub counters: HashMap<CounterKey, i64>,
    /// Unflushed plus reserved spend per budget (live nodes only).
    pub spend: HashMap<String, f64>,
}

impl RemoteSnapshot {
    /// Sum the keys of `nodes` (every node but this one).
    pub fn from_nodes<'a>(nodes: impl IntoIterator<Item = RemoteNode<'a>>) -> Self {
        let mut snapshot = Self::default();
        for node in nodes {
            for (key, value) in node.key_values {
                if key.starts_with(RATE_LIMIT_PREFIX) {
                    if let (Some(key), Ok(value)) = (parse_counter_key(key), value.parse::<i64>()) {
                        *snapshot.counters.entry(key).or_default() += value;
                    }
                } else if let Some(budget) = key.strip_prefix(SPEND_PREFIX) {
                    let unflushed = value.split_whitespace().next().unwrap_or_default();
                    if let (true, Ok(value)) = (node.live, unflushed.parse::<f64>()) {
                        if value.is_finite() {
                            *snapshot.spend.entry(budget.to_string()).or_default() += value;
                        }
                    }
                }
            }
        }
        snapshot
    }
}

/// [`RemoteUsage`] over the latest [`RemoteSnapshot`].
pub struct GossipUsage {
    view: ArcSwap<RemoteSnapshot>,
    health: ArcSwap<ClusterView>,
}

impl Default for GossipUsage {
    /// Stale until the membership says otherwise: a node that has not joined yet knows
    /// nothing of the others' counts.
    fn default() -> Self {
        Self {
            view: ArcSwap::default(),
            health: ArcSwap::from_pointee(ClusterView {
                stale: true,
                known_members: 1,
            }),
        }
    }
}

impl GossipUsage {
    /// Replace the sums (the cluster's publish task does this every round).
    pub fn update(&self, snapshot: RemoteSnapshot) {
        self.view.store(Arc::new(snapshot));
    }

    /// Replace the view's health (the health check does this twice a second).
    pub fn set_health(&self, view: ClusterView) {
        if **self.health.load() != view {
            self.health.store(Arc::new(view));
        }
    }
}

impl RemoteUsage for GossipUsage {
    fn counter(&self, key: &CounterKey) -> i64 {
        self.view.load().counters.get(key).copied().unwrap_or(0)
    }

    fn spend(&self, budget_id: &str) -> f64 {
        self.view
            .load()
            .spend
            .get(budget_id)
            .copied()
            .unwrap_or(0.0)
    }

    fn view(&self) -> ClusterView {
        **self.health.load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::keys::spend_totals;
    use crate::governance::counters::Metric;

    use crate::cluster::testing::counter as key;

    fn node<'a>(live: bool, pairs: &'a [(&'a str, &'a str)]) -> RemoteNode<'a> {
        RemoteNode {
            live,
            key_values: Box::new(pairs.iter().copied()),
        }
    }

    #[test]
    fn local_keys_publish_every_window_and_the_unflushed_spend() {
        let mut local = LocalUsage::default();
        local.hold_flushed_spend();
        local.count(key("vk", "vk-1", Metric::Requests, 0), 60_000, 7);
        // Written a moment ago: still gossiped until the others have re-read the store.
        local.charge_budget("d", 4.0);
        local.begin_flush();
        local.flush_done(HashMap::new(), 0);
        // Being flushed, pending, and reserved by requests in flight.
        local.charge_budget("b", 0.25);
        local.begin_flush();
        local.charge_budget("b", 1.5);
        local.reserve_spend("b", 0.25);
        local.reserve_spend("c", 0.5);
        local.prune(1, 1000);
        let keys = local_keys(&local);
        assert_eq!(keys["rl/vk/vk-1/requests/0"], "7");
        // Settled totals count everything since start: 0.25 + 1.5.
        assert_eq!(keys["spend/b"], "2 1.75");
        assert_eq!(keys["spend/c"], "0.5 0");
        assert_eq!(keys["spend/d"], "4 4");
        assert_eq!(
            spend_totals(keys.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            vec![("b".to_string(), 1.75), ("d".to_string(), 4.0)]
        );
        assert_eq!(keys.len(), 4);
        // Once the hold has passed, the flushed spend is no longer published.
        local.prune(1000, 1000);
        assert!(!local_keys(&local).contains_key("spend/d"));
    }

    #[test]
    fn remote_usage_sums_other_nodes_and_drops_dead_nodes_spend() {
        let snapshot = RemoteSnapshot::from_nodes([
            node(
                true,
                &[
                    ("rl/vk/vk-1/requests/0", "10"),
                    ("spend/b", "1.5 20"),
                    ("node/region", "eu"),
                ],
            ),
            node(
                true,
                &[("rl/vk/vk-1/requests/0", "5"), ("spend/b", "0.5 3")],
            ),
            // A dead node whose spend a survivor wrote: its window counts still count, its
            // spend does not.
            node(false, &[("rl/vk/vk-1/requests/0", "3"), ("spend/b", "9 9")]),
        ]);
        let usage = GossipUsage::default();
        usage.update(snapshot);
        assert_eq!(usage.counter(&key("vk", "vk-1", Metric::Requests, 0)), 18);
        // Another window (or metric) is a different counter.
        assert_eq!(
            usage.counter(&key("vk", "vk-1", Metric::Requests, 60_000)),
            0
        );
        assert_eq!(usage.counter(&key("vk", "vk-1", Metric::Tokens, 0)), 0);
        assert_eq!(usage.spend("b"), 2.0);
        assert_eq!(usage.spend("unknown"), 0.0);
    }
}
