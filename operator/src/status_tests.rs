use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};
use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus};
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::crd::BifrostCluster;
use crate::testing::{bifrost_cluster, pod};

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + seconds).expect("timestamp"))
}

fn settled(replicas: i32) -> StatefulSet {
    let mut sts = StatefulSet {
        metadata: Default::default(),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            ..StatefulSetSpec::default()
        }),
        status: Some(StatefulSetStatus {
            replicas,
            ready_replicas: Some(replicas),
            updated_replicas: Some(replicas),
            observed_generation: Some(2),
            current_revision: Some("gw-1".into()),
            update_revision: Some("gw-1".into()),
            ..StatefulSetStatus::default()
        }),
    };
    sts.metadata.generation = Some(2);
    sts
}

fn status_of(resource: &BifrostCluster, observed: &Observed) -> BifrostClusterStatus {
    let instance = Instance::new(resource).expect("instance");
    compute_status(&instance, resource.status.as_ref(), observed, at(0))
}

fn condition(status: &BifrostClusterStatus, kind: ConditionType) -> (String, String) {
    let c = status.condition(kind).expect("condition present");
    (c.status.clone(), c.reason.clone())
}

#[test]
fn all_ready_single_node_is_ready_and_settled() {
    let resource = bifrost_cluster("gw").build();
    let sts = settled(1);
    let pods = [pod("gw-0", Some("10.0.0.1"), true)];
    let status = status_of(
        &resource,
        &Observed {
            statefulset: Some(&sts),
            pods: &pods,
            ..Observed::default()
        },
    );
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!((status.replicas, status.ready_replicas), (1, 1));
    assert_eq!(status.members, None, "no cluster, no members");
    assert_eq!(status.cluster_health, None);
    assert_eq!(
        status.selector,
        "app.kubernetes.io/instance=gw,app.kubernetes.io/name=bifrost"
    );
    assert_eq!(
        condition(&status, ConditionType::Ready),
        ("True".into(), "AllReplicasReady".into())
    );
    assert_eq!(
        condition(&status, ConditionType::Progressing),
        ("False".into(), "RolloutComplete".into())
    );
    assert_eq!(
        condition(&status, ConditionType::Degraded),
        ("False".into(), "AsExpected".into())
    );
}

#[test]
fn missing_ready_pods_are_counted_and_reported() {
    let resource = bifrost_cluster("gw").cluster_with_postgres().build();
    let sts = settled(3);
    let pods = [
        pod("gw-0", Some("10.0.0.1"), true),
        pod("gw-1", Some("10.0.0.2"), false),
        pod("gw-2", Some("10.0.0.3"), true),
    ];
    let status = status_of(
        &resource,
        &Observed {
            statefulset: Some(&sts),
            pods: &pods,
            ..Observed::default()
        },
    );
    assert_eq!((status.replicas, status.ready_replicas), (3, 2));
    let ready = status.condition(ConditionType::Ready).expect("ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ReplicasNotReady")
    );
    assert_eq!(ready.message, "2/3 gateways ready");
}

#[test]
fn cluster_health_comes_from_the_gateway_or_is_unknown() {
    let resource = bifrost_cluster("gw").cluster_with_postgres().build();
    let unknown = status_of(&resource, &Observed::default());
    assert_eq!(unknown.cluster_health.as_deref(), Some("Unknown"));
    assert_eq!(unknown.members, None);

    let healthy = status_of(
        &resource,
        &Observed {
            cluster: Some(ClusterView {
                members: 3,
                health: "HEALTHY".into(),
            }),
            ..Observed::default()
        },
    );
    assert_eq!(
        (healthy.members, healthy.cluster_health.as_deref()),
        (Some(3), Some("HEALTHY"))
    );

    let sick = status_of(
        &resource,
        &Observed {
            cluster: Some(ClusterView {
                members: 2,
                health: "NOT HEALTHY".into(),
            }),
            ..Observed::default()
        },
    );
    assert_eq!(
        condition(&sick, ConditionType::Degraded),
        ("True".into(), "ClusterNotHealthy".into())
    );
}

#[test]
fn a_scale_or_rollout_is_progressing() {
    let resource = bifrost_cluster("gw").cluster_with_postgres().build();
    let pods = [pod("gw-0", Some("10.0.0.1"), true)];
    let sts = settled(1);
    let scaling = status_of(
        &resource,
        &Observed {
            statefulset: Some(&sts),
            pods: &pods,
            ..Observed::default()
        },
    );
    let progressing = scaling
        .condition(ConditionType::Progressing)
        .expect("progressing");
    assert_eq!(progressing.status, "True");
    assert_eq!(progressing.message, "scaling from 1 to 3 gateways");

    let mut rolling = settled(3);
    if let Some(status) = rolling.status.as_mut() {
        status.update_revision = Some("gw-2".into());
        status.updated_replicas = Some(1);
    }
    let pods = [
        pod("gw-0", None, true),
        pod("gw-1", None, true),
        pod("gw-2", None, true),
    ];
    let status = status_of(
        &resource,
        &Observed {
            statefulset: Some(&rolling),
            pods: &pods,
            ..Observed::default()
        },
    );
    let progressing = status
        .condition(ConditionType::Progressing)
        .expect("progressing");
    assert_eq!(progressing.message, "rolling update: 1/3 gateways updated");
}

#[test]
fn with_autoscaling_the_desired_count_is_the_statefulsets() {
    let resource = bifrost_cluster("gw")
        .cluster_with_postgres()
        .autoscaling(3, 15)
        .build();
    let sts = settled(5);
    let pods: Vec<_> = (0..5)
        .map(|i| pod(&format!("gw-{i}"), None, true))
        .collect();
    let status = status_of(
        &resource,
        &Observed {
            statefulset: Some(&sts),
            pods: &pods,
            ..Observed::default()
        },
    );
    assert_eq!(status.replicas, 5);
    assert_eq!(
        condition(&status, ConditionType::Ready),
        ("True".into(), "AllReplicasReady".into())
    );
    assert_eq!(condition(&status, ConditionType::Progressing).0, "False");
}

/// A pod whose gateway container waits with `reason` (and the kubelet's `message`).
fn waiting_pod(name: &str, ip: Option<&str>, reason: &str, message: Option<&str>) -> Pod {
    let mut pod = pod(name, ip, false);
    if let Some(status) = pod.status.as_mut() {
        status.container_statuses = Some(vec![ContainerStatus {
            name: "gateway".into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    message: message.map(Into::into),
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }]);
    }
    pod
}

#[test]
fn crash_looping_pods_degrade_the_cluster() {
    let resource = bifrost_cluster("gw").build();
    let pods = [waiting_pod(
        "gw-0",
        Some("10.0.0.1"),
        "CrashLoopBackOff",
        None,
    )];
    let status = status_of(
        &resource,
        &Observed {
            pods: &pods,
            ..Observed::default()
        },
    );
    assert_eq!(
        condition(&status, ConditionType::Degraded),
        ("True".into(), "PodsCrashLooping".into())
    );
}

#[test]
fn a_failed_reconcile_degrades_with_its_reason() {
    let resource = bifrost_cluster("gw").build();
    let status = status_of(
        &resource,
        &Observed {
            failure: Some((
                "ReconcileFailed",
                "apply StatefulSet prod/gw failed: forbidden".into(),
            )),
            ..Observed::default()
        },
    );
    let degraded = status.condition(ConditionType::Degraded).expect("degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ReconcileFailed")
    );
    assert!(degraded.message.contains("forbidden"));
}

#[test]
fn transition_times_hold_while_a_condition_holds() {
    let mut resource = bifrost_cluster("gw").build();
    let sts = settled(1);
    let pods = [pod("gw-0", Some("10.0.0.1"), true)];
    let observed = Observed {
        statefulset: Some(&sts),
        pods: &pods,
        ..Observed::default()
    };
    let instance_status = |resource: &BifrostCluster, now: Time| {
        let instance = Instance::new(resource).expect("instance");
        compute_status(&instance, resource.status.as_ref(), &observed, now)
    };
    let first = instance_status(&resource, at(0));
    resource.status = Some(first.clone());
    let second = instance_status(&resource, at(60));
    assert_eq!(
        first, second,
        "nothing changed, so the status is identical (no write)"
    );

    let not_ready = [pod("gw-0", Some("10.0.0.1"), false)];
    let changed = compute_status(
        &Instance::new(&resource).expect("instance"),
        resource.status.as_ref(),
        &Observed {
            statefulset: Some(&sts),
            pods: &not_ready,
            ..Observed::default()
        },
        at(120),
    );
    let ready = changed.condition(ConditionType::Ready).expect("ready");
    assert_eq!(ready.last_transition_time, at(120));
    let progressing = changed
        .condition(ConditionType::Progressing)
        .expect("progressing");
    assert_eq!(progressing.last_transition_time, at(0));
}

/// A pod the scheduler cannot place, with its word for why.
fn unschedulable_pod(name: &str, message: &str) -> Pod {
    let mut pod = pod(name, None, false);
    if let Some(status) = pod.status.as_mut() {
        status.phase = Some("Pending".into());
        status.conditions = Some(vec![k8s_openapi::api::core::v1::PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(message.into()),
            ..Default::default()
        }]);
    }
    pod
}

#[test]
fn unschedulable_pods_are_progressing_and_degraded_with_the_schedulers_message() {
    let resource = bifrost_cluster("gw").build();
    // The StatefulSet controller is done: it created the pod; the scheduler cannot place it.
    let sts = settled(1);
    let pods = [unschedulable_pod(
        "gw-0",
        "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims",
    )];
    let status = status_of(
        &resource,
        &Observed {
            statefulset: Some(&sts),
            pods: &pods,
            ..Observed::default()
        },
    );
    let progressing = status.condition(ConditionType::Progressing).expect("set");
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("True", "PodsPending")
    );
    assert!(
        progressing
            .message
            .contains("unbound immediate PersistentVolumeClaims"),
        "{}",
        progressing.message
    );
    let degraded = status.condition(ConditionType::Degraded).expect("set");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "PodsUnschedulable")
    );
    assert!(
        degraded
            .message
            .starts_with("pod gw-0 cannot be scheduled: 0/3 nodes"),
        "{}",
        degraded.message
    );
}

#[test]
fn pods_whose_image_cannot_be_pulled_are_degraded() {
    let resource = bifrost_cluster("gw").build();
    let mut stuck = waiting_pod(
        "gw-0",
        None,
        "ImagePullBackOff",
        Some("Back-off pulling image \"bifrost:nope\""),
    );
    if let Some(status) = stuck.status.as_mut() {
        status.phase = Some("Pending".into());
    }
    let sts = settled(1);
    let pods = [stuck];
    let status = status_of(
        &resource,
        &Observed {
            statefulset: Some(&sts),
            pods: &pods,
            ..Observed::default()
        },
    );
    let degraded = status.condition(ConditionType::Degraded).expect("set");
    assert_eq!(degraded.reason, "PodsNotStarting");
    assert!(
        degraded.message.contains("ImagePullBackOff"),
        "{}",
        degraded.message
    );
    assert_eq!(
        condition(&status, ConditionType::Progressing),
        ("True".into(), "PodsPending".into())
    );
}

#[test]
fn an_invalid_spec_is_not_ready_and_not_progressing() {
    let resource = bifrost_cluster("gw").build();
    let status = status_of(
        &resource,
        &Observed {
            failure: Some((
                REASON_INVALID_CONFIG,
                "spec.config.client.max_request_body_size_mb: must be at least 1".into(),
            )),
            ..Observed::default()
        },
    );
    for kind in [ConditionType::Ready, ConditionType::Progressing] {
        assert_eq!(
            condition(&status, kind),
            ("False".into(), REASON_INVALID_CONFIG.into()),
            "{kind:?}"
        );
    }
    assert_eq!(
        condition(&status, ConditionType::Degraded),
        ("True".into(), REASON_INVALID_CONFIG.into())
    );
}
