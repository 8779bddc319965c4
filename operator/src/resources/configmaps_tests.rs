use bifrost_gateway::config::load::Format;
use bifrost_gateway::config::{
    parse_config, DiscoveryType, PeerEndpoint, PeersFile, ProviderConfig, PEERS_FILE_NAME,
};

use super::*;
use crate::crd::{SqliteSpec, SslMode};
use crate::testing::bifrost_cluster;

fn rendered(resource: &crate::crd::BifrostCluster) -> GatewayConfig {
    let instance = Instance::new(resource).expect("instance");
    render_gateway_config(&instance)
}

#[test]
fn single_node_config_uses_sqlite_on_the_data_volume_and_no_cluster() {
    let config = rendered(&bifrost_cluster("gw").build());
    assert!(config.config_store.enabled);
    assert_eq!(config.config_store.store_type, StoreType::Sqlite);
    assert_eq!(
        config.config_store.config.path.as_deref(),
        Some("/var/lib/bifrost/bifrost.db")
    );
    assert!(!config.cluster_config.enabled);
    assert!(!config.cluster_config.discovery.enabled);
    assert_eq!(
        config.cluster_config.node_id, None,
        "the gateway reads POD_NAME"
    );
    validate_gateway_config(&config).expect("a gateway accepts it");
}

#[test]
fn postgres_storage_fills_the_store_with_the_password_from_the_environment() {
    let resource = bifrost_cluster("gw")
        .postgres()
        .with(|s| {
            if let Some(pg) = s.storage.postgres.as_mut() {
                pg.port = 6432;
                pg.ssl_mode = Some(SslMode::VerifyFull);
            }
        })
        .build();
    let store = rendered(&resource).config_store;
    assert_eq!(store.store_type, StoreType::Postgres);
    assert_eq!(store.config.host.as_deref(), Some("pg.prod.svc"));
    assert_eq!(store.config.port, Some(6432));
    assert_eq!(store.config.user.as_deref(), Some("bifrost"));
    assert_eq!(store.config.db_name.as_deref(), Some("bifrost"));
    assert_eq!(store.config.ssl_mode.as_deref(), Some("verify-full"));
    assert_eq!(
        store.config.password.as_deref(),
        Some("env.BIFROST_PG_PASSWORD")
    );
    assert_eq!(store.config.path, None);
}

#[test]
fn cluster_mode_defaults_to_operator_discovery_on_the_mounted_peers_file() {
    let resource = bifrost_cluster("gw")
        .cluster_with_postgres()
        .with(|s| s.cluster.region = Some("eu-west-1".into()))
        .build();
    let config = rendered(&resource);
    let cluster = &config.cluster_config;
    assert!(cluster.enabled);
    assert_eq!(cluster.region.as_deref(), Some("eu-west-1"));
    assert_eq!(cluster.node_id, None);
    assert_eq!(cluster.gossip.port, 10101);
    assert_eq!(cluster.grpc.port, 10102);
    assert!(cluster.discovery.enabled);
    assert_eq!(
        cluster.discovery.discovery_type,
        Some(DiscoveryType::Operator)
    );
    assert_eq!(
        cluster.discovery.peers_file,
        "/etc/bifrost/peers/peers.json"
    );
    validate_gateway_config(&config).expect("a gateway accepts it");
}

#[test]
fn cluster_ports_and_thresholds_come_from_the_spec() {
    let resource = bifrost_cluster("gw")
        .cluster_with_postgres()
        .with(|s| {
            s.cluster.gossip.port = 7946;
            s.cluster.gossip.timeout_seconds = 5;
            s.cluster.gossip.success_threshold = 2;
            s.cluster.gossip.failure_threshold = 4;
            s.cluster.grpc.port = 7947;
            s.cluster.allowed_address_space = vec!["10.0.0.0/8".into()];
        })
        .build();
    let cluster = rendered(&resource).cluster_config;
    assert_eq!((cluster.gossip.port, cluster.grpc.port), (7946, 7947));
    assert_eq!(cluster.gossip.config.timeout_seconds, 5);
    assert_eq!(cluster.gossip.config.success_threshold, 2);
    assert_eq!(cluster.gossip.config.failure_threshold, 4);
    assert_eq!(cluster.discovery.allowed_address_space, ["10.0.0.0/8"]);
}

#[test]
fn kubernetes_discovery_selects_this_resources_pods_unless_told_otherwise() {
    let resource = bifrost_cluster("gw")
        .cluster_with_postgres()
        .with(|s| s.cluster.discovery.discovery_type = DiscoveryType::Kubernetes)
        .build();
    let discovery = rendered(&resource).cluster_config.discovery;
    assert_eq!(discovery.discovery_type, Some(DiscoveryType::Kubernetes));
    assert_eq!(
        discovery.k8s_label_selector.as_deref(),
        Some("app.kubernetes.io/instance=gw,app.kubernetes.io/name=bifrost")
    );
    assert_eq!(
        discovery.k8s_namespace, None,
        "the gateway uses POD_NAMESPACE"
    );

    let resource = bifrost_cluster("gw")
        .cluster_with_postgres()
        .with(|s| {
            s.cluster.discovery.discovery_type = DiscoveryType::Kubernetes;
            s.cluster.discovery.label_selector = Some("team=llm".into());
        })
        .build();
    let discovery = rendered(&resource).cluster_config.discovery;
    assert_eq!(discovery.k8s_label_selector.as_deref(), Some("team=llm"));
}

#[test]
fn dns_discovery_resolves_the_headless_service_by_default() {
    let resource = bifrost_cluster("gw")
        .cluster_with_postgres()
        .with(|s| s.cluster.discovery.discovery_type = DiscoveryType::Dns)
        .build();
    let config = rendered(&resource);
    let discovery = &config.cluster_config.discovery;
    assert_eq!(discovery.discovery_type, Some(DiscoveryType::Dns));
    assert_eq!(discovery.dns_names, ["gw-headless.prod.svc"]);
    assert_eq!(discovery.bind_port, Some(10101));
    validate_gateway_config(&config).expect("a gateway accepts it");
}

#[test]
fn other_discovery_methods_keep_their_settings_from_the_config() {
    let resource = bifrost_cluster("gw")
        .cluster_with_postgres()
        .with(|s| {
            s.cluster.discovery.discovery_type = DiscoveryType::Consul;
            s.config.cluster_config.discovery.consul_address = Some("consul.infra:8500".into());
            s.config.cluster_config.discovery.refresh_interval_seconds = 30;
        })
        .build();
    let config = rendered(&resource);
    let discovery = &config.cluster_config.discovery;
    assert_eq!(discovery.discovery_type, Some(DiscoveryType::Consul));
    assert_eq!(
        discovery.consul_address.as_deref(),
        Some("consul.infra:8500")
    );
    assert_eq!(discovery.refresh_interval_seconds, 30);
    validate_gateway_config(&config).expect("a gateway accepts it");
}

#[test]
fn the_users_gateway_settings_pass_through_and_the_spec_wins_on_owned_fields() {
    let resource = bifrost_cluster("gw")
        .with(|s| {
            s.config.schema = Some("https://www.getbifrost.ai/schema".into());
            s.config.client.max_request_body_size_mb = 8;
            s.config
                .providers
                .insert("openai".into(), ProviderConfig::default());
            s.config.cluster_config.enabled = true;
            s.config.cluster_config.node_id = Some("fixed".into());
            s.config.config_store.config.path = Some("/elsewhere.db".into());
        })
        .build();
    let config = rendered(&resource);
    assert_eq!(config.schema, None);
    assert_eq!(config.client.max_request_body_size_mb, 8);
    assert!(config.providers.contains_key("openai"));
    assert!(!config.cluster_config.enabled, "spec.cluster.enabled wins");
    assert_eq!(
        config.cluster_config.node_id, None,
        "node names come from POD_NAME"
    );
    assert_eq!(
        config.config_store.config.path.as_deref(),
        Some("/var/lib/bifrost/bifrost.db")
    );
}

#[test]
fn an_invalid_gateway_config_is_caught_with_field_paths() {
    let resource = bifrost_cluster("gw")
        .with(|s| {
            s.config.client.max_request_body_size_mb = 0;
            s.config
                .providers
                .insert("internal".into(), ProviderConfig::default());
        })
        .build();
    let err = validate_gateway_config(&rendered(&resource)).expect_err("invalid");
    let text = err.to_string();
    assert!(text.contains("client.max_request_body_size_mb"), "{text}");
    assert!(
        text.contains("providers.internal.network_config.base_url"),
        "{text}"
    );
}

#[test]
fn config_map_holds_the_file_the_gateway_parses() {
    let resource = bifrost_cluster("gw").cluster_with_postgres().build();
    let instance = Instance::new(&resource).expect("instance");
    let (text, checksum) = config_file(&render_gateway_config(&instance)).expect("file");
    let map = config_map(&instance, &text);
    assert_eq!(map.metadata.name.as_deref(), Some("gw-config"));
    assert_eq!(map.metadata.namespace.as_deref(), Some("prod"));
    assert_eq!(map.metadata.labels, Some(instance.labels()));
    assert_eq!(
        map.metadata
            .owner_references
            .as_ref()
            .map(|o| o[0].kind.as_str()),
        Some("BifrostCluster")
    );
    let data = map.data.expect("data");
    let parsed = parse_config(&data["config.json"], Format::Json, "configmap", &|name| {
        (name == "BIFROST_PG_PASSWORD").then(|| "secret".to_string())
    })
    .expect("the gateway loads it");
    assert!(parsed.config.cluster_config.enabled);
    assert!(
        parsed.unknown_fields.is_empty(),
        "{:?}",
        parsed.unknown_fields
    );
    assert_eq!(checksum.len(), 64);
}

#[test]
fn checksum_changes_with_the_config_and_only_then() {
    let checksum =
        |resource: &crate::crd::BifrostCluster| config_file(&rendered(resource)).expect("file").1;
    let a = checksum(&bifrost_cluster("gw").build());
    let b = checksum(&bifrost_cluster("gw").with(|s| s.replicas = 1).build());
    let c = checksum(
        &bifrost_cluster("gw")
            .with(|s| s.config.client.enable_logging = false)
            .build(),
    );
    let d = checksum(
        &bifrost_cluster("gw")
            .with(|s| {
                s.storage.sqlite = Some(SqliteSpec {
                    size: None,
                    storage_class_name: Some("fast".into()),
                })
            })
            .build(),
    );
    assert_eq!(a, b);
    assert_eq!(a, d, "volume settings are not gateway config");
    assert_ne!(a, c);
}

#[test]
fn peers_config_map_holds_the_peers_file_under_its_contract_name() {
    let resource = bifrost_cluster("gw").cluster_with_postgres().build();
    let instance = Instance::new(&resource).expect("instance");
    let file = PeersFile {
        version: 1,
        generated_at: "2026-11-21T12:00:00Z".into(),
        peers: vec![PeerEndpoint {
            name: "gw-0".into(),
            ip: "10.0.0.7".into(),
            gossip_port: 10101,
            grpc_port: 10102,
            ready: true,
        }],
    };
    let map = peers_config_map(&instance, &file).expect("map");
    assert_eq!(map.metadata.name.as_deref(), Some("gw-peers"));
    assert_eq!(map.metadata.owner_references.map(|o| o.len()), Some(1));
    let data = map.data.expect("data");
    assert_eq!(PeersFile::parse(&data[PEERS_FILE_NAME]), Ok(file));
}

#[test]
fn only_operator_discovery_in_cluster_mode_uses_the_peers_file() {
    let single = bifrost_cluster("gw").build();
    assert!(!uses_peers_file(&Instance::new(&single).expect("instance")));
    let cluster = bifrost_cluster("gw").cluster_with_postgres().build();
    assert!(uses_peers_file(&Instance::new(&cluster).expect("instance")));
    let dns = bifrost_cluster("gw")
        .cluster_with_postgres()
        .with(|s| s.cluster.discovery.discovery_type = DiscoveryType::Dns)
        .build();
    assert!(!uses_peers_file(&Instance::new(&dns).expect("instance")));
}
