//! The peers file the operator keeps for the gateways' `operator` discovery: every pod of the
//! cluster that has an IP, ready or not, sorted by name.

use bifrost_gateway::config::{
    GossipConfig, GrpcConfig, PeerEndpoint, PeersFile, PEERS_FILE_VERSION,
};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::instance::Instance;

/// The peers of `instance` among `pods` (already filtered by the instance's selector).
/// `generated_at` is only stamped on the file; callers keep it stable while the peers do not
/// change, so an unchanged list is not rewritten.
pub fn peers_file(instance: &Instance, pods: &[Pod], generated_at: String) -> PeersFile {
    let gossip_port =
        u16::try_from(instance.spec.cluster.gossip.port).unwrap_or(GossipConfig::DEFAULT_PORT);
    let grpc_port =
        u16::try_from(instance.spec.cluster.grpc.port).unwrap_or(GrpcConfig::DEFAULT_PORT);
    let mut peers: Vec<PeerEndpoint> = pods
        .iter()
        .filter(|pod| !is_finished(pod))
        .filter_map(|pod| {
            let ip = pod.status.as_ref()?.pod_ip.clone()?;
            (!ip.is_empty()).then(|| PeerEndpoint {
                name: pod.name_any(),
                ip,
                gossip_port,
                grpc_port,
                ready: is_ready(pod),
            })
        })
        .collect();
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    PeersFile {
        version: PEERS_FILE_VERSION,
        generated_at,
        peers,
    }
}

/// Whether the pod's `Ready` condition is true.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Pods that ran to completion no longer own their IP.
fn is_finished(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
}

/// The same peers, ignoring when the file was generated.
pub fn same_peers(a: &PeersFile, b: &PeersFile) -> bool {
    a.version == b.version && a.peers == b.peers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{bifrost_cluster, pod};

    #[test]
    fn every_pod_with_an_ip_is_a_peer_ready_or_not_sorted_by_name() {
        let resource = bifrost_cluster("gw").cluster_with_postgres().build();
        let instance = Instance::new(&resource).expect("instance");
        let pods = vec![
            pod("gw-2", Some("10.0.0.12"), true),
            pod("gw-0", Some("10.0.0.10"), false),
            pod("gw-1", None, false),
            pod("gw-3", Some("fd00::3"), true),
        ];
        let file = peers_file(&instance, &pods, "2026-11-21T12:00:00Z".to_string());
        assert_eq!(file.version, PEERS_FILE_VERSION);
        assert_eq!(file.generated_at, "2026-11-21T12:00:00Z");
        let names: Vec<_> = file.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["gw-0", "gw-2", "gw-3"], "gw-1 has no IP yet");
        assert_eq!(
            file.peers[0],
            PeerEndpoint {
                name: "gw-0".into(),
                ip: "10.0.0.10".into(),
                gossip_port: 10101,
                grpc_port: 10102,
                ready: false,
            }
        );
        assert!(file.peers[1].ready);
        assert_eq!(file.gossip_addresses()[2], "[fd00::3]:10101");
    }

    #[test]
    fn peers_carry_the_ports_from_the_spec() {
        let resource = bifrost_cluster("gw")
            .cluster_with_postgres()
            .with(|s| {
                s.cluster.gossip.port = 7946;
                s.cluster.grpc.port = 7947;
            })
            .build();
        let instance = Instance::new(&resource).expect("instance");
        let file = peers_file(
            &instance,
            &[pod("gw-0", Some("10.0.0.10"), true)],
            "t".into(),
        );
        assert_eq!(
            (file.peers[0].gossip_port, file.peers[0].grpc_port),
            (7946, 7947)
        );
    }

    #[test]
    fn finished_pods_are_not_peers() {
        let resource = bifrost_cluster("gw").cluster_with_postgres().build();
        let instance = Instance::new(&resource).expect("instance");
        let mut failed = pod("gw-0", Some("10.0.0.10"), false);
        if let Some(status) = failed.status.as_mut() {
            status.phase = Some("Failed".into());
        }
        assert!(peers_file(&instance, &[failed], "t".into())
            .peers
            .is_empty());
    }

    #[test]
    fn generation_time_does_not_make_peers_differ() {
        let resource = bifrost_cluster("gw").cluster_with_postgres().build();
        let instance = Instance::new(&resource).expect("instance");
        let pods = [pod("gw-0", Some("10.0.0.10"), true)];
        let a = peers_file(&instance, &pods, "t1".into());
        let b = peers_file(&instance, &pods, "t2".into());
        assert!(same_peers(&a, &b));
        let c = peers_file(
            &instance,
            &[pod("gw-0", Some("10.0.0.10"), false)],
            "t1".into(),
        );
        assert!(!same_peers(&a, &c), "readiness is part of the list");
    }
}
