//! The PodDisruptionBudget (`<name>`).

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::instance::Instance;

/// The budget when `podDisruptionBudget` is set and enabled; `maxUnavailable: 1` unless a bound
/// is given.
pub fn pod_disruption_budget(instance: &Instance) -> Option<PodDisruptionBudget> {
    let pdb = instance.spec.pod_disruption_budget.as_ref()?;
    if !pdb.enabled {
        return None;
    }
    let (min_available, max_unavailable) = match (pdb.min_available, pdb.max_unavailable) {
        (Some(min), _) => (Some(IntOrString::Int(min)), None),
        (None, Some(max)) => (None, Some(IntOrString::Int(max))),
        (None, None) => (None, Some(IntOrString::Int(1))),
    };
    Some(PodDisruptionBudget {
        metadata: instance.child_meta(instance.workload_name()),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some(instance.selector_labels()),
                match_expressions: None,
            }),
            min_available,
            max_unavailable,
            // A crash-looping pod must not block node drains.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PodDisruptionBudgetSpec as Budget;
    use crate::testing::bifrost_cluster;

    fn budget(min: Option<i32>, max: Option<i32>, enabled: bool) -> Option<PodDisruptionBudget> {
        let resource = bifrost_cluster("gw")
            .cluster_with_postgres()
            .with(|s| {
                s.pod_disruption_budget = Some(Budget {
                    enabled,
                    min_available: min,
                    max_unavailable: max,
                })
            })
            .build();
        let instance = Instance::new(&resource).expect("instance");
        pod_disruption_budget(&instance)
    }

    #[test]
    fn no_budget_unless_asked_for() {
        let resource = bifrost_cluster("gw").build();
        let instance = Instance::new(&resource).expect("instance");
        assert!(pod_disruption_budget(&instance).is_none());
        assert!(budget(Some(1), None, false).is_none(), "disabled");
    }

    #[test]
    fn budget_defaults_to_one_unavailable_pod() {
        let pdb = budget(None, None, true).expect("budget");
        assert_eq!(pdb.metadata.name.as_deref(), Some("gw"));
        assert_eq!(pdb.metadata.owner_references.map(|o| o.len()), Some(1));
        let spec = pdb.spec.expect("spec");
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        assert_eq!(
            spec.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
        let selector = spec
            .selector
            .and_then(|s| s.match_labels)
            .expect("selector");
        assert_eq!(selector["app.kubernetes.io/instance"], "gw");
        assert_eq!(selector["app.kubernetes.io/name"], "bifrost");
    }

    #[test]
    fn budget_takes_min_available_or_max_unavailable_from_the_spec() {
        let spec = budget(Some(2), None, true)
            .and_then(|p| p.spec)
            .expect("spec");
        assert_eq!(
            (spec.min_available, spec.max_unavailable),
            (Some(IntOrString::Int(2)), None)
        );
        let spec = budget(None, Some(2), true)
            .and_then(|p| p.spec)
            .expect("spec");
        assert_eq!(
            (spec.min_available, spec.max_unavailable),
            (None, Some(IntOrString::Int(2)))
        );
    }
}
