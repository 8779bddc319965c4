//! Google's Gemini API (`generativelanguage.googleapis.com`, v1beta) as the `google-genai` SDKs
//! call it: `POST /v1beta/models/{model}:{method}` for `generateContent`,
//! `streamGenerateContent` (SSE with `?alt=sse`, as the SDKs ask; otherwise one JSON array, as
//! Google answers), `embedContent` and `batchEmbedContents`; and `GET /v1beta/models` and
//! `/v1beta/models/{model}` over the configured models.
//!
//! The key comes in `x-goog-api-key` or as `?key=`. With `--require-key`, a wrong key gets what
//! Google answers: 400 `INVALID_ARGUMENT` "API key not valid. Please pass a valid API key."; a
//! missing one 403 `PERMISSION_DENIED`. Every error, injected ones too, is Google's
//! `{"error": {"code", "message", "status"}}`, and an unknown method is its 404 `NOT_FOUND`.
//!
//! Bodies are checked as Google's proto JSON parser checks them: a field the request type does
//! not have gets 400 `Invalid JSON payload received. Unknown name "<field>": Cannot find
//! field.` (with ` at '<path>'` below the top level), in the request, its `generationConfig`,
//! its contents and their parts, and the embedding requests. Like Google's parser, the mock
//! takes each field in its lowerCamel spelling or its snake_case one (the Python SDK sends
//! `thinkingConfig.thinking_budget`).
//!
//! The answer is `mock reply to: <last user text>`, with the token counts of [`prompt`]: the
//! prompt's words (the system instruction's too) and one token per stream chunk, limited by
//! `maxOutputTokens` (then `finishReason` is `MAX_TOKENS`). A request that declares functions
//! gets a call of the first one instead, unless it answers a function call or
//! `functionCallingConfig.mode` is `NONE`; one whose last user text holds [`BLOCK_MARKER`] gets
//! Google's safety block: `promptFeedback.blockReason` and no candidates.
//!
//! Vertex AI's `generateContent` and `streamGenerateContent` (see [`super::vertex`]) are answered
//! here too: the same bodies ([`Api::Vertex`] adds its few fields and requires every content's
//! `role`) and the same answers.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::config::MAX_EMBEDDING_DIMS;
use super::error::{ApiError, Wire, GEMINI_KEY_HEADER};
use super::knobs::Pace;
use super::prompt::{self, Message};
use super::sse::SseStream;
use super::stats::Route;
use super::{embeddings, with_key_header, MockState};

/// Text in the last user message that makes the mock block the prompt for safety.
pub const BLOCK_MARKER: &str = "[[block]]";

/// Google's limit on the requests of one `batchEmbedContents`.
const MAX_BATCH_REQUESTS: usize = 100;

/// The fields of a `GenerateContentRequest`, in their lowerCamel JSON names. `labels` is Vertex
/// AI's, accepted so that bodies shared with Vertex pass.
const REQUEST_FIELDS: &[&str] = &[
    "model",
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
    "serviceTier",
    "labels",
];

/// The fields of a `GenerateContentRequest` that only Vertex AI has.
const VERTEX_REQUEST_FIELDS: &[&str] = &["modelArmorConfig"];

/// The fields of a `GenerationConfig`.
const GENERATION_CONFIG_FIELDS: &[&str] = &[
    "temperature",
    "topP",
    "topK",
    "candidateCount",
    "maxOutputTokens",
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "thinkingConfig",
    "responseModalities",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "mediaResolution",
    "imageConfig",
];

/// The fields of a `GenerationConfig` that only Vertex AI has.
const VERTEX_GENERATION_CONFIG_FIELDS: &[&str] =
    &["audioTimestamp", "routingConfig", "modelConfig"];

/// The fields of a `Content`.
const CONTENT_FIELDS: &[&str] = &["role", "parts"];

/// The fields of a `Part` that hold its data (the `data` oneof): exactly one must be set.
const PART_DATA_FIELDS: &[&str] = &[
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
];

/// All fields of a `Part`: its data and what may come with it.
const PART_FIELDS: &[&str] = &[
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
    "thought",
    "thoughtSignature",
    "videoMetadata",
    "mediaResolution",
    "partMetadata",
];

/// The fields of an `EmbedContentRequest`, alone or in a batch.
const EMBED_FIELDS: &[&str] = &[
    "model",
    "content",
    "taskType",
    "title",
    "outputDimensionality",
];

/// Which of Google's APIs a `generateContent` call came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Api {
    /// The Gemini API (`generativelanguage.googleapis.com`).
    Gemini,
    /// Vertex AI (`aiplatform.googleapis.com`): a few more fields, and every content must have
    /// its `role`.
    Vertex,
}

impl Api {
    /// The fields of a `GenerateContentRequest` in this API.
    fn request_fields(self) -> &'static [&'static [&'static str]] {
        match self {
            Api::Gemini => &[REQUEST_FIELDS],
            Api::Vertex => &[REQUEST_FIELDS, VERTEX_REQUEST_FIELDS],
        }
    }

    /// The fields of a `GenerationConfig` in this API.
    fn generation_config_fields(self) -> &'static [&'static [&'static str]] {
        match self {
            Api::Gemini => &[GENERATION_CONFIG_FIELDS],
            Api::Vertex => &[GENERATION_CONFIG_FIELDS, VERTEX_GENERATION_CONFIG_FIELDS],
        }
    }

    /// Whether `role` is one a content may have: `user` or `model`, or none on the Gemini API.
    fn accepts_role(self, role: Option<&str>) -> bool {
        match role {
            Some("user" | "model") => true,
            None | Some("") => self == Api::Gemini,
            Some(_) => false,
        }
    }
}

/// The methods of `models/{model}:{method}` the mock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Generate,
    Stream,
    Embed,
    BatchEmbed,
}

impl Method {
    pub(super) fn parse(name: &str) -> Option<Self> {
        match name {
            "generateContent" => Some(Method::Generate),
            "streamGenerateContent" => Some(Method::Stream),
            "embedContent" => Some(Method::Embed),
            "batchEmbedContents" => Some(Method::BatchEmbed),
            _ => None,
        }
    }

    /// The route the method is counted under.
    fn route(self) -> Route {
        match self {
            Method::Generate => Route::GeminiGenerateContent,
            Method::Stream => Route::GeminiStreamGenerateContent,
            Method::Embed => Route::GeminiEmbedContent,
            Method::BatchEmbed => Route::GeminiBatchEmbedContents,
        }
    }
}

/// The path segment `{model}:{method}` split at its last `:`; `None` without one or with an
/// empty model.
pub(super) fn split_call(call: &str) -> Option<(&str, &str)> {
    let (model, method) = call.rsplit_once(':')?;
    (!model.is_empty()).then_some((model, method))
}

/// `headers` with the `?key=` of the query moved into `x-goog-api-key` when that header is
/// absent, so that the key is read in one place.
fn with_query_key(mut headers: HeaderMap, query: &HashMap<String, String>) -> HeaderMap {
    if !headers.contains_key(GEMINI_KEY_HEADER) {
        if let Some(value) = query
            .get("key")
            .and_then(|key| HeaderValue::from_str(key).ok())
        {
            headers.insert(GEMINI_KEY_HEADER, value);
        }
    }
    headers
}

/// `POST /v1beta/models/{model}:{method}`: counted by route, key and model, then answered by
/// the method.
pub async fn call(
    State(state): State<Arc<MockState>>,
    Path(call): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers = with_query_key(headers, &query);
    let Some((model, method)) =
        split_call(&call).and_then(|(model, name)| Some((model, Method::parse(name)?)))
    else {
        let error = ApiError::not_found(format!("mock: no such method: models/{call}"));
        return with_key_header(error.render(Wire::Gemini), Wire::Gemini.api_key(&headers));
    };
    let framing = Framing::of(method, &query);
    state.stats.record_model(model);
    state
        .serve_inference(
            Wire::Gemini,
            method.route(),
            &headers,
            |pace| match method {
                Method::Generate | Method::Stream => {
                    generate(&state, Api::Gemini, pace, model, &body, framing)
                }
                Method::Embed => embed_content(&state, model, &body),
                Method::BatchEmbed => batch_embed_contents(&state, model, &body),
            },
        )
        .await
}

/// `GET /v1beta/models`: every configured model (not counted as inference).
pub async fn list_models(
    State(state): State<Arc<MockState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    listing(&state, &query, headers, || {
        Ok(([(CONTENT_TYPE, "application/json")], state.models.gemini()).into_response())
    })
}

/// `GET /v1beta/models/{model}`: one configured model, or Google's 404.
pub async fn get_model(
    State(state): State<Arc<MockState>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    listing(&state, &query, headers, || {
        if state.models.contains(&id) {
            Ok(Json(model(&id)).into_response())
        } else {
            Err(ApiError::not_found(format!(
                "models/{id} is not found for API version v1beta"
            )))
        }
    })
}

/// A model read: the key checked, then `respond`.
fn listing(
    state: &MockState,
    query: &HashMap<String, String>,
    headers: HeaderMap,
    respond: impl FnOnce() -> Result<Response, ApiError>,
) -> Response {
    let headers = with_query_key(headers, query);
    let key = Wire::Gemini.api_key(&headers);
    let response = state
        .authenticate(Wire::Gemini, key)
        .and_then(|()| respond())
        .unwrap_or_else(|error| error.render(Wire::Gemini));
    with_key_header(response, key)
}

/// One `Model` as `GET /v1beta/models` lists it: ids with `embed` in them embed, the others
/// generate.
pub(super) fn model(id: &str) -> Value {
    let methods: &[&str] = if id.contains("embed") {
        &["embedContent", "batchEmbedContents"]
    } else {
        &["generateContent", "streamGenerateContent"]
    };
    json!({
        "name": format!("models/{id}"),
        "version": "mock",
        "displayName": id,
        "description": "A model of the mock provider.",
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": methods,
    })
}

// ---- Reading request bodies the way Google's parser does.

/// `name` in lowerCamel: the JSON name of a proto field that may also come in snake_case.
fn lower_camel(name: &str) -> Cow<'_, str> {
    if !name.contains('_') {
        return Cow::Borrowed(name);
    }
    let mut camel = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            camel.extend(c.to_uppercase());
            upper = false;
        } else {
            camel.push(c);
        }
    }
    Cow::Owned(camel)
}

/// Google's 400 for a body that is not JSON or does not fit the request type.
fn invalid_payload(error: serde_json::Error) -> ApiError {
    ApiError::invalid_request(format!("Invalid JSON payload received. {error}"))
}

/// Google's 400 for a field the request type does not have; `at` is the path of the enclosing
/// message in proto names (`generation_config`, `contents[0].parts[1]`), empty at the top.
fn unknown_name(name: &str, at: &str) -> ApiError {
    let at = if at.is_empty() {
        String::new()
    } else {
        format!(" at '{at}'")
    };
    ApiError::invalid_request(format!(
        "Invalid JSON payload received. Unknown name \"{name}\"{at}: Cannot find field."
    ))
}

/// `at.field`, or `field` at the top.
fn path(at: &str, field: &str) -> String {
    if at.is_empty() {
        field.to_owned()
    } else {
        format!("{at}.{field}")
    }
}

/// Rejects the first field of `object` (in name order) that is in none of the lists of `known`.
fn check_fields(object: &Map<String, Value>, known: &[&[&str]], at: &str) -> Result<(), ApiError> {
    let is_known = |name: &str| known.iter().any(|fields| fields.contains(&name));
    match object.keys().find(|name| !is_known(&lower_camel(name))) {
        Some(name) => Err(unknown_name(name, at)),
        None => Ok(()),
    }
}

/// The value of the field known as `camel` (lowerCamel), in whichever spelling it came.
fn field<'a>(object: &'a Map<String, Value>, camel: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(name, _)| lower_camel(name) == camel)
        .map(|(_, value)| value)
}

/// The body as a JSON object; an empty body is `{}`, as Google takes it.
fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    as_object(serde_json::from_slice(body).map_err(invalid_payload)?)
}

/// `value` as an object, or Google's 400 for a message that is not one.
fn as_object(value: Value) -> Result<Map<String, Value>, ApiError> {
    match value {
        Value::Object(object) => Ok(object),
        _ => Err(ApiError::invalid_request(
            "Invalid JSON payload received. Unknown name \"\": Root element must be a message.",
        )),
    }
}

/// Checks the fields of a `Content` at `at` and of its parts, and that each part holds exactly
/// one kind of data; other shapes are left to the typed parse.
fn check_content(content: &Value, at: &str) -> Result<(), ApiError> {
    let Some(content) = content.as_object() else {
        return Ok(());
    };
    check_fields(content, &[CONTENT_FIELDS], at)?;
    let parts = field(content, "parts").and_then(Value::as_array);
    for (i, part) in parts.into_iter().flatten().enumerate() {
        let Some(part) = part.as_object() else {
            continue;
        };
        let at = path(at, &format!("parts[{i}]"));
        check_fields(part, &[PART_FIELDS], &at)?;
        let data = PART_DATA_FIELDS
            .iter()
            .filter(|&&name| field(part, name).is_some_and(|value| !value.is_null()))
            .count();
        if data != 1 {
            return Err(ApiError::invalid_request(format!(
                "* GenerateContentRequest.{at}.data: required oneof field 'data' must have one \
                 initialized field\n"
            )));
        }
    }
    Ok(())
}

/// A `generateContent` body of `api`: checked for unknown fields, then read into what the mock
/// uses.
fn parse_generate(api: Api, body: &[u8]) -> Result<GenerateRequest, ApiError> {
    let object = parse_object(body)?;
    check_fields(&object, api.request_fields(), "")?;
    if let Some(config) = field(&object, "generationConfig").and_then(Value::as_object) {
        check_fields(config, api.generation_config_fields(), "generation_config")?;
    }
    if let Some(system) = field(&object, "systemInstruction") {
        check_content(system, "system_instruction")?;
    }
    let contents = field(&object, "contents").and_then(Value::as_array);
    for (i, content) in contents.into_iter().flatten().enumerate() {
        check_content(content, &format!("contents[{i}]"))?;
    }
    let request: GenerateRequest =
        serde_json::from_value(Value::Object(object)).map_err(invalid_payload)?;
    request.validate(api)?;
    Ok(request)
}

/// A `GenerateContentRequest`: what the mock reads of it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateRequest {
    #[serde(default)]
    contents: Vec<Content>,
    #[serde(alias = "system_instruction")]
    system_instruction: Option<Content>,
    #[serde(default)]
    tools: Vec<Tool>,
    #[serde(alias = "tool_config")]
    tool_config: Option<ToolConfig>,
    #[serde(alias = "generation_config")]
    generation_config: Option<GenerationConfig>,
}

#[derive(Debug, Deserialize)]
struct Content {
    role: Option<String>,
    #[serde(default)]
    parts: Vec<Part>,
}

/// A part; only its text counts for the reply, and whether it answers a function call.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part {
    text: Option<String>,
    #[serde(alias = "function_response")]
    function_response: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tool {
    #[serde(default, alias = "function_declarations")]
    function_declarations: Vec<FunctionDeclaration>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionDeclaration {
    #[serde(default)]
    name: String,
    parameters: Option<Schema>,
    #[serde(alias = "parameters_json_schema")]
    parameters_json_schema: Option<Schema>,
}

/// The part of a parameters schema (Google's `Schema` or JSON Schema) the mock call fills in.
#[derive(Debug, Deserialize)]
struct Schema {
    properties: Option<Map<String, Value>>,
    required: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig {
    #[serde(alias = "function_calling_config")]
    function_calling_config: Option<FunctionCallingConfig>,
}

#[derive(Debug, Deserialize)]
struct FunctionCallingConfig {
    mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    #[serde(alias = "max_output_tokens")]
    max_output_tokens: Option<u64>,
}

impl GenerateRequest {
    /// Google's checks of what the typed parse lets through, with its messages.
    fn validate(&self, api: Api) -> Result<(), ApiError> {
        if self.contents.is_empty() {
            return Err(ApiError::invalid_request(
                "* GenerateContentRequest.contents: contents is not specified\n",
            ));
        }
        for (i, content) in self.contents.iter().enumerate() {
            if !api.accepts_role(content.role.as_deref()) {
                return Err(ApiError::invalid_request(
                    "Please use a valid role: user, model.",
                ));
            }
            if content.parts.is_empty() {
                return Err(ApiError::invalid_request(format!(
                    "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be \
                     empty.\n"
                )));
            }
        }
        for (i, tool) in self.tools.iter().enumerate() {
            for (j, declaration) in tool.function_declarations.iter().enumerate() {
                if declaration.name.is_empty() {
                    return Err(ApiError::invalid_request(format!(
                        "* GenerateContentRequest.tools[{i}].function_declarations[{j}].name: \
                         Name cannot be empty.\n"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The function the mock calls: the first declared, unless the last content answers a call
    /// or calling is switched off.
    fn function_to_call(&self) -> Option<&FunctionDeclaration> {
        let answers_a_call = self.contents.last().is_some_and(Content::answers_a_call);
        let mode = self
            .tool_config
            .as_ref()
            .and_then(|config| config.function_calling_config.as_ref())
            .and_then(|config| config.mode.as_deref());
        if answers_a_call || mode == Some("NONE") {
            return None;
        }
        self.tools
            .iter()
            .flat_map(|tool| &tool.function_declarations)
            .next()
    }
}

impl Content {
    /// Whether every part is a function response.
    fn answers_a_call(&self) -> bool {
        !self.parts.is_empty()
            && self
                .parts
                .iter()
                .all(|part| part.function_response.is_some())
    }

    /// The content as a chat message for [`prompt`]: its text parts; a content of function
    /// responses is a tool message, as in OpenAI's API, so the reply still quotes the user.
    fn to_message(&self) -> Message {
        let role = match self.role.as_deref() {
            _ if self.answers_a_call() => "tool",
            None | Some("") => "user",
            Some(role) => role,
        };
        let parts = self
            .parts
            .iter()
            .map(|part| prompt::Part {
                text: part.text.clone(),
            })
            .collect();
        Message {
            role: role.to_owned(),
            content: Some(prompt::Content::Parts(parts)),
        }
    }

    /// The text parts joined by spaces.
    fn text(&self) -> String {
        let texts: Vec<&str> = self
            .parts
            .iter()
            .filter_map(|part| part.text.as_deref())
            .collect();
        texts.join(" ")
    }
}

impl FunctionDeclaration {
    /// Arguments of the mock call: `"mock"` for each required property of the parameters.
    fn mock_args(&self) -> Map<String, Value> {
        let Some(schema) = self
            .parameters
            .as_ref()
            .or(self.parameters_json_schema.as_ref())
        else {
            return Map::new();
        };
        let Some(properties) = &schema.properties else {
            return Map::new();
        };
        schema
            .required
            .iter()
            .flatten()
            .filter(|name| properties.contains_key(name.as_str()))
            .map(|name| (name.clone(), Value::from("mock")))
            .collect()
    }
}

// ---- Answers.

/// A `GenerateContentResponse`, whole or one stream chunk.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateResponse<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    candidates: Vec<Candidate<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: UsageMetadata,
    model_version: &'a str,
    response_id: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Candidate<'a> {
    content: ReplyContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'static str>,
    index: u32,
}

#[derive(Debug, Serialize)]
struct ReplyContent<'a> {
    role: &'static str,
    /// Absent, as in Google's answers, when a token limit of 0 left nothing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    parts: Vec<ReplyPart<'a>>,
}

/// `{"text": ...}` or `{"functionCall": ...}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
enum ReplyPart<'a> {
    Text(&'a str),
    FunctionCall(FunctionCall<'a>),
}

#[derive(Debug, Serialize)]
struct FunctionCall<'a> {
    name: &'a str,
    args: Map<String, Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: &'static str,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    prompt_token_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidates_token_count: Option<u64>,
    total_token_count: u64,
}

/// What every response or chunk of one call repeats.
#[derive(Debug)]
struct Header<'a> {
    model: &'a str,
    response_id: &'a str,
    prompt_tokens: u64,
}

impl<'a> Header<'a> {
    /// A response with `parts`; `end` (finish reason and candidate tokens) marks the last one,
    /// which alone has the full usage; earlier chunks carry the prompt's, as Google's do.
    fn response(
        &self,
        parts: Vec<ReplyPart<'a>>,
        end: Option<(&'static str, u64)>,
    ) -> GenerateResponse<'a> {
        let (finish_reason, candidates_tokens) = end.unzip();
        GenerateResponse {
            candidates: vec![Candidate {
                content: ReplyContent {
                    role: "model",
                    parts,
                },
                finish_reason,
                index: 0,
            }],
            prompt_feedback: None,
            usage_metadata: self.usage(candidates_tokens),
            model_version: self.model,
            response_id: self.response_id,
        }
    }

    /// The answer to a blocked prompt: no candidates.
    fn blocked(&self) -> GenerateResponse<'a> {
        GenerateResponse {
            candidates: Vec::new(),
            prompt_feedback: Some(PromptFeedback {
                block_reason: "SAFETY",
            }),
            usage_metadata: self.usage(None),
            model_version: self.model,
            response_id: self.response_id,
        }
    }

    fn usage(&self, candidates_tokens: Option<u64>) -> UsageMetadata {
        UsageMetadata {
            prompt_token_count: self.prompt_tokens,
            candidates_token_count: candidates_tokens,
            total_token_count: self.prompt_tokens + candidates_tokens.unwrap_or(0),
        }
    }
}

/// How a `generateContent` answer is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// `generateContent`: one response.
    Json,
    /// `streamGenerateContent?alt=sse`: one `data:` event per chunk, paced.
    Sse,
    /// `streamGenerateContent` without `alt=sse`: the chunks as one JSON array, not paced.
    Array,
}

impl Framing {
    /// How `method` answers a request with `query`.
    pub(super) fn of(method: Method, query: &HashMap<String, String>) -> Self {
        match method {
            Method::Stream if query.get("alt").is_some_and(|alt| alt == "sse") => Framing::Sse,
            Method::Stream => Framing::Array,
            _ => Framing::Json,
        }
    }
}

/// `generateContent` and `streamGenerateContent` of `api` for `model`.
pub(super) fn generate(
    state: &MockState,
    api: Api,
    pace: Pace,
    model: &str,
    body: &[u8],
    framing: Framing,
) -> Result<Response, ApiError> {
    let request = parse_generate(api, body)?;
    let messages: Vec<Message> = request.contents.iter().map(Content::to_message).collect();
    let system = request.system_instruction.as_ref().map(Content::to_message);
    let prompt_tokens = prompt::prompt_tokens(
        system
            .iter()
            .chain(&messages)
            .filter_map(|message| message.content.as_ref()),
    );
    let reply = prompt::reply_to(&messages);
    let response_id = format!("mock-gemini-{}", state.next_id());
    let header = Header {
        model,
        response_id: &response_id,
        prompt_tokens,
    };

    if reply.contains(BLOCK_MARKER) {
        return send_one(framing, pace, header.blocked());
    }
    if let Some(function) = request.function_to_call() {
        let call = ReplyPart::FunctionCall(FunctionCall {
            name: &function.name,
            args: function.mock_args(),
        });
        return send_one(
            framing,
            pace,
            header.response(vec![call], Some(("STOP", 1))),
        );
    }

    let max_tokens = request
        .generation_config
        .as_ref()
        .and_then(|config| config.max_output_tokens);
    let (chunks, truncated) =
        prompt::limit_chunks(prompt::split_even(&reply, pace.chunks), max_tokens);
    let end = (
        if truncated { "MAX_TOKENS" } else { "STOP" },
        chunks.len() as u64,
    );
    if framing == Framing::Json {
        let text = chunks.concat();
        let parts = text_parts(&text);
        return send_one(framing, pace, header.response(parts, Some(end)));
    }
    let last = chunks.len().saturating_sub(1);
    let mut events: Vec<GenerateResponse> = chunks
        .iter()
        .enumerate()
        .map(|(i, piece)| header.response(text_parts(piece), (i == last).then_some(end)))
        .collect();
    if events.is_empty() {
        events.push(header.response(Vec::new(), Some(end)));
    }
    send_stream(framing, pace, &events)
}

/// A text part, or none for empty text.
fn text_parts(text: &str) -> Vec<ReplyPart<'_>> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![ReplyPart::Text(text)]
    }
}

/// One response as `framing` sends it: as it is, or as a stream of one chunk.
fn send_one(
    framing: Framing,
    pace: Pace,
    response: GenerateResponse,
) -> Result<Response, ApiError> {
    match framing {
        Framing::Json => Ok(Json(response).into_response()),
        Framing::Sse | Framing::Array => send_stream(framing, pace, &[response]),
    }
}

/// Stream chunks: SSE events that wait the chunk delay between each other, or a JSON array.
fn send_stream(
    framing: Framing,
    pace: Pace,
    chunks: &[GenerateResponse],
) -> Result<Response, ApiError> {
    if framing != Framing::Sse {
        return Ok(Json(chunks).into_response());
    }
    let mut sse = SseStream::with_capacity(chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            sse.pause();
        }
        sse.data(chunk)?;
    }
    Ok(sse.into_response(pace.chunk_delay))
}

// ---- Embeddings.

/// An `EmbedContentRequest`: what the mock reads of it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest {
    model: Option<String>,
    content: Option<Content>,
    #[serde(alias = "output_dimensionality")]
    output_dimensionality: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Embedding {
    values: Vec<f32>,
}

/// An embedding request at `at` (empty at the top): checked for unknown fields, then read.
fn parse_embed(value: Value, at: &str) -> Result<EmbedRequest, ApiError> {
    let object = as_object(value)?;
    check_fields(&object, &[EMBED_FIELDS], at)?;
    if let Some(content) = field(&object, "content") {
        check_content(content, &path(at, "content"))?;
    }
    serde_json::from_value(Value::Object(object)).map_err(invalid_payload)
}

impl EmbedRequest {
    /// The vector of the content's text, `outputDimensionality` long or the configured length;
    /// `name` is the request's place in Google's messages.
    fn embed(&self, default_dims: usize, name: &str) -> Result<Embedding, ApiError> {
        let dims = match self.output_dimensionality {
            None => default_dims,
            Some(dims @ 1..) if dims <= MAX_EMBEDDING_DIMS as u64 => dims as usize,
            Some(dims) => {
                return Err(ApiError::invalid_request(format!(
                    "* {name}.output_dimensionality: {dims} is not within \
                     1..={MAX_EMBEDDING_DIMS}\n"
                )))
            }
        };
        let text = self.content.as_ref().map(Content::text).unwrap_or_default();
        if text.is_empty() {
            return Err(ApiError::invalid_request(format!(
                "* {name}.content: content must have a text part\n"
            )));
        }
        Ok(Embedding {
            values: embeddings::text_vector(&text, dims),
        })
    }

    /// Checks that the request's `model` is `models/<model of the URL>`; `required` says whether
    /// it may be absent.
    fn check_model(&self, model: &str, name: &str, required: bool) -> Result<(), ApiError> {
        let expected = format!("models/{model}");
        match self.model.as_deref() {
            None if !required => Ok(()),
            Some(given) if given == expected => Ok(()),
            given => Err(ApiError::invalid_request(format!(
                "* {name}.model: {} is not the model of the URL, {expected}\n",
                given.unwrap_or("(absent)")
            ))),
        }
    }
}

/// `embedContent`: `{"embedding": {"values": [...]}}`.
fn embed_content(state: &MockState, model: &str, body: &[u8]) -> Result<Response, ApiError> {
    let name = "EmbedContentRequest";
    let request = parse_embed(Value::Object(parse_object(body)?), "")?;
    request.check_model(model, name, false)?;
    let embedding = request.embed(state.embedding_dims, name)?;
    Ok(Json(json!({ "embedding": embedding })).into_response())
}

/// `batchEmbedContents`: `{"embeddings": [{"values": [...]}, ...]}`, one per request, each of
/// which must name the URL's model.
fn batch_embed_contents(state: &MockState, model: &str, body: &[u8]) -> Result<Response, ApiError> {
    let mut object = parse_object(body)?;
    check_fields(&object, &[&["requests"]], "")?;
    let requests = match object.remove("requests") {
        Some(Value::Array(requests)) => requests,
        None | Some(Value::Null) => Vec::new(),
        Some(other) => {
            return Err(ApiError::invalid_request(format!(
                "Invalid JSON payload received. requests: expected a list, not {other}"
            )))
        }
    };
    if requests.is_empty() || requests.len() > MAX_BATCH_REQUESTS {
        return Err(ApiError::invalid_request(format!(
            "* BatchEmbedContentsRequest.requests: 1..={MAX_BATCH_REQUESTS} requests are \
             required, not {}\n",
            requests.len()
        )));
    }
    let embeddings = requests
        .into_iter()
        .enumerate()
        .map(|(i, request)| {
            let request = parse_embed(request, &format!("requests[{i}]"))?;
            let name = format!("BatchEmbedContentsRequest.requests[{i}]");
            request.check_model(model, &name, true)?;
            request.embed(state.embedding_dims, &name)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "embeddings": embeddings })).into_response())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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

    async fn body_of(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body reads");
        String::from_utf8(bytes.to_vec()).expect("UTF-8 body")
    }

    /// The JSON answer of `generateContent` to `body`.
    async fn generated(body: Value) -> Value {
        let state = MockState::new(&MockConfig::default());
        let response = generate(
            &state,
            Api::Gemini,
            pace(3),
            "gemini-2.5-flash",
            body.to_string().as_bytes(),
            Framing::Json,
        )
        .expect("answered");
        serde_json::from_str(&body_of(response).await).expect("JSON answer")
    }

    #[test]
    fn the_call_is_split_at_its_last_colon() {
        assert_eq!(
            split_call("gemini-2.5-flash:generateContent"),
            Some(("gemini-2.5-flash", "generateContent"))
        );
        assert_eq!(
            split_call("a:b:embedContent"),
            Some(("a:b", "embedContent"))
        );
        assert_eq!(split_call("gemini-2.5-flash"), None);
        assert_eq!(split_call(":generateContent"), None);
        assert_eq!(Method::parse("countTokens"), None);
        assert_eq!(Method::parse("streamGenerateContent"), Some(Method::Stream));
    }

    #[test]
    fn the_query_key_is_used_only_without_the_header() {
        let query = HashMap::from([("key".to_owned(), "from-query".to_owned())]);
        let headers = with_query_key(HeaderMap::new(), &query);
        assert_eq!(Wire::Gemini.api_key(&headers), "from-query");
        let mut with_header = HeaderMap::new();
        with_header.insert(GEMINI_KEY_HEADER, HeaderValue::from_static("from-header"));
        let headers = with_query_key(with_header, &query);
        assert_eq!(Wire::Gemini.api_key(&headers), "from-header");
    }

    #[test]
    fn unknown_fields_are_named_where_they_are() {
        let parse = |body: Value| message(parse_generate(Api::Gemini, body.to_string().as_bytes()));
        let contents = json!([{"role": "user", "parts": [{"text": "hi"}]}]);
        assert_eq!(
            parse(json!({"contents": contents, "stream": true})),
            "Invalid JSON payload received. Unknown name \"stream\": Cannot find field."
        );
        assert_eq!(
            parse(json!({"contents": contents, "generationConfig": {"max_tokens": 5}})),
            "Invalid JSON payload received. Unknown name \"max_tokens\" at 'generation_config': \
             Cannot find field."
        );
        assert_eq!(
            parse(json!({"contents": [{"role": "user", "parts": [{"text": "a", "type": "t"}]}]})),
            "Invalid JSON payload received. Unknown name \"type\" at 'contents[0].parts[0]': \
             Cannot find field."
        );
        assert!(parse(json!({"contents": []})).contains("contents is not specified"));
        assert!(parse(json!({"contents": [{"parts": [{}]}]})).contains("oneof field 'data'"));
        assert!(
            parse(json!({"contents": [{"role": "assistant", "parts": [{"text": "a"}]}]}))
                .contains("valid role")
        );
    }

    #[test]
    fn fields_may_come_in_either_spelling() {
        let request = parse_generate(
            Api::Gemini,
            json!({
                "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                "system_instruction": {"parts": [{"text": "be brief"}]},
                "generation_config": {"max_output_tokens": 2, "thinkingConfig": {"thinking_budget": 0}},
            })
            .to_string()
            .as_bytes(),
        )
        .expect("accepted");
        assert!(request.system_instruction.is_some());
        assert_eq!(
            request.generation_config.and_then(|c| c.max_output_tokens),
            Some(2)
        );
        assert_eq!(lower_camel("response_json_schema"), "responseJsonSchema");
        assert_eq!(lower_camel("topK"), "topK");
    }

    #[test]
    fn vertex_requires_roles_and_takes_its_own_fields() {
        let parse = |api: Api, body: Value| parse_generate(api, body.to_string().as_bytes());
        let no_role = json!({"contents": [{"parts": [{"text": "hi"}]}]});
        assert!(parse(Api::Gemini, no_role.clone()).is_ok());
        assert_eq!(
            message(parse(Api::Vertex, no_role)),
            "Please use a valid role: user, model."
        );
        let empty_role = json!({"contents": [{"role": "", "parts": [{"text": "hi"}]}]});
        assert!(message(parse(Api::Vertex, empty_role)).contains("valid role"));
        let vertex_only = json!({
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "generationConfig": {"audioTimestamp": true, "routingConfig": {}},
            "modelArmorConfig": {},
        });
        assert!(parse(Api::Vertex, vertex_only.clone()).is_ok());
        assert!(message(parse(Api::Gemini, vertex_only)).contains("Unknown name"));
    }

    #[tokio::test]
    async fn the_reply_quotes_the_last_user_text_with_usage() {
        let answer = generated(json!({
            "contents": [{"role": "user", "parts": [{"text": "hello"}, {"text": "there"}]}],
            "systemInstruction": {"parts": [{"text": "be brief"}]},
        }))
        .await;
        let candidate = &answer["candidates"][0];
        assert_eq!(candidate["content"]["role"], "model");
        assert_eq!(
            candidate["content"]["parts"],
            json!([{"text": "mock reply to: hello there"}])
        );
        assert_eq!(candidate["finishReason"], "STOP");
        assert_eq!(
            answer["usageMetadata"],
            json!({"promptTokenCount": 4, "candidatesTokenCount": 3, "totalTokenCount": 7})
        );
        assert_eq!(answer["modelVersion"], "gemini-2.5-flash");
        assert!(answer["responseId"].is_string());
    }

    #[tokio::test]
    async fn declared_functions_are_called_until_answered() {
        let tools = json!([{"functionDeclarations": [
            {"name": "get_weather", "parameters": {"type": "OBJECT",
             "properties": {"city": {"type": "STRING"}, "unit": {"type": "STRING"}},
             "required": ["city"]}},
            {"name": "other"},
        ]}]);
        let ask = json!({"role": "user", "parts": [{"text": "weather?"}]});
        let answer = generated(json!({"contents": [ask], "tools": tools})).await;
        assert_eq!(
            answer["candidates"][0]["content"]["parts"],
            json!([{"functionCall": {"name": "get_weather", "args": {"city": "mock"}}}])
        );
        let answered = json!({"contents": [ask,
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {}}}]}],
            "tools": tools});
        let answer = generated(answered).await;
        assert_eq!(
            answer["candidates"][0]["content"]["parts"],
            json!([{"text": "mock reply to: weather?"}])
        );
    }

    #[tokio::test]
    async fn a_marked_prompt_is_blocked_and_max_tokens_cuts_the_stream() {
        let answer = generated(json!({"contents": [{"parts": [{"text": "x [[block]]"}]}]})).await;
        assert!(answer.get("candidates").is_none(), "{answer}");
        assert_eq!(answer["promptFeedback"]["blockReason"], "SAFETY");
        assert_eq!(
            answer["usageMetadata"],
            json!({"promptTokenCount": 2, "totalTokenCount": 2})
        );

        let state = MockState::new(&MockConfig::default());
        let body = json!({"contents": [{"parts": [{"text": "hi"}]}],
                          "generationConfig": {"maxOutputTokens": 2}});
        let response = generate(
            &state,
            Api::Gemini,
            pace(4),
            "m",
            body.to_string().as_bytes(),
            Framing::Array,
        )
        .expect("answered");
        let chunks: Vec<Value> =
            serde_json::from_str(&body_of(response).await).expect("a JSON array");
        assert_eq!(chunks.len(), 2);
        assert!(chunks[0]["candidates"][0].get("finishReason").is_none());
        assert_eq!(
            chunks[0]["usageMetadata"],
            json!({"promptTokenCount": 1, "totalTokenCount": 1})
        );
        assert_eq!(chunks[1]["candidates"][0]["finishReason"], "MAX_TOKENS");
        assert_eq!(chunks[1]["usageMetadata"]["candidatesTokenCount"], 2);
    }

    #[test]
    fn batch_embeddings_must_name_the_urls_model() {
        let state = MockState::new(&MockConfig::default());
        let request = |model: &str, dims: u64| {
            json!({"model": model, "content": {"parts": [{"text": "a"}]},
                   "outputDimensionality": dims})
        };
        let body = json!({"requests": [request("models/e", 4), request("models/e", 4)]});
        assert!(batch_embed_contents(&state, "e", body.to_string().as_bytes()).is_ok());
        let body = json!({"requests": [request("models/e", 4), request("models/f", 4)]});
        let error = message(batch_embed_contents(
            &state,
            "e",
            body.to_string().as_bytes(),
        ));
        assert!(error.contains("requests[1].model"), "{error}");
        let body = json!({"requests": [request("models/e", 0)]});
        let error = message(batch_embed_contents(
            &state,
            "e",
            body.to_string().as_bytes(),
        ));
        assert!(error.contains("output_dimensionality"), "{error}");
        let body = json!({"requests": [{"model": "models/e", "content": {"parts": [{"text": "a"}]}, "extra": 1}]});
        let error = message(batch_embed_contents(
            &state,
            "e",
            body.to_string().as_bytes(),
        ));
        assert!(error.contains("\"extra\" at 'requests[0]'"), "{error}");
    }
}
