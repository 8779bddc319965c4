//! The kube-rs `Controller` for `BifrostCluster`: what it watches, how it reconciles and how it
//! retries.

pub mod handoff;
mod reconcile;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::context::Context;
use crate::crd::BifrostCluster;
use crate::error::Error;
use crate::instance::{label, MANAGED_BY};

pub use reconcile::{backoff, object_key, reconcile};

/// What to do after a failed reconcile: retry with a growing delay, except for problems only a
/// spec change can fix.
pub fn error_policy(resource: Arc<BifrostCluster>, err: &Error, ctx: Arc<Context>) -> Action {
    if matches!(
        err,
        Error::InvalidConfig { .. } | Error::MissingMetadata { .. }
    ) {
        return Action::await_change();
    }
    let failures = {
        let mut failures = lock(&ctx.failures);
        let count = failures.entry(object_key(&resource)).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    Action::requeue(backoff(failures))
}

/// Run the controller until `shutdown` resolves. `namespace` limits every watch to one
/// namespace; `None` watches all.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let ours = watcher::Config::default().labels(&format!("{}={MANAGED_BY}", label::MANAGED_BY));
    let controller = Controller::new(
        scoped::<BifrostCluster>(&client, &namespace),
        watcher::Config::default(),
    )
    .with_config(
        ControllerConfig::default()
            .concurrency(8)
            .debounce(Duration::from_millis(200)),
    );
    let controller = watch_child::<ConfigMap>(controller, &ctx, &namespace, &ours);
    let controller = watch_child::<Service>(controller, &ctx, &namespace, &ours);
    let controller = watch_child::<ServiceAccount>(controller, &ctx, &namespace, &ours);
    let controller = watch_child::<Role>(controller, &ctx, &namespace, &ours);
    let controller = watch_child::<RoleBinding>(controller, &ctx, &namespace, &ours);
    let controller = watch_child::<StatefulSet>(controller, &ctx, &namespace, &ours);
    let controller = watch_child::<PodDisruptionBudget>(controller, &ctx, &namespace, &ours);
    let controller = watch_child::<HorizontalPodAutoscaler>(controller, &ctx, &namespace, &ours);
    // Pods are the StatefulSet's, not ours; they carry the instance label the peers file needs.
    controller
        .watches(scoped::<Pod>(&client, &namespace), ours, |pod: Pod| {
            let instance = pod.labels().get(label::INSTANCE)?.clone();
            Some(ObjectRef::<BifrostCluster>::new(&instance).within(&pod.namespace()?))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(resource = %object, "reconciled"),
                Err(err) => tracing::debug!(error = %err, "reconcile did not complete"),
            }
        })
        .await;
}

fn scoped<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Watch a child kind: every event updates the write cache and triggers the owner's reconcile.
fn watch_child<K>(
    controller: Controller<BifrostCluster>,
    ctx: &Arc<Context>,
    namespace: &Option<String>,
    config: &watcher::Config,
) -> Controller<BifrostCluster>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let ctx = Arc::clone(ctx);
    controller.watches(
        scoped::<K>(&ctx.client, namespace),
        config.clone(),
        move |child: K| {
            ctx.children.observe(&child);
            owner_of(&child)
        },
    )
}

/// The `BifrostCluster` that controls `child`, from its owner references.
pub fn owner_of<K: Resource>(child: &K) -> Option<ObjectRef<BifrostCluster>> {
    let namespace = child.meta().namespace.clone()?;
    let api_version = BifrostCluster::api_version(&());
    let kind = BifrostCluster::kind(&());
    child
        .meta()
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.api_version == api_version && o.kind == kind)
        .map(|o| ObjectRef::new(&o.name).within(&namespace))
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod unit_tests {
    use super::*;
    use crate::instance::Instance;
    use crate::testing::bifrost_cluster;

    #[test]
    fn retries_back_off_from_5_seconds_to_5_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(7), Duration::from_secs(300));
        assert_eq!(backoff(50), Duration::from_secs(300));
    }

    #[test]
    fn children_map_back_to_their_bifrost_cluster() {
        let resource = bifrost_cluster("gw").build();
        let instance = Instance::new(&resource).expect("instance");
        let map = ConfigMap {
            metadata: instance.child_meta("gw-config".into()),
            ..ConfigMap::default()
        };
        assert_eq!(owner_of(&map), Some(ObjectRef::new("gw").within("prod")));
        assert_eq!(owner_of(&ConfigMap::default()), None);
    }
}
