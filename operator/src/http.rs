//! `/metrics`, `/healthz` and `/readyz` on one small axum server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::error::Error;
use crate::metrics::Metrics;

/// What the endpoints report.
#[derive(Debug)]
pub struct Health {
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Set once the API is reachable and the CRD installed (leader or standby alike).
    pub ready: AtomicBool,
    /// Set while this replica reconciles.
    pub leading: AtomicBool,
}

impl Health {
    /// Not ready, not leading.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            ready: AtomicBool::new(false),
            leading: AtomicBool::new(false),
        })
    }
}

/// The routes.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn metrics(State(health): State<Arc<Health>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.metrics.encode(),
    )
}

async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    if !health.ready.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting");
    }
    if health.leading.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready: leader")
    } else {
        (StatusCode::OK, "ready: standby")
    }
}

/// Bind `addr` (fails at start-up with a clear error rather than later).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Serve until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if let Err(err) = axum::serve(listener, router(health))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %err, "metrics server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_text(addr: SocketAddr, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("http://{addr}{path}"))
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    #[tokio::test]
    async fn endpoints_report_health_readiness_and_metrics() {
        let health = Health::new(Arc::new(Metrics::new()));
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Arc::clone(&health), async {
            let _ = stopped.await;
        }));

        assert_eq!(get_text(addr, "/healthz").await, (200, "ok".into()));
        assert_eq!(get_text(addr, "/readyz").await.0, 503);
        health.ready.store(true, Ordering::Relaxed);
        assert_eq!(
            get_text(addr, "/readyz").await,
            (200, "ready: standby".into())
        );
        health.leading.store(true, Ordering::Relaxed);
        assert_eq!(
            get_text(addr, "/readyz").await,
            (200, "ready: leader".into())
        );
        let (status, text) = get_text(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            text.contains("bifrost_operator_reconciliations_total"),
            "{text}"
        );

        let _ = stop.send(());
        server.await.expect("server stops");
    }

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() {
        let taken = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = taken.local_addr().expect("addr");
        let err = bind(addr).await.expect_err("in use");
        assert!(err.to_string().contains("--metrics-addr"), "{err}");
    }
}
