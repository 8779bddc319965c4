//! How nodes trust each other over gRPC: the cluster key (every call signed, see [`super::auth`])
//! and optional TLS (`cluster_config.grpc.tls`).

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

use super::auth::ClusterAuth;
use crate::cluster::transport::cluster_key;
use crate::config::{ClusterConfig, GrpcTls};
use crate::error::{error_chain, GatewayError};

/// PEM material for TLS between nodes.
#[derive(Clone)]
pub struct TlsMaterial {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    ca_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsMaterial(<pem>)")
    }
}

impl TlsMaterial {
    /// From PEM text: this node's certificate chain and key, and the CA peers must chain to.
    /// Checked like [`TlsMaterial::load`]; errors name the config fields.
    pub fn from_pem(
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
        ca_pem: impl Into<Vec<u8>>,
    ) -> Result<Self, GatewayError> {
        let material = Self {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            ca_pem: ca_pem.into(),
        };
        material.check()?;
        Ok(material)
    }

    /// Read and check the files named in `cluster_config.grpc.tls`.
    pub fn load(tls: &GrpcTls) -> Result<Self, GatewayError> {
        let read = |field: &str, path: &str| {
            std::fs::read(Path::new(path)).map_err(|e| {
                GatewayError::Config(format!(
                    "cluster_config.grpc.tls.{field}: cannot read {path}: {e}"
                ))
            })
        };
        Self::from_pem(
            read("cert_file", &tls.cert_file)?,
            read("key_file", &tls.key_file)?,
            read("ca_file", &tls.ca_file)?,
        )
    }

    /// Parse everything once now, so a bad file stops startup instead of the first call.
    fn check(&self) -> Result<(), GatewayError> {
        Server::builder()
            .tls_config(self.server_config())
            .map_err(|e| {
                GatewayError::Config(format!(
                    "cluster_config.grpc.tls.cert_file / key_file: not a usable PEM certificate chain and private key: {}",
                    error_chain(&e)
                ))
            })?;
        if !self.ca_pem.windows(11).any(|w| w == b"-----BEGIN ") {
            return Err(GatewayError::Config(
                "cluster_config.grpc.tls.ca_file: no PEM certificate in it".to_string(),
            ));
        }
        Endpoint::from_static("https://127.0.0.1:1")
            .tls_config(self.client_config("127.0.0.1"))
            .map_err(|e| {
                GatewayError::Config(format!(
                    "cluster_config.grpc.tls.ca_file: not a usable PEM CA certificate: {}",
                    error_chain(&e)
                ))
            })?;
        Ok(())
    }

    pub(super) fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new().identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
    }

    /// Client TLS for a peer reached at `host` (an IP address, checked against the
    /// certificate's subject alternative names).
    pub(super) fn client_config(&self, host: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(host)
    }
}

/// The cluster key and TLS settings shared by the gRPC server and clients of one node.
#[derive(Debug, Clone, Default)]
pub struct GrpcSecurity {
    pub(super) auth: Option<ClusterAuth>,
    pub(super) tls: Option<TlsMaterial>,
}

impl GrpcSecurity {
    /// From `cluster_config`: the cluster key (env `BIFROST_CLUSTER_KEY` or
    /// `gossip.encryption_key`) and `grpc.tls`. Warns when there is no key.
    pub fn from_config(config: &ClusterConfig) -> Result<Self, GatewayError> {
        let key = cluster_key(config);
        if key.is_none() {
            tracing::warn!(
                "gRPC between nodes is not authenticated: set cluster_config.gossip.encryption_key or BIFROST_CLUSTER_KEY"
            );
        }
        let tls = config
            .grpc
            .tls
            .as_ref()
            .map(TlsMaterial::load)
            .transpose()?;
        Ok(Self::new(key.as_deref(), tls))
    }

    /// Sign and check calls with `key` (none: unauthenticated), over `tls` (none: plaintext).
    pub fn new(key: Option<&str>, tls: Option<TlsMaterial>) -> Self {
        Self {
            auth: key.map(ClusterAuth::new),
            tls,
        }
    }

    /// Whether calls are signed and checked.
    pub fn is_authenticated(&self) -> bool {
        self.auth.is_some()
    }

    /// Whether traffic is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}
