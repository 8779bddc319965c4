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

/// `GET /ready`: able to take traffic; 503 once draining.
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.lifecycle.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        )
            .into_response();
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
