//! Google Vertex AI's Gemini endpoints (`aiplatform.googleapis.com`) as the `google-genai` SDKs
//! call them in Vertex mode: `POST /{version}/projects/{project}/locations/{location}/publishers/
//! google/models/{model}:generateContent` and `:streamGenerateContent` (SSE with `?alt=sse`, as
//! the SDKs ask; otherwise one JSON array), for `version` `v1` or `v1beta1` (the SDK's default)
//! and any location, `global` too. Bodies and answers are the Gemini API's (see [`gemini`]),
//! except that every content needs its `role`; errors are Google's `google.rpc.Status`, and any
//! other method is its 404 `NOT_FOUND`.
//!
//! Callers bring an OAuth2 access token as `Authorization: Bearer`. With
//! `--google-service-account`, it must be one the mock's token endpoint issued (see
//! [`google_oauth`]), not expired and for the `cloud-platform` scope; it is counted by key as
//! `sa:<client_email>` (an unknown token as itself). A refused one gets Google's 401
//! `UNAUTHENTICATED` (403 `PERMISSION_DENIED` for a token without the scope), the reason in
//! `x-mock-token-error`. Without `--google-service-account`, a bearer token is a key: any is
//! accepted unless `--require-key` names the keys. A request without one is always refused, as
//! Vertex AI refuses it. Every request is also counted by model, project and location.
//!
//! [`gemini`]: super::gemini
//! [`google_oauth`]: super::google_oauth

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::anthropic;
use super::error::{bearer_token, ApiError, Wire};
use super::gemini::{self, Api, Framing, Method};
use super::google_oauth::Refusal;
use super::stats::Route;
use super::{with_key_header, MockState};

/// The route a Vertex AI method is counted under: only the generation methods are served.
fn route(method: Method) -> Option<Route> {
    match method {
        Method::Generate => Some(Route::VertexGenerateContent),
        Method::Stream => Some(Route::VertexStreamGenerateContent),
        Method::Embed | Method::BatchEmbed => None,
    }
}

/// Who a Vertex AI request is from, for the stats, and whether it may pass (see the module's
/// documentation).
fn caller<'h>(state: &MockState, headers: &'h HeaderMap) -> (Cow<'h, str>, Result<(), ApiError>) {
    let Some(token) = bearer_token(headers).filter(|token| !token.is_empty()) else {
        let refused = ApiError::google_token_refused(Refusal::Missing);
        return (Cow::Borrowed(""), Err(refused));
    };
    if state.google.is_enabled() {
        let (label, checked) = state.google.check(token);
        return (label, checked.map_err(ApiError::google_token_refused));
    }
    let checked = state
        .authenticate(Wire::Gemini, token)
        .map_err(|_| ApiError::google_token_refused(Refusal::Unknown));
    (Cow::Borrowed(token), checked)
}

/// `POST /{version}/projects/{project}/locations/{location}/publishers/google/models/
/// {model}:{method}`: counted by route, key, model, project and location, the caller checked,
/// then answered as the Gemini API answers.
pub async fn call(
    State(state): State<Arc<MockState>>,
    Path((project, location, call)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, checked) = caller(&state, &headers);
    let Some((model, method, counted)) = gemini::split_call(&call).and_then(|(model, name)| {
        let method = Method::parse(name)?;
        Some((model, method, route(method)?))
    }) else {
        let error = ApiError::not_found(format!(
            "mock: no such method: projects/{project}/locations/{location}/publishers/google/\
             models/{call}"
        ));
        return with_key_header(error.render(Wire::Gemini), &key);
    };
    let framing = Framing::of(method, &query);
    state.stats.record_model(model);
    state.stats.record_vertex_resource(&project, &location);
    state
        .serve_checked(Wire::Gemini, counted, &key, checked, |pace| {
            gemini::generate(&state, Api::Vertex, pace, model, &body, framing)
        })
        .await
}

/// `POST /v1/publishers/google/models/{model}:{method}`: Vertex AI in express mode, an API
/// key (`x-goog-api-key` or `?key=`, checked against `--require-key` like the Gemini API's)
/// instead of a project and a token; counted by route, key and model.
pub async fn express_call(
    State(state): State<Arc<MockState>>,
    Path(call): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = match Wire::Gemini.api_key(&headers) {
        "" => query.get("key").cloned().unwrap_or_default(),
        key => key.to_owned(),
    };
    let checked = state.authenticate(Wire::Gemini, &key);
    let Some((model, method, counted)) = gemini::split_call(&call).and_then(|(model, name)| {
        let method = Method::parse(name)?;
        Some((model, method, route(method)?))
    }) else {
        let error = ApiError::not_found(format!(
            "mock: no such method: publishers/google/models/{call}"
        ));
        return with_key_header(error.render(Wire::Gemini), &key);
    };
    let framing = Framing::of(method, &query);
    state.stats.record_model(model);
    state
        .serve_checked(Wire::Gemini, counted, &key, checked, |pace| {
            gemini::generate(&state, Api::Vertex, pace, model, &body, framing)
        })
        .await
}

/// `POST /{version}/projects/{project}/locations/{location}/publishers/anthropic/models/
/// {model}:rawPredict` and `:streamRawPredict`: Claude on Vertex AI, Anthropic's Messages API
/// with the model in the URL and `anthropic_version` in the body (see [`anthropic::Surface`]).
/// The caller is checked as on Google's models (refusals in Google's format); the request
/// itself is answered, and refused, as Anthropic's API does.
///
/// [`anthropic::Surface`]: super::anthropic::Surface
pub async fn anthropic_call(
    State(state): State<Arc<MockState>>,
    Path((project, location, call)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, checked) = caller(&state, &headers);
    let method = gemini::split_call(&call).and_then(|(model, method)| match method {
        "rawPredict" => Some((model, false, Route::VertexRawPredict)),
        "streamRawPredict" => Some((model, true, Route::VertexStreamRawPredict)),
        _ => None,
    });
    let Some((model, stream, counted)) = method else {
        let error = ApiError::not_found(format!(
            "mock: no such method: projects/{project}/locations/{location}/publishers/\
             anthropic/models/{call}"
        ));
        return with_key_header(error.render(Wire::Gemini), &key);
    };
    state.stats.record_model(model);
    state.stats.record_vertex_resource(&project, &location);
    if let Err(refused) = checked {
        state.stats.record(counted, &key);
        return with_key_header(refused.render(Wire::Gemini), &key);
    }
    let surface = anthropic::Surface::Vertex { model, stream };
    state
        .serve_checked(Wire::Anthropic, counted, &key, Ok(()), |pace| {
            anthropic::reply(&state, pace, &body, surface)
        })
        .await
}

#[cfg(test)]
mod tests {
    use axum::http::{header, HeaderValue, StatusCode};

    use super::*;
    use crate::mock::MockConfig;

    fn bearer(token: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static(token));
        headers
    }

    #[test]
    fn only_the_generation_methods_are_served() {
        assert_eq!(route(Method::Generate), Some(Route::VertexGenerateContent));
        assert_eq!(
            route(Method::Stream),
            Some(Route::VertexStreamGenerateContent)
        );
        assert_eq!(route(Method::Embed), None);
        assert_eq!(route(Method::BatchEmbed), None);
    }

    #[test]
    fn without_service_accounts_a_bearer_token_is_a_key() {
        let state = MockState::new(&MockConfig::default());
        let headers = bearer("Bearer anything");
        let (key, checked) = caller(&state, &headers);
        assert_eq!((key.as_ref(), checked), ("anything", Ok(())));
        let none = HeaderMap::new();
        let (key, checked) = caller(&state, &none);
        assert_eq!(key, "");
        assert_eq!(checked.map_err(|error| error.kind), Err(Some("missing")));

        let state = MockState::new(&MockConfig {
            require_keys: vec!["good".to_owned()],
            ..MockConfig::default()
        });
        let headers = bearer("Bearer bad");
        let (_, checked) = caller(&state, &headers);
        let refused = checked.expect_err("not a required key");
        assert_eq!(
            (refused.status, refused.kind),
            (StatusCode::UNAUTHORIZED, Some("unknown"))
        );
        let good = bearer("Bearer good");
        assert!(caller(&state, &good).1.is_ok());
    }
}
