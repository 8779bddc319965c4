//! Test fixtures: builder-style `BifrostCluster`s and pods, and a fake API server.

pub mod fake_api;

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use crate::crd::{
    AutoscalingSpec, BifrostCluster, BifrostClusterSpec, PostgresSpec, SecretKeyRef, StorageMode,
};
use crate::instance::label;

/// Namespace of every fixture.
pub const NAMESPACE: &str = "prod";

/// A `BifrostCluster` under construction.
pub struct ClusterBuilder {
    name: String,
    spec: BifrostClusterSpec,
}

/// A minimal `BifrostCluster` (`spec: {}` with the CRD's defaults) named `name` in `prod`.
pub fn bifrost_cluster(name: &str) -> ClusterBuilder {
    let spec: BifrostClusterSpec =
        serde_json::from_value(json!({})).expect("an empty spec takes every default");
    ClusterBuilder {
        name: name.to_string(),
        spec,
    }
}

impl ClusterBuilder {
    /// Change anything in the spec.
    pub fn with(mut self, change: impl FnOnce(&mut BifrostClusterSpec)) -> Self {
        change(&mut self.spec);
        self
    }

    /// PostgreSQL storage at `pg.prod.svc`, password in Secret `pg`/`password`.
    pub fn postgres(self) -> Self {
        self.with(|s| {
            s.storage.mode = StorageMode::Postgres;
            s.storage.postgres = Some(PostgresSpec {
                host: "pg.prod.svc".into(),
                port: 5432,
                user: "bifrost".into(),
                database: "bifrost".into(),
                ssl_mode: None,
                password_secret: SecretKeyRef {
                    name: "pg".into(),
                    key: "password".into(),
                },
            });
        })
    }

    /// Cluster mode on PostgreSQL with three replicas.
    pub fn cluster_with_postgres(self) -> Self {
        self.postgres().with(|s| {
            s.cluster.enabled = true;
            s.replicas = 3;
        })
    }

    /// Autoscaling between `min` and `max` replicas on 70 % CPU.
    pub fn autoscaling(self, min: i32, max: i32) -> Self {
        self.with(|s| {
            s.autoscaling = Some(AutoscalingSpec {
                enabled: true,
                min_replicas: min,
                max_replicas: max,
                target_cpu_utilization_percentage: Some(70),
                target_memory_utilization_percentage: None,
                behavior: None,
            });
        })
    }

    /// The resource as the API server would return it (namespace, uid, generation set).
    pub fn build(self) -> BifrostCluster {
        let mut resource = BifrostCluster::new(&self.name, self.spec);
        resource.metadata.namespace = Some(NAMESPACE.into());
        resource.metadata.uid = Some(format!("uid-{}", self.name));
        resource.metadata.generation = Some(1);
        resource
    }
}

/// A gateway pod of the fixture `gw` with an optional IP and readiness.
pub fn pod(name: &str, ip: Option<&str>, ready: bool) -> Pod {
    let instance = name.rsplit_once('-').map_or(name, |(base, _)| base);
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NAMESPACE.into()),
            labels: Some(
                [
                    (label::NAME.to_string(), "bifrost".to_string()),
                    (label::INSTANCE.to_string(), instance.to_string()),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            pod_ip: ip.map(str::to_string),
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    }
}
