//! `POST /v1/messages` in Anthropic's Messages API format, as JSON or as an SSE stream.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, Wire};
use super::knobs::Pace;
use super::prompt::{self, Content, Message};
use super::sse::SseStream;
use super::stats::Route;
use super::MockState;

#[derive(Debug, Deserialize)]
struct MessagesRequest {
    model: String,
    max_tokens: u64,
    messages: Vec<Message>,
    system: Option<Content>,
    stream: Option<bool>,
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
            reply(&state, pace, &body)
        })
        .await
}

fn reply(state: &MockState, pace: Pace, body: &[u8]) -> Result<Response, ApiError> {
    let request: MessagesRequest = serde_json::from_slice(body).map_err(ApiError::invalid_body)?;
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

    if request.stream != Some(true) {
        let text = chunks.concat();
        let message = MessageBody {
            id: &id,
            kind: "message",
            role: "assistant",
            model: &request.model,
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
                model: &request.model,
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
