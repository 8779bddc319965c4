//! The peers file: the contract between the operator (which writes it into a ConfigMap from the
//! cluster's pods) and the gateway's `operator` discovery (which reads the mounted file).
//!
//! ```json
//! {"version": 1, "generated_at": "2026-11-21T12:00:00Z",
//!  "peers": [{"name": "gw-0", "ip": "10.0.0.7", "gossip_port": 10101, "grpc_port": 10102, "ready": true}]}
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only format version so far; readers reject others.
pub const PEERS_FILE_VERSION: u32 = 1;

/// File name inside the mounted peers ConfigMap.
pub const PEERS_FILE_NAME: &str = "peers.json";

/// Every gateway pod the operator knows, ready or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PeersFile {
    /// Format version ([`PEERS_FILE_VERSION`]).
    pub version: u32,
    /// When the operator wrote it (RFC 3339).
    pub generated_at: String,
    /// Peers sorted by name.
    pub peers: Vec<PeerEndpoint>,
}

/// One gateway pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PeerEndpoint {
    /// Pod name (the node's name in the cluster).
    pub name: String,
    /// Pod IP.
    pub ip: String,
    /// UDP gossip port.
    pub gossip_port: u16,
    /// gRPC port.
    pub grpc_port: u16,
    /// Whether the pod is ready (unready pods are still gossip seeds).
    pub ready: bool,
}

impl PeersFile {
    /// Parse and check the version.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: PeersFile =
            serde_json::from_str(text).map_err(|e| format!("peers file is not valid: {e}"))?;
        if file.version != PEERS_FILE_VERSION {
            return Err(format!(
                "peers file version {} is not supported (expected {PEERS_FILE_VERSION}); upgrade the gateway",
                file.version
            ));
        }
        Ok(file)
    }

    /// `ip:gossip_port` of every peer, IPv6 bracketed.
    pub fn gossip_addresses(&self) -> Vec<String> {
        self.peers
            .iter()
            .map(|p| match p.ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{}", p.gossip_port),
                _ => format!("{}:{}", p.ip, p.gossip_port),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_format_parses() {
        let file = PeersFile::parse(
            r#"{"version": 1, "generated_at": "2026-11-21T12:00:00Z",
                "peers": [{"name": "gw-0", "ip": "10.0.0.7", "gossip_port": 10101, "grpc_port": 10102, "ready": true},
                          {"name": "gw-1", "ip": "fd00::2", "gossip_port": 10101, "grpc_port": 10102, "ready": false}]}"#,
        )
        .expect("valid");
        assert_eq!(
            file.gossip_addresses(),
            vec!["10.0.0.7:10101", "[fd00::2]:10101"]
        );
    }

    #[test]
    fn other_versions_are_rejected() {
        let err = PeersFile::parse(r#"{"version": 2, "generated_at": "x", "peers": []}"#)
            .expect_err("v2");
        assert!(err.contains("version 2"), "{err}");
    }
}
