//! Handing `spec.replicas` of the StatefulSet over to the HorizontalPodAutoscaler.
//!
//! With server-side apply, a manager that stops sending a field it owns removes the field, so
//! simply leaving `replicas` out when autoscaling is turned on would reset the StatefulSet to
//! one pod. Kubernetes' documented hand-over: first apply only `replicas` (same value) under a
//! second manager, so the field stays when the operator lets go of it; the autoscaler's next
//! scale then takes it over.

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::error::Error;
use crate::instance::FIELD_MANAGER;

/// Field manager that holds `spec.replicas` during the hand-over.
pub const HANDOFF_MANAGER: &str = "bifrost-operator-replicas-handoff";

/// Whether the operator's apply still owns the StatefulSet's `spec.replicas`.
pub fn operator_owns_replicas(statefulset: &StatefulSet) -> bool {
    statefulset.managed_fields().iter().any(|entry| {
        entry.manager.as_deref() == Some(FIELD_MANAGER)
            && entry.operation.as_deref() == Some("Apply")
            && entry
                .fields_v1
                .as_ref()
                .and_then(|fields| fields.0.get("f:spec"))
                .and_then(|spec| spec.get("f:replicas"))
                .is_some()
    })
}

/// Co-own `spec.replicas` under [`HANDOFF_MANAGER`] if the operator owns it, so the next apply
/// without `replicas` keeps the current count.
pub async fn replicas_to_autoscaler(
    client: &Client,
    statefulset: &StatefulSet,
) -> Result<(), Error> {
    if !operator_owns_replicas(statefulset) {
        return Ok(());
    }
    let namespace = statefulset.namespace().unwrap_or_default();
    let name = statefulset.name_any();
    let replicas = statefulset
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let patch = json!({
        "apiVersion": StatefulSet::api_version(&()),
        "kind": StatefulSet::kind(&()),
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas},
    });
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    match api
        .patch(
            &name,
            &PatchParams::apply(HANDOFF_MANAGER),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(statefulset = %format!("{namespace}/{name}"), replicas, "handed replicas over to the autoscaler");
            Ok(())
        }
        // Someone else (the autoscaler) already owns it: nothing to hand over.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(err) => Err(Error::kube(
            format!("hand replicas of StatefulSet {namespace}/{name} to the autoscaler"),
            err,
        )),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    use serde_json::json;

    use super::*;

    fn with_fields(manager: &str, fields: serde_json::Value) -> StatefulSet {
        let mut sts = StatefulSet::default();
        sts.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Apply".into()),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        }]);
        sts
    }

    #[test]
    fn replicas_applied_by_the_operator_are_owned_by_it() {
        let sts = with_fields(
            FIELD_MANAGER,
            json!({"f:spec": {"f:replicas": {}, "f:template": {}}}),
        );
        assert!(operator_owns_replicas(&sts));
    }

    #[test]
    fn replicas_left_out_or_owned_by_others_are_not() {
        assert!(!operator_owns_replicas(&with_fields(
            FIELD_MANAGER,
            json!({"f:spec": {"f:template": {}}})
        )));
        assert!(!operator_owns_replicas(&with_fields(
            "kube-controller-manager",
            json!({"f:spec": {"f:replicas": {}}})
        )));
        assert!(!operator_owns_replicas(&StatefulSet::default()));
    }
}
