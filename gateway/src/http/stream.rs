//! Streaming responses: upstream SSE passed through chunk by chunk (or translated event by
//! event), holding the provider slot until the stream ends; the in-flight count is held by
//! the body the request middleware wraps around a [`Streaming`] response.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{header, HeaderValue, StatusCode};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::OwnedSemaphorePermit;

use super::errors::{Dialect, ErrorBody};
use super::translation::Framing;
use crate::governance::usage::StreamUsage;
use crate::governance::Charge;
use crate::providers::eventstream::EventStreamDecoder;
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

    /// `body`, holding this count until it has sent its last frame or is dropped.
    pub fn hold_until_end(self, body: Body) -> Body {
        super::body::hold_until_end(body, self)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Response extension marking a body that goes on after the head (an SSE stream): whatever a
/// request holds while it is served must be held by the body.
#[derive(Debug, Clone, Copy)]
pub struct Streaming;

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
    /// Model the usage is priced by (see `Charge::priced_model`).
    pub model: String,
}

struct StreamState {
    upstream: ByteStream,
    /// Present when events must be looked at (translation or usage); otherwise bytes pass
    /// through untouched.
    parser: Option<Decoder>,
    translator: Option<Box<dyn StreamTranslator>>,
    tap: Option<UsageTap>,
    dialect: Dialect,
    finished: bool,
    events: Vec<SseEvent>,
    /// Longest wait for the upstream's next chunk (`stream_idle_timeout_in_seconds`).
    idle_timeout: Duration,
    /// Fires when the upstream has been silent for `idle_timeout`; reset on every chunk.
    idle: Pin<Box<tokio::time::Sleep>>,
    // Held for the stream's lifetime.
    _slot: OwnedSemaphorePermit,
}

impl StreamState {
    /// Next piece for the client, `None` at the end.
    async fn next_piece(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        loop {
            let next = tokio::select! {
                next = self.upstream.next() => next,
                () = &mut self.idle => {
                    self.finished = true;
                    let seconds = self.idle_timeout.as_secs();
                    tracing::warn!(idle_seconds = seconds, "upstream stream went silent; ending the client stream with an error event");
                    return Some(stream_error(
                        self.dialect,
                        format!("upstream stream sent nothing for {seconds}s (network_config.stream_idle_timeout_in_seconds)"),
                    ));
                }
            };
            let deadline = tokio::time::Instant::now() + self.idle_timeout;
            self.idle.as_mut().reset(deadline);
            match next {
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
                        format!("upstream stream broke off: {error}"),
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

/// An SSE error event in the caller's dialect: the error body of a 502 (without OpenAI's
/// `param`), as a data-only event for OpenAI callers and an `error` event for Anthropic ones.
fn stream_error(dialect: Dialect, message: String) -> Bytes {
    let body = ErrorBody {
        status: StatusCode::BAD_GATEWAY,
        message,
        code: "upstream_stream_error",
        openai_param: false,
    };
    let event = match dialect {
        Dialect::OpenAi => None,
        Dialect::Anthropic => Some("error"),
    };
    let mut out = Vec::new();
    write_event(&mut out, event, &body.to_json(dialect).to_string());
    Bytes::from(out)
}

/// How upstream stream bytes become events: SSE, or AWS event-stream messages.
enum Decoder {
    Sse(SseParser),
    AwsEventStream(EventStreamDecoder),
}

impl Decoder {
    fn new(framing: Framing) -> Self {
        match framing {
            Framing::Sse => Decoder::Sse(SseParser::default()),
            Framing::AwsEventStream => Decoder::AwsEventStream(EventStreamDecoder::default()),
        }
    }

    fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        match self {
            Decoder::Sse(parser) => parser.push(chunk, out),
            Decoder::AwsEventStream(decoder) => decoder.push(chunk, out),
        }
    }

    fn finish(&mut self, out: &mut Vec<SseEvent>) {
        match self {
            Decoder::Sse(parser) => parser.finish(out),
            Decoder::AwsEventStream(decoder) => decoder.finish(out),
        }
    }
}

/// Turn an upstream streaming response, framed as `framing` says, into the client's SSE
/// response, marked [`Streaming`].
pub fn sse_response(
    upstream: reqwest::Response,
    translator: Option<Box<dyn StreamTranslator>>,
    tap: Option<UsageTap>,
    framing: Framing,
    dialect: Dialect,
    slot: OwnedSemaphorePermit,
    idle_timeout: Duration,
) -> Response {
    // A translated stream is SSE whatever the upstream framed it as.
    let content_type = match translator {
        Some(_) => None,
        None => upstream.headers().get(header::CONTENT_TYPE).cloned(),
    }
    .unwrap_or(HeaderValue::from_static("text/event-stream"));
    let state = StreamState {
        upstream: Box::pin(upstream.bytes_stream()),
        parser: (translator.is_some() || tap.is_some()).then(|| Decoder::new(framing)),
        translator,
        tap,
        dialect,
        finished: false,
        events: Vec::new(),
        idle_timeout,
        idle: Box::pin(tokio::time::sleep(idle_timeout)),
        _slot: slot,
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
    response.extensions_mut().insert(Streaming);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::sse::SseParser;

    fn event_of(bytes: &[u8]) -> (Option<String>, serde_json::Value) {
        let mut events = Vec::new();
        SseParser::default().push(bytes, &mut events);
        assert_eq!(events.len(), 1, "{}", String::from_utf8_lossy(bytes));
        let event = events.remove(0);
        let data = serde_json::from_str(&event.data).expect("JSON data");
        (event.event, data)
    }

    #[test]
    fn a_broken_stream_ends_with_an_openai_error_chunk() {
        let (name, data) = event_of(&stream_error(Dialect::OpenAi, "gone".into()));
        assert_eq!(name, None);
        assert_eq!(
            data,
            serde_json::json!({"error": {"message": "gone", "type": "server_error", "code": "upstream_stream_error"}})
        );
    }

    #[test]
    fn a_broken_stream_ends_with_an_anthropic_error_event() {
        let (name, data) = event_of(&stream_error(Dialect::Anthropic, "gone".into()));
        assert_eq!(name.as_deref(), Some("error"));
        assert_eq!(
            data,
            serde_json::json!({"type": "error", "error": {"type": "api_error", "message": "gone"}})
        );
    }

    #[tokio::test]
    async fn a_held_count_ends_with_the_last_frame() {
        use http_body_util::BodyExt;
        let metrics = Metrics::new();
        let pieces = futures_util::stream::iter(["data: a\n\n", "data: b\n\n"])
            .map(|piece| Ok::<_, Infallible>(Bytes::from_static(piece.as_bytes())));
        let mut body = InFlight::new(&metrics).hold_until_end(Body::from_stream(pieces));
        for _ in 0..2 {
            let frame = body.frame().await.expect("a frame").expect("no error");
            assert!(frame.is_data());
            assert_eq!(metrics.in_flight.get(), 1);
        }
        assert!(body.frame().await.is_none());
        assert_eq!(
            metrics.in_flight.get(),
            0,
            "released at the end, before the body is dropped"
        );
        drop(body);
        assert_eq!(metrics.in_flight.get(), 0);
    }

    #[test]
    fn a_dropped_body_releases_its_count() {
        let metrics = Metrics::new();
        let body = InFlight::new(&metrics).hold_until_end(Body::from("data: a\n\n"));
        assert_eq!(metrics.in_flight.get(), 1);
        drop(body);
        assert_eq!(metrics.in_flight.get(), 0);
    }
}
