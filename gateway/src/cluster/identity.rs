//! Who this process is to the cluster and the store: its node name, its generation (start time),
//! the address peers reach it at, and the [`SpendSource`] its spend is written as.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use chitchat::ChitchatId;

use crate::config::ClusterConfig;
use crate::governance::flush::SpendSource;

/// This node's name: `node_id`, env `POD_NAME`, or the hostname.
pub fn node_name(config: &ClusterConfig) -> String {
    config
        .node_id
        .clone()
        .filter(|id| !id.is_empty())
        .or_else(|| std::env::var("POD_NAME").ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(hostname)
}

/// The kernel's hostname, else env `HOSTNAME`, else `bifrost`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "bifrost".to_string())
}

/// This process as a writer of spend: [`node_name`] and, as its generation, the time it
/// started (now, Unix ms). Built once at start; cluster mode gossips the same pair.
pub fn spend_source(config: &ClusterConfig) -> SpendSource {
    SpendSource {
        node_id: node_name(config),
        generation: crate::governance::now_ms(),
    }
}

/// The gossip generation of `source` (chitchat's is unsigned; a clock before 1970 gives 0).
pub fn generation(source: &SpendSource) -> u64 {
    u64::try_from(source.generation).unwrap_or(0)
}

/// The process behind a gossip member, as a writer of spend (a survivor writes a dead node's
/// totals under its name and generation).
pub fn member_spend_source(id: &ChitchatId) -> SpendSource {
    SpendSource {
        node_id: id.node_id.to_string(),
        generation: i64::try_from(id.generation_id).unwrap_or(i64::MAX),
    }
}

/// The address peers can reach: `POD_IP`, else the listener's own IP, else the hostname's first
/// non-loopback address, else loopback (a single-host cluster).
pub async fn advertise_ip(listen: IpAddr, port: u16) -> IpAddr {
    if let Some(ip) = std::env::var("POD_IP")
        .ok()
        .and_then(|ip| ip.parse::<IpAddr>().ok())
    {
        return ip;
    }
    if !listen.is_unspecified() {
        return listen;
    }
    if let Ok(addrs) = tokio::net::lookup_host((hostname(), port)).await {
        if let Some(addr) = addrs.into_iter().find(|a| !a.ip().is_loopback()) {
            return addr.ip();
        }
    }
    tracing::warn!(
        "cannot tell which address peers reach this node at (set POD_IP); advertising loopback"
    );
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// What a node needs to join the cluster, decided once at start.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `node_id`, env `POD_NAME`, or the hostname.
    pub node_id: String,
    /// Start time (Unix ms): a restarted node is a new generation of the same name.
    pub generation: u64,
    /// Where gossip listens.
    pub gossip_listen: SocketAddr,
    /// Where peers reach this node's gossip.
    pub gossip_advertise: SocketAddr,
    /// This node's HTTP address, published as `node/http_addr`.
    pub http_addr: SocketAddr,
    /// The whole `cluster_config` section.
    pub config: ClusterConfig,
}

impl ClusterSettings {
    /// Settings for the process `source` (its node id and generation) whose HTTP listener is
    /// bound to `http_addr`.
    pub async fn new(config: &ClusterConfig, http_addr: SocketAddr, source: &SpendSource) -> Self {
        let port = config.gossip.port;
        let gossip_listen = SocketAddr::new(http_addr.ip(), port);
        let gossip_advertise = SocketAddr::new(advertise_ip(http_addr.ip(), port).await, port);
        Self {
            node_id: source.node_id.clone(),
            generation: generation(source),
            gossip_listen,
            gossip_advertise,
            http_addr,
            config: config.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_node_id_names_the_process_and_its_spend() {
        let config = ClusterConfig {
            node_id: Some("gw-7".to_string()),
            ..ClusterConfig::default()
        };
        let before = crate::governance::now_ms();
        let source = spend_source(&config);
        assert_eq!(source.node_id, "gw-7");
        assert!(
            source.generation >= before,
            "the generation is the start time"
        );
        assert_eq!(generation(&source), source.generation as u64);
    }

    #[test]
    fn an_empty_node_id_falls_back_to_the_pod_or_host_name() {
        let config = ClusterConfig {
            node_id: Some(String::new()),
            ..ClusterConfig::default()
        };
        assert!(!node_name(&config).is_empty());
    }

    #[test]
    fn generations_convert_both_ways_without_wrapping() {
        let old_clock = SpendSource {
            node_id: "gw-0".into(),
            generation: -5,
        };
        assert_eq!(generation(&old_clock), 0);
        let id = ChitchatId::new("gw-1".to_string(), u64::MAX, ([127, 0, 0, 1], 1).into());
        assert_eq!(
            member_spend_source(&id),
            SpendSource {
                node_id: "gw-1".into(),
                generation: i64::MAX,
            }
        );
        let id = ChitchatId::new(
            "gw-1".to_string(),
            1_700_000_000_000,
            ([127, 0, 0, 1], 1).into(),
        );
        assert_eq!(member_spend_source(&id).generation, 1_700_000_000_000);
    }
}
