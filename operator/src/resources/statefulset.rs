//! The gateways' StatefulSet (`<name>`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, Lifecycle, LifecycleHandler, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretKeySelector,
    SecurityContext, SleepAction, Volume, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::configmaps::{
    config_path, uses_peers_file, CONFIG_CHECKSUM_ANNOTATION, CONFIG_DIR, DATA_DIR, PEERS_DIR,
    PG_PASSWORD_ENV,
};
use super::rbac::needs_api_access;
use super::secrets::{gossip_key_ref, CLUSTER_KEY_ENV};
use crate::crd::{SecretKeyRef, StorageMode, HTTP_PORT};
use crate::instance::Instance;

/// Name of the gateway container.
pub const CONTAINER_NAME: &str = "gateway";
/// Environment variable carrying the at-rest encryption key.
pub const ENCRYPTION_KEY_ENV: &str = "BIFROST_ENCRYPTION_KEY";
/// The non-root user and group the gateway runs as (distroless `nonroot`).
pub const RUN_AS_USER: i64 = 65532;
/// SQLite volume size when `storage.sqlite.size` is unset.
pub const DEFAULT_SQLITE_SIZE: &str = "1Gi";
const DATA_VOLUME: &str = "data";

/// The StatefulSet for `instance`. `config_checksum` is the SHA-256 of the rendered config;
/// a new value rolls the pods. With autoscaling on, `spec.replicas` is left out so the
/// HorizontalPodAutoscaler owns it.
pub fn statefulset(instance: &Instance, config_checksum: &str) -> StatefulSet {
    let spec = instance.spec;
    let sqlite = spec.storage.mode == StorageMode::Sqlite;
    StatefulSet {
        metadata: instance.child_meta(instance.workload_name()),
        spec: Some(StatefulSetSpec {
            replicas: (!spec.autoscaling_enabled()).then_some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(instance.selector_labels()),
                match_expressions: None,
            },
            service_name: Some(instance.headless_service_name()),
            // Gossip needs no start order; parallel starts make scaling fast.
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: None,
            }),
            revision_history_limit: Some(5),
            template: pod_template(instance, config_checksum),
            volume_claim_templates: sqlite.then(|| vec![sqlite_claim(instance)]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

fn pod_template(instance: &Instance, config_checksum: &str) -> PodTemplateSpec {
    let spec = instance.spec;
    let mut labels = spec.pod_labels.clone();
    labels.extend(instance.labels());
    let mut annotations = spec.pod_annotations.clone();
    annotations.insert(
        CONFIG_CHECKSUM_ANNOTATION.to_string(),
        config_checksum.to_string(),
    );
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(instance.service_account_name()),
            // Only kubernetes discovery talks to the API server.
            automount_service_account_token: Some(needs_api_access(instance)),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(spec.termination_grace_period_seconds),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS_USER),
                run_as_group: Some(RUN_AS_USER),
                fs_group: Some(RUN_AS_USER),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    localhost_profile: None,
                }),
                ..PodSecurityContext::default()
            }),
            affinity: Some(
                spec.affinity
                    .clone()
                    .unwrap_or_else(|| default_affinity(instance)),
            ),
            topology_spread_constraints: non_empty(spec.topology_spread_constraints.clone()),
            node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
            tolerations: non_empty(spec.tolerations.clone()),
            priority_class_name: spec.priority_class_name.clone(),
            image_pull_secrets: non_empty(spec.image_pull_secrets.clone()),
            containers: vec![gateway_container(instance)],
            volumes: Some(volumes(instance)),
            ..PodSpec::default()
        }),
    }
}

fn gateway_container(instance: &Instance) -> Container {
    let spec = instance.spec;
    Container {
        name: CONTAINER_NAME.into(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.clone(),
        args: Some(
            [
                "--config",
                &config_path(),
                "--host",
                "0.0.0.0",
                "--port",
                &HTTP_PORT.to_string(),
                "--log-format",
                "json",
            ]
            .map(String::from)
            .to_vec(),
        ),
        ports: Some(container_ports(instance)),
        env: Some(env(instance)),
        env_from: non_empty(spec.env_from.clone()),
        resources: spec.resources.clone(),
        startup_probe: Some(http_probe("/health", 2, 2, 60)),
        liveness_probe: Some(http_probe("/health", 10, 3, 3)),
        readiness_probe: Some(http_probe("/ready", 5, 2, 2)),
        lifecycle: (spec.pre_stop_sleep_seconds > 0).then(|| Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: spec.pre_stop_sleep_seconds,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(volume_mounts(instance)),
        ..Container::default()
    }
}

fn container_ports(instance: &Instance) -> Vec<ContainerPort> {
    let cluster = &instance.spec.cluster;
    let mut ports = vec![port("http", HTTP_PORT, "TCP")];
    if cluster.enabled {
        ports.push(port("gossip", cluster.gossip.port, "UDP"));
        ports.push(port("grpc", cluster.grpc.port, "TCP"));
    }
    ports
}

fn port(name: &str, number: i32, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some(protocol.into()),
        ..ContainerPort::default()
    }
}

fn http_probe(path: &str, period: i32, timeout: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// Downward API first, then Secrets, then the user's variables (later entries win).
fn env(instance: &Instance) -> Vec<EnvVar> {
    let spec = instance.spec;
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_IP", "status.podIP"),
    ];
    if let Some(secret) = &spec.encryption_key_secret {
        env.push(secret_env(ENCRYPTION_KEY_ENV, secret));
    }
    if let (StorageMode::Postgres, Some(pg)) = (spec.storage.mode, &spec.storage.postgres) {
        env.push(secret_env(PG_PASSWORD_ENV, &pg.password_secret));
    }
    if let Some(secret) = gossip_key_ref(instance) {
        env.push(secret_env(CLUSTER_KEY_ENV, &secret));
    }
    if let Some(level) = &spec.log_level {
        env.push(EnvVar {
            name: "BIFROST_LOG_LEVEL".into(),
            value: Some(level.clone()),
            value_from: None,
        });
    }
    env.extend(spec.env.iter().cloned());
    env
}

fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: field_path.into(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn secret_env(name: &str, secret: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn volumes(instance: &Instance) -> Vec<Volume> {
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: instance.config_map_name(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        // The root filesystem is read-only; the gateway may still need scratch space.
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    if uses_peers_file(instance) {
        volumes.push(Volume {
            name: "peers".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: instance.peers_config_map_name(),
                // A pod may start before the operator wrote the first list; discovery retries.
                optional: Some(true),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    volumes
}

fn volume_mounts(instance: &Instance) -> Vec<VolumeMount> {
    // `/tmp` is the pod's only writable scratch space (the root filesystem is read-only).
    let mut mounts = vec![
        mount("config", CONFIG_DIR),
        VolumeMount {
            read_only: None,
            ..mount("tmp", "/tmp")
        },
    ];
    if uses_peers_file(instance) {
        mounts.push(mount("peers", PEERS_DIR));
    }
    if instance.spec.storage.mode == StorageMode::Sqlite {
        mounts.push(VolumeMount {
            read_only: None,
            ..mount(DATA_VOLUME, DATA_DIR)
        });
    }
    mounts
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

fn sqlite_claim(instance: &Instance) -> PersistentVolumeClaim {
    let sqlite = instance.spec.storage.sqlite.as_ref();
    let size = sqlite
        .and_then(|s| s.size.clone())
        .unwrap_or_else(|| Quantity(DEFAULT_SQLITE_SIZE.into()));
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(instance.labels()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: sqlite.and_then(|s| s.storage_class_name.clone()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), size)])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// Prefer one gateway per node, so a node failure takes out as few as possible.
fn default_affinity(instance: &Instance) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(instance.selector_labels()),
                            match_expressions: None,
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            required_during_scheduling_ignored_during_execution: None,
        }),
        ..Affinity::default()
    }
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

#[cfg(test)]
#[path = "statefulset_tests.rs"]
mod tests;
