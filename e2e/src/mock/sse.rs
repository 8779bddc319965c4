//! Server-sent event streams, written event by event so pacing is visible to the client.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use serde::Serialize;

use super::error::ApiError;

/// An SSE stream under construction: the events and which of them wait for the chunk delay.
#[derive(Debug, Default)]
pub struct SseStream {
    events: Vec<(Bytes, bool)>,
    pause_next: bool,
}

impl SseStream {
    /// An empty stream expecting about `capacity` events.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            events: Vec::with_capacity(capacity),
            pause_next: false,
        }
    }

    /// Makes the next event wait for the chunk delay before it is sent.
    pub fn pause(&mut self) {
        self.pause_next = true;
    }

    /// Adds `data: <json>` (OpenAI style, no event name).
    pub fn data(&mut self, json: &impl Serialize) -> Result<(), ApiError> {
        self.push(None, json)
    }

    /// Adds `event: <name>` with `data: <json>` (Anthropic style).
    pub fn event(&mut self, name: &str, json: &impl Serialize) -> Result<(), ApiError> {
        self.push(Some(name), json)
    }

    /// Adds an event written out in full, such as `data: [DONE]\n\n`.
    pub fn raw(&mut self, event: &'static str) {
        self.events
            .push((Bytes::from_static(event.as_bytes()), self.pause_next));
        self.pause_next = false;
    }

    fn push(&mut self, name: Option<&str>, json: &impl Serialize) -> Result<(), ApiError> {
        let mut event = Vec::with_capacity(256);
        if let Some(name) = name {
            event.extend_from_slice(b"event: ");
            event.extend_from_slice(name.as_bytes());
            event.push(b'\n');
        }
        event.extend_from_slice(b"data: ");
        serde_json::to_writer(&mut event, json).map_err(ApiError::encoding)?;
        event.extend_from_slice(b"\n\n");
        self.events.push((Bytes::from(event), self.pause_next));
        self.pause_next = false;
        Ok(())
    }

    /// A `text/event-stream` response that sends each event as its own body frame, waiting
    /// `delay` before every paused one.
    pub fn into_response(self, delay: Duration) -> Response {
        (
            [
                (CONTENT_TYPE, "text/event-stream"),
                (CACHE_CONTROL, "no-cache"),
            ],
            paced_body(self.events, delay),
        )
            .into_response()
    }
}

/// A body that sends each frame as its own body frame, waiting `delay` before every one marked
/// as paused (SSE events, Bedrock's event-stream messages).
pub fn paced_body(frames: Vec<(Bytes, bool)>, delay: Duration) -> Body {
    if delay.is_zero() {
        let frames = frames
            .into_iter()
            .map(|(frame, _)| Ok::<_, Infallible>(frame));
        Body::from_stream(stream::iter(frames))
    } else {
        Body::from_stream(
            stream::iter(frames).then(move |(frame, paused)| async move {
                if paused {
                    tokio::time::sleep(delay).await;
                }
                Ok::<_, Infallible>(frame)
            }),
        )
    }
}
