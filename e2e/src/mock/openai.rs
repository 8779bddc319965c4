//! `POST /v1/chat/completions` in OpenAI's format, as JSON or as an SSE stream; requests signed
//! for Bedrock Mantle are checked as [`mantle`] says.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, Wire};
use super::knobs::Pace;
use super::prompt::{self, Message};
use super::sse::SseStream;
use super::stats::Route;
use super::{mantle, sigv4, unix_now, with_key_header, MockState};

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<Message>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

#[derive(Debug, Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [CompletionChoice<'a>; 1],
    usage: Usage,
}

#[derive(Debug, Serialize)]
struct CompletionChoice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Debug, Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<()>,
}

#[derive(Debug, Serialize)]
struct ChatChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    /// Absent unless the client asked for usage; then `null` on every chunk but the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

/// What every chunk of one stream repeats.
#[derive(Debug)]
struct ChunkHeader<'a> {
    id: &'a str,
    created: u64,
    model: &'a str,
    include_usage: bool,
}

impl<'a> ChunkHeader<'a> {
    fn chunk(&self, choices: &'a [ChunkChoice<'a>], usage: Option<Usage>) -> ChatChunk<'a> {
        ChatChunk {
            id: self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model,
            choices,
            usage: self.include_usage.then_some(usage),
        }
    }
}

#[derive(Debug, Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Debug, Default, Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<MockState>>,
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
    // Bedrock Mantle's IAM callers sign; refusals are AWS's.
    if let Some((key, region, checked)) = mantle::signed_caller(&state, &request) {
        if !region.is_empty() {
            state.stats.record_region(&region);
        }
        if let Err(refused) = checked {
            state.stats.record(Route::ChatCompletions, &key);
            return with_key_header(refused.render(Wire::Bedrock), &key);
        }
        return state
            .serve_checked(Wire::OpenAi, Route::ChatCompletions, &key, Ok(()), |pace| {
                complete(&state, pace, &body)
            })
            .await;
    }
    state
        .serve_inference(Wire::OpenAi, Route::ChatCompletions, &headers, |pace| {
            complete(&state, pace, &body)
        })
        .await
}

pub(super) fn complete(state: &MockState, pace: Pace, body: &[u8]) -> Result<Response, ApiError> {
    let request: ChatRequest = serde_json::from_slice(body).map_err(ApiError::invalid_body)?;
    if request.messages.is_empty() {
        return Err(ApiError::invalid_request(
            "mock: messages must not be empty",
        ));
    }
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    if max_tokens == Some(0) {
        return Err(ApiError::invalid_request(
            "mock: max_tokens must be at least 1",
        ));
    }

    let reply = prompt::reply_to(&request.messages);
    let (chunks, truncated) =
        prompt::limit_chunks(prompt::split_even(&reply, pace.chunks), max_tokens);
    let finish_reason = if truncated { "length" } else { "stop" };
    let prompt_tokens =
        prompt::prompt_tokens(request.messages.iter().filter_map(|m| m.content.as_ref()));
    let completion_tokens = chunks.len() as u64;
    let usage = Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    };
    let id = format!("chatcmpl-mock-{}", state.next_id());
    let created = unix_now();

    if request.stream != Some(true) {
        let content = chunks.concat();
        let completion = ChatCompletion {
            id: &id,
            object: "chat.completion",
            created,
            model: &request.model,
            choices: [CompletionChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: &content,
                    refusal: None,
                },
                logprobs: None,
                finish_reason,
            }],
            usage,
        };
        return Ok(Json(completion).into_response());
    }

    let include_usage = request
        .stream_options
        .and_then(|options| options.include_usage)
        .unwrap_or(false);
    let header = ChunkHeader {
        id: &id,
        created,
        model: &request.model,
        include_usage,
    };
    let choice = |delta, finish_reason| {
        [ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason,
        }]
    };

    let mut sse = SseStream::with_capacity(chunks.len() + 4);
    let opening = Delta {
        role: Some("assistant"),
        content: Some(""),
    };
    sse.data(&header.chunk(&choice(opening, None), None))?;
    for (i, piece) in chunks.iter().enumerate() {
        if i > 0 {
            sse.pause();
        }
        let delta = Delta {
            role: None,
            content: Some(piece),
        };
        sse.data(&header.chunk(&choice(delta, None), None))?;
    }
    sse.data(&header.chunk(&choice(Delta::default(), Some(finish_reason)), None))?;
    if include_usage {
        sse.data(&header.chunk(&[], Some(usage)))?;
    }
    sse.raw("data: [DONE]\n\n");
    Ok(sse.into_response(pace.chunk_delay))
}
