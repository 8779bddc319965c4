//! The pods' ServiceAccount (`<name>` or `serviceAccount.name`), and for `kubernetes`
//! discovery a Role + RoleBinding (`<name>-discovery`) that lets the gateways list pods.

use bifrost_gateway::config::DiscoveryType;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use crate::instance::Instance;

/// Whether the gateways call the Kubernetes API themselves.
pub fn needs_api_access(instance: &Instance) -> bool {
    let cluster = &instance.spec.cluster;
    cluster.enabled && cluster.discovery.discovery_type == DiscoveryType::Kubernetes
}

/// The ServiceAccount, unless the spec names an existing one (`serviceAccount.create: false`).
pub fn service_account(instance: &Instance) -> Option<ServiceAccount> {
    let spec = &instance.spec.service_account;
    if !spec.create {
        return None;
    }
    let mut metadata = instance.child_meta(instance.service_account_name());
    metadata.annotations = (!spec.annotations.is_empty()).then(|| spec.annotations.clone());
    Some(ServiceAccount {
        metadata,
        automount_service_account_token: Some(needs_api_access(instance)),
        ..ServiceAccount::default()
    })
}

/// Read access to pods in the namespace, for `kubernetes` discovery only.
pub fn discovery_role(instance: &Instance) -> Option<Role> {
    needs_api_access(instance).then(|| Role {
        metadata: instance.child_meta(instance.discovery_role_name()),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".into()]),
            verbs: ["get", "list", "watch"].map(String::from).to_vec(),
            ..PolicyRule::default()
        }]),
    })
}

/// Binds [`discovery_role`] to the pods' ServiceAccount.
pub fn discovery_role_binding(instance: &Instance) -> Option<RoleBinding> {
    needs_api_access(instance).then(|| RoleBinding {
        metadata: instance.child_meta(instance.discovery_role_name()),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: instance.discovery_role_name(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: instance.service_account_name(),
            namespace: Some(instance.namespace.clone()),
            api_group: None,
        }]),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::testing::bifrost_cluster;

    fn kubernetes_discovery() -> crate::crd::BifrostCluster {
        bifrost_cluster("gw")
            .cluster_with_postgres()
            .with(|s| s.cluster.discovery.discovery_type = DiscoveryType::Kubernetes)
            .build()
    }

    #[test]
    fn service_account_is_created_without_an_api_token_by_default() {
        let resource = bifrost_cluster("gw").build();
        let instance = Instance::new(&resource).expect("instance");
        let account = service_account(&instance).expect("created");
        assert_eq!(account.metadata.name.as_deref(), Some("gw"));
        assert_eq!(account.metadata.labels, Some(instance.labels()));
        assert_eq!(account.metadata.owner_references.map(|o| o.len()), Some(1));
        assert_eq!(account.automount_service_account_token, Some(false));
        assert_eq!(account.metadata.annotations, None);
    }

    #[test]
    fn service_account_carries_name_and_annotations_from_the_spec() {
        let resource = bifrost_cluster("gw")
            .with(|s| {
                s.service_account.name = Some("llm-gateway".into());
                s.service_account.annotations = BTreeMap::from([(
                    "eks.amazonaws.com/role-arn".into(),
                    "arn:aws:iam::1:role/gw".into(),
                )]);
            })
            .build();
        let instance = Instance::new(&resource).expect("instance");
        let account = service_account(&instance).expect("created");
        assert_eq!(account.metadata.name.as_deref(), Some("llm-gateway"));
        assert_eq!(
            account.metadata.annotations.expect("annotations")["eks.amazonaws.com/role-arn"],
            "arn:aws:iam::1:role/gw"
        );
    }

    #[test]
    fn an_existing_service_account_is_not_created() {
        let resource = bifrost_cluster("gw")
            .with(|s| {
                s.service_account.create = false;
                s.service_account.name = Some("shared".into());
            })
            .build();
        let instance = Instance::new(&resource).expect("instance");
        assert!(service_account(&instance).is_none());
        assert_eq!(instance.service_account_name(), "shared");
    }

    #[test]
    fn operator_and_dns_discovery_get_no_role() {
        for discovery in [DiscoveryType::Operator, DiscoveryType::Dns] {
            let resource = bifrost_cluster("gw")
                .cluster_with_postgres()
                .with(|s| s.cluster.discovery.discovery_type = discovery)
                .build();
            let instance = Instance::new(&resource).expect("instance");
            assert!(discovery_role(&instance).is_none(), "{discovery:?}");
            assert!(discovery_role_binding(&instance).is_none(), "{discovery:?}");
        }
    }

    #[test]
    fn kubernetes_discovery_gets_read_only_access_to_pods() {
        let resource = kubernetes_discovery();
        let instance = Instance::new(&resource).expect("instance");
        let role = discovery_role(&instance).expect("role");
        assert_eq!(role.metadata.name.as_deref(), Some("gw-discovery"));
        assert_eq!(role.metadata.owner_references.map(|o| o.len()), Some(1));
        let rules = role.rules.expect("rules");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].api_groups, Some(vec![String::new()]));
        assert_eq!(rules[0].resources, Some(vec!["pods".to_string()]));
        assert_eq!(rules[0].verbs, ["get", "list", "watch"]);
        assert_eq!(
            service_account(&instance).and_then(|a| a.automount_service_account_token),
            Some(true)
        );
    }

    #[test]
    fn kubernetes_discovery_binds_the_role_to_the_pods_service_account() {
        let resource = kubernetes_discovery();
        let instance = Instance::new(&resource).expect("instance");
        let binding = discovery_role_binding(&instance).expect("binding");
        assert_eq!(binding.role_ref.kind, "Role");
        assert_eq!(binding.role_ref.name, "gw-discovery");
        let subjects = binding.subjects.expect("subjects");
        assert_eq!(subjects[0].kind, "ServiceAccount");
        assert_eq!(subjects[0].name, "gw");
        assert_eq!(subjects[0].namespace.as_deref(), Some("prod"));
    }
}
