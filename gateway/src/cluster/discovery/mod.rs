//! Seed addresses for gossip: static `peers`, the operator's peers file, DNS names (A/AAAA and
//! SRV), Kubernetes pods, Consul, etcd, UDP beacons, mDNS; and the loop that refreshes them
//! ([`refresh_seeds`]).

pub mod consul;
pub mod dns;
pub mod etcd;
pub mod interfaces;
pub mod kubernetes;
pub mod mdns;
pub mod udp;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

pub use consul::{ConsulDiscovery, ConsulRegistration};
pub use dns::{DnsDiscovery, DnsName};
pub use etcd::{EtcdDiscovery, EtcdRegistration, NodeRecord};
pub use kubernetes::KubernetesDiscovery;
pub use mdns::MdnsDiscovery;
pub use udp::UdpDiscovery;

use crate::cluster::transport::AddressFilter;
use crate::config::PeersFile;
use crate::config::{ClusterConfig, DiscoveryType};

/// How long one call to a registry (Consul, etcd) may take, connecting included.
const REGISTRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The HTTP client registry-backed discovery methods share the settings of: every call
/// bounded by [`REGISTRY_TIMEOUT`].
fn registry_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REGISTRY_TIMEOUT)
        .connect_timeout(REGISTRY_TIMEOUT)
        .build()
        .unwrap_or_default()
}

/// Where seeds come from besides the static `peers` list.
#[derive(Debug, Clone, PartialEq)]
pub enum Discovery {
    /// Only static peers.
    Static,
    /// The operator's peers file, re-read every refresh.
    OperatorFile(String),
    /// DNS names: A/AAAA with the port appended, or SRV records.
    Dns(DnsDiscovery),
    /// Running pods matching a label selector, listed through the Kubernetes API.
    Kubernetes(KubernetesDiscovery),
    /// Passing instances of `service_name` in the local Consul agent.
    Consul(ConsulDiscovery),
    /// Other nodes' keys under `/services/<service_name>/` in etcd.
    Etcd(EtcdDiscovery),
    /// Broadcast beacons on `udp_broadcast_port`, fenced by `allowed_address_space`.
    Udp(UdpDiscovery),
    /// Instances of `mdns_service` announced over multicast DNS.
    Mdns(MdnsDiscovery),
}

impl Discovery {
    /// The method `cluster` configures.
    pub fn from_config(cluster: &ClusterConfig) -> Self {
        let discovery = &cluster.discovery;
        if !discovery.enabled {
            return Self::Static;
        }
        match discovery.discovery_type {
            None => Self::Static,
            Some(DiscoveryType::Operator) => Self::OperatorFile(discovery.peers_file.clone()),
            Some(DiscoveryType::Dns) => Self::Dns(DnsDiscovery::new(
                &discovery.dns_names,
                discovery.bind_port.unwrap_or(cluster.gossip.port),
            )),
            Some(DiscoveryType::Kubernetes) => Self::Kubernetes(KubernetesDiscovery::new(
                discovery.k8s_namespace.as_deref(),
                discovery.k8s_label_selector.as_deref().unwrap_or_default(),
                discovery.bind_port.unwrap_or(cluster.gossip.port),
            )),
            Some(DiscoveryType::Consul) => Self::Consul(ConsulDiscovery::new(
                discovery.consul_address.as_deref(),
                &discovery.service_name,
            )),
            Some(DiscoveryType::Etcd) => Self::Etcd(EtcdDiscovery::new(
                &discovery.etcd_endpoints,
                &discovery.service_name,
            )),
            Some(DiscoveryType::Udp) => Self::Udp(UdpDiscovery::from_config(cluster)),
            Some(DiscoveryType::Mdns) => Self::Mdns(MdnsDiscovery::from_config(cluster)),
        }
    }

    /// Name for logs.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::OperatorFile(_) => "operator",
            Self::Dns(_) => "dns",
            Self::Kubernetes(_) => "kubernetes",
            Self::Consul(_) => "consul",
            Self::Etcd(_) => "etcd",
            Self::Udp(_) => "udp",
            Self::Mdns(_) => "mdns",
        }
    }

    /// What this node must keep running while it is a member (registering itself, sending
    /// beacons): a task to spawn that returns once `stop` turns true, after deregistering.
    pub fn registration(
        &self,
        node_id: &str,
        record: &NodeRecord,
        stop: watch::Receiver<bool>,
    ) -> Option<BoxFuture<'static, ()>> {
        match self {
            Self::Etcd(etcd) => Some(Box::pin(etcd.registration(node_id, record).run(stop))),
            Self::Udp(udp) => Some(Box::pin(udp.registration(node_id, record).run(stop))),
            Self::Mdns(mdns) => Some(Box::pin(mdns.registration(node_id, record).run(stop))),
            Self::Consul(consul) => Some(Box::pin(consul.registration(node_id, record).run(stop))),
            _ => None,
        }
    }

    /// Whether `discover` finds anything, so a refresh loop is worth running.
    pub fn refreshes(&self) -> bool {
        !matches!(self, Self::Static)
    }

    /// Resolve the current seeds (empty for static and unimplemented methods).
    pub async fn discover(&self) -> Result<BTreeSet<SocketAddr>, String> {
        match self {
            Self::Static => Ok(BTreeSet::new()),
            Self::OperatorFile(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| format!("cannot read peers file {path}: {e}"))?;
                let file = PeersFile::parse(&text)?;
                Ok(resolve(file.gossip_addresses()).await)
            }
            Self::Dns(dns) => dns.discover().await,
            Self::Kubernetes(kubernetes) => Ok(kubernetes.discover().await?.into_iter().collect()),
            Self::Consul(consul) => Ok(resolve(consul.discover().await?).await),
            Self::Etcd(etcd) => etcd.discover().await,
            Self::Udp(udp) => udp.discover(),
            Self::Mdns(mdns) => mdns.discover(),
        }
    }
}

/// Resolve `host:port` strings; names that do not resolve are skipped (logged at debug).
pub async fn resolve(addresses: Vec<String>) -> BTreeSet<SocketAddr> {
    let mut found = BTreeSet::new();
    for address in addresses {
        match tokio::net::lookup_host(address.as_str()).await {
            Ok(addrs) => found.extend(addrs),
            Err(error) => tracing::debug!(%address, %error, "seed does not resolve"),
        }
    }
    found
}

/// Run `discovery` at once and every `refresh` until `stop`, and `greet` every address found
/// (this node's own gossip address `own` and addresses `filter` refuses left out) each round:
/// chitchat only gossips with the seeds it was given at start, so this is how later-discovered
/// peers are reached.
pub async fn refresh_seeds(
    discovery: Discovery,
    refresh: Duration,
    own: SocketAddr,
    filter: AddressFilter,
    greet: impl Fn(SocketAddr) -> Result<(), String>,
    mut stop: watch::Receiver<bool>,
) {
    let mut known: BTreeSet<SocketAddr> = BTreeSet::new();
    loop {
        match discovery.discover().await {
            Ok(found) => {
                let found: BTreeSet<SocketAddr> = found
                    .into_iter()
                    .filter(|a| *a != own)
                    .filter(|a| filter.allows(a.ip()))
                    .collect();
                let new = found.difference(&known).count();
                if new > 0 {
                    tracing::info!(
                        method = discovery.method(),
                        new,
                        "discovered {} nodes",
                        found.len()
                    );
                } else {
                    tracing::debug!(method = discovery.method(), "no new nodes discovered");
                }
                for addr in &found {
                    if let Err(error) = greet(*addr) {
                        tracing::warn!(%addr, %error, "failed to broadcast to a discovered node");
                    }
                }
                known = found;
            }
            Err(error) => {
                tracing::warn!(method = discovery.method(), %error, "discovery failed")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(refresh) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_operator_file_gives_gossip_addresses() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("peers.json");
        std::fs::write(
            &path,
            r#"{"version": 1, "generated_at": "2026-11-21T12:00:00Z",
                "peers": [{"name": "gw-0", "ip": "10.0.0.7", "gossip_port": 10101, "grpc_port": 10102, "ready": true}]}"#,
        )
        .expect("write");
        let found = Discovery::OperatorFile(path.display().to_string())
            .discover()
            .await
            .expect("parsed");
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            vec!["10.0.0.7:10101".parse::<SocketAddr>().expect("addr")]
        );
    }
}
