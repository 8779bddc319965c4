//! Who owns a strict-mode counter: rendezvous (highest-random-weight) hashing over the healthy
//! members, so every node that sees the same members picks the same owner, and a membership
//! change moves only the keys of the member that came or went.
//!
//! The weight of a member for a key is the first 8 bytes of SHA-256 over its node id and the
//! key: stable across processes, versions and architectures (unlike `std`'s hasher). Node ids,
//! not generations, are hashed, so a restarted pod keeps its keys.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};

/// A cluster member as strict mode sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's name (stable across restarts).
    pub node_id: String,
    /// Its region, if it published one.
    pub region: Option<String>,
    /// Where its gRPC server listens.
    pub grpc_addr: SocketAddr,
    /// Whether it currently counts as healthy.
    pub healthy: bool,
}

/// The member's weight for `key`: higher wins.
fn weight(node_id: &str, key: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(node_id.as_bytes())
        // A separator, so ("ab", "c") and ("a", "bc") hash differently.
        .chain_update([0u8])
        .chain_update(key.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The owner of `key` among the healthy `members`: the one with the highest weight, among those
/// in `self_region` when any healthy member is there. `None` when no member is healthy.
pub fn owner<'a>(
    key: &str,
    members: &'a [Member],
    self_region: Option<&str>,
) -> Option<&'a Member> {
    let healthy = || members.iter().filter(|m| m.healthy);
    let in_region = |m: &&Member| self_region.is_some() && m.region.as_deref() == self_region;
    let local_only = healthy().any(|m| in_region(&m));
    healthy()
        .filter(|m| !local_only || in_region(m))
        // Ties (practically impossible) go to the smaller node id, so the answer stays unique.
        .max_by(|a, b| {
            weight(&a.node_id, key)
                .cmp(&weight(&b.node_id, key))
                .then_with(|| b.node_id.cmp(&a.node_id))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, region: Option<&str>, healthy: bool) -> Member {
        Member {
            node_id: id.to_string(),
            region: region.map(str::to_string),
            grpc_addr: SocketAddr::from(([10, 0, 0, 1], 10102)),
            healthy,
        }
    }

    fn cluster(n: usize) -> Vec<Member> {
        (0..n)
            .map(|i| member(&format!("gw-{i}"), None, true))
            .collect()
    }

    fn keys() -> impl Iterator<Item = String> {
        (0..10_000).map(|i| format!("rl/vk/key-{i}/1750000000000"))
    }

    fn owner_id(key: &str, members: &[Member]) -> String {
        owner(key, members, None)
            .map(|m| m.node_id.clone())
            .unwrap_or_default()
    }

    #[test]
    fn owner_is_the_same_whatever_order_nodes_list_members_in() {
        let members = cluster(5);
        let mut reversed = members.clone();
        reversed.reverse();
        let mut rotated = members.clone();
        rotated.rotate_left(2);
        for key in keys().take(1_000) {
            let expected = owner_id(&key, &members);
            assert_eq!(owner_id(&key, &reversed), expected);
            assert_eq!(owner_id(&key, &rotated), expected);
        }
    }

    #[test]
    fn owner_spreads_keys_over_members() {
        let members = cluster(4);
        let mut per_member = std::collections::BTreeMap::<String, usize>::new();
        for key in keys() {
            *per_member.entry(owner_id(&key, &members)).or_default() += 1;
        }
        assert_eq!(per_member.len(), 4);
        for (id, count) in per_member {
            assert!(
                (2_000..3_000).contains(&count),
                "{id} owns {count} of 10000"
            );
        }
    }

    #[test]
    fn owner_does_not_move_when_a_non_owner_leaves() {
        let members = cluster(5);
        for key in keys().take(2_000) {
            let before = owner_id(&key, &members);
            let without: Vec<Member> = members
                .iter()
                .filter(|m| m.node_id != before)
                .take(3)
                .cloned()
                .chain(members.iter().filter(|m| m.node_id == before).cloned())
                .collect();
            assert_eq!(without.len(), 4);
            assert_eq!(owner_id(&key, &without), before);
        }
    }

    #[test]
    fn owner_moves_only_the_leaving_owners_keys() {
        let members = cluster(5);
        let mut unhealthy = members.clone();
        unhealthy[2].healthy = false;
        let mut moved = 0;
        for key in keys() {
            let before = owner_id(&key, &members);
            let after = owner_id(&key, &unhealthy);
            if before == "gw-2" {
                assert_ne!(after, "gw-2");
                moved += 1;
            } else {
                assert_eq!(after, before, "{key} moved though its owner stayed");
            }
        }
        // About 1/N of the keys.
        assert!((1_600..2_400).contains(&moved), "{moved} of 10000 moved");
    }

    #[test]
    fn owner_prefers_healthy_members_in_the_same_region() {
        let members = vec![
            member("eu-0", Some("eu"), true),
            member("eu-1", Some("eu"), true),
            member("us-0", Some("us"), true),
            member("us-1", Some("us"), true),
        ];
        for key in keys().take(1_000) {
            let chosen = owner(&key, &members, Some("us")).map(|m| m.node_id.as_str());
            assert!(matches!(chosen, Some("us-0" | "us-1")), "{key}: {chosen:?}");
        }
        // Every node in the region agrees, and a node without a region uses everyone.
        let spread: std::collections::BTreeSet<&str> = keys()
            .take(1_000)
            .filter_map(|k| owner(&k, &members, None).map(|m| m.node_id.as_str()))
            .collect();
        assert_eq!(spread.len(), 4);
    }

    #[test]
    fn owner_falls_back_to_other_regions_when_none_is_healthy_locally() {
        let members = vec![
            member("eu-0", Some("eu"), true),
            member("us-0", Some("us"), false),
        ];
        let chosen = owner("k", &members, Some("us")).map(|m| m.node_id.as_str());
        assert_eq!(chosen, Some("eu-0"));
        let chosen = owner("k", &members, Some("ap")).map(|m| m.node_id.as_str());
        assert_eq!(chosen, Some("eu-0"));
    }

    #[test]
    fn owner_is_none_without_healthy_members() {
        assert!(owner("k", &[], None).is_none());
        assert!(owner("k", &[member("a", None, false)], None).is_none());
    }
}
