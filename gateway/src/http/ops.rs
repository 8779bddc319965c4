//! Operational endpoints: liveness, readiness, metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, StatusCode};
use serde_json::json;

use crate::state::AppState;

/// `GET /health`: the process is up.
pub async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /ready`: able to take traffic: not draining, joined the cluster (cluster mode), and the
/// config store answers within a second; 503 otherwise.
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let unavailable = |status: &str, detail: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": status, "detail": detail})),
        )
            .into_response()
    };
    if state.lifecycle.is_draining() {
        return unavailable("draining", "shutting down".into());
    }
    if state.runtime.load().config.cluster_config.enabled
        && !state.cluster.get().is_some_and(|cluster| cluster.joined())
    {
        return unavailable(
            "joining",
            "cluster mode: no peer heard from yet (ready once one answers, or after gossip.config.timeout_seconds alone)".into(),
        );
    }
    if let Some(store) = state.sync.store() {
        match tokio::time::timeout(std::time::Duration::from_secs(1), store.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return unavailable("store_unreachable", error.to_string()),
            Err(_) => return unavailable("store_unreachable", "no answer within 1s".into()),
        }
    }
    Json(json!({"status": "ready"})).into_response()
}

/// `GET /metrics`: Prometheus/OpenMetrics text.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
