//! The gRPC server: the generated `Cluster` service delegating to a [`ClusterRpc`], behind a
//! check of every call's cluster-key token.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TcpIncoming, TlsConnectInfo};
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use super::auth::{unix_ms, ClusterAuth, AUTH_METADATA};
use super::proto::{self, cluster_server::ClusterServer};
use super::security::GrpcSecurity;
use super::ClusterRpc;
use crate::error::{error_chain, GatewayError};
use crate::telemetry::metrics::GossipMetrics;

/// [`serve`] until `stop`, logging a failure instead of returning it: without the server,
/// peers' strict limits fall back to gossip counts, and this node keeps serving.
pub async fn serve_until_stopped(
    listener: TcpListener,
    handler: Arc<dyn ClusterRpc>,
    security: GrpcSecurity,
    metrics: GossipMetrics,
    stop: watch::Receiver<bool>,
) {
    if let Err(error) = serve(listener, handler, security, metrics, stop).await {
        tracing::error!(%error, "the gRPC server stopped; strict limits fall back to gossip counts");
    }
}

/// Serve `bifrost.cluster.v1.Cluster` on `listener` (bound by the caller, so a taken port is a
/// startup error naming `cluster_config.grpc.port`) until `stop` turns true; calls in flight
/// then finish. Calls that fail authentication are refused with `UNAUTHENTICATED` and counted
/// in `metrics`.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<dyn ClusterRpc>,
    security: GrpcSecurity,
    metrics: GossipMetrics,
    mut stop: watch::Receiver<bool>,
) -> Result<(), GatewayError> {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let mut server = Server::builder();
    if let Some(tls) = &security.tls {
        server = server.tls_config(tls.server_config()).map_err(|e| {
            GatewayError::Config(format!(
                "cluster_config.grpc.tls: cannot serve TLS: {}",
                error_chain(&e)
            ))
        })?;
    }
    let service = Authenticated {
        inner: ClusterServer::from_arc(Arc::new(ClusterService { handler })),
        auth: security.auth.clone(),
        metrics,
        rejected: Arc::new(AtomicU64::new(0)),
    };
    tracing::info!(
        %addr,
        tls = security.is_tls(),
        authenticated = security.is_authenticated(),
        "gRPC server listening"
    );
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    server
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move {
            // A dropped sender also means stop.
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .await
        .map_err(|e| {
            GatewayError::Config(format!(
                "gRPC server on {addr} (cluster_config.grpc.port) failed: {}",
                error_chain(&e)
            ))
        })?;
    tracing::info!(%addr, "gRPC server stopped");
    Ok(())
}

/// The generated service's trait, answered by the gateway's [`ClusterRpc`].
struct ClusterService {
    handler: Arc<dyn ClusterRpc>,
}

#[tonic::async_trait]
impl proto::cluster_server::Cluster for ClusterService {
    async fn snapshot(
        &self,
        _request: Request<proto::SnapshotRequest>,
    ) -> Result<Response<proto::SnapshotResponse>, Status> {
        Ok(Response::new(self.handler.snapshot().await.into()))
    }

    async fn status(
        &self,
        _request: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        let json = self.handler.status_json().await;
        Ok(Response::new(proto::StatusResponse { json }))
    }

    async fn admit(
        &self,
        request: Request<proto::AdmitRequest>,
    ) -> Result<Response<proto::AdmitResponse>, Status> {
        let request = super::AdmitRequest::from(request.into_inner());
        Ok(Response::new(self.handler.admit(request).await.into()))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

/// Refuses calls without a valid token for the path they call (every RPC, by construction)
/// before they reach the service.
#[derive(Clone)]
struct Authenticated<S> {
    inner: S,
    auth: Option<ClusterAuth>,
    metrics: GossipMetrics,
    /// Refused calls so far, to log only the 1st, 2nd, 4th, 8th, … (a misconfigured peer
    /// calls many times a second).
    rejected: Arc<AtomicU64>,
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<http::Request<B>> for Authenticated<S>
where
    S: tonic::codegen::Service<
        http::Request<B>,
        Response = http::Response<tonic::body::Body>,
        Error = Infallible,
    >,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Some(auth) = &self.auth {
            let token = request
                .headers()
                .get(AUTH_METADATA)
                .and_then(|v| v.to_str().ok());
            let path = request.uri().path();
            if let Err(error) = auth.verify(token, path, unix_ms()) {
                self.metrics.grpc_rejected(error.reason());
                let rejected = self.rejected.fetch_add(1, Ordering::Relaxed) + 1;
                if rejected.is_power_of_two() {
                    let peer = peer_addr(&request)
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    tracing::warn!(
                        %peer,
                        path,
                        reason = error.reason(),
                        rejected,
                        "refused an unauthenticated gRPC call: {error}"
                    );
                }
                let status = Status::unauthenticated(error.to_string());
                return Box::pin(async move { Ok(status.into_http()) });
            }
        }
        Box::pin(self.inner.call(request))
    }
}

fn peer_addr<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
}
