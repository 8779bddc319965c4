//! Anthropic's Messages API, as JSON or as an SSE stream: `POST /v1/messages`, and Claude on
//! Vertex AI (`:rawPredict`, `:streamRawPredict`; see [`Surface`]). A request that declares
//! `tools` gets a `tool_use` block calling the first one (arguments `"mock"` for each required
//! property of its `input_schema`) instead of text, unless its last message answers a call
//! (`tool_result` blocks) or `tool_choice` is `none`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::error::{ApiError, Wire};
use super::knobs::Pace;
use super::prompt::{self, Content, Message};
use super::sse::SseStream;
use super::stats::Route;
use super::MockState;

/// Where a Messages request came in: Anthropic's API names the model in the body; Vertex AI
/// names it in the URL, and the body must not, but must say `anthropic_version:
/// vertex-2023-10-16` (Vertex AI's own version of the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface<'a> {
    Anthropic,
    Vertex {
        /// The model in the URL.
        model: &'a str,
        /// `:streamRawPredict`: the body must ask for a stream.
        stream: bool,
    },
}

/// The `anthropic_version` Vertex AI takes.
pub const VERTEX_VERSION: &str = "vertex-2023-10-16";

#[derive(Debug, Deserialize)]
struct MessagesRequest {
    model: Option<String>,
    anthropic_version: Option<String>,
    max_tokens: u64,
    messages: Vec<Message>,
    system: Option<Content>,
    stream: Option<bool>,
    #[serde(default)]
    tools: Vec<Tool>,
    tool_choice: Option<ToolChoice>,
}

/// A declared tool; only its name and required properties matter to the mock.
#[derive(Debug, Deserialize)]
struct Tool {
    name: String,
    #[serde(default)]
    input_schema: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ToolChoice {
    #[serde(rename = "type")]
    kind: String,
}

impl Tool {
    /// Arguments of the mock call: `"mock"` for each required property of the schema.
    fn mock_input(&self) -> Map<String, Value> {
        let schema = self.input_schema.as_ref();
        let properties = schema
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object);
        let required = schema
            .and_then(|s| s.get("required"))
            .and_then(Value::as_array);
        match (properties, required) {
            (Some(properties), Some(required)) => required
                .iter()
                .filter_map(Value::as_str)
                .filter(|name| properties.contains_key(*name))
                .map(|name| (name.to_owned(), Value::from("mock")))
                .collect(),
            _ => Map::new(),
        }
    }
}

/// Whether the last message's content is all `tool_result` blocks (`body` as JSON).
fn answers_a_call(body: &Value) -> bool {
    let last = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|messages| messages.last());
    let blocks = last
        .and_then(|message| message.get("content"))
        .and_then(Value::as_array);
    blocks.is_some_and(|blocks| {
        !blocks.is_empty()
            && blocks
                .iter()
                .all(|block| block.get("type").and_then(Value::as_str) == Some("tool_result"))
    })
}

#[derive(Debug, Serialize)]
struct MessageBody<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: &'a [TextBlock<'a>],
    stop_reason: Option<&'static str>,
    stop_sequence: Option<()>,
    usage: Usage,
}

#[derive(Debug, Serialize)]
struct TextBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Debug, Serialize)]
struct Usage {
    input_tokens: u64,
    output_tokens: u64,
}

/// The stream events, in the order Anthropic sends them; serialized with their `type`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent<'a> {
    MessageStart {
        message: MessageBody<'a>,
    },
    ContentBlockStart {
        index: u32,
        content_block: TextBlock<'a>,
    },
    Ping,
    ContentBlockDelta {
        index: u32,
        delta: TextBlock<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: StopDelta,
        usage: OutputUsage,
    },
    MessageStop,
}

/// Adds `event` to the stream under its name.
fn send(sse: &mut SseStream, event: StreamEvent) -> Result<(), ApiError> {
    sse.event(event.name(), &event)
}

impl StreamEvent<'_> {
    /// The SSE `event:` name, equal to the `type` field.
    fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::Ping => "ping",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
        }
    }
}

#[derive(Debug, Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

#[derive(Debug, Serialize)]
struct OutputUsage {
    output_tokens: u64,
}

/// `POST /v1/messages`.
pub async fn messages(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state
        .serve_inference(Wire::Anthropic, Route::Messages, &headers, |pace| {
            reply(&state, pace, &body, Surface::Anthropic)
        })
        .await
}

/// The answer to a Messages request `body` that came in on `surface`.
pub fn reply(
    state: &MockState,
    pace: Pace,
    body: &[u8],
    surface: Surface,
) -> Result<Response, ApiError> {
    let request: MessagesRequest = serde_json::from_slice(body).map_err(ApiError::invalid_body)?;
    let model = match (surface, &request.model, &request.anthropic_version) {
        (Surface::Anthropic, Some(model), None) => model.clone(),
        (Surface::Anthropic, None, _) => {
            return Err(ApiError::invalid_request("mock: model: Field required"))
        }
        (Surface::Anthropic, Some(_), Some(_)) => {
            return Err(ApiError::invalid_request(
                "mock: anthropic_version: Extra inputs are not permitted",
            ))
        }
        (Surface::Vertex { .. }, Some(_), _) => return Err(ApiError::invalid_request(
            "mock: model: Extra inputs are not permitted (Vertex AI names the model in the URL)",
        )),
        (Surface::Vertex { model, stream }, None, Some(version)) if version == VERTEX_VERSION => {
            if stream && request.stream != Some(true) {
                return Err(ApiError::invalid_request(
                    "mock: streamRawPredict needs \"stream\": true in the body",
                ));
            }
            model.to_owned()
        }
        (Surface::Vertex { .. }, None, version) => {
            return Err(ApiError::invalid_request(format!(
            "mock: anthropic_version: must be \"{VERTEX_VERSION}\" on Vertex AI, got {version:?}"
        )))
        }
    };
    let tool = match request.tool_choice.as_ref().map(|c| c.kind.as_str()) {
        Some("none") => None,
        _ if request.tools.is_empty() => None,
        _ => {
            let json: Value = serde_json::from_slice(body).map_err(ApiError::invalid_body)?;
            (!answers_a_call(&json)).then(|| &request.tools[0])
        }
    };
    if request.messages.is_empty() {
        return Err(ApiError::invalid_request(
            "mock: messages: at least one message is required",
        ));
    }
    if request.max_tokens == 0 {
        return Err(ApiError::invalid_request(
            "mock: max_tokens: must be at least 1",
        ));
    }

    let text = prompt::reply_to(&request.messages);
    let (chunks, truncated) = prompt::limit_chunks(
        prompt::split_even(&text, pace.chunks),
        Some(request.max_tokens),
    );
    let stop_reason = if truncated { "max_tokens" } else { "end_turn" };
    let contents = request
        .system
        .iter()
        .chain(request.messages.iter().filter_map(|m| m.content.as_ref()));
    let input_tokens = prompt::prompt_tokens(contents);
    let output_tokens = chunks.len() as u64;
    let id = format!("msg_mock_{}", state.next_id());
    if let Some(tool) = tool {
        let stream = request.stream == Some(true);
        return tool_use(pace, &id, &model, tool, input_tokens, stream);
    }

    if request.stream != Some(true) {
        let text = chunks.concat();
        let message = MessageBody {
            id: &id,
            kind: "message",
            role: "assistant",
            model: &model,
            content: &[TextBlock {
                kind: "text",
                text: &text,
            }],
            stop_reason: Some(stop_reason),
            stop_sequence: None,
            usage: Usage {
                input_tokens,
                output_tokens,
            },
        };
        return Ok(Json(message).into_response());
    }

    let mut sse = SseStream::with_capacity(chunks.len() + 6);
    send(
        &mut sse,
        StreamEvent::MessageStart {
            message: MessageBody {
                id: &id,
                kind: "message",
                role: "assistant",
                model: &model,
                content: &[],
                stop_reason: None,
                stop_sequence: None,
                usage: Usage {
                    input_tokens,
                    output_tokens: 1,
                },
            },
        },
    )?;
    send(
        &mut sse,
        StreamEvent::ContentBlockStart {
            index: 0,
            content_block: TextBlock {
                kind: "text",
                text: "",
            },
        },
    )?;
    send(&mut sse, StreamEvent::Ping)?;
    for (i, piece) in chunks.iter().enumerate() {
        if i > 0 {
            sse.pause();
        }
        let delta = TextBlock {
            kind: "text_delta",
            text: piece,
        };
        send(&mut sse, StreamEvent::ContentBlockDelta { index: 0, delta })?;
    }
    send(&mut sse, StreamEvent::ContentBlockStop { index: 0 })?;
    send(
        &mut sse,
        StreamEvent::MessageDelta {
            delta: StopDelta {
                stop_reason,
                stop_sequence: None,
            },
            usage: OutputUsage { output_tokens },
        },
    )?;
    send(&mut sse, StreamEvent::MessageStop)?;
    Ok(sse.into_response(pace.chunk_delay))
}

/// A call of `tool` as the answer, whole or streamed (the input as two JSON deltas).
fn tool_use(
    pace: Pace,
    id: &str,
    model: &str,
    tool: &Tool,
    input_tokens: u64,
    stream: bool,
) -> Result<Response, ApiError> {
    let input = Value::Object(tool.mock_input());
    let call_id = format!("toolu_{id}");
    let usage = json!({"input_tokens": input_tokens, "output_tokens": 5});
    if !stream {
        return Ok(Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "tool_use", "id": call_id, "name": tool.name, "input": input}],
            "stop_reason": "tool_use", "stop_sequence": null, "usage": usage,
        }))
        .into_response());
    }
    let mut sse = SseStream::with_capacity(8);
    let start = json!({
        "type": "message_start",
        "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        },
    });
    sse.event("message_start", &start)?;
    let block = json!({"type": "tool_use", "id": call_id, "name": tool.name, "input": {}});
    sse.event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": block}),
    )?;
    let text = input.to_string();
    let half = text.len() / 2;
    let half = (0..=half)
        .rev()
        .find(|at| text.is_char_boundary(*at))
        .unwrap_or(0);
    for piece in [&text[..half], &text[half..]] {
        sse.pause();
        let delta = json!({"type": "input_json_delta", "partial_json": piece});
        sse.event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        )?;
    }
    sse.event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    )?;
    sse.event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": null},
            "usage": {"output_tokens": 5},
        }),
    )?;
    sse.event("message_stop", &json!({"type": "message_stop"}))?;
    Ok(sse.into_response(pace.chunk_delay))
}
