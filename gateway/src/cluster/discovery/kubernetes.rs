//! `kubernetes` discovery: list the gateway's pods through the Kubernetes API.
//!
//! Seeds are the IPs of pods matching `k8s_label_selector` in `k8s_namespace` that are Running
//! and have an IP, with the gossip port. The client comes from the in-cluster service account
//! (or `KUBECONFIG` outside a cluster) and is built on the first discovery, so a node that
//! cannot reach the API still starts and says why on every refresh. Needs RBAC: `list` on
//! `pods` in the namespace (the operator's `<name>-discovery` Role grants it).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tokio::sync::OnceCell;

/// One pod listing; kube's own read timeout is minutes long (it is sized for watches).
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a pod's service account namespace is mounted.
pub const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The namespace to list pods in: `configured`, else env `POD_NAMESPACE` (`from_env`), else the
/// service account's namespace (`from_file`), else `default`.
pub fn pick_namespace(
    configured: Option<&str>,
    from_env: Option<&str>,
    from_file: Option<&str>,
) -> String {
    [configured, from_env, from_file]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|n| !n.is_empty())
        .unwrap_or("default")
        .to_string()
}

/// Gossip addresses of the pods that can answer: phase `Running` with an IP.
pub fn seeds_from_pods(pods: &[Pod], port: u16) -> Vec<SocketAddr> {
    pods.iter()
        .filter_map(|pod| {
            let status = pod.status.as_ref()?;
            if status.phase.as_deref() != Some("Running") {
                return None;
            }
            let ip = status.pod_ip.as_deref()?.parse::<IpAddr>().ok()?;
            Some(SocketAddr::new(ip, port))
        })
        .collect()
}

/// Seeds from the pods matching one label selector in one namespace.
#[derive(Clone)]
pub struct KubernetesDiscovery {
    namespace: String,
    selector: String,
    port: u16,
    client: Arc<OnceCell<kube::Client>>,
}

impl std::fmt::Debug for KubernetesDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesDiscovery")
            .field("namespace", &self.namespace)
            .field("selector", &self.selector)
            .field("port", &self.port)
            .finish()
    }
}

impl PartialEq for KubernetesDiscovery {
    fn eq(&self, other: &Self) -> bool {
        (&self.namespace, &self.selector, self.port)
            == (&other.namespace, &other.selector, other.port)
    }
}

impl KubernetesDiscovery {
    /// Discovery of pods matching `selector` in `namespace` (see [`pick_namespace`] for the
    /// default), gossiping on `port`.
    pub fn new(namespace: Option<&str>, selector: &str, port: u16) -> Self {
        let from_env = std::env::var("POD_NAMESPACE").ok();
        let from_file = std::fs::read_to_string(NAMESPACE_FILE).ok();
        Self {
            namespace: pick_namespace(namespace, from_env.as_deref(), from_file.as_deref()),
            selector: selector.to_string(),
            port,
            client: Arc::new(OnceCell::new()),
        }
    }

    /// The namespace pods are listed in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    async fn client(&self) -> Result<kube::Client, String> {
        self.client
            .get_or_try_init(|| async {
                kube::Client::try_default().await.map_err(|e| {
                    format!(
                        "cannot build a Kubernetes client: {e} (in a pod, mount the service account token: \
                         automountServiceAccountToken must not be false; outside a cluster, set KUBECONFIG)"
                    )
                })
            })
            .await
            .cloned()
    }

    /// Gossip addresses of the Running pods (the caller drops its own).
    pub async fn discover(&self) -> Result<Vec<SocketAddr>, String> {
        let client = self.client().await?;
        let pods: Api<Pod> = Api::namespaced(client, &self.namespace);
        let params = ListParams::default().labels(&self.selector);
        let list = tokio::time::timeout(LIST_TIMEOUT, pods.list(&params))
            .await
            .map_err(|_| {
                format!(
                    "listing pods in namespace {} timed out after {LIST_TIMEOUT:?} (is the API server reachable?)",
                    self.namespace
                )
            })?
            .map_err(|e| self.list_error(e))?;
        Ok(seeds_from_pods(&list.items, self.port))
    }

    fn list_error(&self, error: kube::Error) -> String {
        let (namespace, selector) = (&self.namespace, &self.selector);
        match &error {
            kube::Error::Api(status) if status.code == 403 => format!(
                "forbidden to list pods in namespace {namespace}: {} (the pod's ServiceAccount needs a Role \
                 granting `list` on `pods` in {namespace} and a RoleBinding to it; the operator creates them \
                 when cluster.discovery is kubernetes)",
                status.message
            ),
            kube::Error::Api(status) if status.code == 401 => format!(
                "the Kubernetes API rejected the credentials listing pods in namespace {namespace}: {} \
                 (check the mounted service account token or the KUBECONFIG user)",
                status.message
            ),
            _ => format!(
                "cannot list pods in namespace {namespace} with selector {selector:?}: {error} \
                 (set cluster_config.discovery.k8s_namespace or POD_NAMESPACE if the namespace is wrong)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use kube::api::ObjectMeta;

    fn pod(name: &str, phase: Option<&str>, ip: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                phase: phase.map(str::to_string),
                pod_ip: ip.map(str::to_string),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn running_pods_with_an_ip_are_seeds() {
        let pods = [
            pod("gw-0", Some("Running"), Some("10.0.0.1")),
            pod("gw-1", Some("Pending"), Some("10.0.0.2")),
            pod("gw-2", Some("Running"), None),
            pod("gw-3", Some("Succeeded"), Some("10.0.0.4")),
            pod("gw-4", Some("Running"), Some("fd00::5")),
            pod("gw-5", Some("Running"), Some("not an ip")),
            Pod::default(),
        ];
        assert_eq!(
            seeds_from_pods(&pods, 10101),
            [
                "10.0.0.1:10101".parse::<SocketAddr>().expect("addr"),
                "[fd00::5]:10101".parse().expect("addr"),
            ]
        );
    }

    #[test]
    fn the_namespace_comes_from_config_then_env_then_the_service_account() {
        assert_eq!(pick_namespace(Some("ai"), Some("env"), Some("file")), "ai");
        assert_eq!(pick_namespace(None, Some("env"), Some("file")), "env");
        assert_eq!(pick_namespace(Some(" "), None, Some("file\n")), "file");
        assert_eq!(pick_namespace(None, Some(""), None), "default");
    }

    #[test]
    fn a_forbidden_list_names_the_namespace_and_the_missing_permission() {
        let discovery = KubernetesDiscovery {
            namespace: "ai".into(),
            selector: "app=bifrost".into(),
            port: 10101,
            client: Arc::new(OnceCell::new()),
        };
        let status = kube::core::Status::failure(
            "pods is forbidden: User \"system:serviceaccount:ai:gw\" cannot list resource \"pods\"",
            "Forbidden",
        )
        .with_code(403);
        let message = discovery.list_error(kube::Error::Api(Box::new(status)));
        assert!(message.contains("namespace ai"), "{message}");
        assert!(message.contains("`list` on `pods`"), "{message}");
        assert!(message.contains("cannot list resource"), "{message}");
    }
}
