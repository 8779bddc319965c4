//! Streaming responses: upstream SSE passed through chunk by chunk (or translated event by
//! event), holding the provider slot and the in-flight count until the stream ends.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::AtomicI64;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{header, HeaderValue};
use prometheus_client::metrics::gauge::Gauge;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;

use super::errors::Dialect;
use crate::governance::usage::StreamUsage;
use crate::governance::Charge;
use crate::providers::sse::{write_event, SseEvent, SseParser, StreamTranslator};
use crate::telemetry::Metrics;

/// Counts a request in `in_flight_requests` until dropped (for streams: until the stream ends).
pub struct InFlight {
    gauge: Gauge<i64, AtomicI64>,
}

impl InFlight {
    /// Count one more request.
    pub fn new(metrics: &Metrics) -> Self {
        metrics.in_flight.inc();
        Self {
            gauge: metrics.in_flight.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Watches a governed stream for usage and charges it when the stream ends (completed, broken
/// off or abandoned by the client).
pub struct UsageTap {
    /// What the upstream reported so far.
    pub usage: StreamUsage,
    /// Drop OpenAI usage-only chunks the caller did not ask for.
    pub strip_usage_chunks: bool,
    /// The admitted request's charge.
    pub charge: Charge,
    /// Provider that serves the stream.
    pub provider: String,
    /// Model as sent upstream.
    pub model: String,
}

struct StreamState {
    upstream: ByteStream,
    /// Present when events must be looked at (translation or usage); otherwise bytes pass
    /// through untouched.
    parser: Option<SseParser>,
    translator: Option<Box<dyn StreamTranslator>>,
    tap: Option<UsageTap>,
    dialect: Dialect,
    finished: bool,
    events: Vec<SseEvent>,
    // Held for the stream's lifetime.
    _slot: OwnedSemaphorePermit,
    _in_flight: InFlight,
}

impl StreamState {
    /// Next piece for the client, `None` at the end.
    async fn next_piece(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        loop {
            match self.upstream.next().await {
                Some(Ok(chunk)) => {
                    let Some(parser) = &mut self.parser else {
                        return Some(chunk);
                    };
                    parser.push(&chunk, &mut self.events);
                    let out = self.handle_events(false);
                    if !out.is_empty() {
                        return Some(Bytes::from(out));
                    }
                }
                Some(Err(error)) => {
                    self.finished = true;
                    tracing::warn!(error = %error, "upstream stream broke off; ending the client stream with an error event");
                    return Some(stream_error(
                        self.dialect,
                        &format!("upstream stream broke off: {error}"),
                    ));
                }
                None => {
                    self.finished = true;
                    let parser = self.parser.as_mut()?;
                    parser.finish(&mut self.events);
                    let out = self.handle_events(true);
                    return (!out.is_empty()).then(|| Bytes::from(out));
                }
            }
        }
    }

    fn handle_events(&mut self, end: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for event in self.events.drain(..) {
            if let Some(tap) = &mut self.tap {
                tap.usage.observe(&event.data);
                if tap.strip_usage_chunks && StreamUsage::is_usage_only_chunk(&event.data) {
                    continue;
                }
            }
            match &mut self.translator {
                Some(translator) => translator.on_event(event, &mut out),
                None => write_event(&mut out, event.event.as_deref(), &event.data),
            }
        }
        if end {
            if let Some(translator) = &mut self.translator {
                translator.finish(&mut out);
            }
        }
        out
    }
}

impl Drop for StreamState {
    fn drop(&mut self) {
        if let Some(tap) = self.tap.take() {
            let usage = tap.usage.finish(tap.charge.prompt_estimate);
            tap.charge.settle(&tap.provider, &tap.model, usage);
        }
    }
}

/// An SSE error event in the caller's dialect.
fn stream_error(dialect: Dialect, message: &str) -> Bytes {
    let mut out = Vec::new();
    match dialect {
        Dialect::OpenAi => write_event(
            &mut out,
            None,
            &json!({"error": {"message": message, "type": "server_error", "code": "upstream_stream_error"}}).to_string(),
        ),
        Dialect::Anthropic => write_event(
            &mut out,
            Some("error"),
            &json!({"type": "error", "error": {"type": "api_error", "message": message}}).to_string(),
        ),
    }
    Bytes::from(out)
}

/// Turn an upstream streaming response into the client's SSE response.
pub fn sse_response(
    upstream: reqwest::Response,
    translator: Option<Box<dyn StreamTranslator>>,
    tap: Option<UsageTap>,
    dialect: Dialect,
    slot: OwnedSemaphorePermit,
    in_flight: InFlight,
) -> Response {
    let content_type = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("text/event-stream"));
    let state = StreamState {
        upstream: Box::pin(upstream.bytes_stream()),
        parser: (translator.is_some() || tap.is_some()).then(SseParser::default),
        translator,
        tap,
        dialect,
        finished: false,
        events: Vec::new(),
        _slot: slot,
        _in_flight: in_flight,
    };
    let body = futures_util::stream::unfold(state, |mut state| async move {
        let piece = state.next_piece().await?;
        Some((Ok::<_, Infallible>(piece), state))
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
