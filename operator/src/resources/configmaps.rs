//! The gateway config ConfigMap (`<name>-config`) and the peers ConfigMap (`<name>-peers`).

use std::collections::BTreeMap;

use bifrost_gateway::config::{
    DiscoveryType, GatewayConfig, PeersFile, StoreConnectionConfig, StoreType, PEERS_FILE_NAME,
};
use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use crate::crd::StorageMode;
use crate::error::Error;
use crate::instance::Instance;

/// Key of the gateway config inside its ConfigMap.
pub const CONFIG_FILE_NAME: &str = "config.json";
/// Where the config ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/bifrost/config";
/// Where the peers ConfigMap is mounted (the gateway's default `peers_file` lives here).
pub const PEERS_DIR: &str = "/etc/bifrost/peers";
/// Where the SQLite volume is mounted.
pub const DATA_DIR: &str = "/var/lib/bifrost";
/// Environment variable carrying the PostgreSQL password from its Secret.
pub const PG_PASSWORD_ENV: &str = "BIFROST_PG_PASSWORD";
/// Pod template annotation whose change rolls the pods when the config changes.
pub const CONFIG_CHECKSUM_ANNOTATION: &str = "bifrost.dev/config-checksum";

/// Path of the config file inside the pod.
pub fn config_path() -> String {
    format!("{CONFIG_DIR}/{CONFIG_FILE_NAME}")
}

/// Path of the peers file inside the pod.
pub fn peers_path() -> String {
    format!("{PEERS_DIR}/{PEERS_FILE_NAME}")
}

/// Whether the pods read their seeds from the operator's peers file.
pub fn uses_peers_file(instance: &Instance) -> bool {
    let cluster = &instance.spec.cluster;
    cluster.enabled && cluster.discovery.discovery_type == DiscoveryType::Operator
}

/// The gateway config for the pods: `spec.config` with the store and the cluster fields the
/// operator owns filled in from the spec. The node name is left to the gateway, which takes it
/// from `POD_NAME`.
pub fn render_gateway_config(instance: &Instance) -> GatewayConfig {
    let spec = instance.spec;
    let mut config = spec.config.clone();
    config.schema = None;
    // Only the fields the operator owns are set, so new gateway settings pass through.
    let store = &mut config.config_store;
    store.enabled = true;
    match (&spec.storage.mode, &spec.storage.postgres) {
        (StorageMode::Postgres, Some(pg)) => {
            store.store_type = StoreType::Postgres;
            store.config = StoreConnectionConfig {
                host: Some(pg.host.clone()),
                port: u16::try_from(pg.port).ok(),
                user: Some(pg.user.clone()),
                password: Some(format!("env.{PG_PASSWORD_ENV}")),
                db_name: Some(pg.database.clone()),
                ssl_mode: pg.ssl_mode.map(|m| m.as_str().to_string()),
                ..StoreConnectionConfig::default()
            };
        }
        // Postgres without connection details is rejected by the CRD; SQLite otherwise.
        _ => {
            store.store_type = StoreType::Sqlite;
            store.config = StoreConnectionConfig {
                path: Some(format!("{DATA_DIR}/bifrost.db")),
                ..StoreConnectionConfig::default()
            };
        }
    }

    let cluster = &spec.cluster;
    let out = &mut config.cluster_config;
    out.enabled = cluster.enabled;
    out.node_id = None;
    if cluster.region.is_some() {
        out.region = cluster.region.clone();
    }
    out.gossip.port = port(cluster.gossip.port, out.gossip.port);
    out.gossip.config.timeout_seconds =
        u64::try_from(cluster.gossip.timeout_seconds).unwrap_or(out.gossip.config.timeout_seconds);
    out.gossip.config.success_threshold = u32::try_from(cluster.gossip.success_threshold)
        .unwrap_or(out.gossip.config.success_threshold);
    out.gossip.config.failure_threshold = u32::try_from(cluster.gossip.failure_threshold)
        .unwrap_or(out.gossip.config.failure_threshold);
    out.grpc.port = port(cluster.grpc.port, out.grpc.port);
    if !cluster.allowed_address_space.is_empty() {
        out.discovery.allowed_address_space = cluster.allowed_address_space.clone();
    }
    if cluster.enabled {
        let discovery = &mut out.discovery;
        discovery.enabled = true;
        discovery.discovery_type = Some(cluster.discovery.discovery_type);
        match cluster.discovery.discovery_type {
            DiscoveryType::Operator => discovery.peers_file = peers_path(),
            DiscoveryType::Kubernetes => {
                // The gateway lists pods in its own namespace (POD_NAMESPACE).
                discovery.k8s_namespace = None;
                discovery.k8s_label_selector = Some(
                    cluster
                        .discovery
                        .label_selector
                        .clone()
                        .unwrap_or_else(|| instance.selector_string()),
                );
            }
            DiscoveryType::Dns => {
                discovery.dns_names = if cluster.discovery.dns_names.is_empty() {
                    vec![format!(
                        "{}.{}.svc",
                        instance.headless_service_name(),
                        instance.namespace
                    )]
                } else {
                    cluster.discovery.dns_names.clone()
                };
                discovery.bind_port = Some(out.gossip.port);
            }
            // Consul, etcd, UDP and mDNS settings come from config.cluster_config.discovery.
            DiscoveryType::Consul
            | DiscoveryType::Etcd
            | DiscoveryType::Udp
            | DiscoveryType::Mdns => {}
        }
    }
    config
}

fn port(value: i32, fallback: u16) -> u16 {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .unwrap_or(fallback)
}

/// Check the rendered config with the gateway's own validation, so a config the gateway would
/// refuse never reaches the pods. Problems are named by their path in the resource.
pub fn gateway_config_problems(config: &GatewayConfig) -> Vec<String> {
    config
        .validate()
        .iter()
        .map(|p| format!("spec.config.{p}"))
        .collect()
}

/// [`gateway_config_problems`] as a result.
pub fn validate_gateway_config(config: &GatewayConfig) -> Result<(), Error> {
    let problems = gateway_config_problems(config);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidConfig { problems })
    }
}

/// The rendered config as the file the gateway reads, and its SHA-256 (hex).
pub fn config_file(config: &GatewayConfig) -> Result<(String, String), Error> {
    let text = serde_json::to_string_pretty(config).map_err(|source| Error::Serialize {
        what: "gateway config",
        source,
    })?;
    let checksum = hex(&Sha256::digest(text.as_bytes()));
    Ok((text, checksum))
}

/// `<name>-config`: the gateway config file.
pub fn config_map(instance: &Instance, config_text: &str) -> ConfigMap {
    ConfigMap {
        metadata: instance.child_meta(instance.config_map_name()),
        data: Some(BTreeMap::from([(
            CONFIG_FILE_NAME.to_string(),
            config_text.to_string(),
        )])),
        ..ConfigMap::default()
    }
}

/// `<name>-peers`: the peers file the gateways' `operator` discovery reads.
pub fn peers_config_map(instance: &Instance, peers: &PeersFile) -> Result<ConfigMap, Error> {
    let text = serde_json::to_string_pretty(peers).map_err(|source| Error::Serialize {
        what: "peers file",
        source,
    })?;
    Ok(ConfigMap {
        metadata: instance.child_meta(instance.peers_config_map_name()),
        data: Some(BTreeMap::from([(PEERS_FILE_NAME.to_string(), text)])),
        ..ConfigMap::default()
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[path = "configmaps_tests.rs"]
mod tests;
