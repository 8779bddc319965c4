//! A dead node's unflushed spend, written to the store once by one survivor.
//!
//! For each dead peer without a `recovered/<node>/<generation>` marker anywhere, the survivor
//! with the highest rendezvous score among itself and the healthy peers writes the dead node's
//! gossiped cumulative totals through the store's idempotent per-process spend sync, then
//! publishes the marker; from then on no node counts that node's gossiped spend.

use std::collections::BTreeSet;
use std::time::Duration;

use chitchat::{Chitchat, ChitchatId};
use sha2::{Digest, Sha256};

use super::identity::member_spend_source;
use super::keys::{parse_recovered_key, recovered_key, spend_totals};
use super::Cluster;

/// `(node_id, generation)` of every dead node whose spend some survivor wrote.
pub fn recovered_markers(chitchat: &Chitchat) -> BTreeSet<(String, u64)> {
    chitchat
        .node_states()
        .values()
        .flat_map(|state| state.key_values())
        .filter_map(|(key, _)| parse_recovered_key(key))
        .collect()
}

/// Which member writes `dead`'s spend: the highest rendezvous score of `(dead, candidate)`
/// among `candidates`, so every survivor with the same view picks the same one.
pub fn spend_recoverer<'a>(
    dead: &ChitchatId,
    candidates: &'a [ChitchatId],
) -> Option<&'a ChitchatId> {
    candidates.iter().max_by_key(|candidate| {
        let digest = Sha256::new()
            .chain_update(dead.node_id.as_bytes())
            .chain_update(dead.generation_id.to_be_bytes())
            .chain_update(candidate.node_id.as_bytes())
            .chain_update(candidate.generation_id.to_be_bytes())
            .finalize();
        let mut score = [0u8; 8];
        score.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(score), candidate.node_id.clone())
    })
}

/// For each dead peer whose spend nobody wrote yet: if this node is the chosen survivor, write
/// the peer's last gossiped totals (the store adds only what that process had not flushed)
/// and publish the `recovered/` marker. `handled` remembers peers settled either way.
pub async fn recover_dead_spend(
    cluster: &Cluster,
    dead: &[ChitchatId],
    healthy: &[ChitchatId],
    handled: &mut BTreeSet<ChitchatId>,
) {
    handled.retain(|id| dead.contains(id));
    if dead.iter().all(|id| handled.contains(id)) {
        return;
    }
    // One scan for the markers per check, not one per dead peer.
    let recovered = recovered_markers(&*cluster.chitchat.lock().await);
    for id in dead {
        if handled.contains(id) {
            continue;
        }
        let totals = {
            let chitchat = cluster.chitchat.lock().await;
            if recovered.contains(&(id.node_id.to_string(), id.generation_id)) {
                handled.insert(id.clone());
                continue;
            }
            let mut candidates = healthy.to_vec();
            candidates.push(cluster.self_id.clone());
            if spend_recoverer(id, &candidates) != Some(&cluster.self_id) {
                continue;
            }
            chitchat
                .node_state(id)
                .map(|state| spend_totals(state.key_values()))
                .unwrap_or_default()
        };
        let source = member_spend_source(id);
        let written = if totals.is_empty() {
            Ok(0.0)
        } else {
            match tokio::time::timeout(
                Duration::from_secs(5),
                cluster.hooks.write_spend(source, totals.clone()),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => Err("timeout waiting for response from the config store".to_string()),
            }
        };
        match written {
            Ok(usd) => {
                tracing::info!(
                    node_id = %id.node_id,
                    generation = id.generation_id,
                    budgets = totals.len(),
                    usd,
                    "wrote a dead node's unflushed spend to the store"
                );
                let mut chitchat = cluster.chitchat.lock().await;
                chitchat.self_node_state().set(
                    recovered_key(&id.node_id, id.generation_id),
                    usd.to_string(),
                );
                handled.insert(id.clone());
            }
            Err(error) => tracing::warn!(
                node_id = %id.node_id,
                %error,
                "cannot write a dead node's unflushed spend yet; retrying"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn node(name: &str, generation: u64) -> ChitchatId {
        ChitchatId::new(name.to_string(), generation, ([127, 0, 0, 1], 10101).into())
    }

    #[test]
    fn every_survivor_picks_the_same_spend_recoverer_whatever_the_order() {
        let dead = node("gw-3", 7);
        let survivors = [node("gw-0", 1), node("gw-1", 2), node("gw-2", 3)];
        let chosen = spend_recoverer(&dead, &survivors)
            .expect("one is chosen")
            .clone();
        let mut reversed = survivors.to_vec();
        reversed.reverse();
        assert_eq!(spend_recoverer(&dead, &reversed), Some(&chosen));
        // Another generation of the same node may go to another survivor, but deterministically.
        let again = node("gw-3", 8);
        assert_eq!(
            spend_recoverer(&again, &survivors),
            spend_recoverer(&again, &reversed)
        );
        // Spread: over many dead nodes, every survivor gets some.
        let mut chosen_by = BTreeMap::new();
        for generation in 0..300 {
            let dead = node("gw-9", generation);
            let who = spend_recoverer(&dead, &survivors).expect("chosen");
            *chosen_by.entry(who.node_id.to_string()).or_insert(0) += 1;
        }
        assert_eq!(chosen_by.len(), 3, "{chosen_by:?}");
        assert_eq!(spend_recoverer(&dead, &[]), None);
    }
}
