//! Seed addresses for gossip: static `peers`, the operator's peers file, DNS names, etcd.

pub mod etcd;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

pub use etcd::{EtcdDiscovery, EtcdRegistration, NodeRecord};

use crate::config::PeersFile;
use crate::config::{ClusterConfig, DiscoveryType};

/// Where seeds come from besides the static `peers` list.
#[derive(Debug, Clone, PartialEq)]
pub enum Discovery {
    /// Only static peers.
    Static,
    /// The operator's peers file, re-read every refresh.
    OperatorFile(String),
    /// DNS names with the port appended.
    Dns { names: Vec<String>, port: u16 },
    /// Other nodes' keys under `/services/<service_name>/` in etcd.
    Etcd(EtcdDiscovery),
    /// A method this version does not implement yet.
    NotImplemented(DiscoveryType),
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
            Some(DiscoveryType::Dns) => Self::Dns {
                names: discovery.dns_names.clone(),
                port: discovery.bind_port.unwrap_or(cluster.gossip.port),
            },
            Some(DiscoveryType::Etcd) => Self::Etcd(EtcdDiscovery::new(
                &discovery.etcd_endpoints,
                &discovery.service_name,
            )),
            Some(other) => Self::NotImplemented(other),
        }
    }

    /// Name for logs.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::OperatorFile(_) => "operator",
            Self::Dns { .. } => "dns",
            Self::Etcd(_) => "etcd",
            Self::NotImplemented(_) => "not implemented",
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
            _ => None,
        }
    }

    /// Whether `discover` finds anything, so a refresh loop is worth running.
    pub fn refreshes(&self) -> bool {
        !matches!(self, Self::Static | Self::NotImplemented(_))
    }

    /// Resolve the current seeds (empty for static and unimplemented methods).
    pub async fn discover(&self) -> Result<BTreeSet<SocketAddr>, String> {
        match self {
            Self::Static | Self::NotImplemented(_) => Ok(BTreeSet::new()),
            Self::OperatorFile(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| format!("cannot read peers file {path}: {e}"))?;
                let file = PeersFile::parse(&text)?;
                Ok(resolve(file.gossip_addresses()).await)
            }
            Self::Dns { names, port } => {
                let with_port = names.iter().map(|name| {
                    if name.parse::<SocketAddr>().is_ok() {
                        name.clone()
                    } else {
                        format!("{name}:{port}")
                    }
                });
                let found = resolve(with_port.collect()).await;
                if found.is_empty() && !names.is_empty() {
                    return Err(format!("no addresses for {}", names.join(", ")));
                }
                Ok(found)
            }
            Self::Etcd(etcd) => etcd.discover().await,
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

    #[tokio::test]
    async fn dns_names_get_the_gossip_port() {
        let found = Discovery::Dns {
            names: vec!["localhost".into()],
            port: 10101,
        }
        .discover()
        .await
        .expect("localhost resolves");
        assert!(found
            .iter()
            .all(|a| a.port() == 10101 && a.ip().is_loopback()));
        assert!(!found.is_empty());
    }
}
