//! The join snapshot: every node's keys as one node holds them, sent over gRPC to a node that
//! just joined and applied *into* its chitchat state, so it counts the others' usage at once
//! instead of after the many gossip rounds a large state takes to arrive.
//!
//! A snapshot carries each node's live keys with their versions and the node's max version,
//! but no tombstones. It is applied with `Chitchat::reset_node_state_if_update` at
//! `last_gc_version = max_version`: "everything live as of `max_version`, no deletion history",
//! which is what chitchat itself holds after a reset, so gossip carries on from there (a peer
//! that is further behind gets a full reset from this node in turn).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use chitchat::{Chitchat, ChitchatId, DeletionStatus, VersionedValue};

use super::grpc::{NodeSnapshot, Snapshot, SnapshotEntry};

/// What `chitchat` holds about every node (itself included), as the answering node `self_id`.
pub fn snapshot_of(chitchat: &Chitchat, self_id: &ChitchatId) -> Snapshot {
    let live: BTreeSet<&ChitchatId> = chitchat.live_nodes().collect();
    let nodes = chitchat
        .node_states()
        .iter()
        .map(|(id, state)| NodeSnapshot {
            node_id: id.node_id.to_string(),
            generation: id.generation_id,
            gossip_addr: id.gossip_advertise_addr.to_string(),
            entries: state
                .key_values_including_deleted()
                .filter(|(_, value)| !value.is_deleted())
                .map(|(key, value)| {
                    (
                        key.to_string(),
                        SnapshotEntry {
                            value: value.value.clone(),
                            version: value.version,
                        },
                    )
                })
                .collect(),
            live: live.contains(id) || id == self_id,
            max_version: state.max_version(),
        })
        .collect();
    Snapshot {
        node_id: self_id.node_id.to_string(),
        nodes,
    }
}

/// Apply `snapshot` into `chitchat`: every other node's state this node holds at an older
/// version (or not at all) is replaced by the snapshot's. This node's own state, states this
/// node already holds at the same version or newer, states of an unknown version (a peer that
/// predates versioned snapshots) and unreadable gossip addresses are skipped. Returns how many
/// node states were applied.
pub fn apply_snapshot(chitchat: &mut Chitchat, snapshot: &Snapshot) -> usize {
    let self_id = chitchat.self_chitchat_id().clone();
    let mut applied = 0;
    for node in &snapshot.nodes {
        let Ok(gossip_addr) = node.gossip_addr.parse::<SocketAddr>() else {
            continue;
        };
        let id = ChitchatId::new(node.node_id.clone(), node.generation, gossip_addr);
        if id == self_id || node.max_version == 0 {
            continue;
        }
        // chitchat orders states by (last_gc_version, max_version): a state gossip delivered
        // with a newer max version but an older GC version would lose to this one.
        if chitchat
            .node_state(&id)
            .is_some_and(|known| known.max_version() >= node.max_version)
        {
            continue;
        }
        let key_values = node.entries.iter().map(|(key, entry)| {
            (
                key.clone(),
                VersionedValue {
                    value: entry.value.clone(),
                    // Never past the state's max version: chitchat keeps the two consistent.
                    version: entry.version.min(node.max_version),
                    status: DeletionStatus::Set,
                },
            )
        });
        chitchat.reset_node_state_if_update(&id, key_values, node.max_version, node.max_version);
        if chitchat
            .node_state(&id)
            .is_some_and(|state| state.max_version() == node.max_version)
        {
            applied += 1;
        }
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::publish::{remote_view, set_usage_keys};
    use crate::cluster::testing::chitchat;
    use crate::governance::counters::{CounterKey, Metric};

    fn usage(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn requests(id: &str, window_start: i64) -> CounterKey {
        CounterKey {
            scope: crate::governance::counters::Scope::VirtualKey,
            id: id.into(),
            metric: Metric::Requests,
            window_start,
        }
    }

    #[test]
    fn a_joining_node_counts_the_snapshot_at_once() {
        let mut answering = chitchat("gw-0", 10101);
        let answering_id = answering.self_chitchat_id().clone();
        let own = answering.self_node_state();
        set_usage_keys(
            own,
            &usage(&[("rl/vk/a/requests/0", "3"), ("spend/b", "1.5 4")]),
        );
        // Deleted keys stay behind: a snapshot has no tombstones.
        set_usage_keys(own, &usage(&[("rl/vk/a/requests/0", "7")]));
        let snapshot = snapshot_of(&answering, &answering_id);
        assert_eq!(snapshot.node_id, "gw-0");
        let sent = &snapshot.nodes[0];
        assert!(sent.live);
        assert_eq!(sent.max_version, answering.self_node_state().max_version());
        assert_eq!(
            sent.entries.keys().collect::<Vec<_>>(),
            ["rl/vk/a/requests/0"]
        );

        let mut joining = chitchat("gw-1", 10102);
        let joining_id = joining.self_chitchat_id().clone();
        assert_eq!(apply_snapshot(&mut joining, &snapshot), 1);
        let held = joining.node_state(&answering_id).expect("applied");
        assert_eq!(held.get("rl/vk/a/requests/0"), Some("7"));
        assert_eq!(held.get("spend/b"), None);
        assert_eq!(held.max_version(), sent.max_version);
        assert_eq!(held.last_gc_version(), sent.max_version);
        let view = remote_view(&joining, &joining_id);
        assert_eq!(view.counters.get(&requests("a", 0)), Some(&7));
    }

    #[test]
    fn a_snapshot_never_touches_this_node_or_newer_states() {
        let mut answering = chitchat("gw-0", 10101);
        let answering_id = answering.self_chitchat_id().clone();
        set_usage_keys(
            answering.self_node_state(),
            &usage(&[("rl/vk/a/requests/0", "3")]),
        );
        let old = snapshot_of(&answering, &answering_id);
        set_usage_keys(
            answering.self_node_state(),
            &usage(&[("rl/vk/a/requests/0", "5")]),
        );
        let new = snapshot_of(&answering, &answering_id);

        let mut joining = chitchat("gw-1", 10102);
        let joining_id = joining.self_chitchat_id().clone();
        assert_eq!(apply_snapshot(&mut joining, &new), 1);
        assert_eq!(apply_snapshot(&mut joining, &new), 0, "already held");
        assert_eq!(apply_snapshot(&mut joining, &old), 0, "older than held");
        let held = joining.node_state(&answering_id).expect("applied");
        assert_eq!(held.get("rl/vk/a/requests/0"), Some("5"));

        // The answering node's view of the joining node goes back to it: ignored.
        set_usage_keys(
            joining.self_node_state(),
            &usage(&[("rl/vk/z/requests/0", "1")]),
        );
        let mut echo = snapshot_of(&joining, &joining_id);
        echo.nodes
            .iter_mut()
            .filter(|n| n.node_id == "gw-1")
            .for_each(|n| {
                n.max_version += 10;
                n.entries.clear();
            });
        apply_snapshot(&mut joining, &echo);
        assert_eq!(
            joining.self_node_state().get("rl/vk/z/requests/0"),
            Some("1")
        );
    }

    /// Two real chitchat instances over chitchat's in-process transport: `gw-1` applies an
    /// outdated snapshot of `gw-0`, then gossip alone brings what changed since, deletions
    /// included.
    #[tokio::test]
    async fn gossip_carries_on_from_an_applied_snapshot() {
        let transport = chitchat::transport::ChannelTransport::with_mtu(65_507);
        let first = chitchat::spawn_chitchat(
            crate::cluster::testing::config("gw-0", 1),
            Vec::new(),
            &transport,
        )
        .await
        .expect("gw-0 starts");
        let first_id = first.chitchat_id().clone();
        let snapshot = {
            let chitchat = first.chitchat();
            let mut chitchat = chitchat.lock().await;
            set_usage_keys(
                chitchat.self_node_state(),
                &usage(&[("rl/vk/a/requests/0", "3"), ("spend/b", "1 1")]),
            );
            let snapshot = snapshot_of(&chitchat, &first_id);
            // Changed after the snapshot was taken: a window ended, another one started.
            set_usage_keys(
                chitchat.self_node_state(),
                &usage(&[("rl/vk/a/requests/60000", "1"), ("spend/b", "1 1")]),
            );
            snapshot
        };
        let second = chitchat::spawn_chitchat(
            crate::cluster::testing::config("gw-1", 2),
            Vec::new(),
            &transport,
        )
        .await
        .expect("gw-1 starts");
        {
            let chitchat = second.chitchat();
            let mut chitchat = chitchat.lock().await;
            assert_eq!(apply_snapshot(&mut chitchat, &snapshot), 1);
            let held = chitchat.node_state(&first_id).expect("applied");
            assert_eq!(held.get("rl/vk/a/requests/0"), Some("3"));
        }
        second
            .gossip(first_id.gossip_advertise_addr)
            .expect("gossip round");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let keys: Vec<(String, String)> = {
                let chitchat = second.chitchat();
                let chitchat = chitchat.lock().await;
                chitchat
                    .node_state(&first_id)
                    .map(|state| {
                        state
                            .key_values()
                            .filter(|(k, _)| crate::cluster::keys::is_usage_key(k))
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let want = [
                ("rl/vk/a/requests/60000".to_string(), "1".to_string()),
                ("spend/b".to_string(), "1 1".to_string()),
            ];
            if keys == want {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gossip never caught up: {keys:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        for handle in [first, second] {
            let _ = handle.shutdown().await;
        }
    }

    #[test]
    fn unversioned_or_unreadable_nodes_are_skipped() {
        let node = |gossip_addr: &str, max_version| NodeSnapshot {
            node_id: "gw-2".into(),
            generation: 1,
            gossip_addr: gossip_addr.into(),
            entries: [(
                "rl/vk/a/requests/0".to_string(),
                SnapshotEntry {
                    value: "9".into(),
                    version: 1,
                },
            )]
            .into(),
            live: true,
            max_version,
        };
        let snapshot = Snapshot {
            node_id: "gw-0".into(),
            nodes: vec![node("127.0.0.1:10103", 0), node("not an address", 4)],
        };
        let mut joining = chitchat("gw-1", 10102);
        assert_eq!(apply_snapshot(&mut joining, &snapshot), 0);
        assert_eq!(joining.node_states().len(), 1, "only itself");
    }
}
