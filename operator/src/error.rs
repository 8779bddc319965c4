//! The operator's one error type. Each variant says what failed, where, and how to fix it.

use std::net::SocketAddr;

/// Everything that can go wrong in the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{action} failed: {source}")]
    Kube {
        /// What the operator was doing, with the object (`apply StatefulSet prod/gw`).
        action: String,
        /// The client error (status code and message from the API server).
        #[source]
        source: kube::Error,
    },

    /// The resource lacks metadata the API server always sets.
    #[error(
        "BifrostCluster has no metadata.{field}; reconcile only objects read from the API server"
    )]
    MissingMetadata {
        /// The missing field.
        field: &'static str,
    },

    /// The gateway config rendered from the spec would not start a gateway.
    #[error("the spec would not run a gateway; fix these fields: {}", problems.join("; "))]
    InvalidConfig {
        /// One line per problem, `path: reason`.
        problems: Vec<String>,
    },

    /// An object could not be serialized.
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        /// What was being serialized.
        what: &'static str,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },

    /// The OS random source failed.
    #[error("cannot read random bytes from the operating system for the gossip key: {0}")]
    Random(String),

    /// The BifrostCluster CRD is missing from the cluster.
    #[error(
        "the BifrostCluster CRD (bifrostclusters.bifrost.dev) is not installed in this cluster; \
         install it with `kubectl apply -f crds/bifrostcluster.yaml` (or `bifrost-operator crd | kubectl apply -f -`, \
         or the Helm chart) and start the operator again"
    )]
    CrdNotInstalled,

    /// No Kubernetes client configuration could be found.
    #[error(
        "cannot configure a Kubernetes client (in-cluster service account or KUBECONFIG): {0}"
    )]
    ClientConfig(String),

    /// Leader election failed.
    #[error("leader election on Lease {lease} failed: {source}")]
    LeaderElection {
        /// `namespace/name` of the Lease.
        lease: String,
        /// The lease manager's error.
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },

    /// Another replica took the Lease; this one stops so it can restart as a standby.
    #[error("lost the leader Lease to another replica or could not renew it; exiting so Kubernetes restarts this replica as a standby")]
    LeadershipLost,

    /// The metrics/health listener could not start.
    #[error("cannot listen on {addr} for /metrics, /healthz and /readyz: {source}; pick another --metrics-addr")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wrap a client error with what was being done.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            action: action.into(),
            source,
        }
    }

    /// Short label for metrics (`errors_total{kind=...}`) and event reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } => match source {
                kube::Error::Api(status) if status.code == 409 => "conflict",
                kube::Error::Api(status) if status.code == 403 => "forbidden",
                kube::Error::Api(status) if status.code == 422 => "invalid",
                kube::Error::Api(status) if status.code == 404 => "not_found",
                kube::Error::Api(_) => "api",
                _ => "transport",
            },
            Error::MissingMetadata { .. } => "missing_metadata",
            Error::InvalidConfig { .. } => "invalid_config",
            Error::Serialize { .. } => "serialize",
            Error::Random(_) => "random",
            Error::CrdNotInstalled => "crd_not_installed",
            Error::ClientConfig(_) => "client_config",
            Error::LeaderElection { .. } | Error::LeadershipLost => "leader_election",
            Error::Bind { .. } => "bind",
        }
    }
}

/// Whether a client error is the API server's 404.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}
