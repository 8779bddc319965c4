//! AWS Bedrock Runtime's Converse API as the AWS SDKs call it: `POST /model/{modelId}/converse`
//! (JSON) and `/model/{modelId}/converse-stream` (AWS event-stream frames, content type
//! `application/vnd.amazon.eventstream`). The model id is a path segment, a plain id
//! (`anthropic.claude-3-5-haiku-20241022-v1:0`) or a percent-encoded ARN; it is counted decoded.
//!
//! Callers are checked once the mock was told whom to accept: with `--aws-credentials`, a
//! request must be SigV4-signed ([`sigv4`]) by one of them, or by a role's temporary
//! credentials from the mock's STS ([`super::sts`], `--sts-role`) with their session token,
//! for the `bedrock` service, in any region (counted by region); with `--require-key`, a bearer token (a Bedrock API key) must be
//! one of the keys. Without either, any caller is accepted. Refusals are AWS's 403s:
//! `MissingAuthenticationTokenException` without credentials, `UnrecognizedClientException` for an
//! unknown access key id, `InvalidSignatureException` for a wrong signature,
//! `IncompleteSignatureException` for a malformed one. Every error, injected ones too, is AWS's
//! `{"message"}` with its type in `x-amzn-ErrorType`.
//!
//! Bodies are checked as strictly as AWS checks them: a field Converse does not have gets 400
//! `ValidationException` "Malformed input request: #<where>: extraneous key [<field>] is not
//! permitted", at the top, in `inferenceConfig`, `toolConfig` and its tools, and in messages and
//! their content blocks, each of which must set exactly one member. A conversation must start
//! with a user message and alternate roles, as AWS requires, with AWS's messages.
//!
//! The answer is `mock reply to: <last user text>`, with the token counts of [`prompt`]: the
//! words of the prompt (the system blocks' too) and one token per stream chunk, limited by
//! `inferenceConfig.maxTokens` (then `stopReason` is `max_tokens`). A request with tools gets a
//! `toolUse` of the first one (or of `toolChoice.tool`) instead, unless its last message answers
//! with a `toolResult`; one whose last user text holds [`BLOCK_MARKER`] gets the default answer
//! of a Bedrock guardrail, with `stopReason` `guardrail_intervened`.
//!
//! A request whose last user text holds [`THROTTLE_MARKER`] is throttled: Converse answers 429
//! `ThrottlingException`; ConverseStream starts answering (status 200, `messageStart` and the
//! first half of the text's chunks) and then sends a `throttlingException` exception message
//! (`:message-type: exception`, `:exception-type: throttlingException`), as Bedrock does when
//! throttling hits mid-stream.
//!
//! A stream is `messageStart`, then for text one `contentBlockDelta` per chunk (the chunk delay
//! between them) or for a tool `contentBlockStart` and one `contentBlockDelta` with the input as
//! JSON text, then `contentBlockStop`, `messageStop` and `metadata` (usage and metrics), each an
//! event-stream message with `:event-type`, `:content-type: application/json` and
//! `:message-type: event`.

use std::sync::Arc;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::error::{ApiError, Wire};
use super::gemini::BLOCK_MARKER;
use super::knobs::Pace;
use super::prompt::{self, Message as PromptMessage};
use super::sigv4::{self, Authorization};
use super::sse::paced_body;
use super::stats::Route;
use super::MockState;

/// The content type of ConverseStream's answer.
const EVENT_STREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// What a Bedrock guardrail answers a blocked prompt with by default.
const GUARDRAIL_MESSAGE: &str = "Sorry, the model cannot answer this question.";

/// Text in the last user message that makes the mock throttle the request (mid-stream for
/// ConverseStream).
pub const THROTTLE_MARKER: &str = "[[throttle]]";

/// Bedrock's message when it throttles a request.
const THROTTLED: &str = "Too many requests, please wait before trying again.";

/// AWS's message for an access key id it does not know (403 `UnrecognizedClientException`).
const UNKNOWN_ACCESS_KEY: &str = "The security token included in the request is invalid.";

/// AWS's message for a conversation that does not open with the user.
const MUST_START_WITH_USER: &str = "A conversation must start with a user message. Try again \
     with a conversation that starts with a user message.";

/// AWS's message for two messages of the same role in a row.
const MUST_ALTERNATE: &str = "A conversation must alternate between user and assistant roles. \
     Make sure the conversation alternates between user and assistant roles and try again.";

/// The fields of a `ConverseRequest` body (the model id is in the path), as the AWS SDKs'
/// service model lists them.
const REQUEST_FIELDS: &[&str] = &[
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "projectIdentifier",
    "additionalModelRequestFields",
    "promptVariables",
    "additionalModelResponseFieldPaths",
    "requestMetadata",
    "performanceConfig",
    "serviceTier",
    "outputConfig",
];

/// The fields of an `InferenceConfiguration`.
const INFERENCE_CONFIG_FIELDS: &[&str] = &["maxTokens", "temperature", "topP", "stopSequences"];

/// The fields of a `Message`.
const MESSAGE_FIELDS: &[&str] = &["role", "content"];

/// The members of the `ContentBlock` union: exactly one must be set.
const CONTENT_BLOCK_MEMBERS: &[&str] = &[
    "text",
    "image",
    "document",
    "video",
    "audio",
    "toolUse",
    "toolResult",
    "guardContent",
    "cachePoint",
    "reasoningContent",
    "citationsContent",
    "searchResult",
    "toolAddition",
    "toolRemoval",
];

/// The members of the `SystemContentBlock` union.
const SYSTEM_BLOCK_MEMBERS: &[&str] = &["text", "guardContent", "cachePoint"];

/// The fields of a `ToolConfiguration`.
const TOOL_CONFIG_FIELDS: &[&str] = &["tools", "toolChoice"];

/// The members of the `Tool` union.
const TOOL_MEMBERS: &[&str] = &["toolSpec", "systemTool", "cachePoint"];

/// The fields of a `ToolSpecification`.
const TOOL_SPEC_FIELDS: &[&str] = &["name", "description", "inputSchema", "strict"];

/// The members of the `ToolChoice` union.
const TOOL_CHOICE_MEMBERS: &[&str] = &["auto", "any", "tool"];

/// The two operations, which differ only in how the answer is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Converse,
    ConverseStream,
}

impl Operation {
    /// The route the operation is counted under.
    fn route(self) -> Route {
        match self {
            Operation::Converse => Route::BedrockConverse,
            Operation::ConverseStream => Route::BedrockConverseStream,
        }
    }
}

/// `POST /model/{modelId}/converse`.
pub async fn converse(
    State(state): State<Arc<MockState>>,
    model: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = sigv4::Request {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
    };
    serve(&state, Operation::Converse, model, request).await
}

/// `POST /model/{modelId}/converse-stream`.
pub async fn converse_stream(
    State(state): State<Arc<MockState>>,
    model: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = sigv4::Request {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
    };
    serve(&state, Operation::ConverseStream, model, request).await
}

/// Both operations: counted by route, key, model and signing region, the caller checked, then
/// answered.
async fn serve(
    state: &MockState,
    operation: Operation,
    model: Result<Path<String>, PathRejection>,
    request: sigv4::Request<'_>,
) -> Response {
    let key = Wire::Bedrock.api_key(request.headers);
    if let Some(auth) = sigv4_authorization(request.headers) {
        state.stats.record_region(auth.region);
    }
    let model = model_id(model);
    if let Ok(model) = &model {
        state.stats.record_model(model);
    }
    let checked = authenticate(state, &request);
    state
        .serve_checked(Wire::Bedrock, operation.route(), key, checked, |pace| {
            model?;
            answer(state, pace, operation, request.body)
        })
        .await
}

/// The decoded model id of the path; AWS's 400 for an empty one.
pub(super) fn model_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    match path {
        Ok(Path(model)) if !model.is_empty() => Ok(model),
        Ok(_) => Err(ApiError::invalid_request(
            "1 validation error detected: Value '' at 'modelId' failed to satisfy constraint: \
             Member must have length greater than or equal to 1",
        )),
        Err(rejection) => Err(ApiError::invalid_request(format!(
            "mock: the model id in the path cannot be read: {rejection}"
        ))),
    }
}

/// The request's SigV4 `Authorization`, when it has a complete one.
pub(super) fn sigv4_authorization(headers: &HeaderMap) -> Option<Authorization<'_>> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    Authorization::parse(value).ok()
}

/// A bearer token: Bedrock's API keys.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Bedrock's check of the caller when the mock was told whom to accept (else everyone passes):
/// a bearer token must be one of `--require-key`, a SigV4 signature must be one of
/// `--aws-credentials`' and match; anything else is refused as AWS refuses it.
pub(super) fn authenticate(state: &MockState, request: &sigv4::Request) -> Result<(), ApiError> {
    if state.aws_credentials.is_empty() && state.require_keys.is_empty() {
        return Ok(());
    }
    let Some(value) = request.headers.get(AUTHORIZATION) else {
        return Err(ApiError::unauthorized(Wire::Bedrock, ""));
    };
    let value = value.to_str().unwrap_or_default();
    if let Some(token) = bearer_token(value) {
        return if state.require_keys.contains(token) {
            Ok(())
        } else {
            Err(ApiError::unauthorized(Wire::Bedrock, token))
        };
    }
    let auth = Authorization::parse(value)
        .map_err(|message| ApiError::aws_forbidden("IncompleteSignatureException", message))?;
    // The key's own credentials, or a role's temporary ones from the mock's STS.
    let secret = match state.aws_credentials.get(auth.access_key_id) {
        Some(secret) => secret.clone(),
        None => match state
            .sts
            .temporary_secret(auth.access_key_id, request.headers)
        {
            Some(secret) => secret?,
            None => {
                return Err(ApiError::aws_forbidden(
                    "UnrecognizedClientException",
                    UNKNOWN_ACCESS_KEY,
                ))
            }
        },
    };
    sigv4::verify(request, &auth, &secret, sigv4::SERVICE)
}

// ---- Reading request bodies as strictly as AWS does.

/// AWS's 400 for a body that does not fit the request type; `at` is a JSON pointer (`#` for the
/// top).
pub(super) fn malformed(at: &str, problem: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_request(format!(
        "Malformed input request: #{at}: {problem}, please reformat your input and try again."
    ))
}

/// Rejects the first field of `object` (in name order) that is not in `known`.
pub(super) fn check_fields(
    object: &Map<String, Value>,
    known: &[&str],
    at: &str,
) -> Result<(), ApiError> {
    match object.keys().find(|name| !known.contains(&name.as_str())) {
        Some(name) => Err(malformed(
            at,
            format_args!("extraneous key [{name}] is not permitted"),
        )),
        None => Ok(()),
    }
}

/// Checks a union at `at`: only its `members`, and exactly one of them set. Values that are not
/// objects are left to the typed parse.
fn check_union(value: &Value, members: &[&str], at: &str) -> Result<(), ApiError> {
    let Some(object) = value.as_object() else {
        return Ok(());
    };
    check_fields(object, members, at)?;
    if object.values().filter(|value| !value.is_null()).count() != 1 {
        return Err(malformed(
            at,
            format_args!("exactly one of [{}] must be set", members.join(", ")),
        ));
    }
    Ok(())
}

/// The elements of the array `name` of `object`, if it is one.
fn elements<'a>(object: &'a Map<String, Value>, name: &str) -> impl Iterator<Item = &'a Value> {
    object
        .get(name)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Checks the fields of a body, its configurations, messages and blocks; the typed parse then
/// checks the shapes.
fn check_request(object: &Map<String, Value>) -> Result<(), ApiError> {
    check_fields(object, REQUEST_FIELDS, "")?;
    if let Some(config) = object.get("inferenceConfig").and_then(Value::as_object) {
        check_fields(config, INFERENCE_CONFIG_FIELDS, "/inferenceConfig")?;
    }
    for (i, message) in elements(object, "messages").enumerate() {
        let Some(message) = message.as_object() else {
            continue;
        };
        let at = format!("/messages/{i}");
        check_fields(message, MESSAGE_FIELDS, &at)?;
        for (j, block) in elements(message, "content").enumerate() {
            check_union(block, CONTENT_BLOCK_MEMBERS, &format!("{at}/content/{j}"))?;
        }
    }
    for (i, block) in elements(object, "system").enumerate() {
        check_union(block, SYSTEM_BLOCK_MEMBERS, &format!("/system/{i}"))?;
    }
    if let Some(config) = object.get("toolConfig").and_then(Value::as_object) {
        check_tool_config(config)?;
    }
    Ok(())
}

/// Checks `toolConfig`: its fields, each tool, and the tool choice.
fn check_tool_config(config: &Map<String, Value>) -> Result<(), ApiError> {
    check_fields(config, TOOL_CONFIG_FIELDS, "/toolConfig")?;
    for (i, tool) in elements(config, "tools").enumerate() {
        let at = format!("/toolConfig/tools/{i}");
        check_union(tool, TOOL_MEMBERS, &at)?;
        if let Some(spec) = tool.get("toolSpec").and_then(Value::as_object) {
            check_fields(spec, TOOL_SPEC_FIELDS, &format!("{at}/toolSpec"))?;
        }
    }
    if let Some(choice) = config.get("toolChoice") {
        check_union(choice, TOOL_CHOICE_MEMBERS, "/toolConfig/toolChoice")?;
    }
    Ok(())
}

/// A Converse body: checked for unknown fields, read, then checked as AWS checks conversations.
fn parse_converse(body: &[u8]) -> Result<ConverseRequest, ApiError> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|error| malformed("", error))?
    };
    let Value::Object(object) = value else {
        return Err(malformed("", "expected a JSON object"));
    };
    check_request(&object)?;
    let request: ConverseRequest =
        serde_json::from_value(Value::Object(object)).map_err(|error| malformed("", error))?;
    request.validate()?;
    Ok(request)
}

/// A `ConverseRequest`: what the mock reads of it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseRequest {
    #[serde(default)]
    messages: Option<Vec<ConverseMessage>>,
    #[serde(default)]
    system: Vec<SystemBlock>,
    inference_config: Option<InferenceConfig>,
    tool_config: Option<ToolConfig>,
}

#[derive(Debug, Deserialize)]
struct ConverseMessage {
    role: String,
    content: Vec<ContentBlock>,
}

/// A content block; only its text counts for the reply, and whether it is a tool's.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContentBlock {
    text: Option<String>,
    tool_use: Option<IgnoredAny>,
    tool_result: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct SystemBlock {
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig {
    max_tokens: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig {
    tools: Vec<Tool>,
    tool_choice: Option<ToolChoice>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tool {
    tool_spec: Option<ToolSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolSpec {
    name: String,
    input_schema: ToolInputSchema,
}

#[derive(Debug, Deserialize)]
struct ToolInputSchema {
    json: Option<Schema>,
}

/// The part of a tool's JSON Schema the mock input fills in.
#[derive(Debug, Deserialize)]
struct Schema {
    properties: Option<Map<String, Value>>,
    required: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct ToolChoice {
    tool: Option<SpecificToolChoice>,
}

#[derive(Debug, Deserialize)]
struct SpecificToolChoice {
    name: String,
}

impl ConverseRequest {
    /// AWS's checks of what the typed parse lets through, with its messages.
    fn validate(&self) -> Result<(), ApiError> {
        let Some(messages) = &self.messages else {
            return Err(ApiError::invalid_request(
                "1 validation error detected: Value null at 'messages' failed to satisfy \
                 constraint: Member must not be null",
            ));
        };
        for (i, message) in messages.iter().enumerate() {
            if !matches!(message.role.as_str(), "user" | "assistant") {
                return Err(ApiError::invalid_request(format!(
                    "1 validation error detected: Value '{}' at 'messages.{}.member.role' failed \
                     to satisfy constraint: Member must satisfy enum value set: [user, assistant]",
                    message.role,
                    i + 1
                )));
            }
        }
        if messages.first().is_none_or(|first| first.role != "user") {
            return Err(ApiError::invalid_request(MUST_START_WITH_USER));
        }
        if messages.windows(2).any(|pair| pair[0].role == pair[1].role) {
            return Err(ApiError::invalid_request(MUST_ALTERNATE));
        }
        if let Some(i) = messages
            .iter()
            .position(|message| message.content.is_empty())
        {
            return Err(ApiError::invalid_request(format!(
                "The content field in the Message object at messages.{i}.content is empty. Add a \
                 ContentBlock object to the content field and try again."
            )));
        }
        if let Some(max) = self.max_tokens().filter(|&max| max < 1) {
            return Err(ApiError::invalid_request(format!(
                "1 validation error detected: Value '{max}' at 'inferenceConfig.maxTokens' failed \
                 to satisfy constraint: Member must have value greater than or equal to 1"
            )));
        }
        self.validate_tools(messages)
    }

    /// Declared tools must be at least one, and tool blocks need declared tools.
    fn validate_tools(&self, messages: &[ConverseMessage]) -> Result<(), ApiError> {
        match &self.tool_config {
            Some(config) if config.tools.is_empty() => Err(ApiError::invalid_request(
                "1 validation error detected: Value '[]' at 'toolConfig.tools' failed to satisfy \
                 constraint: Member must have length greater than or equal to 1",
            )),
            None if messages
                .iter()
                .flat_map(|message| &message.content)
                .any(|block| block.tool_use.is_some() || block.tool_result.is_some()) =>
            {
                Err(ApiError::invalid_request(
                    "The toolConfig field must be defined when using toolUse and toolResult \
                     content blocks.",
                ))
            }
            _ => Ok(()),
        }
    }

    fn messages(&self) -> &[ConverseMessage] {
        self.messages.as_deref().unwrap_or_default()
    }

    fn max_tokens(&self) -> Option<i64> {
        self.inference_config.as_ref()?.max_tokens
    }

    /// The system blocks as one system message for [`prompt`].
    fn system_message(&self) -> Option<PromptMessage> {
        let parts: Vec<prompt::Part> = self
            .system
            .iter()
            .map(|block| prompt::Part {
                text: block.text.clone(),
            })
            .collect();
        (!parts.is_empty()).then(|| PromptMessage {
            role: "system".to_owned(),
            content: Some(prompt::Content::Parts(parts)),
        })
    }

    /// The tool the mock uses: `toolChoice.tool` or the first declared, unless the last
    /// message answers a tool use.
    fn tool_to_use(&self) -> Option<&ToolSpec> {
        let config = self.tool_config.as_ref()?;
        if self
            .messages()
            .last()
            .is_some_and(ConverseMessage::answers_a_tool_use)
        {
            return None;
        }
        let mut specs = config
            .tools
            .iter()
            .filter_map(|tool| tool.tool_spec.as_ref());
        let chosen = config
            .tool_choice
            .as_ref()
            .and_then(|choice| choice.tool.as_ref());
        chosen
            .and_then(|chosen| specs.clone().find(|spec| spec.name == chosen.name))
            .or_else(|| specs.next())
    }
}

impl ConverseMessage {
    /// Whether the message holds a tool result.
    fn answers_a_tool_use(&self) -> bool {
        self.content.iter().any(|block| block.tool_result.is_some())
    }

    /// The message as a chat message for [`prompt`]: its text blocks; a message of tool
    /// results is a tool message, as in OpenAI's API, so the reply still quotes the user.
    fn to_message(&self) -> PromptMessage {
        let role = if self.answers_a_tool_use() {
            "tool"
        } else {
            self.role.as_str()
        };
        let parts = self
            .content
            .iter()
            .map(|block| prompt::Part {
                text: block.text.clone(),
            })
            .collect();
        PromptMessage {
            role: role.to_owned(),
            content: Some(prompt::Content::Parts(parts)),
        }
    }
}

impl ToolSpec {
    /// The mock tool input: `"mock"` for each required string property of the input schema.
    fn mock_input(&self) -> Map<String, Value> {
        let Some(schema) = &self.input_schema.json else {
            return Map::new();
        };
        let Some(properties) = &schema.properties else {
            return Map::new();
        };
        schema
            .required
            .iter()
            .flatten()
            .filter(|name| {
                properties
                    .get(name.as_str())
                    .is_some_and(|property| property["type"] == "string")
            })
            .map(|name| (name.clone(), Value::from("mock")))
            .collect()
    }
}

// ---- Answers.

/// What the mock answers a conversation with.
#[derive(Debug)]
enum Reply<'a> {
    /// The reply text in stream chunks, cut short by `maxTokens` when `truncated`.
    Text {
        chunks: Vec<&'a str>,
        truncated: bool,
    },
    /// A use of a declared tool.
    ToolUse {
        id: String,
        name: &'a str,
        input: Map<String, Value>,
    },
    /// A guardrail's answer to a blocked prompt.
    Blocked,
}

impl Reply<'_> {
    fn stop_reason(&self) -> &'static str {
        match self {
            Reply::Text {
                truncated: true, ..
            } => "max_tokens",
            Reply::Text { .. } => "end_turn",
            Reply::ToolUse { .. } => "tool_use",
            Reply::Blocked => "guardrail_intervened",
        }
    }

    /// One token per text chunk, one for a tool use, none for a blocked prompt (no model ran).
    fn output_tokens(&self) -> u64 {
        match self {
            Reply::Text { chunks, .. } => chunks.len() as u64,
            Reply::ToolUse { .. } => 1,
            Reply::Blocked => 0,
        }
    }
}

/// A `ConverseResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConverseResponse<'a> {
    output: Output<'a>,
    stop_reason: &'static str,
    usage: Usage,
    metrics: Metrics,
}

#[derive(Debug, Serialize)]
struct Output<'a> {
    message: ReplyMessage<'a>,
}

#[derive(Debug, Serialize)]
struct ReplyMessage<'a> {
    role: &'static str,
    content: Vec<ReplyBlock<'a>>,
}

/// `{"text": ...}` or `{"toolUse": ...}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
enum ReplyBlock<'a> {
    Text(String),
    ToolUse(ToolUse<'a>),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse<'a> {
    tool_use_id: &'a str,
    name: &'a str,
    input: &'a Map<String, Value>,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
struct Usage {
    input_tokens: u64,
    output_tokens: u64,
    total_tokens: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
struct Metrics {
    latency_ms: u64,
}

/// Converse and ConverseStream once the caller is admitted: the reply to the body's
/// conversation, as JSON or as an event stream.
fn answer(
    state: &MockState,
    pace: Pace,
    operation: Operation,
    body: &[u8],
) -> Result<Response, ApiError> {
    let request = parse_converse(body)?;
    let messages: Vec<PromptMessage> = request
        .messages()
        .iter()
        .map(ConverseMessage::to_message)
        .collect();
    let system = request.system_message();
    let input_tokens = prompt::prompt_tokens(
        system
            .iter()
            .chain(&messages)
            .filter_map(|message| message.content.as_ref()),
    );
    let text = prompt::reply_to(&messages);
    let throttled = text.contains(THROTTLE_MARKER);
    let reply = reply(state, pace, &request, &text);
    let output_tokens = reply.output_tokens();
    let usage = Usage {
        input_tokens,
        output_tokens,
        total_tokens: input_tokens + output_tokens,
    };
    let metrics = Metrics {
        latency_ms: u64::try_from(pace.latency.as_millis()).unwrap_or(u64::MAX),
    };
    match operation {
        Operation::Converse if throttled => {
            Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, THROTTLED))
        }
        Operation::Converse => Ok(Json(converse_response(&reply, usage, metrics)).into_response()),
        Operation::ConverseStream if throttled => throttled_stream(&reply, pace),
        Operation::ConverseStream => stream(&reply, usage, metrics, pace),
    }
}

/// The reply to `request`, whose reply text is `text`: a guardrail's block, a tool use, or the
/// text in stream chunks.
fn reply<'a>(
    state: &MockState,
    pace: Pace,
    request: &'a ConverseRequest,
    text: &'a str,
) -> Reply<'a> {
    if text.contains(BLOCK_MARKER) {
        return Reply::Blocked;
    }
    if let Some(tool) = request.tool_to_use() {
        return Reply::ToolUse {
            id: format!("tooluse_mock_{}", state.next_id()),
            name: &tool.name,
            input: tool.mock_input(),
        };
    }
    let max_tokens = request.max_tokens().and_then(|max| u64::try_from(max).ok());
    let (chunks, truncated) =
        prompt::limit_chunks(prompt::split_even(text, pace.chunks), max_tokens);
    Reply::Text { chunks, truncated }
}

/// The whole answer of Converse.
fn converse_response<'a>(reply: &'a Reply, usage: Usage, metrics: Metrics) -> ConverseResponse<'a> {
    let block = match reply {
        Reply::Text { chunks, .. } => ReplyBlock::Text(chunks.concat()),
        Reply::ToolUse { id, name, input } => ReplyBlock::ToolUse(ToolUse {
            tool_use_id: id,
            name,
            input,
        }),
        Reply::Blocked => ReplyBlock::Text(GUARDRAIL_MESSAGE.to_owned()),
    };
    ConverseResponse {
        output: Output {
            message: ReplyMessage {
                role: "assistant",
                content: vec![block],
            },
        },
        stop_reason: reply.stop_reason(),
        usage,
        metrics,
    }
}

/// The answer of ConverseStream: the events of the reply in one content block (index 0).
fn stream(reply: &Reply, usage: Usage, metrics: Metrics, pace: Pace) -> Result<Response, ApiError> {
    let mut events = EventStream::default();
    events.event("messageStart", &json!({"role": "assistant"}))?;
    match reply {
        Reply::Text { chunks, .. } => {
            for (i, piece) in chunks.iter().enumerate() {
                if i > 0 {
                    events.pause();
                }
                events.event(
                    "contentBlockDelta",
                    &json!({"contentBlockIndex": 0, "delta": {"text": piece}}),
                )?;
            }
        }
        Reply::ToolUse { id, name, input } => {
            events.event(
                "contentBlockStart",
                &json!({"contentBlockIndex": 0,
                        "start": {"toolUse": {"toolUseId": id, "name": name}}}),
            )?;
            let input = serde_json::to_string(input).map_err(ApiError::encoding)?;
            events.event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": input}}}),
            )?;
        }
        Reply::Blocked => events.event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": GUARDRAIL_MESSAGE}}),
        )?,
    }
    events.event("contentBlockStop", &json!({"contentBlockIndex": 0}))?;
    events.event("messageStop", &json!({"stopReason": reply.stop_reason()}))?;
    events.event("metadata", &json!({"usage": usage, "metrics": metrics}))?;
    Ok(events.into_response(pace.chunk_delay))
}

/// A ConverseStream cut short by throttling: `messageStart`, the first half of the text's
/// chunks (at least one), then a `throttlingException` exception message.
fn throttled_stream(reply: &Reply, pace: Pace) -> Result<Response, ApiError> {
    let mut events = EventStream::default();
    events.event("messageStart", &json!({"role": "assistant"}))?;
    if let Reply::Text { chunks, .. } = reply {
        for (i, piece) in chunks.iter().take(chunks.len().div_ceil(2)).enumerate() {
            if i > 0 {
                events.pause();
            }
            events.event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 0, "delta": {"text": piece}}),
            )?;
        }
    }
    events.pause();
    events.exception("throttlingException", &json!({ "message": THROTTLED }))?;
    Ok(events.into_response(pace.chunk_delay))
}

/// An event stream under construction: encoded messages, and which wait for the chunk delay.
#[derive(Debug, Default)]
struct EventStream {
    frames: Vec<(Bytes, bool)>,
    pause_next: bool,
}

impl EventStream {
    /// Makes the next event wait for the chunk delay before it is sent.
    fn pause(&mut self) {
        self.pause_next = true;
    }

    /// Adds an event message of `event_type` with `payload` as its JSON.
    fn event(&mut self, event_type: &'static str, payload: &Value) -> Result<(), ApiError> {
        let text = |value: &'static str| HeaderValue::String(value.into());
        let message = Message::new(Bytes::from(payload.to_string()))
            .add_header(Header::new(":event-type", text(event_type)))
            .add_header(Header::new(":content-type", text("application/json")))
            .add_header(Header::new(":message-type", text("event")));
        self.push(&message)
    }

    /// Adds an exception message of `exception_type` (`throttlingException`, ...) with
    /// `payload` (`{"message"}`) as its JSON, as Bedrock ends a failing stream.
    fn exception(&mut self, exception_type: &'static str, payload: &Value) -> Result<(), ApiError> {
        let text = |value: &'static str| HeaderValue::String(value.into());
        let message = Message::new(Bytes::from(payload.to_string()))
            .add_header(Header::new(":exception-type", text(exception_type)))
            .add_header(Header::new(":content-type", text("application/json")))
            .add_header(Header::new(":message-type", text("exception")));
        self.push(&message)
    }

    /// Encodes `message` as the next frame.
    fn push(&mut self, message: &Message) -> Result<(), ApiError> {
        let mut frame = Vec::with_capacity(256);
        write_message_to(message, &mut frame).map_err(ApiError::encoding)?;
        self.frames.push((Bytes::from(frame), self.pause_next));
        self.pause_next = false;
        Ok(())
    }

    /// The `application/vnd.amazon.eventstream` response, one body frame per message.
    fn into_response(self, delay: std::time::Duration) -> Response {
        (
            [(CONTENT_TYPE, EVENT_STREAM_CONTENT_TYPE)],
            paced_body(self.frames, delay),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};

    use super::*;
    use crate::mock::MockConfig;

    fn pace(chunks: usize) -> Pace {
        Pace {
            latency: Duration::ZERO,
            chunks,
            chunk_delay: Duration::ZERO,
        }
    }

    fn message(result: Result<impl std::fmt::Debug, ApiError>) -> String {
        result.expect_err("rejected").message.into_owned()
    }

    async fn body_of(response: Response) -> Bytes {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body reads")
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": [{"text": text}]})
    }

    /// The answer of `operation` to `body`, with 3 chunks.
    async fn answered(operation: Operation, body: Value) -> Bytes {
        let state = MockState::new(&MockConfig::default());
        let response =
            answer(&state, pace(3), operation, body.to_string().as_bytes()).expect("answered");
        body_of(response).await
    }

    async fn conversed(body: Value) -> Value {
        let bytes = answered(Operation::Converse, body).await;
        serde_json::from_slice(&bytes).expect("JSON answer")
    }

    /// The event types and JSON payloads of an event-stream body.
    fn decode_events(mut bytes: Bytes) -> Vec<(String, Value)> {
        let mut decoder = MessageFrameDecoder::new();
        let mut events = Vec::new();
        while let DecodedFrame::Complete(message) =
            decoder.decode_frame(&mut bytes).expect("valid frame")
        {
            let header = |name: &str| {
                message
                    .headers()
                    .iter()
                    .find(|header| header.name().as_str() == name)
                    .and_then(|header| header.value().as_string().ok())
                    .map(|value| value.as_str().to_owned())
                    .unwrap_or_default()
            };
            assert_eq!(header(":message-type"), "event");
            assert_eq!(header(":content-type"), "application/json");
            let payload = serde_json::from_slice(message.payload()).expect("JSON payload");
            events.push((header(":event-type"), payload));
        }
        events
    }

    #[test]
    fn unknown_fields_are_named_where_they_are() {
        let parse = |body: Value| message(parse_converse(body.to_string().as_bytes()));
        assert_eq!(
            parse(json!({"messages": [user("hi")], "maxTokens": 5})),
            "Malformed input request: #: extraneous key [maxTokens] is not permitted, please \
             reformat your input and try again."
        );
        assert!(
            parse(json!({"messages": [user("hi")], "inferenceConfig": {"max_tokens": 5}}))
                .contains("#/inferenceConfig: extraneous key [max_tokens]")
        );
        assert!(
            parse(json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]}))
                .contains("#/messages/0/content/0: extraneous key [type]")
        );
        assert!(parse(
            json!({"messages": [{"role": "user", "content": [{"text": "a", "cachePoint": {}}]}]})
        )
        .contains("exactly one of"));
        assert!(parse(json!({"messages": [user("hi")],
                              "toolConfig": {"tools": [{"toolSpec": {"name": "t",
                                  "inputSchema": {"json": {}}, "parameters": {}}}]}}))
        .contains("#/toolConfig/tools/0/toolSpec: extraneous key [parameters]"));
        assert!(
            parse(json!({"messages": [{"role": "user", "content": "hi"}]}))
                .starts_with("Malformed input request: #: invalid type")
        );
    }

    #[test]
    fn conversations_start_with_the_user_and_alternate() {
        let parse = |body: Value| message(parse_converse(body.to_string().as_bytes()));
        let assistant = json!({"role": "assistant", "content": [{"text": "a"}]});
        assert_eq!(
            parse(json!({"messages": [user("a"), user("b")]})),
            MUST_ALTERNATE
        );
        assert_eq!(
            parse(json!({"messages": [assistant]})),
            MUST_START_WITH_USER
        );
        assert_eq!(parse(json!({"messages": []})), MUST_START_WITH_USER);
        assert!(parse(json!({})).contains("Value null at 'messages'"));
        assert!(
            parse(json!({"messages": [{"role": "system", "content": [{"text": "a"}]}]}))
                .contains("'messages.1.member.role'")
        );
        assert!(
            parse(json!({"messages": [{"role": "user", "content": []}]}))
                .contains("messages.0.content is empty")
        );
        assert!(
            parse(json!({"messages": [user("a")], "inferenceConfig": {"maxTokens": 0}}))
                .contains("'inferenceConfig.maxTokens'")
        );
        let tool_use = json!({"role": "assistant", "content": [{"toolUse":
            {"toolUseId": "t1", "name": "f", "input": {}}}]});
        assert!(parse(json!({"messages": [user("a"), tool_use]})).contains("toolConfig field"));
    }

    #[tokio::test]
    async fn the_reply_quotes_the_last_user_text_with_usage() {
        let answer = conversed(json!({
            "messages": [user("hello"), {"role": "assistant", "content": [{"text": "x"}]},
                         {"role": "user", "content": [{"text": "hello"}, {"text": "there"}]}],
            "system": [{"text": "be brief"}],
        }))
        .await;
        assert_eq!(
            answer["output"]["message"],
            json!({"role": "assistant", "content": [{"text": "mock reply to: hello there"}]})
        );
        assert_eq!(answer["stopReason"], "end_turn");
        assert_eq!(
            answer["usage"],
            json!({"inputTokens": 6, "outputTokens": 3, "totalTokens": 9})
        );
        assert_eq!(answer["metrics"], json!({"latencyMs": 0}));

        let cut =
            conversed(json!({"messages": [user("hi")], "inferenceConfig": {"maxTokens": 2}})).await;
        assert_eq!(cut["stopReason"], "max_tokens");
        assert_eq!(cut["usage"]["outputTokens"], 2);

        let blocked = conversed(json!({"messages": [user("x [[block]]")]})).await;
        assert_eq!(blocked["stopReason"], "guardrail_intervened");
        assert_eq!(
            blocked["output"]["message"]["content"][0]["text"],
            GUARDRAIL_MESSAGE
        );
    }

    #[tokio::test]
    async fn declared_tools_are_used_until_answered() {
        let tools = json!({"tools": [
            {"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object",
             "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                            "unit": {"type": "string"}},
             "required": ["city", "days"]}}}},
            {"toolSpec": {"name": "other", "inputSchema": {"json": {}}}},
        ]});
        let answer = conversed(json!({"messages": [user("weather?")], "toolConfig": tools})).await;
        assert_eq!(answer["stopReason"], "tool_use");
        let tool_use = &answer["output"]["message"]["content"][0]["toolUse"];
        assert_eq!(tool_use["name"], "get_weather");
        assert_eq!(tool_use["input"], json!({"city": "mock"}));
        assert!(tool_use["toolUseId"]
            .as_str()
            .is_some_and(|id| id.starts_with("tooluse_mock_")));

        let mut chosen = tools.clone();
        chosen["toolChoice"] = json!({"tool": {"name": "other"}});
        let answer = conversed(json!({"messages": [user("weather?")], "toolConfig": chosen})).await;
        assert_eq!(
            answer["output"]["message"]["content"][0]["toolUse"]["name"],
            "other"
        );

        let answered = json!({"messages": [user("weather?"),
            {"role": "assistant", "content": [{"toolUse":
                {"toolUseId": "t1", "name": "get_weather", "input": {"city": "mock"}}}]},
            {"role": "user", "content": [{"toolResult":
                {"toolUseId": "t1", "content": [{"json": {"sunny": true}}]}}]}],
            "toolConfig": tools});
        let answer = conversed(answered).await;
        assert_eq!(
            answer["output"]["message"]["content"],
            json!([{"text": "mock reply to: weather?"}])
        );
    }

    #[tokio::test]
    async fn streams_are_event_stream_messages_in_converse_order() {
        let bytes = answered(
            Operation::ConverseStream,
            json!({"messages": [user("count me")]}),
        )
        .await;
        let events = decode_events(bytes);
        let types: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
        assert_eq!(
            types,
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
        assert_eq!(events[0].1, json!({"role": "assistant"}));
        let text: String = events[1..4]
            .iter()
            .filter_map(|(_, payload)| payload["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, "mock reply to: count me");
        assert_eq!(events[1].1["contentBlockIndex"], 0);
        assert_eq!(events[4].1, json!({"contentBlockIndex": 0}));
        assert_eq!(events[5].1, json!({"stopReason": "end_turn"}));
        assert_eq!(
            events[6].1,
            json!({"usage": {"inputTokens": 2, "outputTokens": 3, "totalTokens": 5},
                   "metrics": {"latencyMs": 0}})
        );

        let tools = json!({"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json":
            {"properties": {"q": {"type": "string"}}, "required": ["q"]}}}}]});
        let bytes = answered(
            Operation::ConverseStream,
            json!({"messages": [user("use it")], "toolConfig": tools}),
        )
        .await;
        let events = decode_events(bytes);
        assert_eq!(events[1].0, "contentBlockStart");
        assert_eq!(events[1].1["start"]["toolUse"]["name"], "f");
        assert_eq!(events[2].1["delta"]["toolUse"]["input"], r#"{"q":"mock"}"#);
        assert_eq!(events[4].1, json!({"stopReason": "tool_use"}));
    }

    #[tokio::test]
    async fn a_throttled_stream_sends_half_its_text_then_a_throttling_exception() {
        let state = MockState::new(&MockConfig::default());
        let body = json!({"messages": [user("slow [[throttle]] down now")]}).to_string();
        let response =
            answer(&state, pace(4), Operation::ConverseStream, body.as_bytes()).expect("answered");
        let mut bytes = body_of(response).await;
        let mut decoder = MessageFrameDecoder::new();
        let mut kinds = Vec::new();
        while let DecodedFrame::Complete(message) =
            decoder.decode_frame(&mut bytes).expect("valid frame")
        {
            let header = |name: &str| {
                message
                    .headers()
                    .iter()
                    .find(|header| header.name().as_str() == name)
                    .and_then(|header| header.value().as_string().ok())
                    .map(|value| value.as_str().to_owned())
                    .unwrap_or_default()
            };
            kinds.push(format!(
                "{}:{}{}",
                header(":message-type"),
                header(":event-type"),
                header(":exception-type")
            ));
        }
        assert_eq!(
            kinds,
            [
                "event:messageStart",
                "event:contentBlockDelta",
                "event:contentBlockDelta",
                "exception:throttlingException"
            ]
        );
        let refused =
            answer(&state, pace(4), Operation::Converse, body.as_bytes()).expect_err("throttled");
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn the_model_id_must_be_there() {
        assert!(message(model_id(Ok(Path(String::new())))).contains("'modelId'"));
        assert_eq!(
            model_id(Ok(Path("arn:aws:bedrock:x".to_owned()))),
            Ok("arn:aws:bedrock:x".to_owned())
        );
    }
}
