//! The headless Service (`<name>-headless`: gossip and gRPC between pods, stable pod DNS) and
//! the client Service (`<name>`: HTTP for applications).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::HTTP_PORT;
use crate::instance::Instance;

/// `<name>-headless`: every pod's address, ready or not, so starting pods find their peers.
pub fn headless_service(instance: &Instance) -> Service {
    let cluster = &instance.spec.cluster;
    let mut ports = vec![service_port("http", HTTP_PORT, HTTP_PORT, "TCP")];
    if cluster.enabled {
        ports.push(service_port(
            "gossip",
            cluster.gossip.port,
            cluster.gossip.port,
            "UDP",
        ));
        ports.push(service_port(
            "grpc",
            cluster.grpc.port,
            cluster.grpc.port,
            "TCP",
        ));
    }
    Service {
        metadata: instance.child_meta(instance.headless_service_name()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(instance.selector_labels()),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// `<name>`: the HTTP endpoint applications use; only ready pods receive traffic.
pub fn client_service(instance: &Instance) -> Service {
    let service = &instance.spec.service;
    let mut metadata = instance.child_meta(instance.workload_name());
    metadata.annotations = (!service.annotations.is_empty()).then(|| service.annotations.clone());
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(service.service_type.as_str().into()),
            selector: Some(instance.selector_labels()),
            ports: Some(vec![service_port("http", service.port, HTTP_PORT, "TCP")]),
            load_balancer_class: service.load_balancer_class.clone(),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn service_port(name: &str, port: i32, target: i32, protocol: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(target)),
        protocol: Some(protocol.into()),
        ..ServicePort::default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::crd::ServiceType;
    use crate::testing::bifrost_cluster;

    fn ports(service: &Service) -> Vec<(String, i32, String)> {
        service
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                (
                    p.name.unwrap_or_default(),
                    p.port,
                    p.protocol.unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn headless_service_publishes_not_ready_pods_with_gossip_and_grpc_ports() {
        let resource = bifrost_cluster("gw").cluster_with_postgres().build();
        let instance = Instance::new(&resource).expect("instance");
        let service = headless_service(&instance);
        assert_eq!(service.metadata.name.as_deref(), Some("gw-headless"));
        assert_eq!(service.metadata.namespace.as_deref(), Some("prod"));
        assert_eq!(service.metadata.labels, Some(instance.labels()));
        assert_eq!(
            service
                .metadata
                .owner_references
                .as_ref()
                .map(|o| o[0].uid.clone()),
            Some("uid-gw".into())
        );
        let spec = service.spec.as_ref().expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.selector, Some(instance.selector_labels()));
        assert_eq!(
            ports(&service),
            [
                ("http".into(), 8080, "TCP".into()),
                ("gossip".into(), 10101, "UDP".into()),
                ("grpc".into(), 10102, "TCP".into())
            ]
        );
    }

    #[test]
    fn headless_service_of_a_single_node_has_only_http() {
        let resource = bifrost_cluster("gw").build();
        let instance = Instance::new(&resource).expect("instance");
        assert_eq!(
            ports(&headless_service(&instance)),
            [("http".into(), 8080, "TCP".into())]
        );
    }

    #[test]
    fn client_service_defaults_to_cluster_ip_on_8080() {
        let resource = bifrost_cluster("gw").build();
        let instance = Instance::new(&resource).expect("instance");
        let service = client_service(&instance);
        assert_eq!(service.metadata.name.as_deref(), Some("gw"));
        assert_eq!(service.metadata.annotations, None);
        let spec = service.spec.as_ref().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.cluster_ip, None, "a normal service with a virtual IP");
        assert_eq!(spec.publish_not_ready_addresses, None);
        assert_eq!(spec.selector, Some(instance.selector_labels()));
        let port = &spec.ports.as_ref().expect("ports")[0];
        assert_eq!(port.target_port, Some(IntOrString::Int(8080)));
        assert_eq!(ports(&service), [("http".into(), 8080, "TCP".into())]);
    }

    #[test]
    fn client_service_takes_type_port_annotations_and_class_from_the_spec() {
        let resource = bifrost_cluster("gw")
            .with(|s| {
                s.service.service_type = ServiceType::LoadBalancer;
                s.service.port = 80;
                s.service.annotations = BTreeMap::from([(
                    "service.beta.kubernetes.io/aws-load-balancer-scheme".into(),
                    "internal".into(),
                )]);
                s.service.load_balancer_class = Some("service.k8s.aws/nlb".into());
            })
            .build();
        let instance = Instance::new(&resource).expect("instance");
        let service = client_service(&instance);
        let spec = service.spec.as_ref().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(
            spec.load_balancer_class.as_deref(),
            Some("service.k8s.aws/nlb")
        );
        assert_eq!(spec.ports.as_ref().expect("ports")[0].port, 80);
        assert_eq!(
            spec.ports.as_ref().expect("ports")[0].target_port,
            Some(IntOrString::Int(8080))
        );
        assert_eq!(
            service.metadata.annotations.expect("annotations")
                ["service.beta.kubernetes.io/aws-load-balancer-scheme"],
            "internal"
        );
    }
}
