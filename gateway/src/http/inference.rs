//! Inference routes: the [`InferenceRequest`] extractor (virtual key, body under the size
//! limit, parse), the handlers (governance, dispatch, the answer in the caller's format) and
//! the checks on the caller's body. Request metrics and the access log are the
//! [`super::observe`] middleware's; translation is [`super::translation`]'s table.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::{Map, Value};

use super::capped_json::ElementLimits;
use super::errors::{rate_limit_headers, ApiError, Dialect};
use super::observe::Served;
use super::stream::{sse_response, UsageTap};
use super::translation::{Answering, Translation, UpstreamBodies};
use crate::error::GatewayError;
use crate::governance::index::VirtualKey;
use crate::governance::strict::StrictLimits;
use crate::governance::usage::{self, StreamUsage, TokenUsage};
use crate::governance::{self, now_ms, Charge, ExpectedUsage};
use crate::providers::ForwardedHeaders;
use crate::routing::{dispatch, Reply, Target};
use crate::state::{AppState, Runtime};

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
    /// Every inference route.
    pub const ALL: [Route; 3] = [Route::ChatCompletions, Route::Embeddings, Route::Messages];

    /// The route's path, also its metrics label.
    pub fn path(self) -> &'static str {
        match self {
            Route::ChatCompletions => "/v1/chat/completions",
            Route::Embeddings => "/v1/embeddings",
            Route::Messages => "/anthropic/v1/messages",
        }
    }

    /// The route whose path is `path`.
    pub fn from_path(path: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|route| route.path() == path)
    }

    /// The dialect callers of this route speak.
    pub fn dialect(self) -> Dialect {
        match self {
            Route::ChatCompletions | Route::Embeddings => Dialect::OpenAi,
            Route::Messages => Dialect::Anthropic,
        }
    }
}

/// An inference route as a type, so that a handler's extractor knows its route:
/// `InferenceRequest<ChatCompletions>`.
pub trait InferenceRoute: Send + 'static {
    /// The route.
    const ROUTE: Route;
}

/// `POST /v1/chat/completions` as a type.
pub struct ChatCompletions;

impl InferenceRoute for ChatCompletions {
    const ROUTE: Route = Route::ChatCompletions;
}

/// `POST /v1/embeddings` as a type.
pub struct Embeddings;

impl InferenceRoute for Embeddings {
    const ROUTE: Route = Route::Embeddings;
}

/// `POST /anthropic/v1/messages` as a type.
pub struct Messages;

impl InferenceRoute for Messages {
    const ROUTE: Route = Route::Messages;
}

/// `POST /v1/chat/completions`
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    request: InferenceRequest<ChatCompletions>,
) -> Result<Response, ApiError> {
    serve(&state, request).await
}

/// `POST /v1/embeddings`
pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    request: InferenceRequest<Embeddings>,
) -> Result<Response, ApiError> {
    serve(&state, request).await
}

/// `POST /anthropic/v1/messages`
pub async fn messages(
    State(state): State<Arc<AppState>>,
    request: InferenceRequest<Messages>,
) -> Result<Response, ApiError> {
    serve(&state, request).await
}

/// An inference request for route `R`, checked in this order: the virtual key (401/403
/// before the body is read), the body under `client.max_request_body_size_mb` (413) and
/// `server.body_read_timeout_seconds` (408), then parsed under the element caps and into
/// targets (400/404). Rejections are in `R`'s dialect.
pub struct InferenceRequest<R> {
    /// The config version the request was checked against and is served with.
    runtime: Arc<Runtime>,
    /// The caller's virtual key, when it sent one.
    vk: Option<Arc<VirtualKey>>,
    /// Caller headers forwarded upstream.
    forwarded: ForwardedHeaders,
    request: ParsedRequest,
    /// Size of the body as received.
    body_len: usize,
    route: PhantomData<fn() -> R>,
}

impl<R: InferenceRoute> FromRequest<Arc<AppState>> for InferenceRequest<R> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let route = R::ROUTE;
        let reject = |error| ApiError::new(route.dialect(), error);
        let (parts, body) = request.into_parts();
        let headers = &parts.headers;
        let runtime = state.runtime.load_full();
        let vk = runtime
            .governance
            .authenticate(headers)
            .inspect_err(|e| state.metrics.governance_rejection(e))
            .map_err(reject)?;
        let limit_mb = runtime.config.client.max_request_body_size_mb;
        let bytes = super::body::read_limited(
            headers,
            body,
            runtime.config.client.max_request_body_bytes(),
            limit_mb,
        )
        .await
        .map_err(reject)?;
        let limits = ElementLimits::from_config(&runtime.config.client);
        let request = parse_request(&runtime.routing, route, &bytes, &limits, vk.as_deref())
            .map_err(reject)?;
        // The raw bytes are not needed once parsed; a large body should not be held twice.
        let body_len = bytes.len();
        drop(bytes);
        let mut forwarded = ForwardedHeaders::from_headers(headers);
        forwarded.direct_key =
            crate::providers::direct_key(headers, runtime.config.client.allow_direct_keys)
                .map_err(reject)?;
        Ok(Self {
            forwarded,
            runtime,
            vk,
            request,
            body_len,
            route: PhantomData,
        })
    }
}

/// Serve an extracted request; failures carry what was served for the metrics.
async fn serve<R: InferenceRoute>(
    state: &AppState,
    request: InferenceRequest<R>,
) -> Result<Response, ApiError> {
    let mut served = Served::default();
    match respond(state, request, &mut served).await {
        Ok(mut response) => {
            response.extensions_mut().insert(served);
            Ok(response)
        }
        Err(error) => Err(ApiError::new(R::ROUTE.dialect(), error).served_by(served)),
    }
}

/// Governance, dispatch and the answer; `served` follows the target in charge (the first one
/// until another answered).
async fn respond<R: InferenceRoute>(
    state: &AppState,
    request: InferenceRequest<R>,
    served: &mut Served,
) -> Result<Response, GatewayError> {
    let route = R::ROUTE;
    let InferenceRequest {
        runtime,
        vk,
        forwarded,
        mut request,
        body_len,
        ..
    } = request;
    if let Some(first) = request.targets.first() {
        served.provider = first.provider.name.clone();
        served.model = first.model.clone();
    }
    let charge = match &vk {
        Some(vk) => Some(
            governance::admit(
                &runtime.governance,
                &state.counters,
                state.cluster.get().map(|c| c.as_ref() as &dyn StrictLimits),
                vk,
                &mut request.targets,
                ExpectedUsage::of(&request.body, body_len, route != Route::Embeddings),
            )
            .await
            .inspect_err(|e| state.metrics.governance_rejection(e))?,
        ),
        None => None,
    };
    // Usage must be seen to be charged: ask OpenAI-format upstreams for the usage chunk, and
    // hide it again from callers who did not ask for it.
    let force_usage = request.stream && charge.is_some() && !request.include_usage;
    let base64_embeddings = route == Route::Embeddings
        && request.body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let bodies = UpstreamBodies::prepare(
        route,
        std::mem::take(&mut request.body),
        body_len,
        &request.targets,
        request.stream,
        force_usage,
    );
    let dispatched = dispatch(
        &state.client,
        &state.metrics,
        &request.targets,
        request.stream,
        &forwarded,
        |target| bodies.for_target(target),
    )
    .await?;
    drop(bodies);
    let target = &request.targets[dispatched.target_index];
    served.provider = target.provider.name.clone();
    served.model = target.model.clone();
    let translation = Translation::between(route.dialect(), target.kind);
    let mut limit_headers = HeaderMap::new();
    if let Some(charge) = &charge {
        limit_headers_of(charge, &mut limit_headers);
    }
    let mut response = match dispatched.reply {
        Reply::Full(bytes) => {
            if let Some(charge) = charge {
                let reported = dispatched.input_tokens.map(|prompt| TokenUsage {
                    prompt,
                    completion: 0,
                });
                let usage = usage::from_json(&bytes).or(reported).unwrap_or(TokenUsage {
                    prompt: charge.prompt_estimate,
                    completion: 0,
                });
                let provider = &target.provider.name;
                let deployment = dispatched.deployment.as_deref();
                let model = charge.priced_model(provider, &target.model, deployment);
                let model = model.to_owned();
                charge.settle(provider, &model, usage);
            }
            let answering = Answering {
                model: &target.model,
                base64_embeddings,
                input_tokens: dispatched.input_tokens,
            };
            json_response(translation.response_body(
                route,
                &target.provider.name,
                &answering,
                bytes,
            )?)
        }
        Reply::Stream(upstream) => {
            let translator = translation.stream_translator(request.include_usage);
            let tap = charge.map(|charge| UsageTap {
                usage: StreamUsage::default(),
                strip_usage_chunks: force_usage && translator.is_none(),
                provider: target.provider.name.clone(),
                model: charge
                    .priced_model(
                        &target.provider.name,
                        &target.model,
                        dispatched.deployment.as_deref(),
                    )
                    .to_owned(),
                charge,
            });
            let idle = target.provider.network.stream_idle_timeout_in_seconds;
            sse_response(
                upstream,
                translator,
                tap,
                translation.framing(),
                route.dialect(),
                dispatched.slot,
                Duration::from_secs(idle),
            )
        }
    };
    response.headers_mut().extend(limit_headers);
    if let Ok(value) = HeaderValue::try_from(target.provider.name.as_str()) {
        response.headers_mut().insert("x-bifrost-provider", value);
    }
    // Only an answer subtracts the upstream wait from the overhead.
    served.upstream_wait = dispatched.upstream_wait;
    Ok(response)
}

/// A complete answer, already in the caller's format.
fn json_response(bytes: bytes::Bytes) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

/// The caller's request, parsed.
struct ParsedRequest {
    /// Body without `model` and `fallbacks`.
    body: Map<String, Value>,
    stream: bool,
    include_usage: bool,
    targets: Vec<Target>,
}

/// `x-ratelimit-*` headers for the virtual key's request and token limits.
fn limit_headers_of(charge: &Charge, headers: &mut HeaderMap) {
    let now = now_ms();
    for (metric, status) in charge.limits() {
        let seconds = (status.reset_at_ms.saturating_sub(now).max(0) as u64).div_ceil(1000);
        rate_limit_headers(
            headers,
            metric.as_str(),
            status.limit,
            status.remaining,
            seconds,
        );
    }
}

/// Most fallbacks one request may name.
const MAX_FALLBACKS: usize = 100;

fn parse_request(
    routing: &crate::routing::RoutingTable,
    route: Route,
    bytes: &[u8],
    limits: &ElementLimits,
    vk: Option<&VirtualKey>,
) -> Result<ParsedRequest, GatewayError> {
    // Caps are checked while parsing: an oversized body is refused before it is built.
    let mut body = super::capped_json::parse_json_object(bytes, limits)?;
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
        Some(Value::Array(items)) if items.len() > MAX_FALLBACKS => {
            return Err(GatewayError::InvalidRequest(format!(
                "fallbacks: at most {MAX_FALLBACKS} fallbacks per request (this one has {})",
                items.len()
            )))
        }
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
        Some(vk) if !model.contains('/') && default_provider.is_none() => {
            match governance::provider_for_bare_model(vk, routing, &model) {
                Some(provider) => format!("{provider}/{model}"),
                None => model,
            }
        }
        _ => model,
    };
    let mut targets = Vec::with_capacity(1 + fallbacks.len());
    for reference in std::iter::once(&model).chain(fallbacks.iter()) {
        let target = routing.resolve(reference, default_provider)?;
        if route == Route::Embeddings {
            embeddings_served_by(&target)?;
        }
        let request_type = match (route, stream) {
            (Route::Embeddings, _) => "embedding",
            (_, true) => "chat_completion_stream",
            (_, false) => "chat_completion",
        };
        if !target.provider.allows_request(request_type) {
            return Err(GatewayError::InvalidRequest(format!(
                "provider \"{}\" does not take {request_type} requests (its custom_provider_config.allowed_requests)",
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

/// Embeddings go only where the translation table has an embeddings operation for the
/// provider's format (none for Anthropic's), and not to Vertex AI, whose Gemini format has no
/// `batchEmbedContents` there. (A Bedrock model that is not a Titan or Cohere embedding model
/// is refused once its body is built.)
fn embeddings_served_by(target: &Target) -> Result<(), GatewayError> {
    let provider = &target.provider;
    let format = match provider.vertex {
        true => "Vertex AI",
        false => provider.kind.as_str(),
    };
    let served = !provider.vertex
        && Translation::between(Dialect::OpenAi, provider.kind).serves_embeddings();
    match served {
        true => Ok(()),
        false => Err(GatewayError::Unsupported(format!(
            "provider \"{}\" ({format}) has no embeddings endpoint the gateway speaks",
            provider.name
        ))),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayConfig;
    use crate::http::errors::error_response;
    use crate::providers::{translate, UpstreamOp};
    use crate::routing::RoutingTable;
    use crate::telemetry::metrics::Metrics;
    use serde_json::json;

    fn routing() -> RoutingTable {
        let config: GatewayConfig = serde_json::from_value(json!({
            "providers": {
                "openai": {"keys": [{"name": "k", "value": "sk-o", "models": ["*"]}]},
                "anthropic": {"keys": [{"name": "k", "value": "sk-a", "models": ["*"]}]}
            }
        }))
        .expect("config parses");
        RoutingTable::build(&config, &Metrics::new(), None).expect("routing builds")
    }

    fn limits() -> ElementLimits {
        ElementLimits {
            messages: 3,
            content_blocks: 4,
            tools: 2,
            stop_sequences: 2,
            json_values: 200,
        }
    }

    /// The status and error message `route` answers `body` with, in its dialect's shape.
    async fn refusal(route: Route, body: Value) -> (StatusCode, String) {
        let bytes = serde_json::to_vec(&body).expect("encodes");
        let error = match parse_request(&routing(), route, &bytes, &limits(), None) {
            Ok(_) => panic!("{body} was accepted"),
            Err(error) => error,
        };
        let response = error_response(route.dialect(), &error);
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("error body");
        let json: Value = serde_json::from_slice(&bytes).expect("error JSON");
        if route.dialect() == Dialect::Anthropic {
            assert_eq!(json["type"], "error", "{json}");
            assert_eq!(json["error"]["type"], "invalid_request_error", "{json}");
        } else {
            assert_eq!(json["error"]["code"], "invalid_request", "{json}");
        }
        let message = json["error"]["message"].as_str().unwrap_or_default();
        (status, message.to_owned())
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": text})
    }

    fn chat(messages: Vec<Value>) -> Value {
        json!({"model": "openai/gpt-4o-mini", "messages": messages})
    }

    fn anthropic(messages: Vec<Value>) -> Value {
        json!({"model": "claude-3-5-haiku", "max_tokens": 16, "messages": messages})
    }

    #[tokio::test]
    async fn too_many_messages_are_refused_in_both_dialects() {
        for (route, body) in [
            (Route::ChatCompletions, chat(vec![user("hi"); 5])),
            (Route::Messages, anthropic(vec![user("hi"); 5])),
        ] {
            let (status, message) = refusal(route, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(
                message,
                "messages: at most 3 messages per request (this one has 5)"
            );
        }
    }

    #[tokio::test]
    async fn content_blocks_are_counted_across_messages() {
        let block = json!({"type": "text", "text": "hi"});
        let message = json!({"role": "user", "content": [block, block, block]});
        for (route, body) in [
            (
                Route::ChatCompletions,
                chat(vec![message.clone(), message.clone()]),
            ),
            (Route::Messages, anthropic(vec![message.clone(), message])),
        ] {
            let (status, message) = refusal(route, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(
                message.starts_with("messages[].content: at most 4 content blocks per request"),
                "{message}"
            );
            assert!(message.ends_with("(this one has 6)"), "{message}");
        }
    }

    #[tokio::test]
    async fn tool_calls_and_tool_result_contents_count_as_content_blocks() {
        let call =
            json!({"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}});
        let body = chat(vec![
            json!({"role": "assistant", "content": null, "tool_calls": [call, call, call]}),
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c", "content": [{"type": "text", "text": "x"}]}]}),
        ]);
        let (_, message) = refusal(Route::ChatCompletions, body).await;
        assert!(message.ends_with("(this one has 5)"), "{message}");
    }

    #[tokio::test]
    async fn too_many_tools_are_refused_in_both_dialects() {
        let mut chat_body = chat(vec![user("hi")]);
        chat_body["tools"] = json!([{}, {}, {}]);
        let mut messages_body = anthropic(vec![user("hi")]);
        messages_body["tools"] = json!([{}, {}, {}]);
        for (route, body) in [
            (Route::ChatCompletions, chat_body),
            (Route::Messages, messages_body),
        ] {
            let (status, message) = refusal(route, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(
                message,
                "tools: at most 2 tools per request (this one has 3)"
            );
        }
    }

    #[tokio::test]
    async fn too_many_stop_sequences_are_refused_naming_the_field() {
        let mut chat_body = chat(vec![user("hi")]);
        chat_body["stop"] = json!(["a", "b", "c"]);
        let (status, message) = refusal(Route::ChatCompletions, chat_body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            message,
            "stop: at most 2 stop sequences per request (this one has 3)"
        );
        let mut messages_body = anthropic(vec![user("hi")]);
        messages_body["stop_sequences"] = json!(["a", "b", "c", "d"]);
        let (status, message) = refusal(Route::Messages, messages_body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            message,
            "stop_sequences: at most 2 stop sequences per request (this one has 4)"
        );
    }

    #[tokio::test]
    async fn json_values_hidden_in_any_field_are_capped() {
        let mut body = chat(vec![user("hi")]);
        body["metadata"] = json!({"junk": vec![json!({"a": 0}); 300]});
        let (status, message) = refusal(Route::ChatCompletions, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            message
                .starts_with("request body: at most 200 JSON values per request (this one has 6"),
            "{message}"
        );
        body["model"] = json!("claude-3-5-haiku");
        body["max_tokens"] = json!(16);
        let (status, _) = refusal(Route::Messages, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn too_many_fallbacks_are_refused() {
        let mut body = chat(vec![user("hi")]);
        body["fallbacks"] = json!(vec!["openai/gpt-4o"; MAX_FALLBACKS + 1]);
        let bytes = serde_json::to_vec(&body).expect("encodes");
        let unlimited = ElementLimits {
            json_values: 1_000,
            ..limits()
        };
        match parse_request(&routing(), Route::ChatCompletions, &bytes, &unlimited, None) {
            Err(GatewayError::InvalidRequest(message)) => assert_eq!(
                message,
                format!(
                    "fallbacks: at most {MAX_FALLBACKS} fallbacks per request (this one has 101)"
                )
            ),
            other => panic!("expected a refusal, got {:?}", other.err()),
        }
    }

    #[test]
    fn a_body_at_every_cap_is_accepted_unchanged() {
        let block = json!({"type": "text", "text": "hi"});
        let mut body = anthropic(vec![
            json!({"role": "user", "content": [block, block]}),
            json!({"role": "assistant", "content": [block]}),
            json!({"role": "user", "content": [block]}),
        ]);
        body["tools"] = json!([{"name": "a"}, {"name": "b"}]);
        body["stop_sequences"] = json!(["x", "y"]);
        let bytes = serde_json::to_vec(&body).expect("encodes");
        let parsed = parse_request(&routing(), Route::Messages, &bytes, &limits(), None)
            .unwrap_or_else(|e| panic!("refused: {e}"));
        let mut expected = body.as_object().cloned().expect("object");
        expected.remove("model");
        assert_eq!(parsed.body, expected);
    }

    #[test]
    fn a_translated_body_carries_the_target_model_and_the_same_fields() {
        let body = chat(vec![user("hi")]);
        let bytes = serde_json::to_vec(&body).expect("encodes");
        let mut request = parse_request(
            &routing(),
            Route::ChatCompletions,
            &bytes,
            &ElementLimits::from_config(&crate::config::ClientConfig::default()),
            None,
        )
        .expect("accepted");
        request.targets[0] = routing()
            .resolve("anthropic/claude-3-5-haiku", None)
            .expect("resolves");
        let expected = translate::chat_request_to_messages(&request.body, "claude-3-5-haiku")
            .expect("translates");
        let bodies = UpstreamBodies::prepare(
            Route::ChatCompletions,
            std::mem::take(&mut request.body),
            bytes.len(),
            &request.targets,
            false,
            false,
        );
        let upstream = bodies
            .for_target(&request.targets[0])
            .unwrap_or_else(|e| panic!("no body: {e}"));
        assert_eq!(upstream.op, UpstreamOp::Messages);
        let sent: Value = serde_json::from_slice(&upstream.body).expect("JSON");
        assert_eq!(sent, expected);
    }

    /// The bodies `body` is sent as to an OpenAI and an Anthropic target, in that order.
    fn sent_bodies(route: Route, body: Value, force_usage: bool) -> Vec<(UpstreamOp, Value)> {
        let bytes = serde_json::to_vec(&body).expect("encodes");
        let limits = ElementLimits::from_config(&crate::config::ClientConfig::default());
        let mut request =
            parse_request(&routing(), route, &bytes, &limits, None).expect("accepted");
        let targets = [
            routing().resolve("openai/gpt-4o-mini", None),
            routing().resolve("anthropic/claude-3-5-haiku", None),
        ]
        .map(|target| target.expect("resolves"));
        let bodies = UpstreamBodies::prepare(
            route,
            std::mem::take(&mut request.body),
            bytes.len(),
            &targets,
            request.stream,
            force_usage,
        );
        targets
            .iter()
            .map(|target| {
                let upstream = bodies
                    .for_target(target)
                    .unwrap_or_else(|e| panic!("no body: {e}"));
                let sent = serde_json::from_slice(&upstream.body).expect("JSON");
                (upstream.op, sent)
            })
            .collect()
    }

    #[test]
    fn a_passed_through_openai_stream_asks_for_usage_only_when_charging_needs_it() {
        let mut body = chat(vec![user("hi")]);
        body["stream"] = json!(true);
        body["max_tokens"] = json!(16);
        for force_usage in [false, true] {
            let sent = sent_bodies(Route::ChatCompletions, body.clone(), force_usage);
            let (op, openai) = &sent[0];
            assert_eq!(*op, UpstreamOp::ChatCompletions);
            assert_eq!(openai["model"], "gpt-4o-mini");
            let asked = openai["stream_options"]["include_usage"] == json!(true);
            assert_eq!(asked, force_usage, "{openai}");
            let (op, anthropic) = &sent[1];
            assert_eq!(*op, UpstreamOp::Messages);
            assert_eq!(anthropic["model"], "claude-3-5-haiku");
            assert!(anthropic.get("stream_options").is_none(), "{anthropic}");
        }
    }

    #[test]
    fn bedrock_embeddings_take_the_body_of_the_model_family_the_keys_send() {
        let config: GatewayConfig = serde_json::from_value(json!({
            "providers": {"bedrock": {"keys": [{"name": "k", "models": ["*"],
                "bedrock_key_config": {"access_key": "AKID", "secret_key": "s",
                    "deployments": {"titan": "amazon.titan-embed-text-v2:0",
                                    "cohere": "cohere.embed-multilingual-v3"}}}]}}
        }))
        .expect("config parses");
        let routing = RoutingTable::build(&config, &Metrics::new(), None).expect("routing builds");
        let sent = |model: &str, input: Value| {
            let body = json!({"model": model, "input": input});
            let bytes = serde_json::to_vec(&body).expect("encodes");
            let limits = ElementLimits::from_config(&crate::config::ClientConfig::default());
            let mut request = parse_request(&routing, Route::Embeddings, &bytes, &limits, None)
                .expect("accepted");
            let bodies = UpstreamBodies::prepare(
                Route::Embeddings,
                std::mem::take(&mut request.body),
                bytes.len(),
                &request.targets,
                false,
                false,
            );
            bodies.for_target(&request.targets[0]).map(|upstream| {
                let sent: Value = serde_json::from_slice(&upstream.body).expect("JSON");
                (upstream.op, sent)
            })
        };
        let (op, titan) = sent("bedrock/titan", json!("hi")).expect("titan body");
        assert_eq!(op, UpstreamOp::InvokeModel);
        assert_eq!(titan, json!({"inputText": "hi"}));
        let (_, cohere) = sent("bedrock/cohere", json!(["a", "b"])).expect("cohere body");
        assert_eq!(
            cohere,
            json!({"texts": ["a", "b"], "input_type": "search_document"})
        );
        match sent("bedrock/claude", json!("hi")) {
            Err(GatewayError::InvalidRequest(message)) => assert!(
                message.contains("is not an embedding model the gateway speaks on Bedrock"),
                "{message}"
            ),
            other => panic!("expected a refusal, got {:?}", other.map(|(_, body)| body)),
        }
    }

    #[test]
    fn an_anthropic_body_goes_as_it_is_to_anthropic_and_translated_to_openai() {
        let mut body = anthropic(vec![user("hi")]);
        body["model"] = json!("claude-3-5-haiku");
        let sent = sent_bodies(Route::Messages, body.clone(), false);
        let (op, openai) = &sent[0];
        assert_eq!(*op, UpstreamOp::ChatCompletions);
        let mut caller = body.as_object().cloned().expect("object");
        caller.remove("model");
        let expected =
            translate::messages_request_to_chat(&caller, "gpt-4o-mini").expect("translates");
        assert_eq!(openai, &expected);
        let (op, anthropic) = &sent[1];
        assert_eq!(*op, UpstreamOp::Messages);
        assert_eq!(anthropic, &body);
    }
}
