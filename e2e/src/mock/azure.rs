//! Azure OpenAI's deployment API: `POST /openai/deployments/{deployment}/chat/completions` and
//! `/embeddings`, with `?api-version=` and the key in `api-key`; bodies and answers are
//! OpenAI's. A request without `api-version` gets the 404 Azure gives it. Also Azure's
//! version-less `/openai/v1/chat/completions` and `/embeddings`, where the body's `model` is
//! the deployment.
//!
//! With `--entra-client`, a request may instead bring an Entra ID access token as
//! `Authorization: Bearer`: one the mock's token endpoint issued for
//! `https://cognitiveservices.azure.com/.default` and not expired. It is counted by key as
//! `entra:<client_id>` (an unknown token as itself); a refused one gets Azure's 401
//! `{"statusCode": 401, "message": ...}`, the reason in `x-mock-token-error`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::entra::Refusal;
use super::error::{bearer_token, ApiError, Wire};
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

/// Who an Azure request is from, for the stats, and whether it may pass. An `api-key` is checked
/// as keys are ([`MockState::authenticate`]); else, with `--entra-client`, a bearer token must be
/// an Entra token the mock accepts; without it, a bearer token is a key like `api-key`.
fn caller<'h>(state: &MockState, headers: &'h HeaderMap) -> (Cow<'h, str>, Result<(), ApiError>) {
    let has_api_key = headers.contains_key("api-key");
    match bearer_token(headers) {
        Some(token) if !has_api_key && state.entra.is_enabled() => {
            let (label, checked) = state.entra.check(token);
            let refused = |refusal: Refusal| ApiError::azure_token_refused(refusal.reason());
            (label, checked.map_err(refused))
        }
        _ => {
            let key = Wire::Azure.api_key(headers);
            (Cow::Borrowed(key), state.authenticate(Wire::Azure, key))
        }
    }
}

/// An Azure request: its caller checked, then served as `route` by `respond`.
async fn serve(
    state: &MockState,
    headers: &HeaderMap,
    route: Route,
    respond: impl FnOnce(Pace) -> Result<Response, ApiError>,
) -> Response {
    let (key, checked) = caller(state, headers);
    state
        .serve_checked(Wire::Azure, route, &key, checked, respond)
        .await
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
    serve(state, headers, route, respond).await
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

/// The deployment a v1 call names: its body's `model`.
fn body_deployment(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|b| b.get("model").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_default()
}

/// `POST /openai/v1/chat/completions`: the deployment is the body's `model`.
pub async fn v1_chat_completions(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.stats.record_deployment(&body_deployment(&body));
    serve(&state, &headers, Route::ChatCompletions, |pace| {
        openai::complete(&state, pace, &body)
    })
    .await
}

/// `POST /openai/v1/embeddings`: the deployment is the body's `model`.
pub async fn v1_embeddings(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.stats.record_deployment(&body_deployment(&body));
    serve(&state, &headers, Route::Embeddings, |_| {
        embeddings::embed_request(&state, &body)
    })
    .await
}
