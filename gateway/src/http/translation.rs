//! The translation table: for each pair of caller dialect and provider wire format, how the
//! request body, a complete JSON answer and a stream get from one side to the other (and, for
//! OpenAI callers, embeddings). A new
//! provider format is one more row per dialect in [`Translation::between`]; the request
//! pipeline only ever asks the row.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use super::errors::Dialect;
use super::inference::Route;
use crate::config::ProviderKind;
use crate::error::GatewayError;
use crate::providers::sse::{SseEvent, SseParser, StreamTranslator};
use crate::providers::translate::{
    self, ChatStreamToMessages, ConverseStreamToChat, GeminiStreamToChat, MessagesStreamToChat,
};
use crate::providers::UpstreamOp;
use crate::routing::{Target, UpstreamBody};

/// A caller's chat or messages body in a provider's format (without `model`: each target's
/// model is put in when the body is encoded).
type RequestTranslator = fn(&Map<String, Value>, &str) -> Result<Value, translate::TranslateError>;

/// What translating an answer needs to know about the request it answers.
pub struct Answering<'a> {
    /// The model the target was asked for (Gemini answers may not name it).
    pub model: &'a str,
    /// The caller asked for `encoding_format: "base64"` embeddings.
    pub base64_embeddings: bool,
    /// The prompt tokens the upstream counted outside the body (Bedrock InvokeModel's
    /// `x-amzn-bedrock-input-token-count`).
    pub input_tokens: Option<u64>,
}

/// A provider's complete answer in the caller's format.
type ResponseTranslator = fn(&Value, &Answering) -> Result<Value, translate::TranslateError>;

/// A translator of a provider's SSE events into the caller's; the flag is the caller's
/// `stream_options.include_usage`.
type StreamTranslatorFor = fn(bool) -> Box<dyn StreamTranslator>;

/// How a request body reaches the provider.
#[derive(Clone, Copy)]
enum RequestBody {
    /// The caller's body as it is (its `model` replaced). A streaming body that must report
    /// usage to be charged is changed by `ask_for_usage`, when the format needs asking.
    AsIs {
        ask_for_usage: Option<fn(&mut Map<String, Value>)>,
    },
    /// Translated into the provider's format.
    Translated(RequestTranslator),
}

/// How a format serves `POST /v1/embeddings`.
struct Embeddings {
    op: UpstreamOp,
    request: RequestBody,
    /// `None`: the answer passes through.
    response: Option<ResponseTranslator>,
}

/// One row of the table: a caller dialect meeting a provider wire format.
pub struct Translation {
    /// The operation serving chat and messages requests.
    completions: UpstreamOp,
    /// The operation serving them when streamed (Gemini's differs; the others stream on the
    /// same operation with `stream: true` in the body).
    completions_stream: UpstreamOp,
    /// How the format serves embeddings; `None` when it has none.
    embeddings: Option<Embeddings>,
    /// How a chat or messages body is sent.
    request: RequestBody,
    /// How a complete answer comes back; `None`: passed through.
    response: Option<ResponseTranslator>,
    /// How a stream comes back; `None`: passed through chunk by chunk.
    stream: Option<StreamTranslatorFor>,
    /// How the provider frames a stream.
    framing: Framing,
}

/// How a provider's stream is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Server-sent events (`text/event-stream`).
    Sse,
    /// AWS event-stream binary messages (Bedrock's `converse-stream`).
    AwsEventStream,
}

/// Embeddings passed through as they are (OpenAI's format).
const OPENAI_EMBEDDINGS: Embeddings = Embeddings {
    op: UpstreamOp::Embeddings,
    request: RequestBody::AsIs {
        ask_for_usage: None,
    },
    response: None,
};

/// OpenAI callers on OpenAI-format providers: everything passes through.
const OPENAI_ON_OPENAI: Translation = Translation {
    completions: UpstreamOp::ChatCompletions,
    completions_stream: UpstreamOp::ChatCompletions,
    embeddings: Some(OPENAI_EMBEDDINGS),
    request: RequestBody::AsIs {
        ask_for_usage: Some(ask_for_usage),
    },
    response: None,
    stream: None,
    framing: Framing::Sse,
};

/// OpenAI callers on Anthropic providers: Chat Completions carried over Messages.
const OPENAI_ON_ANTHROPIC: Translation = Translation {
    completions: UpstreamOp::Messages,
    completions_stream: UpstreamOp::Messages,
    embeddings: None,
    request: RequestBody::Translated(translate::chat_request_to_messages),
    response: Some(|answer, _| translate::messages_response_to_chat(answer)),
    stream: Some(messages_stream_to_chat),
    framing: Framing::Sse,
};

/// OpenAI callers on Gemini: Chat Completions carried over generateContent, embeddings over
/// batchEmbedContents.
const OPENAI_ON_GEMINI: Translation = Translation {
    completions: UpstreamOp::GenerateContent,
    completions_stream: UpstreamOp::StreamGenerateContent,
    embeddings: Some(Embeddings {
        op: UpstreamOp::BatchEmbedContents,
        request: RequestBody::Translated(translate::embeddings_request_to_gemini),
        response: Some(|answer, answering| {
            translate::gemini_embeddings_to_openai(
                answer,
                answering.model,
                answering.base64_embeddings,
            )
        }),
    }),
    request: RequestBody::Translated(translate::chat_request_to_gemini),
    response: Some(|answer, answering| translate::gemini_response_to_chat(answer, answering.model)),
    stream: Some(gemini_stream_to_chat),
    framing: Framing::Sse,
};

/// Anthropic callers on OpenAI-format providers: Messages carried over Chat Completions (the
/// translated request asks for usage itself).
const ANTHROPIC_ON_OPENAI: Translation = Translation {
    completions: UpstreamOp::ChatCompletions,
    completions_stream: UpstreamOp::ChatCompletions,
    embeddings: None,
    request: RequestBody::Translated(translate::messages_request_to_chat),
    response: Some(|answer, _| translate::chat_response_to_messages(answer)),
    stream: Some(chat_stream_to_messages),
    framing: Framing::Sse,
};

/// Anthropic callers on Anthropic providers: everything passes through (Anthropic streams
/// always report usage).
const ANTHROPIC_ON_ANTHROPIC: Translation = Translation {
    completions: UpstreamOp::Messages,
    completions_stream: UpstreamOp::Messages,
    embeddings: None,
    request: RequestBody::AsIs {
        ask_for_usage: None,
    },
    response: None,
    stream: None,
    framing: Framing::Sse,
};

/// Anthropic callers on Gemini: through Chat Completions both ways (Messages → Chat →
/// generateContent, and back), so each direction is written once.
const ANTHROPIC_ON_GEMINI: Translation = Translation {
    completions: UpstreamOp::GenerateContent,
    completions_stream: UpstreamOp::StreamGenerateContent,
    embeddings: None,
    request: RequestBody::Translated(messages_request_to_gemini),
    response: Some(|answer, answering| {
        let chat = translate::gemini_response_to_chat(answer, answering.model)?;
        translate::chat_response_to_messages(&chat)
    }),
    stream: Some(gemini_stream_to_messages),
    framing: Framing::Sse,
};

/// OpenAI callers on Bedrock: Chat Completions carried over Converse, embeddings over
/// InvokeModel in the model family's body (Titan's or Cohere's, chosen per target).
const OPENAI_ON_BEDROCK: Translation = Translation {
    completions: UpstreamOp::Converse,
    completions_stream: UpstreamOp::ConverseStream,
    embeddings: Some(Embeddings {
        op: UpstreamOp::InvokeModel,
        request: RequestBody::Translated(translate::embeddings_request_to_bedrock),
        response: Some(|answer, answering| {
            translate::bedrock_embeddings_to_openai(
                answer,
                answering.model,
                answering.base64_embeddings,
                answering.input_tokens,
            )
        }),
    }),
    request: RequestBody::Translated(translate::chat_request_to_converse),
    response: Some(|answer, answering| {
        translate::converse_response_to_chat(answer, answering.model)
    }),
    stream: Some(converse_stream_to_chat),
    framing: Framing::AwsEventStream,
};

/// Anthropic callers on Bedrock: through Chat Completions both ways, as on Gemini.
const ANTHROPIC_ON_BEDROCK: Translation = Translation {
    completions: UpstreamOp::Converse,
    completions_stream: UpstreamOp::ConverseStream,
    embeddings: None,
    request: RequestBody::Translated(messages_request_to_converse),
    response: Some(|answer, answering| {
        let chat = translate::converse_response_to_chat(answer, answering.model)?;
        translate::chat_response_to_messages(&chat)
    }),
    stream: Some(converse_stream_to_messages),
    framing: Framing::AwsEventStream,
};

fn messages_stream_to_chat(include_usage: bool) -> Box<dyn StreamTranslator> {
    Box::new(MessagesStreamToChat::new(include_usage))
}

fn chat_stream_to_messages(_include_usage: bool) -> Box<dyn StreamTranslator> {
    Box::new(ChatStreamToMessages::new())
}

fn gemini_stream_to_chat(include_usage: bool) -> Box<dyn StreamTranslator> {
    Box::new(GeminiStreamToChat::new(include_usage))
}

/// Anthropic streams always end with usage, so the Chat Completions leg always carries it.
fn gemini_stream_to_messages(_include_usage: bool) -> Box<dyn StreamTranslator> {
    Box::new(Piped::new(
        GeminiStreamToChat::new(true),
        ChatStreamToMessages::new(),
    ))
}

fn converse_stream_to_chat(include_usage: bool) -> Box<dyn StreamTranslator> {
    Box::new(ConverseStreamToChat::new(include_usage))
}

fn converse_stream_to_messages(_include_usage: bool) -> Box<dyn StreamTranslator> {
    Box::new(Piped::new(
        ConverseStreamToChat::new(true),
        ChatStreamToMessages::new(),
    ))
}

fn messages_request_to_gemini(
    body: &Map<String, Value>,
    model: &str,
) -> Result<Value, translate::TranslateError> {
    via_chat(body, model, translate::chat_request_to_gemini)
}

fn messages_request_to_converse(
    body: &Map<String, Value>,
    model: &str,
) -> Result<Value, translate::TranslateError> {
    via_chat(body, model, translate::chat_request_to_converse)
}

/// An Anthropic Messages body translated to Chat Completions, then by `onward`.
fn via_chat(
    body: &Map<String, Value>,
    model: &str,
    onward: RequestTranslator,
) -> Result<Value, translate::TranslateError> {
    match translate::messages_request_to_chat(body, model)? {
        Value::Object(chat) => onward(&chat, model),
        _ => Err(translate::TranslateError::InvalidRequest(
            "the translated request is not a JSON object".into(),
        )),
    }
}

/// Two stream translators in a row: the first one's SSE output is parsed again and fed to
/// the second.
struct Piped<A, B> {
    first: A,
    parser: SseParser,
    second: B,
    between: Vec<u8>,
    events: Vec<SseEvent>,
}

impl<A: StreamTranslator, B: StreamTranslator> Piped<A, B> {
    fn new(first: A, second: B) -> Self {
        Self {
            first,
            parser: SseParser::default(),
            second,
            between: Vec::new(),
            events: Vec::new(),
        }
    }

    fn forward(&mut self, out: &mut Vec<u8>) {
        self.parser.push(&self.between, &mut self.events);
        self.between.clear();
        for event in self.events.drain(..) {
            self.second.on_event(event, out);
        }
    }
}

impl<A: StreamTranslator, B: StreamTranslator> StreamTranslator for Piped<A, B> {
    fn on_event(&mut self, event: SseEvent, out: &mut Vec<u8>) {
        self.first.on_event(event, &mut self.between);
        self.forward(out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.first.finish(&mut self.between);
        self.forward(out);
        self.parser.finish(&mut self.events);
        for event in self.events.drain(..) {
            self.second.on_event(event, out);
        }
        self.second.finish(out);
    }
}

impl Translation {
    /// The row for a caller speaking `dialect` served by a provider of format `kind`.
    pub fn between(dialect: Dialect, kind: ProviderKind) -> &'static Translation {
        match (dialect, kind) {
            (Dialect::OpenAi, ProviderKind::Openai) => &OPENAI_ON_OPENAI,
            (Dialect::OpenAi, ProviderKind::Anthropic) => &OPENAI_ON_ANTHROPIC,
            (Dialect::Anthropic, ProviderKind::Openai) => &ANTHROPIC_ON_OPENAI,
            (Dialect::Anthropic, ProviderKind::Anthropic) => &ANTHROPIC_ON_ANTHROPIC,
            (Dialect::OpenAi, ProviderKind::Gemini) => &OPENAI_ON_GEMINI,
            (Dialect::Anthropic, ProviderKind::Gemini) => &ANTHROPIC_ON_GEMINI,
            (Dialect::OpenAi, ProviderKind::Bedrock) => &OPENAI_ON_BEDROCK,
            (Dialect::Anthropic, ProviderKind::Bedrock) => &ANTHROPIC_ON_BEDROCK,
        }
    }

    /// The upstream operation and body plan for `route` (`stream`: the caller asked for a
    /// stream); `None` when this format cannot serve the route.
    fn request(&self, route: Route, stream: bool) -> Option<(UpstreamOp, RequestBody)> {
        match route {
            Route::Embeddings => self
                .embeddings
                .as_ref()
                .map(|embeddings| (embeddings.op, embeddings.request)),
            Route::ChatCompletions | Route::Messages if stream => {
                Some((self.completions_stream, self.request))
            }
            Route::ChatCompletions | Route::Messages => Some((self.completions, self.request)),
        }
    }

    /// A provider's complete answer to `route` (`bytes`, from `provider`) in the caller's
    /// format.
    pub fn response_body(
        &self,
        route: Route,
        provider: &str,
        answering: &Answering,
        bytes: Bytes,
    ) -> Result<Bytes, GatewayError> {
        let convert = match route {
            Route::Embeddings => self.embeddings.as_ref().and_then(|e| e.response),
            Route::ChatCompletions | Route::Messages => self.response,
        };
        let Some(convert) = convert else {
            return Ok(bytes);
        };
        let bad = |message: String| GatewayError::BadUpstreamResponse {
            provider: provider.to_string(),
            message,
        };
        let upstream: Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        let converted = convert(&upstream, answering).map_err(|error| match error {
            translate::TranslateError::Blocked(message) => GatewayError::ContentBlocked {
                provider: provider.to_string(),
                message,
            },
            other => bad(other.to_string()),
        })?;
        encode_into(&converted, bytes.len() + 256)
            .map_err(|e| bad(format!("cannot encode the translated answer: {e}")))
    }

    /// The translator for a provider's stream, or `None` when it passes through.
    /// `include_usage` is the caller's `stream_options.include_usage`.
    pub fn stream_translator(&self, include_usage: bool) -> Option<Box<dyn StreamTranslator>> {
        self.stream.map(|translator| translator(include_usage))
    }

    /// Whether the format has an embeddings operation.
    pub fn serves_embeddings(&self) -> bool {
        self.embeddings.is_some()
    }

    /// How the provider frames its streams.
    pub fn framing(&self) -> Framing {
        self.framing
    }
}

/// What is sent to targets of one wire format: the operation and the body without `model`
/// (each target's model is put in when it is encoded), or why the request cannot be
/// translated to that format (reported only if such a target is reached).
type PreparedBody = Result<(UpstreamOp, Map<String, Value>), translate::TranslateError>;

/// The upstream bodies for the wire formats the request's targets speak, built once before
/// dispatch. The caller's body is moved, not copied, when one format takes it as it is:
/// translations read it first, then it becomes that format's body or is dropped.
pub struct UpstreamBodies {
    /// At most one body per provider format.
    prepared: Vec<(ProviderKind, PreparedBody)>,
    /// The caller's body size: where an encoded body's buffer starts.
    capacity: usize,
}

impl UpstreamBodies {
    /// Prepare `body` (the caller's, `body_len` bytes on the wire, without `model`) for every
    /// format among `targets`. `stream`: the caller asked for a stream; `force_usage`: the
    /// caller did not ask for a stream's usage but it is needed for charging.
    pub fn prepare(
        route: Route,
        mut body: Map<String, Value>,
        body_len: usize,
        targets: &[Target],
        stream: bool,
        force_usage: bool,
    ) -> Self {
        let dialect = route.dialect();
        let mut kinds: Vec<ProviderKind> = Vec::new();
        for target in targets {
            if !kinds.contains(&target.kind) {
                kinds.push(target.kind);
            }
        }
        let mut prepared = Vec::with_capacity(kinds.len());
        let mut as_is = Vec::new();
        for kind in kinds {
            match Translation::between(dialect, kind).request(route, stream) {
                Some((op, RequestBody::Translated(translate))) => {
                    let body = translated(translate(&body, "")).map(|body| (op, body));
                    prepared.push((kind, body));
                }
                Some((op, RequestBody::AsIs { ask_for_usage })) => {
                    as_is.push((kind, op, ask_for_usage));
                }
                None => {}
            }
        }
        let last = as_is.len();
        for (n, (kind, op, ask_for_usage)) in as_is.into_iter().enumerate() {
            // The last format to take the caller's body as it is gets the body itself.
            let mut own = if n + 1 == last {
                std::mem::take(&mut body)
            } else {
                body.clone()
            };
            if let (true, Some(ask)) = (force_usage, ask_for_usage) {
                ask(&mut own);
            }
            prepared.push((kind, Ok((op, own))));
        }
        Self {
            prepared,
            // Room for the model name and a translation's few extra bytes.
            capacity: body_len + 256,
        }
    }

    /// The encoded body for `target`.
    pub fn for_target(&self, target: &Target) -> Result<UpstreamBody, GatewayError> {
        let prepared = self
            .prepared
            .iter()
            .find(|(kind, _)| *kind == target.kind)
            .map(|(_, prepared)| prepared);
        match prepared {
            // Claude on Vertex AI: Anthropic's body at the model's `:rawPredict`, the API
            // version in the body instead of the model.
            Some(Ok((UpstreamOp::Messages, body))) if target.provider.vertex => {
                let op = match body.get("stream") {
                    Some(Value::Bool(true)) => UpstreamOp::StreamRawPredict,
                    _ => UpstreamOp::RawPredict,
                };
                let versioned = OnVertex {
                    anthropic_version: (!body.contains_key("anthropic_version"))
                        .then_some(VERTEX_ANTHROPIC_VERSION),
                    rest: body,
                };
                Ok(UpstreamBody {
                    op,
                    body: encode_into(&versioned, self.capacity).map_err(encode_error)?,
                })
            }
            Some(Ok((op, body))) => Ok(UpstreamBody {
                op: *op,
                body: match op {
                    // Gemini and Bedrock name the model in the URL, not the body.
                    UpstreamOp::GenerateContent
                    | UpstreamOp::StreamGenerateContent
                    | UpstreamOp::Converse
                    | UpstreamOp::ConverseStream => {
                        encode_into(body, self.capacity).map_err(encode_error)?
                    }
                    UpstreamOp::BatchEmbedContents => {
                        batch_embed_body(body, &target.model, self.capacity)?
                    }
                    UpstreamOp::InvokeModel => invoke_model_body(body, target, self.capacity)?,
                    _ => with_model(body, &target.model, self.capacity)?,
                },
            }),
            Some(Err(error)) => Err(translate_error(error.clone())),
            None => Err(GatewayError::Config(format!(
                "no upstream body was prepared for provider \"{}\"",
                target.provider.name
            ))),
        }
    }
}

/// A translated request as a map without `model`.
fn translated(
    result: Result<Value, translate::TranslateError>,
) -> Result<Map<String, Value>, translate::TranslateError> {
    match result? {
        Value::Object(mut map) => {
            map.remove("model");
            Ok(map)
        }
        _ => Err(translate::TranslateError::InvalidRequest(
            "the translated request is not a JSON object".into(),
        )),
    }
}

/// Make an OpenAI-format upstream send the usage chunk at the end of a stream.
fn ask_for_usage(body: &mut Map<String, Value>) {
    let options = body
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    if let Some(options) = options.as_object_mut() {
        options.insert("include_usage".into(), Value::Bool(true));
    }
}

fn translate_error(error: translate::TranslateError) -> GatewayError {
    match error {
        translate::TranslateError::InvalidRequest(message)
        | translate::TranslateError::Blocked(message) => GatewayError::InvalidRequest(message),
        translate::TranslateError::InvalidResponse(message) => GatewayError::BadUpstreamResponse {
            provider: "upstream".into(),
            message,
        },
    }
}

/// The caller's body with the model replaced, serialized without copying the body.
#[derive(Serialize)]
struct WithModel<'a> {
    model: &'a str,
    #[serde(flatten)]
    rest: &'a Map<String, Value>,
}

/// The `anthropic_version` Vertex AI's Anthropic models take in the body.
pub const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// An Anthropic body for Vertex AI: the caller's, without `model` (it is in the URL), with
/// [`VERTEX_ANTHROPIC_VERSION`] unless the caller gave one.
#[derive(Serialize)]
struct OnVertex<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    anthropic_version: Option<&'a str>,
    #[serde(flatten)]
    rest: &'a Map<String, Value>,
}

/// `value` serialized into a buffer of `capacity` bytes to start with: sized from the body it
/// came from, a large body is neither serialized twice nor copied while the buffer grows.
fn encode_into(value: &impl Serialize, capacity: usize) -> serde_json::Result<Bytes> {
    let mut bytes = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut bytes, value)?;
    Ok(Bytes::from(bytes))
}

fn with_model(
    body: &Map<String, Value>,
    model: &str,
    capacity: usize,
) -> Result<Bytes, GatewayError> {
    encode_into(&WithModel { model, rest: body }, capacity).map_err(encode_error)
}

/// A Gemini batch of embedding requests, each naming `models/{model}` as Gemini requires.
fn batch_embed_body(
    body: &Map<String, Value>,
    model: &str,
    capacity: usize,
) -> Result<Bytes, GatewayError> {
    let mut body = body.clone();
    let name = Value::String(format!("models/{model}"));
    if let Some(Value::Array(requests)) = body.get_mut("requests") {
        for request in requests.iter_mut().filter_map(Value::as_object_mut) {
            request.insert("model".into(), name.clone());
        }
    }
    encode_into(&body, capacity).map_err(encode_error)
}

/// A Bedrock InvokeModel embeddings body for `target`, in the family of the model id its keys
/// send for the model (after `deployments` and `arn`): Titan's or Cohere's. Keys that map the
/// model to different families are refused, as one body cannot serve both.
fn invoke_model_body(
    reduced: &Map<String, Value>,
    target: &Target,
    capacity: usize,
) -> Result<Bytes, GatewayError> {
    let model = &target.model;
    let model_ids: Vec<String> = target
        .provider
        .keys
        .iter()
        .filter(|key| key.allows_model(model))
        .filter_map(|key| key.bedrock.as_ref())
        .map(|bedrock| bedrock.config.model_id(model))
        .collect();
    // No configured key lists the model (a caller's own key): the first key's mapping, as a
    // direct key uses it.
    let model_id = model_ids.first().cloned().unwrap_or_else(|| {
        let first = target
            .provider
            .keys
            .first()
            .and_then(|key| key.bedrock.as_ref());
        first.map_or_else(|| model.clone(), |bedrock| bedrock.config.model_id(model))
    });
    let Some(family) = translate::EmbeddingFamily::of(&model_id) else {
        return Err(GatewayError::InvalidRequest(format!(
            "model: \"{model}\" (Bedrock model id \"{model_id}\") is not an embedding model the gateway speaks on Bedrock: Amazon Titan (amazon.titan-embed-text-...) or Cohere (cohere.embed-...)"
        )));
    };
    if let Some(other) = model_ids
        .iter()
        .find(|id| translate::EmbeddingFamily::of(id) != Some(family))
    {
        return Err(GatewayError::InvalidRequest(format!(
            "model: the keys of provider \"{}\" send \"{model}\" as model ids of different families (\"{model_id}\", \"{other}\"): give them the same deployment",
            target.provider.name
        )));
    }
    let body =
        translate::bedrock_embeddings_body(reduced, family, &model_id).map_err(translate_error)?;
    encode_into(&body, capacity).map_err(encode_error)
}

fn encode_error(error: serde_json::Error) -> GatewayError {
    GatewayError::InvalidRequest(format!("cannot re-encode the request: {error}"))
}
