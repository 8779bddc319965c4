//! One `BifrostCluster` as the builders see it: checked metadata, child names and labels.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::{BifrostCluster, BifrostClusterSpec};
use crate::error::Error;

/// Field manager of every server-side apply the operator sends.
pub const FIELD_MANAGER: &str = "bifrost-operator";
/// `app.kubernetes.io/name` of every child.
pub const APP_NAME: &str = "bifrost";
/// `app.kubernetes.io/component` of every child.
pub const COMPONENT: &str = "gateway";
/// `app.kubernetes.io/managed-by` of every child.
pub const MANAGED_BY: &str = "bifrost-operator";

/// Label keys.
pub mod label {
    /// `app.kubernetes.io/name`.
    pub const NAME: &str = "app.kubernetes.io/name";
    /// `app.kubernetes.io/instance`: the resource's name.
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    /// `app.kubernetes.io/component`.
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// `app.kubernetes.io/managed-by`.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
}

/// A `BifrostCluster` with the metadata every child needs, checked once.
#[derive(Debug, Clone)]
pub struct Instance<'a> {
    /// Resource name; children are named after it.
    pub name: String,
    /// Namespace of the resource and of every child.
    pub namespace: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The controller owner reference every child carries.
    pub owner: OwnerReference,
    /// The desired state.
    pub spec: &'a BifrostClusterSpec,
}

impl<'a> Instance<'a> {
    /// Check the metadata the API server always sets (namespace, uid).
    pub fn new(resource: &'a BifrostCluster) -> Result<Self, Error> {
        let namespace = resource
            .namespace()
            .ok_or(Error::MissingMetadata { field: "namespace" })?;
        let owner = resource
            .controller_owner_ref(&())
            .ok_or(Error::MissingMetadata { field: "uid" })?;
        Ok(Self {
            name: resource.name_any(),
            namespace,
            generation: resource.meta().generation,
            owner,
            spec: &resource.spec,
        })
    }

    /// StatefulSet, client Service, PodDisruptionBudget and HorizontalPodAutoscaler name.
    pub fn workload_name(&self) -> String {
        self.name.clone()
    }
    /// Headless Service name (gossip and gRPC, pods' DNS).
    pub fn headless_service_name(&self) -> String {
        format!("{}-headless", self.name)
    }
    /// Gateway config ConfigMap name.
    pub fn config_map_name(&self) -> String {
        format!("{}-config", self.name)
    }
    /// Peers ConfigMap name.
    pub fn peers_config_map_name(&self) -> String {
        format!("{}-peers", self.name)
    }
    /// Role and RoleBinding name (kubernetes discovery).
    pub fn discovery_role_name(&self) -> String {
        format!("{}-discovery", self.name)
    }
    /// Generated gossip key Secret name.
    pub fn gossip_key_secret_name(&self) -> String {
        format!("{}-gossip-key", self.name)
    }
    /// The pods' ServiceAccount: `serviceAccount.name` or the resource's name.
    pub fn service_account_name(&self) -> String {
        self.spec
            .service_account
            .name
            .clone()
            .unwrap_or_else(|| self.name.clone())
    }

    /// Labels that select this resource's pods (stable for the StatefulSet's lifetime).
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (label::NAME.to_string(), APP_NAME.to_string()),
            (label::INSTANCE.to_string(), self.name.clone()),
        ])
    }

    /// `selector_labels` as a label selector string (`status.selector`).
    pub fn selector_string(&self) -> String {
        self.selector_labels()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Labels on every child and pod.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert(label::COMPONENT.to_string(), COMPONENT.to_string());
        labels.insert(label::MANAGED_BY.to_string(), MANAGED_BY.to_string());
        labels
    }

    /// Metadata of a child called `name`: namespace, labels, owner reference.
    pub fn child_meta(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}
