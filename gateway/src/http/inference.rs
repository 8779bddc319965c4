//! Inference routes: parse the caller's request, resolve targets, dispatch, and answer in the
//! caller's format (translating when the provider speaks the other one).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

use super::accounting;
use super::errors::{error_response, Dialect};
use super::stream::{sse_response, InFlight, UsageTap};
use crate::config::ProviderKind;
use crate::error::GatewayError;
use crate::governance::index::VirtualKey;
use crate::governance::usage::{self, StreamUsage, TokenUsage};
use crate::providers::translate::{self, ChatStreamToMessages, MessagesStreamToChat};
use crate::providers::{ForwardedHeaders, UpstreamOp};
use crate::routing::{dispatch, Reply, Target, UpstreamBody};
use crate::state::AppState;
use crate::telemetry::metrics::{RequestLabels, RouteLabels};

/// The inference routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `POST /anthropic/v1/messages`
    Messages,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Route::ChatCompletions => "/v1/chat/completions",
            Route::Embeddings => "/v1/embeddings",
            Route::Messages => "/anthropic/v1/messages",
        }
    }

    fn dialect(self) -> Dialect {
        match self {
            Route::ChatCompletions | Route::Embeddings => Dialect::OpenAi,
            Route::Messages => Dialect::Anthropic,
        }
    }
}

/// `POST /v1/chat/completions`
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, Route::ChatCompletions, headers, body).await
}

/// `POST /v1/embeddings`
pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, Route::Embeddings, headers, body).await
}

/// `POST /anthropic/v1/messages`
pub async fn messages(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, Route::Messages, headers, body).await
}

/// Which provider and model a request ended up with, for metrics and logs.
#[derive(Default)]
struct Served {
    provider: String,
    model: String,
}

async fn handle(state: Arc<AppState>, route: Route, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let in_flight = InFlight::new(&state.metrics);
    let mut served = Served::default();
    let (response, upstream_wait) =
        match serve(&state, route, &headers, body, &mut served, in_flight).await {
            Ok(done) => done,
            Err(error) => (
                error_response(route.dialect(), &error),
                std::time::Duration::ZERO,
            ),
        };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state.traffic.record(status);
    let metrics = &state.metrics;
    let route_labels = RouteLabels {
        route: route.path(),
    };
    metrics
        .request_duration
        .get_or_create(&route_labels)
        .observe(elapsed.as_secs_f64());
    metrics
        .overhead_duration
        .get_or_create(&route_labels)
        .observe(elapsed.saturating_sub(upstream_wait).as_secs_f64());
    if served.provider.is_empty() {
        served.provider = "none".into();
    }
    if state.runtime.load().config.client.enable_logging {
        tracing::info!(route = route.path(), provider = %served.provider, model = %served.model, status, latency_ms = elapsed.as_secs_f64() * 1000.0, "request");
    }
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.path(),
            provider: served.provider,
            model: served.model,
            status,
        })
        .inc();
    response
}

/// The caller's request, parsed.
struct ParsedRequest {
    /// Body without `model` and `fallbacks`.
    body: Map<String, Value>,
    stream: bool,
    include_usage: bool,
    targets: Vec<Target>,
}

async fn serve(
    state: &Arc<AppState>,
    route: Route,
    headers: &HeaderMap,
    body: Body,
    served: &mut Served,
    in_flight: InFlight,
) -> Result<(Response, std::time::Duration), GatewayError> {
    let runtime = state.runtime.load_full();
    let vk = runtime
        .governance
        .authenticate(headers)
        .inspect_err(|e| state.metrics.governance_rejection(e))?;
    let limit_mb = runtime.config.client.max_request_body_size_mb;
    let bytes = super::body::read_limited(
        headers,
        body,
        runtime.config.client.max_request_body_bytes(),
        limit_mb,
    )
    .await?;
    let mut request = parse_request(&runtime.routing, route, &bytes, vk.as_deref())?;
    if let Some(first) = request.targets.first() {
        served.provider = first.provider.name.clone();
        served.model = first.model.clone();
    }
    let charge = match &vk {
        Some(vk) => Some(
            accounting::admit(
                state,
                &runtime,
                vk,
                &mut request.targets,
                &request.body,
                bytes.len(),
                route != Route::Embeddings,
            )
            .await
            .inspect_err(|e| state.metrics.governance_rejection(e))?,
        ),
        None => None,
    };
    // Usage must be seen to be charged: ask OpenAI-format upstreams for the usage chunk, and
    // hide it again from callers who did not ask for it.
    let force_usage = request.stream && charge.is_some() && !request.include_usage;
    let forwarded = ForwardedHeaders::from_headers(headers);
    let dispatched = dispatch(
        &state.client,
        &state.metrics,
        &request.targets,
        request.stream,
        &forwarded,
        |target| upstream_body(route, &request.body, target, force_usage),
    )
    .await?;
    let target = &request.targets[dispatched.target_index];
    served.provider = target.provider.name.clone();
    served.model = target.model.clone();
    let kind = target.provider.kind;
    let mut limit_headers = HeaderMap::new();
    if let Some(charge) = &charge {
        charge.headers(&mut limit_headers);
    }
    let mut response = match dispatched.reply {
        Reply::Full(bytes) => {
            if let Some(charge) = charge {
                let usage = usage::from_json(&bytes).unwrap_or(TokenUsage {
                    prompt: charge.prompt_estimate,
                    completion: 0,
                });
                charge.settle(&target.provider.name, &target.model, usage);
            }
            json_response(route, kind, &target.provider.name, bytes)?
        }
        Reply::Stream(upstream) => {
            let translator: Option<Box<dyn crate::providers::sse::StreamTranslator>> =
                match (route.dialect(), kind) {
                    (Dialect::OpenAi, ProviderKind::Anthropic) => {
                        Some(Box::new(MessagesStreamToChat::new(request.include_usage)))
                    }
                    (Dialect::Anthropic, ProviderKind::Openai) => {
                        Some(Box::new(ChatStreamToMessages::new()))
                    }
                    _ => None,
                };
            let tap = charge.map(|charge| UsageTap {
                usage: StreamUsage::default(),
                strip_usage_chunks: force_usage && translator.is_none(),
                charge,
                provider: target.provider.name.clone(),
                model: target.model.clone(),
            });
            sse_response(
                upstream,
                translator,
                tap,
                route.dialect(),
                dispatched.slot,
                in_flight,
            )
        }
    };
    response.headers_mut().extend(limit_headers);
    if let Ok(value) = HeaderValue::try_from(target.provider.name.as_str()) {
        response.headers_mut().insert("x-bifrost-provider", value);
    }
    Ok((response, dispatched.upstream_wait))
}

fn parse_request(
    routing: &crate::routing::RoutingTable,
    route: Route,
    bytes: &Bytes,
    vk: Option<&VirtualKey>,
) -> Result<ParsedRequest, GatewayError> {
    let mut body = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(GatewayError::InvalidRequest(
                "request body must be a JSON object".into(),
            ))
        }
        Err(error) => {
            return Err(GatewayError::InvalidRequest(format!(
                "request body is not valid JSON: {error}"
            )))
        }
    };
    let model = match body.remove("model") {
        Some(Value::String(model)) => model,
        Some(_) => {
            return Err(GatewayError::InvalidRequest(
                "model: must be a string such as \"openai/gpt-4o-mini\"".into(),
            ))
        }
        None => {
            return Err(GatewayError::InvalidRequest(
                "model: required, e.g. \"openai/gpt-4o-mini\"".into(),
            ))
        }
    };
    let fallbacks = match body.remove("fallbacks") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(reference) => Ok(reference),
                _ => Err(GatewayError::InvalidRequest(format!(
                    "fallbacks[{i}]: must be a string such as \"anthropic/claude-3-5-haiku\""
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(GatewayError::InvalidRequest(
                "fallbacks: must be an array of \"provider/model\" strings".into(),
            ))
        }
    };
    match route {
        Route::ChatCompletions | Route::Messages => {
            if !body.get("messages").is_some_and(Value::is_array) {
                return Err(GatewayError::InvalidRequest(
                    "messages: required, an array of messages".into(),
                ));
            }
        }
        Route::Embeddings => {
            if body.get("input").is_none_or(Value::is_null) {
                return Err(GatewayError::InvalidRequest(
                    "input: required, a string or an array of strings".into(),
                ));
            }
        }
    }
    let stream =
        route != Route::Embeddings && body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let default_provider = (route == Route::Messages).then_some("anthropic");
    // A bare model name with a virtual key goes where the key's provider_configs say.
    let model = match vk {
        Some(vk)
            if !model.contains('/') && default_provider.is_none() && !vk.providers.is_empty() =>
        {
            match accounting::provider_for_bare_model(vk, routing, &model) {
                Some(provider) => format!("{provider}/{model}"),
                None => model,
            }
        }
        _ => model,
    };
    let mut targets = Vec::with_capacity(1 + fallbacks.len());
    for reference in std::iter::once(&model).chain(fallbacks.iter()) {
        let target = routing.resolve(reference, default_provider)?;
        if route == Route::Embeddings && target.provider.kind == ProviderKind::Anthropic {
            return Err(GatewayError::Unsupported(format!(
                "provider \"{}\" speaks the Anthropic API, which has no embeddings endpoint",
                target.provider.name
            )));
        }
        targets.push(target);
    }
    // After routing, so an unknown model is a 404 whatever the body holds.
    if route != Route::Embeddings {
        check_completion_body(route, &body)?;
    }
    Ok(ParsedRequest {
        body,
        stream,
        include_usage,
        targets,
    })
}

/// What chat and messages bodies must hold before anything is sent upstream: a non-empty
/// array of message objects with a string `role`, and token caps that are positive integers
/// within u32 (what providers accept).
fn check_completion_body(route: Route, body: &Map<String, Value>) -> Result<(), GatewayError> {
    let invalid = |message: String| Err(GatewayError::InvalidRequest(message));
    let messages = match body.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        Some(Value::Array(_)) => return invalid("messages: must not be empty".into()),
        _ => return invalid("messages: required, an array of messages".into()),
    };
    for (i, message) in messages.iter().enumerate() {
        let Some(message) = message.as_object() else {
            return invalid(format!("messages[{i}]: must be an object"));
        };
        if !message.get("role").is_some_and(Value::is_string) {
            return invalid(format!("messages[{i}].role: required, a string"));
        }
    }
    let caps: &[&str] = match route {
        Route::Messages => &["max_tokens"],
        _ => &["max_tokens", "max_completion_tokens"],
    };
    for cap in caps {
        match body.get(*cap) {
            None | Some(Value::Null) => {}
            Some(value)
                if value
                    .as_u64()
                    .is_some_and(|n| n > 0 && n <= u64::from(u32::MAX)) => {}
            Some(_) => {
                return invalid(format!(
                    "{cap}: must be a positive integer of at most {}",
                    u32::MAX
                ))
            }
        }
    }
    Ok(())
}

/// The caller's body with the model replaced, serialized without copying the body.
#[derive(Serialize)]
struct WithModel<'a> {
    model: &'a str,
    #[serde(flatten)]
    rest: &'a Map<String, Value>,
}

fn with_model(body: &Map<String, Value>, model: &str) -> Result<Bytes, GatewayError> {
    serde_json::to_vec(&WithModel { model, rest: body })
        .map(Bytes::from)
        .map_err(|e| GatewayError::InvalidRequest(format!("cannot re-encode the request: {e}")))
}

fn upstream_body(
    route: Route,
    body: &Map<String, Value>,
    target: &Target,
    force_usage: bool,
) -> Result<UpstreamBody, GatewayError> {
    let model = target.model.as_str();
    let (op, bytes) = match (route, target.provider.kind) {
        (Route::ChatCompletions, ProviderKind::Openai) if force_usage => {
            let mut body = body.clone();
            let options = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if !options.is_object() {
                *options = Value::Object(Map::new());
            }
            if let Some(options) = options.as_object_mut() {
                options.insert("include_usage".into(), Value::Bool(true));
            }
            (UpstreamOp::ChatCompletions, with_model(&body, model)?)
        }
        (Route::ChatCompletions, ProviderKind::Openai) => {
            (UpstreamOp::ChatCompletions, with_model(body, model)?)
        }
        (Route::Embeddings, _) => (UpstreamOp::Embeddings, with_model(body, model)?),
        (Route::Messages, ProviderKind::Anthropic) => {
            (UpstreamOp::Messages, with_model(body, model)?)
        }
        (Route::ChatCompletions, ProviderKind::Anthropic) => {
            let translated =
                translate::chat_request_to_messages(body, model).map_err(translate_error)?;
            (UpstreamOp::Messages, encode(&translated)?)
        }
        (Route::Messages, ProviderKind::Openai) => {
            let translated =
                translate::messages_request_to_chat(body, model).map_err(translate_error)?;
            (UpstreamOp::ChatCompletions, encode(&translated)?)
        }
    };
    Ok(UpstreamBody { op, body: bytes })
}

fn encode(value: &Value) -> Result<Bytes, GatewayError> {
    serde_json::to_vec(value).map(Bytes::from).map_err(|e| {
        GatewayError::InvalidRequest(format!("cannot encode the translated request: {e}"))
    })
}

fn translate_error(error: translate::TranslateError) -> GatewayError {
    match error {
        translate::TranslateError::InvalidRequest(message) => GatewayError::InvalidRequest(message),
        translate::TranslateError::InvalidResponse(message) => GatewayError::BadUpstreamResponse {
            provider: "upstream".into(),
            message,
        },
    }
}

/// A complete upstream answer in the caller's format.
fn json_response(
    route: Route,
    kind: ProviderKind,
    provider: &str,
    bytes: Bytes,
) -> Result<Response, GatewayError> {
    type Convert = fn(&Value) -> Result<Value, translate::TranslateError>;
    let translated: Option<Convert> = match (route.dialect(), kind) {
        (Dialect::OpenAi, ProviderKind::Anthropic) => Some(translate::messages_response_to_chat),
        (Dialect::Anthropic, ProviderKind::Openai) => Some(translate::chat_response_to_messages),
        _ => None,
    };
    let bytes = match translated {
        None => bytes,
        Some(convert) => {
            let bad = |message: String| GatewayError::BadUpstreamResponse {
                provider: provider.to_string(),
                message,
            };
            let upstream: Value =
                serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
            let converted = convert(&upstream).map_err(|e| bad(e.to_string()))?;
            encode(&converted)?
        }
    };
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response())
}
