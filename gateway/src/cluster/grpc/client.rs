//! Calling peers: one lazily connected channel per peer address, a deadline per call, and
//! errors that say which peer and why.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::auth::{unix_ms, AUTH_METADATA};
use super::proto::{self, cluster_client::ClusterClient, cluster_server::SERVICE_NAME};
use super::security::GrpcSecurity;
use super::{AdmitDecision, AdmitRequest, Snapshot};
use crate::error::error_chain;

/// Largest snapshot a node accepts (a big cluster's keys; the gRPC default is 4 MiB).
const MAX_SNAPSHOT_BYTES: usize = 64 * 1024 * 1024;

/// Deadlines for calls to peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcTimeouts {
    /// `Admit`: on the request path, so short (default 250 ms).
    pub admit: Duration,
    /// `Snapshot` (default 2 s).
    pub snapshot: Duration,
    /// `Status` (default 2 s).
    pub status: Duration,
}

impl Default for RpcTimeouts {
    fn default() -> Self {
        Self {
            admit: Duration::from_millis(250),
            snapshot: Duration::from_secs(2),
            status: Duration::from_secs(2),
        }
    }
}

/// Why a call to a peer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcErrorKind {
    /// No connection (refused, no route, TLS handshake failed).
    Unreachable,
    /// No answer within the call's deadline.
    Timeout,
    /// The peer refused our cluster-key token (different key, or none configured here).
    Unauthenticated,
    /// The peer answered with another gRPC error.
    Failed,
}

impl std::fmt::Display for RpcErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RpcErrorKind::Unreachable => "unreachable",
            RpcErrorKind::Timeout => "timeout waiting for response",
            RpcErrorKind::Unauthenticated => "unauthenticated",
            RpcErrorKind::Failed => "failed",
        })
    }
}

/// A failed call to a peer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("gRPC {rpc} to peer {peer}: {kind}: {detail}")]
pub struct RpcError {
    /// The peer's gRPC address.
    pub peer: SocketAddr,
    /// `Snapshot`, `Status` or `Admit`.
    pub rpc: &'static str,
    /// What went wrong.
    pub kind: RpcErrorKind,
    /// The underlying cause, for logs.
    pub detail: String,
}

/// Clients for every peer this node calls, connected on first use and reconnected by tonic when
/// a connection drops.
pub struct PeerClients {
    security: GrpcSecurity,
    timeouts: RpcTimeouts,
    clients: Mutex<HashMap<SocketAddr, ClusterClient<Channel>>>,
    timeouts_seen: AtomicU64,
}

impl PeerClients {
    /// Clients signing calls and checking peers per `security`, with default deadlines.
    pub fn new(security: GrpcSecurity) -> Self {
        Self::with_timeouts(security, RpcTimeouts::default())
    }

    /// Clients with explicit deadlines.
    pub fn with_timeouts(security: GrpcSecurity, timeouts: RpcTimeouts) -> Self {
        Self {
            security,
            timeouts,
            clients: Mutex::new(HashMap::new()),
            timeouts_seen: AtomicU64::new(0),
        }
    }

    /// Everything `peer` knows about every node.
    pub async fn snapshot(&self, peer: SocketAddr) -> Result<Snapshot, RpcError> {
        let mut client = self.client(peer, "Snapshot")?;
        let request = self.request(
            proto::SnapshotRequest {},
            "Snapshot",
            self.timeouts.snapshot,
        );
        let response = self
            .call(
                peer,
                "Snapshot",
                self.timeouts.snapshot,
                client.snapshot(request),
            )
            .await?;
        Ok(response.into())
    }

    /// `peer`'s cluster status as JSON (the `/cluster/status` body).
    pub async fn status_json(&self, peer: SocketAddr) -> Result<String, RpcError> {
        let mut client = self.client(peer, "Status")?;
        let request = self.request(proto::StatusRequest {}, "Status", self.timeouts.status);
        let response = self
            .call(peer, "Status", self.timeouts.status, client.status(request))
            .await?;
        Ok(response.json)
    }

    /// Ask `peer`, the owner of `request.key`, to admit `request.cost`.
    pub async fn admit(
        &self,
        peer: SocketAddr,
        request: AdmitRequest,
    ) -> Result<AdmitDecision, RpcError> {
        let mut client = self.client(peer, "Admit")?;
        let request = self.request(
            proto::AdmitRequest::from(request),
            "Admit",
            self.timeouts.admit,
        );
        let response = self
            .call(peer, "Admit", self.timeouts.admit, client.admit(request))
            .await?;
        Ok(response.into())
    }

    /// Drop the connection to `peer` (it left the cluster).
    pub fn forget(&self, peer: SocketAddr) {
        self.lock().remove(&peer);
    }

    /// Keep connections only to the peers `keep` accepts.
    pub fn retain(&self, mut keep: impl FnMut(&SocketAddr) -> bool) {
        self.lock().retain(|addr, _| keep(addr));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, ClusterClient<Channel>>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn client(
        &self,
        peer: SocketAddr,
        rpc: &'static str,
    ) -> Result<ClusterClient<Channel>, RpcError> {
        if let Some(client) = self.lock().get(&peer) {
            return Ok(client.clone());
        }
        let channel = self.channel(peer).map_err(|e| RpcError {
            peer,
            rpc,
            kind: RpcErrorKind::Unreachable,
            detail: format!("cannot set up a channel: {}", error_chain(&e)),
        })?;
        let client = ClusterClient::new(channel).max_decoding_message_size(MAX_SNAPSHOT_BYTES);
        Ok(self.lock().entry(peer).or_insert(client).clone())
    }

    fn channel(&self, peer: SocketAddr) -> Result<Channel, tonic::transport::Error> {
        let scheme = if self.security.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{peer}"))?
            .connect_timeout(self.timeouts.snapshot)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        if let Some(tls) = &self.security.tls {
            // Peers are dialled by IP: their certificates need it as a subject alternative name.
            endpoint = endpoint.tls_config(tls.client_config(&peer.ip().to_string()))?;
        }
        Ok(endpoint.connect_lazy())
    }

    /// A request signed for `rpc` (when there is a cluster key), carrying its deadline.
    fn request<T>(&self, message: T, rpc: &str, timeout: Duration) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        if let Some(auth) = &self.security.auth {
            let token = auth.token(&format!("/{SERVICE_NAME}/{rpc}"), unix_ms());
            // Digits, a dot and hex: always valid metadata.
            if let Ok(value) = MetadataValue::try_from(token) {
                request.metadata_mut().insert(AUTH_METADATA, value);
            }
        }
        request
    }

    async fn call<T>(
        &self,
        peer: SocketAddr,
        rpc: &'static str,
        timeout: Duration,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, RpcError> {
        let error = |kind, detail| RpcError {
            peer,
            rpc,
            kind,
            detail,
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => {
                let kind = match status.code() {
                    Code::Unauthenticated => RpcErrorKind::Unauthenticated,
                    // The request's own grpc-timeout fired (tonic cancels it client-side).
                    Code::DeadlineExceeded | Code::Cancelled => RpcErrorKind::Timeout,
                    // Connection refused, TLS handshake failed, connection lost.
                    Code::Unavailable => RpcErrorKind::Unreachable,
                    _ => RpcErrorKind::Failed,
                };
                if kind == RpcErrorKind::Timeout {
                    self.log_timeout(peer, rpc, timeout);
                }
                Err(error(kind, status_detail(&status)))
            }
            Err(_) => {
                self.log_timeout(peer, rpc, timeout);
                Err(error(
                    RpcErrorKind::Timeout,
                    format!("no answer within {} ms", timeout.as_millis()),
                ))
            }
        }
    }
}

impl PeerClients {
    /// Log the 1st, 2nd, 4th, 8th, … timeout: an owner that died is asked on every request
    /// until membership notices.
    fn log_timeout(&self, peer: SocketAddr, rpc: &'static str, timeout: Duration) {
        let timeouts = self.timeouts_seen.fetch_add(1, Ordering::Relaxed) + 1;
        if timeouts.is_power_of_two() {
            tracing::warn!(
                %peer,
                rpc,
                timeout_ms = timeout.as_millis() as u64,
                timeouts,
                "timeout waiting for response"
            );
        }
    }
}

/// A status's message and the causes under it, without tonic's debug rendering.
fn status_detail(status: &Status) -> String {
    let mut detail = status.message().to_string();
    let mut source = status.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !detail.contains(&text) && text != "transport error" {
            detail = format!("{detail}: {text}");
        }
        source = cause.source();
    }
    detail
}
