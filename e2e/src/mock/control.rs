//! Endpoints for tests, not part of any provider API: `/health` and `/mock/*`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::json;

use super::knobs::KnobsUpdate;
use super::MockState;

/// `/health`, `/mock/stats`, `/mock/config` (GET and POST) and `/mock/reset`.
pub fn router() -> Router<Arc<MockState>> {
    Router::new()
        .route("/health", get(health))
        .route("/mock/stats", get(stats))
        .route("/mock/config", get(config).post(update_config))
        .route("/mock/reset", post(reset))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn stats(State(state): State<Arc<MockState>>) -> Response {
    Json(state.stats.view()).into_response()
}

async fn config(State(state): State<Arc<MockState>>) -> Response {
    Json(state.knobs.view()).into_response()
}

/// Applies a partial update and answers with the resulting knobs; a bad update changes nothing
/// and gets 400.
async fn update_config(State(state): State<Arc<MockState>>, body: Bytes) -> Response {
    let applied = serde_json::from_slice::<KnobsUpdate>(&body)
        .map_err(|error| error.to_string())
        .and_then(|update| state.knobs.apply(&update));
    match applied {
        Ok(()) => {
            let view = state.knobs.view();
            tracing::info!(?view, "mock config updated");
            Json(view).into_response()
        }
        Err(message) => (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response(),
    }
}

async fn reset(State(state): State<Arc<MockState>>) -> StatusCode {
    state.stats.reset();
    StatusCode::NO_CONTENT
}
