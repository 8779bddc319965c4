//! The HorizontalPodAutoscaler (`<name>`, `autoscaling/v2`) that scales the StatefulSet.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};

use crate::instance::Instance;

/// CPU target when autoscaling names none.
pub const DEFAULT_CPU_UTILIZATION: i32 = 80;

/// The autoscaler when `autoscaling.enabled`.
pub fn horizontal_pod_autoscaler(instance: &Instance) -> Option<HorizontalPodAutoscaler> {
    let autoscaling = instance.spec.autoscaling.as_ref().filter(|a| a.enabled)?;
    let mut metrics = Vec::new();
    let cpu = match (
        autoscaling.target_cpu_utilization_percentage,
        autoscaling.target_memory_utilization_percentage,
    ) {
        (None, None) => Some(DEFAULT_CPU_UTILIZATION),
        (cpu, _) => cpu,
    };
    if let Some(cpu) = cpu {
        metrics.push(utilization("cpu", cpu));
    }
    if let Some(memory) = autoscaling.target_memory_utilization_percentage {
        metrics.push(utilization("memory", memory));
    }
    Some(HorizontalPodAutoscaler {
        metadata: instance.child_meta(instance.workload_name()),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "StatefulSet".into(),
                name: instance.workload_name(),
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(metrics),
            behavior: autoscaling.behavior.clone(),
        }),
        status: None,
    })
}

fn utilization(resource: &str, percent: i32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: resource.into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(percent),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::autoscaling::v2::{
        HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscalerBehavior,
    };

    use super::*;
    use crate::testing::bifrost_cluster;

    fn targets(hpa: &HorizontalPodAutoscaler) -> Vec<(String, Option<i32>)> {
        hpa.spec
            .as_ref()
            .and_then(|s| s.metrics.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| m.resource)
            .map(|r| (r.name, r.target.average_utilization))
            .collect()
    }

    #[test]
    fn no_autoscaler_when_autoscaling_is_off() {
        let resource = bifrost_cluster("gw").cluster_with_postgres().build();
        let instance = Instance::new(&resource).expect("instance");
        assert!(horizontal_pod_autoscaler(&instance).is_none());
        let resource = bifrost_cluster("gw")
            .cluster_with_postgres()
            .autoscaling(3, 15)
            .with(|s| {
                if let Some(a) = s.autoscaling.as_mut() {
                    a.enabled = false;
                }
            })
            .build();
        let instance = Instance::new(&resource).expect("instance");
        assert!(horizontal_pod_autoscaler(&instance).is_none(), "disabled");
    }

    #[test]
    fn autoscaler_scales_the_statefulset_between_the_bounds() {
        let resource = bifrost_cluster("gw")
            .cluster_with_postgres()
            .autoscaling(3, 15)
            .build();
        let instance = Instance::new(&resource).expect("instance");
        let hpa = horizontal_pod_autoscaler(&instance).expect("hpa");
        assert_eq!(hpa.metadata.name.as_deref(), Some("gw"));
        assert_eq!(
            hpa.metadata.owner_references.as_ref().map(|o| o.len()),
            Some(1)
        );
        let spec = hpa.spec.as_ref().expect("spec");
        assert_eq!(spec.scale_target_ref.kind, "StatefulSet");
        assert_eq!(spec.scale_target_ref.name, "gw");
        assert_eq!(
            spec.scale_target_ref.api_version.as_deref(),
            Some("apps/v1")
        );
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(3), 15));
        assert_eq!(targets(&hpa), [("cpu".to_string(), Some(70))]);
        assert_eq!(spec.behavior, None);
    }

    #[test]
    fn autoscaler_defaults_to_80_percent_cpu() {
        let resource = bifrost_cluster("gw")
            .cluster_with_postgres()
            .autoscaling(2, 4)
            .with(|s| {
                if let Some(a) = s.autoscaling.as_mut() {
                    a.target_cpu_utilization_percentage = None;
                }
            })
            .build();
        let instance = Instance::new(&resource).expect("instance");
        let hpa = horizontal_pod_autoscaler(&instance).expect("hpa");
        assert_eq!(targets(&hpa), [("cpu".to_string(), Some(80))]);
    }

    #[test]
    fn autoscaler_takes_memory_target_and_behaviour_from_the_spec() {
        let behavior = HorizontalPodAutoscalerBehavior {
            scale_down: Some(HPAScalingRules {
                stabilization_window_seconds: Some(600),
                policies: Some(vec![HPAScalingPolicy {
                    type_: "Pods".into(),
                    value: 1,
                    period_seconds: 120,
                }]),
                ..HPAScalingRules::default()
            }),
            scale_up: None,
        };
        let resource = bifrost_cluster("gw")
            .cluster_with_postgres()
            .autoscaling(3, 15)
            .with(|s| {
                if let Some(a) = s.autoscaling.as_mut() {
                    a.target_memory_utilization_percentage = Some(75);
                    a.behavior = Some(behavior.clone());
                }
            })
            .build();
        let instance = Instance::new(&resource).expect("instance");
        let hpa = horizontal_pod_autoscaler(&instance).expect("hpa");
        assert_eq!(
            targets(&hpa),
            [
                ("cpu".to_string(), Some(70)),
                ("memory".to_string(), Some(75))
            ]
        );
        assert_eq!(hpa.spec.and_then(|s| s.behavior), Some(behavior));
    }
}
