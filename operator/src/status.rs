//! `BifrostCluster.status` from what the operator observed: the StatefulSet, the pods and the
//! last `/cluster/status` probe. Pure: the caller fetches and writes.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{BifrostClusterStatus, ConditionType};
use crate::instance::Instance;
use crate::peers::is_ready;
use crate::probe::ClusterView;

/// Health value when no gateway answered `/cluster/status`.
pub const HEALTH_UNKNOWN: &str = "Unknown";
/// Health value a gateway reports when every member is healthy.
pub const HEALTH_HEALTHY: &str = "HEALTHY";
/// Condition reason of a spec the gateway's validation refuses.
pub const REASON_INVALID_CONFIG: &str = "InvalidConfig";

/// Container waiting reasons that mean a pod will not start without a change.
const NOT_STARTING: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Everything the status is computed from.
#[derive(Debug, Default)]
pub struct Observed<'a> {
    /// The StatefulSet as the API server has it (None before it exists).
    pub statefulset: Option<&'a StatefulSet>,
    /// The resource's pods.
    pub pods: &'a [Pod],
    /// The last `/cluster/status` answer (cluster mode), None when no gateway answered.
    pub cluster: Option<ClusterView>,
    /// Why the last reconcile failed, if it did.
    pub failure: Option<(&'static str, String)>,
}

/// The status to write. Conditions keep their `lastTransitionTime` while their status holds.
pub fn compute_status(
    instance: &Instance,
    previous: Option<&BifrostClusterStatus>,
    observed: &Observed,
    now: Time,
) -> BifrostClusterStatus {
    let sts_spec = observed.statefulset.and_then(|s| s.spec.as_ref());
    // With autoscaling the HPA decides the replica count; the StatefulSet carries it.
    let desired = if instance.spec.autoscaling_enabled() {
        sts_spec.and_then(|s| s.replicas).unwrap_or(0)
    } else {
        instance.spec.replicas
    };
    let live: Vec<&Pod> = observed
        .pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let replicas = i32::try_from(live.len()).unwrap_or(i32::MAX);
    let ready = i32::try_from(live.iter().filter(|p| is_ready(p)).count()).unwrap_or(i32::MAX);

    let cluster_enabled = instance.spec.cluster.enabled;
    let (members, cluster_health) = match (cluster_enabled, &observed.cluster) {
        (false, _) => (None, None),
        (true, Some(view)) => (Some(view.members), Some(view.health.clone())),
        (true, None) => (None, Some(HEALTH_UNKNOWN.to_string())),
    };

    let generation = instance.generation;
    let invalid_spec = observed
        .failure
        .as_ref()
        .is_some_and(|(reason, _)| *reason == REASON_INVALID_CONFIG);
    let ready_condition = if invalid_spec {
        (
            false,
            REASON_INVALID_CONFIG,
            format!(
                "generation {} is invalid and was not applied; running gateways keep the last valid spec",
                generation.unwrap_or_default()
            ),
        )
    } else if desired > 0 && ready >= desired {
        (
            true,
            "AllReplicasReady",
            format!("{ready}/{desired} gateways ready"),
        )
    } else if desired == 0 {
        (false, "ScaledToZero", "no gateways requested".to_string())
    } else {
        (
            false,
            "ReplicasNotReady",
            format!("{ready}/{desired} gateways ready"),
        )
    };

    // Pods that wait for something only a person can fix, with the scheduler's or kubelet's word.
    let unschedulable: Vec<String> = live.iter().filter_map(|p| unschedulable(p)).collect();
    let not_starting: Vec<String> = live.iter().filter_map(|p| not_starting(p)).collect();
    let pending = live
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending"))
        .count();

    let progressing = rollout_in_progress(observed.statefulset, desired, replicas);
    let progressing_condition = if invalid_spec {
        (
            false,
            REASON_INVALID_CONFIG,
            "rollout stopped until the spec is fixed (see Degraded)".to_string(),
        )
    } else if let Some(message) = &progressing {
        let cause = unschedulable.first().or(not_starting.first());
        let message = match cause {
            Some(cause) => format!("{message}; {cause}"),
            None => message.clone(),
        };
        (true, "RollingOut", message)
    } else if pending > 0 {
        let cause = unschedulable.first().or(not_starting.first());
        (
            true,
            "PodsPending",
            match cause {
                Some(cause) => format!("{pending} gateway pod(s) pending; {cause}"),
                None => format!("{pending} gateway pod(s) pending"),
            },
        )
    } else {
        (
            false,
            "RolloutComplete",
            "every gateway runs the current spec".to_string(),
        )
    };

    let crashing = live.iter().filter(|p| is_crash_looping(p)).count();
    let degraded_condition = if let Some((reason, message)) = &observed.failure {
        (true, *reason, message.clone())
    } else if crashing > 0 {
        (
            true,
            "PodsCrashLooping",
            format!("{crashing} gateway pod(s) in CrashLoopBackOff; see `kubectl logs`"),
        )
    } else if let Some(first) = unschedulable.first() {
        (
            true,
            "PodsUnschedulable",
            with_more(first, unschedulable.len()),
        )
    } else if let Some(first) = not_starting.first() {
        (
            true,
            "PodsNotStarting",
            with_more(first, not_starting.len()),
        )
    } else if cluster_enabled
        && observed
            .cluster
            .as_ref()
            .is_some_and(|c| c.health != HEALTH_HEALTHY)
    {
        (
            true,
            "ClusterNotHealthy",
            "a gateway reports the cluster NOT HEALTHY".to_string(),
        )
    } else {
        (false, "AsExpected", "nothing needs attention".to_string())
    };

    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let condition = |kind: ConditionType, (on, reason, message): (bool, &str, String)| {
        make_condition(
            previous_conditions,
            kind,
            on,
            reason,
            message,
            generation,
            &now,
        )
    };
    BifrostClusterStatus {
        observed_generation: generation,
        replicas,
        ready_replicas: ready,
        members,
        cluster_health,
        selector: instance.selector_string(),
        conditions: vec![
            condition(ConditionType::Ready, ready_condition),
            condition(ConditionType::Progressing, progressing_condition),
            condition(ConditionType::Degraded, degraded_condition),
        ],
    }
}

/// Why the StatefulSet is not settled, if it is not.
fn rollout_in_progress(sts: Option<&StatefulSet>, desired: i32, replicas: i32) -> Option<String> {
    let Some(sts) = sts else {
        return Some("creating the StatefulSet".to_string());
    };
    let Some(status) = sts.status.as_ref() else {
        return Some("waiting for the StatefulSet controller".to_string());
    };
    if status.observed_generation < sts.metadata.generation {
        return Some("the StatefulSet controller has not seen the latest spec".to_string());
    }
    if replicas != desired {
        return Some(format!("scaling from {replicas} to {desired} gateways"));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    if status.update_revision.is_some() && status.current_revision != status.update_revision {
        return Some(format!(
            "rolling update: {updated}/{desired} gateways updated"
        ));
    }
    None
}

/// `pod gw-2 cannot be scheduled: 0/3 nodes are available: ...` when the scheduler says so
/// (no node fits, or a PersistentVolumeClaim is unbound).
fn unschedulable(pod: &Pod) -> Option<String> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let why = condition
        .message
        .as_deref()
        .or(condition.reason.as_deref())
        .unwrap_or("no reason given");
    Some(format!("pod {name} cannot be scheduled: {why}"))
}

/// `pod gw-0 is not starting: ImagePullBackOff: ...` for a container the kubelet cannot start.
fn not_starting(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?;
    let containers = statuses
        .init_container_statuses
        .iter()
        .flatten()
        .chain(statuses.container_statuses.iter().flatten());
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    containers.into_iter().find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        NOT_STARTING
            .contains(&reason)
            .then(|| match &waiting.message {
                Some(message) => format!("pod {name} is not starting: {reason}: {message}"),
                None => format!("pod {name} is not starting: {reason}"),
            })
    })
}

/// The first problem, and how many other pods have one.
fn with_more(first: &str, count: usize) -> String {
    match count {
        0 | 1 => first.to_string(),
        n => format!("{first} (and {} more pod(s))", n - 1),
    }
}

fn is_crash_looping(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|statuses| {
            statuses.iter().any(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref())
                    == Some("CrashLoopBackOff")
            })
        })
}

fn make_condition(
    previous: &[Condition],
    kind: ConditionType,
    on: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if on { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == kind.as_str() && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: kind.as_str().to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
