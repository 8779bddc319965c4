//! Peer health: chitchat's failure detector settings, and the check that runs every
//! [`HEALTH_CHECK_INTERVAL`] on top of it (heartbeats, suspects, the view's staleness, the
//! strict-mode member list, dead nodes' spend).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chitchat::{ChitchatId, FailureDetectorConfig};
use tokio::sync::watch;

use super::keys::NodeStateExt;
use super::membership::PeerObservation;
use super::recovery::recover_dead_spend;
use super::{Cluster, GOSSIP_INTERVAL};
use crate::config::ClusterConfig;

/// How often peers' heartbeats are checked (one "check" of the success/failure thresholds).
pub const HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How long a peer stays dead before a survivor writes its unflushed spend (a peer declared
/// dead by a hiccup is usually back by then; writing early would be harmless but noisy).
pub const RECOVERY_DELAY: Duration = Duration::from_secs(3);

/// The failure detector from `gossip.config`: chitchat's phi is "silence / mean heartbeat
/// interval", and heartbeats arrive about once per gossip round, so a threshold of
/// `timeout / gossip interval` declares a peer dead after about `timeout_seconds` of silence.
pub fn failure_detector(config: &ClusterConfig) -> FailureDetectorConfig {
    let timeout = Duration::from_secs(config.gossip.config.timeout_seconds.max(1));
    FailureDetectorConfig {
        phi_threshold: timeout.as_secs_f64() / GOSSIP_INTERVAL.as_secs_f64(),
        sampling_window_size: 1_000,
        max_interval: timeout,
        initial_interval: GOSSIP_INTERVAL,
        // A dead node's state (its window counts) is kept this long before being forgotten.
        dead_node_grace_period: Duration::from_secs(24 * 3600),
    }
}

/// Check every peer's heartbeat each [`HEALTH_CHECK_INTERVAL`] and log joins, suspects and
/// health changes.
pub async fn check_health(cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
    let mut handled: BTreeSet<ChitchatId> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_CHECK_INTERVAL) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let observations: BTreeMap<ChitchatId, PeerObservation> = {
            let chitchat = cluster.chitchat.lock().await;
            let live: BTreeSet<&ChitchatId> = chitchat.live_nodes().collect();
            chitchat
                .node_states()
                .iter()
                .filter(|(id, _)| **id != cluster.self_id)
                .map(|(id, state)| {
                    (
                        id.clone(),
                        PeerObservation {
                            heartbeat: u64::from(state.heartbeat()),
                            live: live.contains(id),
                            left: state.is_leaving(),
                        },
                    )
                })
                .collect()
        };
        let (dead, healthy) = {
            let mut membership = cluster.membership.lock().unwrap_or_else(|p| p.into_inner());
            membership.observe(observations, Instant::now());
            let (alive, suspect, dead) = membership.members_by_state();
            cluster.metrics.set_members(alive, suspect, dead);
            cluster.usage.set_health(membership.view());
            cluster
                .metrics
                .convergence_lag
                .set(membership.convergence_lag().as_secs_f64());
            let dead: Vec<ChitchatId> = membership
                .dead_peers(RECOVERY_DELAY, Instant::now())
                .cloned()
                .collect();
            let healthy: Vec<ChitchatId> = membership.healthy_peers().cloned().collect();
            (dead, healthy)
        };
        cluster.refresh_members(&healthy).await;
        recover_dead_spend(&cluster, &dead, &healthy, &mut handled).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_dead_after_about_timeout_seconds_of_silence() {
        let mut config = ClusterConfig::default();
        config.gossip.config.timeout_seconds = 4;
        let detector = failure_detector(&config);
        assert_eq!(detector.phi_threshold, 40.0, "4 s of 100 ms rounds");
        assert_eq!(detector.max_interval, Duration::from_secs(4));
        assert_eq!(detector.initial_interval, GOSSIP_INTERVAL);
        config.gossip.config.timeout_seconds = 0;
        assert_eq!(
            failure_detector(&config).phi_threshold,
            10.0,
            "at least 1 s"
        );
    }
}
