//! One reconcile of one `BifrostCluster`: build the children, write what changed, publish
//! Events, write the status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use crate::context::Context;
use crate::crd::{BifrostCluster, BifrostClusterStatus};
use crate::error::Error;
use crate::events;
use crate::instance::{Instance, FIELD_MANAGER};
use crate::peers::{is_ready, peers_file};
use crate::resources::apply::{self, fingerprint, Outcome};
use crate::resources::configmaps::{peers_config_map, uses_peers_file};
use crate::resources::secrets::{generates_gossip_key, gossip_key_secret, random_key_hex};
use crate::resources::{desired, Desired};
use crate::status::{compute_status, Observed};
use bifrost_gateway::config::PEERS_FILE_NAME;

use super::handoff;

/// Reconcile `resource`: the controller's entry point.
pub async fn reconcile(resource: Arc<BifrostCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_resource(&resource, &ctx).await;
    ctx.metrics
        .reconciled(started.elapsed(), result.as_ref().err().map(Error::kind));
    let key = object_key(&resource);
    match &result {
        Ok(_) => {
            super::lock(&ctx.failures).remove(&key);
        }
        Err(err) => {
            tracing::warn!(resource = %key, error = %err, kind = err.kind(), "reconcile failed");
            let reason = match err {
                Error::InvalidConfig { .. } => crate::status::REASON_INVALID_CONFIG,
                _ => "ReconcileFailed",
            };
            events::reconcile_failed(&ctx, &resource, reason, &err.to_string()).await;
            if let Err(status_err) = write_failure_status(&resource, &ctx, reason, err).await {
                tracing::debug!(error = %status_err, "could not record the failure in status");
            }
        }
    }
    result
}

/// `namespace/name`.
pub fn object_key(resource: &BifrostCluster) -> String {
    format!(
        "{}/{}",
        resource.namespace().unwrap_or_default(),
        resource.name_any()
    )
}

async fn reconcile_resource(resource: &BifrostCluster, ctx: &Context) -> Result<Action, Error> {
    if resource.meta().deletion_timestamp.is_some() {
        // Every child carries an owner reference; garbage collection removes them.
        return Ok(Action::await_change());
    }
    let instance = Instance::new(resource)?;
    let desired = desired(&instance)?;
    let owner_uid = instance.owner.uid.clone();
    let ns = instance.namespace.clone();

    if generates_gossip_key(&instance) {
        let secret = gossip_key_secret(&instance, random_key_hex()?);
        let outcome = apply::create_if_absent(&ctx.client, &ctx.children, &secret).await?;
        announce::<Secret>(ctx, resource, &instance.gossip_key_secret_name(), outcome).await;
    }

    let Desired {
        config_map,
        service_account,
        role,
        role_binding,
        headless_service,
        client_service,
        statefulset,
        pod_disruption_budget,
        horizontal_pod_autoscaler,
        ..
    } = desired;

    let account_name = instance.service_account_name();
    ensure(
        ctx,
        resource,
        &ns,
        &account_name,
        service_account,
        &owner_uid,
    )
    .await?;
    let role_name = instance.discovery_role_name();
    ensure(ctx, resource, &ns, &role_name, role, &owner_uid).await?;
    ensure(ctx, resource, &ns, &role_name, role_binding, &owner_uid).await?;
    write(ctx, resource, &config_map).await?;

    let pods = list_pods(ctx, &instance).await?;
    let peers_name = instance.peers_config_map_name();
    if uses_peers_file(&instance) {
        write_peers(ctx, resource, &instance, &pods).await?;
    } else {
        ensure::<ConfigMap>(ctx, resource, &ns, &peers_name, None, &owner_uid).await?;
    }

    write(ctx, resource, &headless_service).await?;
    write(ctx, resource, &client_service).await?;

    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let sts_name = instance.workload_name();
    let current = sts_api
        .get_opt(&sts_name)
        .await
        .map_err(|e| Error::kube(format!("get StatefulSet {ns}/{sts_name}"), e))?;
    let mut statefulset = statefulset;
    if let Some(autoscaling) = instance.spec.autoscaling.as_ref().filter(|a| a.enabled) {
        match &current {
            Some(current) => handoff::replicas_to_autoscaler(&ctx.client, current).await?,
            // Left out, Kubernetes would start one pod until the autoscaler's first sync:
            // start at minReplicas and hand the field over on the next reconcile.
            None => {
                if let Some(spec) = statefulset.spec.as_mut() {
                    spec.replicas = Some(autoscaling.min_replicas);
                }
            }
        }
    }
    let (_, applied) = write(ctx, resource, &statefulset).await?;
    let statefulset_now = applied.or(current);

    let workload = instance.workload_name();
    ensure(
        ctx,
        resource,
        &ns,
        &workload,
        pod_disruption_budget,
        &owner_uid,
    )
    .await?;
    ensure(
        ctx,
        resource,
        &ns,
        &workload,
        horizontal_pod_autoscaler,
        &owner_uid,
    )
    .await?;

    let cluster_view = probe_cluster(ctx, &instance, &pods);
    let observed = Observed {
        statefulset: statefulset_now.as_ref(),
        pods: &pods,
        cluster: cluster_view,
        failure: None,
    };
    let status = compute_status(&instance, resource.status.as_ref(), &observed, now());
    write_status(ctx, resource, &status).await?;
    Ok(Action::requeue(ctx.resync))
}

/// Apply a child when its desired content or the object changed since the last write.
async fn write<K>(
    ctx: &Context,
    resource: &BifrostCluster,
    object: &K,
) -> Result<(Outcome, Option<K>), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    let result = apply::apply(&ctx.client, &ctx.children, object, fingerprint(object)?).await?;
    announce::<K>(ctx, resource, &object.name_any(), result.0).await;
    Ok(result)
}

/// Apply `object` when wanted, delete our `name` of that kind otherwise.
async fn ensure<K>(
    ctx: &Context,
    resource: &BifrostCluster,
    namespace: &str,
    name: &str,
    object: Option<K>,
    owner_uid: &str,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    match object {
        Some(object) => {
            write(ctx, resource, &object).await?;
        }
        None => {
            let outcome =
                apply::remove::<K>(&ctx.client, &ctx.children, namespace, name, owner_uid).await?;
            announce::<K>(ctx, resource, name, outcome).await;
        }
    }
    Ok(())
}

async fn announce<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    resource: &BifrostCluster,
    name: &str,
    outcome: Outcome,
) {
    if outcome != Outcome::Unchanged {
        tracing::info!(resource = %object_key(resource), kind = %K::kind(&()), name, ?outcome, "child written");
    }
    let child = ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: Some(name.to_string()),
        namespace: resource.namespace(),
        ..ObjectReference::default()
    };
    events::child_written(ctx, resource, child, outcome).await;
}

async fn list_pods(ctx: &Context, instance: &Instance<'_>) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &instance.namespace);
    let params = ListParams::default().labels(&instance.selector_string());
    api.list(&params).await.map(|list| list.items).map_err(|e| {
        Error::kube(
            format!("list pods of {}/{}", instance.namespace, instance.name),
            e,
        )
    })
}

/// The peers ConfigMap, rewritten only when the list of peers changed: its timestamp alone
/// never causes a write, also after a restart (empty cache), a failover or a cache expiry.
async fn write_peers(
    ctx: &Context,
    resource: &BifrostCluster,
    instance: &Instance<'_>,
    pods: &[Pod],
) -> Result<(), Error> {
    let mut stamped = peers_file(instance, pods, Timestamp::now().to_string());
    // The fingerprint leaves the timestamp out, so an unchanged list is not rewritten.
    let content_key = fingerprint(&(&stamped.peers, &instance.owner.uid))?;
    let key =
        apply::ChildKey::new::<ConfigMap>(&instance.namespace, &instance.peers_config_map_name());
    if !ctx.children.is_current(&key, &content_key) && !ctx.children.wrote_last(&key) {
        // Not written by this process (a restart, a failover): keep the stored timestamp when
        // the peers are the same, so the apply is a no-op on the server.
        if let Some(stored) = stored_peers(ctx, &key).await? {
            if stored.peers == stamped.peers {
                stamped.generated_at = stored.generated_at;
            }
        }
    }
    let map = peers_config_map(instance, &stamped)?;
    let (outcome, _) = apply::apply(&ctx.client, &ctx.children, &map, content_key).await?;
    if outcome != Outcome::Unchanged {
        tracing::info!(resource = %object_key(resource), peers = stamped.peers.len(), "peers file updated");
    }
    // Peer changes follow pods coming and going; they are not worth an Event each.
    ctx.metrics.wrote("ConfigMap", outcome);
    Ok(())
}

/// The peers file stored in the ConfigMap `key`, if it exists and parses.
async fn stored_peers(
    ctx: &Context,
    key: &apply::ChildKey,
) -> Result<Option<bifrost_gateway::config::PeersFile>, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let stored = api
        .get_opt(&key.name)
        .await
        .map_err(|e| Error::kube(format!("get ConfigMap {key}"), e))?;
    Ok(stored
        .and_then(|map| map.data?.remove(PEERS_FILE_NAME))
        .and_then(|text| bifrost_gateway::config::PeersFile::parse(&text).ok()))
}

/// Last known `/cluster/status` answer; asks a ready pod again in the background when stale.
fn probe_cluster(
    ctx: &Context,
    instance: &Instance<'_>,
    pods: &[Pod],
) -> Option<crate::probe::ClusterView> {
    if !instance.spec.cluster.enabled {
        return None;
    }
    let key = format!("{}/{}", instance.namespace, instance.name);
    let ready_ip = pods
        .iter()
        .filter(|p| is_ready(p))
        .find_map(|p| p.status.as_ref()?.pod_ip.clone());
    if let Some(ip) = ready_ip {
        ctx.probe.refresh(&key, &ip);
    }
    ctx.probe.latest(&key)
}

/// Write the status when it differs from what is stored.
async fn write_status(
    ctx: &Context,
    resource: &BifrostCluster,
    status: &BifrostClusterStatus,
) -> Result<(), Error> {
    if resource.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<BifrostCluster> = Api::namespaced(
        ctx.client.clone(),
        &resource.namespace().unwrap_or_default(),
    );
    let patch = json!({
        "apiVersion": BifrostCluster::api_version(&()),
        "kind": BifrostCluster::kind(&()),
        "status": status,
    });
    api.patch_status(
        &resource.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|e| {
        Error::kube(
            format!("write status of BifrostCluster {}", object_key(resource)),
            e,
        )
    })
}

/// Record a failed reconcile as `Degraded` with the error's message.
async fn write_failure_status(
    resource: &BifrostCluster,
    ctx: &Context,
    reason: &'static str,
    err: &Error,
) -> Result<(), Error> {
    let instance = Instance::new(resource)?;
    let mut status = resource.status.clone().unwrap_or_default();
    let observed = Observed {
        statefulset: None,
        pods: &[],
        cluster: None,
        failure: Some((reason, err.to_string())),
    };
    let computed = compute_status(&instance, resource.status.as_ref(), &observed, now());
    // Keep the counts from the last good reconcile; only the conditions change: all three for
    // a spec that will not be applied, Degraded alone for a failure that the next try may fix.
    let replaced =
        |type_: &str| reason == crate::status::REASON_INVALID_CONFIG || type_ == "Degraded";
    status.selector = computed.selector;
    status.conditions = computed
        .conditions
        .into_iter()
        .filter(|c| replaced(&c.type_))
        .chain(
            status
                .conditions
                .iter()
                .filter(|c| !replaced(&c.type_))
                .cloned(),
        )
        .collect();
    status.observed_generation = computed.observed_generation;
    write_status(ctx, resource, &status).await
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Retry delay after `failures` consecutive failures: 5 s doubling up to 5 min.
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(6);
    Duration::from_secs(5 * 2u64.pow(exponent)).min(Duration::from_secs(300))
}
