//! CORS for browser clients of the inference API: `client.allowed_origins` and
//! `client.allowed_headers` (Bifrost's fields). A request from an allowed origin gets
//! `access-control-allow-origin` on its answer; a preflight (`OPTIONS` with
//! `access-control-request-method`) is answered here, 204 for an allowed origin and 403 with
//! the fix otherwise. Without `allowed_origins` nothing changes: no CORS headers, and
//! browsers refuse cross-origin calls. The admin API is not covered: it has its own origin
//! rule (`admin_allowed_origins`, http/admin/auth.rs).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};

use super::errors::{error_response, Dialect};
use crate::error::GatewayError;
use crate::state::AppState;

/// Request headers the inference API reads, always allowed.
const API_HEADERS: &str =
    "authorization, content-type, x-api-key, x-bf-vk, x-bf-direct-key, anthropic-version, anthropic-beta";
/// How long a browser may cache a preflight answer.
const MAX_AGE_SECONDS: &str = "600";

/// Whether `path` is served to browsers under CORS: inference and the model list.
fn covered(path: &str) -> bool {
    path.starts_with("/v1/") || path.starts_with("/anthropic/")
}

/// The middleware (on the whole router; it lets everything outside [`covered`] through).
pub async fn cors(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    if !covered(request.uri().path()) {
        return next.run(request).await;
    }
    let runtime = state.runtime.load();
    let client = &runtime.config.client;
    if client.allowed_origins.is_empty() {
        return next.run(request).await;
    }
    let allowed = origin
        .to_str()
        .is_ok_and(|o| client.allowed_origins.iter().any(|a| a == "*" || a == o));
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        if !allowed {
            let message = format!(
                "origin {:?} may not call this API from a browser; add it to client.allowed_origins",
                origin.to_str().unwrap_or("(not text)")
            );
            let dialect = Dialect::for_path(request.uri().path());
            return error_response(dialect, &GatewayError::Forbidden(message));
        }
        let mut allow_headers = API_HEADERS.to_string();
        for extra in &client.allowed_headers {
            allow_headers.push_str(", ");
            allow_headers.push_str(extra);
        }
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        // Validation keeps allowed_headers to header names, so this only fails on a bug.
        if let Ok(value) = HeaderValue::from_str(&allow_headers) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE_SECONDS),
        );
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
        return response;
    }
    drop(runtime);
    let mut response = next.run(request).await;
    if allowed {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}
