use bifrost_gateway::config::DiscoveryType;
use k8s_openapi::api::core::v1::{
    NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ResourceRequirements,
    Toleration, TopologySpreadConstraint,
};

use super::*;
use crate::crd::{BifrostCluster, SqliteSpec};
use crate::testing::bifrost_cluster;

fn build(resource: &BifrostCluster) -> StatefulSet {
    let instance = Instance::new(resource).expect("instance");
    statefulset(&instance, "abc123")
}

fn pod_spec(sts: &StatefulSet) -> PodSpec {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod spec")
}

fn container(sts: &StatefulSet) -> Container {
    pod_spec(sts)
        .containers
        .into_iter()
        .next()
        .expect("one container")
}

fn env_names(c: &Container) -> Vec<String> {
    c.env.iter().flatten().map(|e| e.name.clone()).collect()
}

fn env_secret(c: &Container, name: &str) -> Option<(String, String)> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value_from.as_ref()?.secret_key_ref.clone())
        .map(|s| (s.name, s.key))
}

fn mounts(c: &Container) -> Vec<(String, String, Option<bool>)> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.clone(), m.mount_path.clone(), m.read_only))
        .collect()
}

#[test]
fn statefulset_runs_the_gateway_with_its_flags_and_identity() {
    let sts = build(&bifrost_cluster("gw").build());
    assert_eq!(sts.metadata.name.as_deref(), Some("gw"));
    assert_eq!(sts.metadata.namespace.as_deref(), Some("prod"));
    assert_eq!(
        sts.metadata
            .owner_references
            .as_ref()
            .map(|o| o[0].controller),
        Some(Some(true))
    );
    let spec = sts.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.service_name.as_deref(), Some("gw-headless"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let selector = spec.selector.match_labels.clone().expect("selector");
    assert_eq!(selector.len(), 2);
    assert_eq!(selector["app.kubernetes.io/instance"], "gw");
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("labels");
    assert_eq!(
        template_labels["app.kubernetes.io/managed-by"],
        "bifrost-operator"
    );
    assert_eq!(template_labels["app.kubernetes.io/component"], "gateway");

    let c = container(&sts);
    assert_eq!(c.name, "gateway");
    assert_eq!(c.image.as_deref(), Some(crate::crd::DEFAULT_IMAGE));
    assert_eq!(
        c.args.clone().expect("args"),
        [
            "--config",
            "/etc/bifrost/config/config.json",
            "--host",
            "0.0.0.0",
            "--port",
            "8080",
            "--log-format",
            "json"
        ]
    );
    assert_eq!(env_names(&c), ["POD_NAME", "POD_NAMESPACE", "POD_IP"]);
    let pod_ip = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "POD_IP")
        .expect("POD_IP");
    assert_eq!(
        pod_ip
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str()),
        Some("status.podIP")
    );
}

#[test]
fn statefulset_probes_health_and_readiness_on_the_http_port() {
    let c = container(&build(&bifrost_cluster("gw").build()));
    let path = |p: &Option<Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .map(|h| (h.path.clone().unwrap_or_default(), h.port.clone()))
    };
    let http = IntOrString::String("http".into());
    assert_eq!(
        path(&c.liveness_probe),
        Some(("/health".into(), http.clone()))
    );
    assert_eq!(
        path(&c.readiness_probe),
        Some(("/ready".into(), http.clone()))
    );
    assert_eq!(path(&c.startup_probe), Some(("/health".into(), http)));
    let ports = c.ports.expect("ports");
    assert_eq!(ports.len(), 1, "single node: HTTP only");
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].container_port),
        (Some("http"), 8080)
    );
}

#[test]
fn statefulset_sleeps_before_sigterm_and_grants_the_grace_period() {
    let sts = build(&bifrost_cluster("gw").build());
    assert_eq!(pod_spec(&sts).termination_grace_period_seconds, Some(90));
    let sleep = container(&sts)
        .lifecycle
        .and_then(|l| l.pre_stop)
        .and_then(|h| h.sleep)
        .map(|s| s.seconds);
    assert_eq!(sleep, Some(20));

    let sts = build(
        &bifrost_cluster("gw")
            .with(|s| {
                s.termination_grace_period_seconds = 120;
                s.pre_stop_sleep_seconds = 0;
            })
            .build(),
    );
    assert_eq!(pod_spec(&sts).termination_grace_period_seconds, Some(120));
    assert!(
        container(&sts).lifecycle.is_none(),
        "no preStop when the sleep is 0"
    );
}

#[test]
fn statefulset_runs_non_root_on_a_read_only_root_without_capabilities() {
    let sts = build(&bifrost_cluster("gw").build());
    let pod = pod_spec(&sts).security_context.expect("pod security");
    assert_eq!(pod.run_as_non_root, Some(true));
    assert_eq!(pod.run_as_user, Some(65532));
    assert_eq!(pod.fs_group, Some(65532));
    assert_eq!(
        pod.seccomp_profile.map(|p| p.type_),
        Some("RuntimeDefault".into())
    );
    let c = container(&sts)
        .security_context
        .expect("container security");
    assert_eq!(c.read_only_root_filesystem, Some(true));
    assert_eq!(c.allow_privilege_escalation, Some(false));
    assert_eq!(c.privileged, Some(false));
    assert_eq!(
        c.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_string()])
    );
    assert_eq!(pod_spec(&sts).automount_service_account_token, Some(false));
    assert_eq!(pod_spec(&sts).service_account_name.as_deref(), Some("gw"));
}

#[test]
fn statefulset_rolls_pods_when_the_config_checksum_changes() {
    let resource = bifrost_cluster("gw")
        .with(|s| s.pod_annotations = [("team".to_string(), "llm".to_string())].into())
        .build();
    let instance = Instance::new(&resource).expect("instance");
    let annotations = |sts: StatefulSet| {
        sts.spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations)
            .expect("annotations")
    };
    let a = annotations(statefulset(&instance, "one"));
    assert_eq!(a["bifrost.dev/config-checksum"], "one");
    assert_eq!(a["team"], "llm");
    let b = annotations(statefulset(&instance, "two"));
    assert_eq!(b["bifrost.dev/config-checksum"], "two");
}

#[test]
fn statefulset_prefers_one_pod_per_node_by_default() {
    let sts = build(&bifrost_cluster("gw").build());
    let anti = pod_spec(&sts)
        .affinity
        .and_then(|a| a.pod_anti_affinity)
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution)
        .expect("preferred anti-affinity");
    assert_eq!(anti[0].weight, 100);
    assert_eq!(
        anti[0].pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );
    assert_eq!(
        anti[0]
            .pod_affinity_term
            .label_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone()),
        Some(
            Instance::new(&bifrost_cluster("gw").build())
                .expect("instance")
                .selector_labels()
        )
    );
}

#[test]
fn statefulset_takes_scheduling_and_resources_from_the_spec() {
    let affinity = Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: "pool".into(),
                        operator: "In".into(),
                        values: Some(vec!["llm".into()]),
                    }]),
                    match_fields: None,
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    };
    let resources = ResourceRequirements {
        requests: Some([("cpu".to_string(), Quantity("500m".into()))].into()),
        ..ResourceRequirements::default()
    };
    let resource = bifrost_cluster("gw")
        .with(|s| {
            s.image = "registry.local/bifrost:1.2".into();
            s.image_pull_policy = Some("Always".into());
            s.affinity = Some(affinity.clone());
            s.resources = Some(resources.clone());
            s.node_selector = [("disk".to_string(), "ssd".to_string())].into();
            s.tolerations = vec![Toleration {
                key: Some("llm".into()),
                operator: Some("Exists".into()),
                ..Toleration::default()
            }];
            s.topology_spread_constraints = vec![TopologySpreadConstraint {
                max_skew: 1,
                topology_key: "topology.kubernetes.io/zone".into(),
                when_unsatisfiable: "ScheduleAnyway".into(),
                ..TopologySpreadConstraint::default()
            }];
            s.priority_class_name = Some("high".into());
            s.log_level = Some("debug".into());
        })
        .build();
    let sts = build(&resource);
    let pod = pod_spec(&sts);
    assert_eq!(
        pod.affinity,
        Some(affinity),
        "the user's affinity replaces the default"
    );
    assert_eq!(pod.node_selector.expect("selector")["disk"], "ssd");
    assert_eq!(pod.tolerations.map(|t| t.len()), Some(1));
    assert_eq!(pod.topology_spread_constraints.map(|t| t.len()), Some(1));
    assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
    let c = container(&sts);
    assert_eq!(c.image.as_deref(), Some("registry.local/bifrost:1.2"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(c.resources, Some(resources));
    let level = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "BIFROST_LOG_LEVEL")
        .and_then(|e| e.value.clone());
    assert_eq!(level.as_deref(), Some("debug"));
}

#[test]
fn sqlite_mode_gets_a_volume_claim_mounted_writable_at_the_data_dir() {
    let resource = bifrost_cluster("gw")
        .with(|s| {
            s.storage.sqlite = Some(SqliteSpec {
                size: Some(Quantity("5Gi".into())),
                storage_class_name: Some("fast".into()),
            })
        })
        .build();
    let sts = build(&resource);
    let claims = sts
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
        .expect("claims");
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
    let claim = claims[0].spec.clone().expect("claim spec");
    assert_eq!(claim.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
    assert_eq!(claim.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        claim.resources.and_then(|r| r.requests).expect("requests")["storage"],
        Quantity("5Gi".into())
    );
    assert!(mounts(&container(&sts)).contains(&("data".into(), "/var/lib/bifrost".into(), None)));

    let default_size = build(&bifrost_cluster("gw").build());
    let claim = default_size
        .spec
        .and_then(|s| s.volume_claim_templates)
        .expect("claims")[0]
        .clone();
    assert_eq!(
        claim
            .spec
            .and_then(|s| s.resources)
            .and_then(|r| r.requests)
            .expect("requests")["storage"],
        Quantity("1Gi".into())
    );
}

#[test]
fn postgres_mode_has_no_volume_and_reads_the_password_from_its_secret() {
    let sts = build(&bifrost_cluster("gw").postgres().build());
    assert_eq!(
        sts.spec
            .as_ref()
            .and_then(|s| s.volume_claim_templates.clone()),
        None
    );
    let c = container(&sts);
    assert_eq!(
        env_secret(&c, "BIFROST_PG_PASSWORD"),
        Some(("pg".into(), "password".into()))
    );
    assert!(!mounts(&c).iter().any(|(name, _, _)| name == "data"));
}

#[test]
fn encryption_key_comes_from_its_secret() {
    let resource = bifrost_cluster("gw")
        .with(|s| {
            s.encryption_key_secret = Some(crate::crd::SecretKeyRef {
                name: "keys".into(),
                key: "at-rest".into(),
            })
        })
        .build();
    let c = container(&build(&resource));
    assert_eq!(
        env_secret(&c, "BIFROST_ENCRYPTION_KEY"),
        Some(("keys".into(), "at-rest".into()))
    );
    assert_eq!(
        env_secret(
            &container(&build(&bifrost_cluster("gw").build())),
            "BIFROST_ENCRYPTION_KEY"
        ),
        None
    );
}

#[test]
fn cluster_mode_exposes_gossip_and_grpc_and_mounts_the_peers_file() {
    let sts = build(&bifrost_cluster("gw").cluster_with_postgres().build());
    assert_eq!(sts.spec.as_ref().and_then(|s| s.replicas), Some(3));
    let c = container(&sts);
    let ports: Vec<_> = c
        .ports
        .iter()
        .flatten()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.container_port,
                p.protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("http".into(), 8080, "TCP".into()),
            ("gossip".into(), 10101, "UDP".into()),
            ("grpc".into(), 10102, "TCP".into())
        ]
    );
    assert_eq!(
        env_secret(&c, "BIFROST_CLUSTER_KEY"),
        Some(("gw-gossip-key".into(), "key".into()))
    );
    let m = mounts(&c);
    assert!(m.contains(&("config".into(), "/etc/bifrost/config".into(), Some(true))));
    assert!(m.contains(&("peers".into(), "/etc/bifrost/peers".into(), Some(true))));
    assert!(
        m.contains(&("tmp".into(), "/tmp".into(), None)),
        "/tmp is writable scratch space"
    );
    let peers = pod_spec(&sts)
        .volumes
        .expect("volumes")
        .into_iter()
        .find(|v| v.name == "peers")
        .and_then(|v| v.config_map)
        .expect("peers volume");
    assert_eq!(peers.name, "gw-peers");
    assert_eq!(peers.optional, Some(true));
}

#[test]
fn kubernetes_discovery_mounts_no_peers_file_but_an_api_token() {
    let resource = bifrost_cluster("gw")
        .cluster_with_postgres()
        .with(|s| s.cluster.discovery.discovery_type = DiscoveryType::Kubernetes)
        .build();
    let sts = build(&resource);
    assert!(!mounts(&container(&sts))
        .iter()
        .any(|(name, _, _)| name == "peers"));
    assert_eq!(pod_spec(&sts).automount_service_account_token, Some(true));
}

#[test]
fn dns_discovery_mounts_no_peers_file_and_no_api_token() {
    let resource = bifrost_cluster("gw")
        .cluster_with_postgres()
        .with(|s| s.cluster.discovery.discovery_type = DiscoveryType::Dns)
        .build();
    let sts = build(&resource);
    assert!(!mounts(&container(&sts))
        .iter()
        .any(|(name, _, _)| name == "peers"));
    assert_eq!(pod_spec(&sts).automount_service_account_token, Some(false));
}

#[test]
fn statefulset_leaves_replicas_to_the_hpa_when_autoscaling() {
    let sts = build(
        &bifrost_cluster("gw")
            .cluster_with_postgres()
            .autoscaling(3, 15)
            .build(),
    );
    assert_eq!(sts.spec.as_ref().and_then(|s| s.replicas), None);
    let json = serde_json::to_value(&sts).expect("json");
    assert!(
        json["spec"].get("replicas").is_none(),
        "not even null: SSA must not own the field"
    );
}

#[test]
fn user_env_comes_last_so_it_can_add_provider_keys() {
    let resource = bifrost_cluster("gw")
        .with(|s| {
            s.env = vec![EnvVar {
                name: "OPENAI_API_KEY".into(),
                value: Some("sk".into()),
                value_from: None,
            }];
            s.env_from = vec![k8s_openapi::api::core::v1::EnvFromSource::default()];
        })
        .build();
    let c = container(&build(&resource));
    assert_eq!(
        env_names(&c).last().map(String::as_str),
        Some("OPENAI_API_KEY")
    );
    assert_eq!(c.env_from.map(|e| e.len()), Some(1));
}
