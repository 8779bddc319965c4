//! Governance counters in the gossip key space, and the cluster's "remote usage" view.
//!
//! Each node publishes only its own keys:
//! - `rl/<scope>/<id>/<metric>/<window_start>` → requests or tokens it admitted in that window;
//! - `spend/<budget_id>` → its pending + flushing + reserved spend.
//!
//! The remote view is the sum of those keys over the other nodes, computed off the request path
//! (see [`RemoteSnapshot::from_nodes`]) and swapped in whole; admission only reads it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::governance::counters::{CounterKey, LocalUsage, Metric, RemoteUsage};

/// Prefix of rate-limit counter keys.
pub const RATE_LIMIT_PREFIX: &str = "rl/";
/// Prefix of budget spend keys.
pub const SPEND_PREFIX: &str = "spend/";

fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::Requests => "requests",
        Metric::Tokens => "tokens",
    }
}

/// `rl/<scope>/<id>/<metric>/<window_start>`. The id may contain `/` (provider scope ids are
/// `vk/provider`); scope, metric and window start never do, so the key parses from both ends.
pub fn counter_key(key: &CounterKey) -> String {
    format!(
        "{RATE_LIMIT_PREFIX}{}/{}/{}/{}",
        key.scope,
        key.id,
        metric_name(key.metric),
        key.window_start
    )
}

/// The inverse of [`counter_key`]; `None` for keys this version does not understand.
pub fn parse_counter_key(text: &str) -> Option<CounterKey> {
    let rest = text.strip_prefix(RATE_LIMIT_PREFIX)?;
    let (scope, rest) = rest.split_once('/')?;
    let (rest, window_start) = rest.rsplit_once('/')?;
    let (id, metric) = rest.rsplit_once('/')?;
    let scope: &'static str = match scope {
        "vk" => "vk",
        "provider" => "provider",
        _ => return None,
    };
    let metric = match metric {
        "requests" => Metric::Requests,
        "tokens" => Metric::Tokens,
        _ => return None,
    };
    if id.is_empty() {
        return None;
    }
    Some(CounterKey {
        scope,
        id: Arc::from(id),
        metric,
        window_start: window_start.parse().ok()?,
    })
}

/// `spend/<budget_id>`.
pub fn spend_key(budget_id: &str) -> String {
    format!("{SPEND_PREFIX}{budget_id}")
}

/// The keys and values this node publishes for its local usage.
pub fn local_keys(local: &LocalUsage) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    for (key, window) in &local.counters {
        keys.insert(counter_key(key), window.value.to_string());
    }
    let budgets = local
        .pending_spend
        .keys()
        .chain(local.flushing_spend.keys())
        .chain(local.reserved_spend.keys());
    for budget in budgets {
        let spend = local.pending_spend.get(budget).copied().unwrap_or(0.0)
            + local.flushing_spend.get(budget).copied().unwrap_or(0.0)
            + local.reserved_spend.get(budget).copied().unwrap_or(0.0);
        keys.insert(spend_key(budget), spend.to_string());
    }
    keys
}

/// One other node's published keys, as the remote view needs them.
pub struct RemoteNode<'a> {
    /// Whether the failure detector considers it alive (a dead node's spend no longer counts,
    /// its window counts do until the window ends).
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
                    if let (true, Ok(value)) = (node.live, value.parse::<f64>()) {
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
#[derive(Default)]
pub struct GossipUsage {
    view: ArcSwap<RemoteSnapshot>,
}

impl GossipUsage {
    /// Replace the view (the cluster's publish task does this every round).
    pub fn update(&self, snapshot: RemoteSnapshot) {
        self.view.store(Arc::new(snapshot));
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::counters::WindowCount;

    fn key(scope: &'static str, id: &str, metric: Metric, window_start: i64) -> CounterKey {
        CounterKey {
            scope,
            id: Arc::from(id),
            metric,
            window_start,
        }
    }

    fn node<'a>(live: bool, pairs: &'a [(&'a str, &'a str)]) -> RemoteNode<'a> {
        RemoteNode {
            live,
            key_values: Box::new(pairs.iter().copied()),
        }
    }

    #[test]
    fn counter_keys_round_trip_even_with_slashes_in_the_id() {
        for key in [
            key("vk", "vk-1", Metric::Requests, 1_700_000_000_000),
            key("provider", "vk-1/openai", Metric::Tokens, 60_000),
        ] {
            let text = counter_key(&key);
            assert_eq!(parse_counter_key(&text), Some(key), "{text}");
        }
        assert_eq!(
            counter_key(&key("provider", "vk-1/openai", Metric::Tokens, 60_000)),
            "rl/provider/vk-1/openai/tokens/60000"
        );
    }

    #[test]
    fn unknown_or_malformed_counter_keys_are_ignored() {
        for text in [
            "rl/team/x/requests/1",
            "rl/vk/x/bytes/1",
            "rl/vk/x/requests/soon",
            "rl/vk//requests/1",
            "rl/vk",
            "spend/b",
        ] {
            assert_eq!(parse_counter_key(text), None, "{text}");
        }
    }

    #[test]
    fn local_keys_publish_every_window_and_the_unflushed_spend() {
        let mut local = LocalUsage::default();
        local.counters.insert(
            key("vk", "vk-1", Metric::Requests, 0),
            WindowCount {
                value: 7,
                ends_at_ms: 60_000,
            },
        );
        local.pending_spend.insert("b".into(), 1.5);
        local.flushing_spend.insert("b".into(), 0.25);
        local.reserved_spend.insert("b".into(), 0.25);
        local.reserved_spend.insert("c".into(), 0.5);
        let keys = local_keys(&local);
        assert_eq!(keys["rl/vk/vk-1/requests/0"], "7");
        assert_eq!(keys["spend/b"], "2");
        assert_eq!(keys["spend/c"], "0.5");
        assert_eq!(keys.len(), 3);
    }

    #[test]
    fn remote_usage_sums_other_nodes_and_drops_dead_nodes_spend() {
        let snapshot = RemoteSnapshot::from_nodes([
            node(
                true,
                &[
                    ("rl/vk/vk-1/requests/0", "10"),
                    ("spend/b", "1.5"),
                    ("node/region", "eu"),
                ],
            ),
            node(true, &[("rl/vk/vk-1/requests/0", "5"), ("spend/b", "0.5")]),
            // A dead node: its window counts still count, its spend does not.
            node(false, &[("rl/vk/vk-1/requests/0", "3"), ("spend/b", "9")]),
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
