//! From a `BifrostCluster` to its children: one pure builder per child object, and the one
//! place that writes them ([`apply`]).

pub mod apply;
pub mod configmaps;
pub mod hpa;
pub mod pdb;
pub mod rbac;
pub mod secrets;
pub mod services;
pub mod statefulset;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

use bifrost_gateway::config::GatewayConfig;

use crate::error::Error;
use crate::instance::Instance;

/// Every child the spec asks for, except the two that depend on the cluster's state (the peers
/// ConfigMap, from the pods, and the generated gossip key Secret, created once). `None` means
/// "must not exist".
#[derive(Debug, Clone)]
pub struct Desired {
    /// SHA-256 of the rendered gateway config (also on the pod template).
    pub config_checksum: String,
    /// `<name>-config`.
    pub config_map: ConfigMap,
    /// The pods' ServiceAccount, unless an existing one is used.
    pub service_account: Option<ServiceAccount>,
    /// `<name>-discovery` Role (kubernetes discovery).
    pub role: Option<Role>,
    /// `<name>-discovery` RoleBinding (kubernetes discovery).
    pub role_binding: Option<RoleBinding>,
    /// `<name>-headless`.
    pub headless_service: Service,
    /// `<name>`.
    pub client_service: Service,
    /// `<name>`.
    pub statefulset: StatefulSet,
    /// `<name>` when `podDisruptionBudget.enabled`.
    pub pod_disruption_budget: Option<PodDisruptionBudget>,
    /// `<name>` when `autoscaling.enabled`.
    pub horizontal_pod_autoscaler: Option<HorizontalPodAutoscaler>,
}

/// Build every child. Fails, touching nothing, when the rendered gateway config is one the
/// gateway would refuse.
pub fn desired(instance: &Instance) -> Result<Desired, Error> {
    let config = configmaps::render_gateway_config(instance);
    let mut problems = configmaps::gateway_config_problems(&config);
    problems.extend(validate_spec(instance, &config));
    if !problems.is_empty() {
        return Err(Error::InvalidConfig { problems });
    }
    let (config_text, config_checksum) = configmaps::config_file(&config)?;
    Ok(Desired {
        config_map: configmaps::config_map(instance, &config_text),
        service_account: rbac::service_account(instance),
        role: rbac::discovery_role(instance),
        role_binding: rbac::discovery_role_binding(instance),
        headless_service: services::headless_service(instance),
        client_service: services::client_service(instance),
        statefulset: statefulset::statefulset(instance, &config_checksum),
        pod_disruption_budget: pdb::pod_disruption_budget(instance),
        horizontal_pod_autoscaler: hpa::horizontal_pod_autoscaler(instance),
        config_checksum,
    })
}

/// Checks across the spec and the gateway config that CEL cannot express (CEL rules cannot
/// name the config's snake_case fields).
pub fn validate_spec(instance: &Instance, config: &GatewayConfig) -> Vec<String> {
    let spec = instance.spec;
    let drain = i64::try_from(config.server.drain_timeout_seconds).unwrap_or(i64::MAX);
    let needed = spec.pre_stop_sleep_seconds.saturating_add(drain);
    let mut problems = Vec::new();
    if needed > spec.termination_grace_period_seconds {
        problems.push(format!(
            "spec.terminationGracePeriodSeconds: {} is shorter than preStopSleepSeconds ({}) plus \
             config.server.drain_timeout_seconds ({drain}), so in-flight requests would be cut off; \
             raise it to at least {needed} or lower the drain timeout",
            spec.termination_grace_period_seconds, spec.pre_stop_sleep_seconds
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::bifrost_cluster;

    #[test]
    fn minimal_spec_wants_the_single_node_set_of_children() {
        let resource = bifrost_cluster("gw").build();
        let desired = desired(&Instance::new(&resource).expect("instance")).expect("valid");
        assert!(desired.service_account.is_some());
        assert!(desired.role.is_none() && desired.role_binding.is_none());
        assert!(desired.pod_disruption_budget.is_none());
        assert!(desired.horizontal_pod_autoscaler.is_none());
        assert_eq!(desired.config_checksum.len(), 64);
    }

    #[test]
    fn full_spec_wants_every_child() {
        let resource = bifrost_cluster("gw")
            .cluster_with_postgres()
            .autoscaling(3, 15)
            .with(|s| {
                s.cluster.discovery.discovery_type =
                    bifrost_gateway::config::DiscoveryType::Kubernetes;
                s.pod_disruption_budget = Some(crate::crd::PodDisruptionBudgetSpec {
                    enabled: true,
                    min_available: Some(2),
                    max_unavailable: None,
                });
            })
            .build();
        let desired = desired(&Instance::new(&resource).expect("instance")).expect("valid");
        assert!(desired.role.is_some() && desired.role_binding.is_some());
        assert!(desired.pod_disruption_budget.is_some());
        assert!(desired.horizontal_pod_autoscaler.is_some());
    }

    #[test]
    fn shutdown_timing_must_fit_in_the_grace_period() {
        let resource = bifrost_cluster("gw")
            .with(|s| s.config.server.drain_timeout_seconds = 100)
            .build();
        let err = desired(&Instance::new(&resource).expect("instance")).expect_err("too long");
        let text = err.to_string();
        assert!(
            text.contains("spec.terminationGracePeriodSeconds: 90"),
            "{text}"
        );
        assert!(text.contains("at least 120"), "{text}");

        let resource = bifrost_cluster("gw")
            .with(|s| s.termination_grace_period_seconds = 60)
            .build();
        assert!(
            desired(&Instance::new(&resource).expect("instance")).is_err(),
            "default drain 60 + 20"
        );

        let resource = bifrost_cluster("gw")
            .with(|s| {
                s.termination_grace_period_seconds = 40;
                s.pre_stop_sleep_seconds = 5;
                s.config.server.drain_timeout_seconds = 30;
            })
            .build();
        assert!(desired(&Instance::new(&resource).expect("instance")).is_ok());
    }

    #[test]
    fn an_invalid_gateway_config_builds_nothing() {
        let resource = bifrost_cluster("gw")
            .with(|s| s.config.client.max_request_body_size_mb = 0)
            .build();
        let err = desired(&Instance::new(&resource).expect("instance")).expect_err("invalid");
        assert_eq!(err.kind(), "invalid_config");
    }
}
