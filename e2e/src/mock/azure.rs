//! Azure OpenAI's deployment API: `POST /openai/deployments/{deployment}/chat/completions` and
//! `/embeddings`, with `?api-version=` and the key in `api-key`; bodies and answers are
//! OpenAI's. A request without `api-version` gets the 404 Azure gives it. Also Azure's
//! version-less `/openai/v1/chat/completions`, where the body's `model` is the deployment.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::{ApiError, Wire};
use super::knobs::Pace;
use super::stats::Route;
use super::{embeddings, openai, MockState};

/// Azure's answer to a deployment call without `api-version`.
fn resource_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": {"code": "404", "message": "Resource not found"}})),
    )
        .into_response()
}

/// A deployment call: `api-version` required, the deployment counted, then served as
/// `route` by `respond`.
async fn deployment_call(
    state: &MockState,
    deployment: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    route: Route,
    respond: impl FnOnce(Pace) -> Result<Response, ApiError>,
) -> Response {
    if !query.contains_key("api-version") {
        return resource_not_found();
    }
    state.stats.record_deployment(deployment);
    state
        .serve_inference(Wire::Azure, route, headers, respond)
        .await
}

/// `POST /openai/deployments/{deployment}/chat/completions?api-version=...`.
pub async fn chat_completions(
    State(state): State<Arc<MockState>>,
    Path(deployment): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let respond = |pace| openai::complete(&state, pace, &body);
    deployment_call(
        &state,
        &deployment,
        &query,
        &headers,
        Route::ChatCompletions,
        respond,
    )
    .await
}

/// `POST /openai/deployments/{deployment}/embeddings?api-version=...`.
pub async fn embeddings(
    State(state): State<Arc<MockState>>,
    Path(deployment): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let respond = |_| embeddings::embed_request(&state, &body);
    deployment_call(
        &state,
        &deployment,
        &query,
        &headers,
        Route::Embeddings,
        respond,
    )
    .await
}

/// `POST /openai/v1/chat/completions`: the deployment is the body's `model`.
pub async fn v1_chat_completions(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let deployment = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|b| b.get("model").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_default();
    state.stats.record_deployment(&deployment);
    state
        .serve_inference(Wire::Azure, Route::ChatCompletions, &headers, |pace| {
            openai::complete(&state, pace, &body)
        })
        .await
}
