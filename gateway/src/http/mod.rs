//! The HTTP surface: inference routes in OpenAI and Anthropic formats, and operational
//! endpoints.

pub mod admin;
pub mod body;
pub mod capped_json;
pub mod cluster;
pub mod cors;
pub mod errors;
pub mod inference;
pub mod models;
pub mod observe;
pub mod ops;
pub mod stream;
pub mod translation;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{middleware, Router};

use crate::error::GatewayError;
use crate::state::AppState;
use errors::{error_response, Dialect};

/// Every route, with state attached.
pub fn router(state: Arc<AppState>) -> Router {
    // On the POST handlers only: a wrong method's 405 is not an inference request.
    let observed = middleware::from_fn_with_state(state.clone(), observe::observe_inference);
    Router::new()
        .route(
            inference::Route::ChatCompletions.path(),
            post(inference::chat_completions).route_layer(observed.clone()),
        )
        .route(
            inference::Route::Embeddings.path(),
            post(inference::embeddings).route_layer(observed.clone()),
        )
        .route("/v1/models", get(models::list))
        .route(
            inference::Route::Messages.path(),
            post(inference::messages).route_layer(observed),
        )
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/cluster/status", get(cluster::status))
        .merge(admin::router(state.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), cors::cors))
        // Bodies are read under the configured limit by the handlers themselves.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn not_found(uri: http::Uri) -> Response {
    error_response(
        Dialect::for_path(uri.path()),
        &GatewayError::NotFound(format!("no route for {}", uri.path())),
    )
}
