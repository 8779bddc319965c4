//! Pure translation between wire formats: OpenAI Chat Completions and Anthropic Messages both
//! directions, OpenAI Chat Completions and embeddings onto Gemini, and Chat Completions onto
//! Bedrock's Converse (embeddings onto its InvokeModel) (Anthropic callers reach Gemini and Bedrock through Chat Completions). Requests, responses and SSE streams; no I/O here: the
//! HTTP layer calls these and maps the errors.

mod chat_parts;
mod chat_request_to_converse;
mod chat_request_to_gemini;
mod chat_request_to_messages;
mod chat_response_to_messages;
mod chat_stream_to_messages;
mod converse_response_to_chat;
mod converse_stream_to_chat;
mod embeddings_to_bedrock;
mod embeddings_to_gemini;
mod gemini_response_to_chat;
mod gemini_stream_to_chat;
mod messages_request_to_chat;
mod messages_response_to_chat;
mod messages_stream_to_chat;

#[cfg(test)]
mod round_trip_tests;
mod tools;

pub use chat_request_to_converse::chat_request_to_converse;
pub use chat_request_to_gemini::chat_request_to_gemini;
pub use chat_request_to_messages::chat_request_to_messages;
pub use chat_response_to_messages::chat_response_to_messages;
pub use chat_stream_to_messages::ChatStreamToMessages;
pub use converse_response_to_chat::converse_response_to_chat;
pub use converse_stream_to_chat::ConverseStreamToChat;
pub use embeddings_to_bedrock::{
    bedrock_embeddings_body, bedrock_embeddings_to_openai, embeddings_request_to_bedrock,
    EmbeddingFamily,
};
pub use embeddings_to_gemini::{embeddings_request_to_gemini, gemini_embeddings_to_openai};
pub use gemini_response_to_chat::gemini_response_to_chat;
pub use gemini_stream_to_chat::GeminiStreamToChat;
pub use messages_request_to_chat::messages_request_to_chat;
pub use messages_response_to_chat::messages_response_to_chat;
pub use messages_stream_to_chat::MessagesStreamToChat;

use serde_json::{json, Map, Value};
use std::fmt::Display;
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a request or response could not be translated.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TranslateError {
    /// The client's request cannot be translated (HTTP 400); the message names the field, e.g.
    /// `messages[2].content[0]: unsupported block type "audio"`.
    #[error("{0}")]
    InvalidRequest(String),
    /// The upstream sent something that cannot be parsed or translated (HTTP 502).
    #[error("{0}")]
    InvalidResponse(String),
    /// The upstream refused the content (Gemini's `promptFeedback.blockReason`): the caller's
    /// request, not the upstream, is at fault (HTTP 400, code `content_filter`).
    #[error("{0}")]
    Blocked(String),
}

const ERROR_MESSAGE_MAX_CHARS: usize = 500;

/// Extracts a human-readable message from an upstream error body: OpenAI `{"error":{"message"}}`, Anthropic
/// `{"type":"error","error":{"type","message"}}`, Gemini `{"error":{"code","message","status"}}`, or plain text;
/// truncated to 500 characters.
pub fn upstream_error_message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|value| error_message_in(&value))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    if message.is_empty() {
        return "upstream returned an empty error body".to_owned();
    }
    match message.char_indices().nth(ERROR_MESSAGE_MAX_CHARS) {
        Some((cut, _)) => message[..cut].to_owned(),
        None => message,
    }
}

/// The message of an error object in either format; some OpenAI-compatible servers wrap it in an array.
fn error_message_in(value: &Value) -> Option<String> {
    if let Some(first) = value.as_array().and_then(|items| items.first()) {
        return error_message_in(first);
    }
    let message = match value.get("error") {
        Some(Value::String(message)) => Some(message.as_str()),
        Some(error) => error.get("message").and_then(Value::as_str),
        None => None,
    };
    message
        .or_else(|| value.get("message").and_then(Value::as_str))
        .map(str::to_owned)
}

/// A field that is present and not JSON `null` (clients send `null` to mean "not set").
fn present<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|value| !value.is_null())
}

fn request_error(path: impl Display, problem: impl Display) -> TranslateError {
    TranslateError::InvalidRequest(format!("{path}: {problem}"))
}

fn response_error(path: impl Display, problem: impl Display) -> TranslateError {
    TranslateError::InvalidResponse(format!("upstream response {path}: {problem}"))
}

/// A required string field of a request object.
fn required_str<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a str, TranslateError> {
    present(object, key)
        .and_then(Value::as_str)
        .ok_or_else(|| request_error(format!("{path}.{key}"), "must be a string"))
}

fn positive_integer(value: &Value, path: &str) -> Result<u64, TranslateError> {
    value
        .as_u64()
        .filter(|&n| n > 0)
        .ok_or_else(|| request_error(path, "must be a positive integer"))
}

/// Copies an optional numeric sampling parameter (`temperature`, `top_p`) unchanged.
fn copy_number(
    body: &Map<String, Value>,
    key: &str,
    request: &mut Map<String, Value>,
) -> Result<(), TranslateError> {
    if let Some(value) = present(body, key) {
        if !value.is_number() {
            return Err(request_error(key, "must be a number"));
        }
        request.insert(key.to_owned(), value.clone());
    }
    Ok(())
}

fn now_unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// What every `chat.completion.chunk` of one translated stream repeats, and the writing of
/// those chunks.
#[derive(Debug)]
struct ChatChunks {
    id: String,
    model: String,
    created: u64,
}

impl ChatChunks {
    fn new() -> Self {
        Self {
            id: String::new(),
            model: String::new(),
            created: now_unix_secs(),
        }
    }

    /// A chunk for choice `index`.
    fn write(&self, index: u64, delta: Value, finish_reason: Option<&str>, out: &mut Vec<u8>) {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": null}],
        });
        crate::providers::sse::write_event(out, None, &chunk.to_string());
    }

    /// How a stream ends: the finish chunk if `finish` is one still to send, the usage chunk
    /// if there is `usage` to report, then `[DONE]`.
    fn write_end(&self, finish: Option<&str>, usage: Option<Value>, out: &mut Vec<u8>) {
        if let Some(reason) = finish {
            self.write(0, json!({}), Some(reason), out);
        }
        if let Some(usage) = usage {
            self.write_usage(usage, out);
        }
        crate::providers::sse::write_event(out, None, "[DONE]");
    }

    /// The final usage chunk (no choices), as `stream_options.include_usage` asks.
    fn write_usage(&self, usage: Value, out: &mut Vec<u8>) {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        });
        crate::providers::sse::write_event(out, None, &chunk.to_string());
    }
}

/// How a Chat Completions stream ends when the upstream failed: an error payload, then `[DONE]`.
fn write_chat_error(message: &str, kind: &str, out: &mut Vec<u8>) {
    let error = json!({"error": {"message": message, "type": kind, "code": null}});
    crate::providers::sse::write_event(out, None, &error.to_string());
    crate::providers::sse::write_event(out, None, "[DONE]");
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
fn finish_reason_for(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything newer: the turn simply ended.
        _ => "stop",
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
fn stop_reason_for(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic usage → OpenAI usage; cache writes and reads are part of the prompt in OpenAI's accounting.
fn chat_usage(usage: Option<&Value>) -> Value {
    let count = |key: &str| {
        usage
            .and_then(|usage| usage.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let prompt = count("input_tokens")
        .saturating_add(count("cache_creation_input_tokens"))
        .saturating_add(count("cache_read_input_tokens"));
    chat_usage_of(prompt, count("output_tokens"))
}

/// OpenAI's usage object for these counts.
fn chat_usage_of(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt.saturating_add(completion)})
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::providers::sse::{SseEvent, SseParser, StreamTranslator};
    use serde_json::Value;

    /// Feeds raw upstream SSE bytes through a parser in `chunk_len`-byte chunks and then the translator.
    pub fn translate_stream(
        translator: &mut dyn StreamTranslator,
        input: &[u8],
        chunk_len: usize,
    ) -> Vec<u8> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        let mut events = Vec::new();
        for chunk in input.chunks(chunk_len) {
            parser.push(chunk, &mut events);
            for event in events.drain(..) {
                translator.on_event(event, &mut out);
            }
        }
        parser.finish(&mut events);
        for event in events.drain(..) {
            translator.on_event(event, &mut out);
        }
        translator.finish(&mut out);
        out
    }

    /// Parses translator output back into events.
    pub fn events_of(output: &[u8]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        parser.push(output, &mut events);
        assert!(
            output.ends_with(b"\n\n"),
            "output must end with a complete event"
        );
        events
    }

    /// The JSON payloads of translator output, `[DONE]` becoming the string "[DONE]".
    pub fn payloads_of(output: &[u8]) -> Vec<Value> {
        events_of(output)
            .into_iter()
            .map(|event| serde_json::from_str(&event.data).unwrap_or(Value::String(event.data)))
            .collect()
    }

    /// Builds Anthropic-style SSE text from `(event name, data)` pairs.
    pub fn anthropic_sse(events: &[Value]) -> Vec<u8> {
        let mut out = Vec::new();
        for data in events {
            let name = data.get("type").and_then(Value::as_str);
            crate::providers::sse::write_event(&mut out, name, &data.to_string());
        }
        out
    }

    /// Builds OpenAI-style SSE text (data-only) from chunks, ending with `[DONE]`.
    pub fn openai_sse(chunks: &[Value]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in chunks {
            crate::providers::sse::write_event(&mut out, None, &chunk.to_string());
        }
        crate::providers::sse::write_event(&mut out, None, "[DONE]");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::sse::{SseEvent, StreamTranslator};

    /// Values of every JSON type, plus shapes that look almost right.
    fn hostile_values() -> Vec<Value> {
        vec![
            Value::Null,
            json!(true),
            json!(-1),
            json!(1.5),
            json!("x"),
            json!([]),
            json!({}),
            json!([null, 1, "x", [], {}]),
            json!([{"role": "user", "content": [{"type": "text"}, {"type": 7}, null]}]),
            json!([{"role": "assistant", "content": [{"type": "tool_use"}], "tool_calls": [{"function": 1}]}]),
            json!([{"role": "tool"}, {"role": "user", "content": [{"type": "tool_result", "content": [{}]}]}]),
            json!({"type": "error", "error": 5, "content": [{"type": "tool_use", "input": 3}], "choices": [{"message": {"tool_calls": [{"function": {"name": 1}}]}}]}),
        ]
    }

    /// What a request field of one format must hold: the hostile values it accepts (`null`
    /// meaning "not set"), and the whole message every other one is refused with, where one
    /// message covers them all (otherwise the message only has to start with the field).
    struct FieldRule {
        field: &'static str,
        accepts: fn(&Value) -> bool,
        message: Option<&'static str>,
    }

    fn rule(
        field: &'static str,
        accepts: fn(&Value) -> bool,
        message: Option<&'static str>,
    ) -> FieldRule {
        FieldRule {
            field,
            accepts,
            message,
        }
    }

    fn null_or_number(value: &Value) -> bool {
        value.is_null() || value.is_number()
    }

    fn null_or_empty_array(value: &Value) -> bool {
        value.is_null() || value == &json!([])
    }

    /// The fields an OpenAI Chat Completions body is checked for.
    fn chat_rules() -> Vec<FieldRule> {
        vec![
            rule("messages", |v| v == &json!([]), None),
            rule(
                "max_tokens",
                Value::is_null,
                Some("max_tokens: must be a positive integer"),
            ),
            rule(
                "max_completion_tokens",
                Value::is_null,
                Some("max_completion_tokens: must be a positive integer"),
            ),
            rule(
                "temperature",
                null_or_number,
                Some("temperature: must be a number"),
            ),
            rule("top_p", null_or_number, Some("top_p: must be a number")),
            rule(
                "stop",
                |v| v.is_null() || v.is_string() || v == &json!([]),
                Some("stop: must be a string or an array of strings"),
            ),
            rule(
                "user",
                |v| v.is_null() || v.is_string(),
                Some("user: must be a string"),
            ),
            rule("tools", null_or_empty_array, None),
            rule("tool_choice", Value::is_null, None),
        ]
    }

    /// The fields an Anthropic Messages body is checked for.
    fn messages_rules() -> Vec<FieldRule> {
        vec![
            rule("messages", |v| v == &json!([]), None),
            rule(
                "system",
                |v| v.is_null() || v.is_string() || v == &json!([]),
                None,
            ),
            // Required: null is refused too, with its own message.
            rule("max_tokens", |_| false, None),
            rule(
                "temperature",
                null_or_number,
                Some("temperature: must be a number"),
            ),
            rule("top_p", null_or_number, Some("top_p: must be a number")),
            rule(
                "stop_sequences",
                null_or_empty_array,
                Some("stop_sequences: must be an array of strings"),
            ),
            rule(
                "metadata",
                |v| v.is_null() || v.is_object(),
                Some("metadata: must be an object"),
            ),
            rule("tools", null_or_empty_array, None),
            rule("tool_choice", Value::is_null, None),
        ]
    }

    /// A valid request body with `field` replaced by `value`.
    fn body_with(field: &str, value: &Value) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert(
            "messages".into(),
            json!([{"role": "user", "content": "hi"}]),
        );
        body.insert("max_tokens".into(), json!(10));
        body.insert(field.into(), value.clone());
        body
    }

    type RequestTranslator = fn(&Map<String, Value>, &str) -> Result<Value, TranslateError>;

    /// Every hostile value in every field of `rules`: accepted exactly where the rule says,
    /// otherwise an invalid request naming the field.
    fn check_request_rules(name: &str, translate: RequestTranslator, rules: &[FieldRule]) {
        for rule in rules {
            for value in hostile_values() {
                let result = translate(&body_with(rule.field, &value), "m");
                let case = format!("{name}: {} = {value}", rule.field);
                match result {
                    Ok(_) => assert!((rule.accepts)(&value), "{case} was accepted"),
                    Err(TranslateError::InvalidRequest(message)) => {
                        assert!(!(rule.accepts)(&value), "{case} was refused: {message}");
                        match rule.message {
                            Some(expected) => assert_eq!(message, expected, "{case}"),
                            None => assert!(message.starts_with(rule.field), "{case}: {message}"),
                        }
                    }
                    Err(other) => panic!("{case}: not a request error: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn malformed_input_gives_errors_never_panics() {
        check_request_rules("chat → messages", chat_request_to_messages, &chat_rules());
        check_request_rules(
            "messages → chat",
            messages_request_to_chat,
            &messages_rules(),
        );
        assert_eq!(
            messages_request_to_chat(&body_with("max_tokens", &Value::Null), "m")
                .map_err(|e| e.to_string())
                .err()
                .as_deref(),
            Some("max_tokens: is required")
        );
        // Any field, either direction: a refusal is a request error that names the field it
        // is about (fields of the other format, and the free-form ones, are not checked).
        let fields = [
            "messages",
            "system",
            "max_tokens",
            "max_completion_tokens",
            "temperature",
            "top_p",
            "stop",
            "stop_sequences",
            "user",
            "metadata",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "stream",
            "n",
            "seed",
            "response_format",
            "input",
            "dimensions",
            "encoding_format",
        ];
        let translators: [(&str, RequestTranslator); 5] = [
            ("chat → messages", chat_request_to_messages),
            ("messages → chat", messages_request_to_chat),
            ("chat → gemini", chat_request_to_gemini),
            ("chat → converse", chat_request_to_converse),
            ("embeddings → gemini", embeddings_request_to_gemini),
        ];
        for value in hostile_values() {
            for field in fields {
                for (name, translate) in translators {
                    let mut body = body_with(field, &value);
                    // Embedding bodies hold an input (unless it is the field under test).
                    if field != "input" {
                        body.insert("input".into(), json!("x"));
                    }
                    match translate(&body, "m") {
                        Ok(_) => {}
                        Err(TranslateError::InvalidRequest(message)) => {
                            assert!(
                                message.starts_with(field),
                                "{name}: {field} = {value}: {message}"
                            )
                        }
                        Err(other) => panic!("{name}: {field} = {value}: {other:?}"),
                    }
                }
            }
            // None of the hostile values is an answer in either format.
            for (name, result) in [
                ("messages → chat", messages_response_to_chat(&value)),
                ("chat → messages", chat_response_to_messages(&value)),
                ("gemini → chat", gemini_response_to_chat(&value, "m")),
                (
                    "gemini → embeddings",
                    gemini_embeddings_to_openai(&value, "m", true),
                ),
            ] {
                match result {
                    Err(TranslateError::InvalidResponse(message)) => {
                        assert!(
                            message.starts_with("upstream "),
                            "{name}: {value}: {message}"
                        )
                    }
                    other => panic!("{name}: the response {value} gave {other:?}"),
                }
            }
            // Streams have no error to return: hostile events must not panic, and what the
            // client gets is whole events.
            for kind in [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "message_delta",
                "error",
            ] {
                let mut data = json!({"type": kind, "message": value, "content_block": value, "delta": value, "usage": value, "index": value, "error": value});
                let mut out = Vec::new();
                let mut to_chat = MessagesStreamToChat::new(true);
                to_chat.on_event(
                    SseEvent {
                        event: None,
                        data: data.to_string(),
                    },
                    &mut out,
                );
                to_chat.finish(&mut out);
                assert!(out.is_empty() || out.ends_with(b"\n\n"), "{kind}: {value}");
                let mut out = Vec::new();
                data["choices"] = json!([{"delta": value, "finish_reason": value}, value]);
                let mut to_messages = ChatStreamToMessages::new();
                to_messages.on_event(
                    SseEvent {
                        event: None,
                        data: data.to_string(),
                    },
                    &mut out,
                );
                to_messages.on_event(
                    SseEvent {
                        event: None,
                        data: value.to_string(),
                    },
                    &mut out,
                );
                to_messages.finish(&mut out);
                assert!(out.is_empty() || out.ends_with(b"\n\n"), "{kind}: {value}");
            }
        }
    }

    #[test]
    fn upstream_error_message_reads_openai_errors() {
        let body = br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        assert_eq!(upstream_error_message(body), "Incorrect API key provided");
    }

    #[test]
    fn upstream_error_message_reads_anthropic_errors() {
        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(upstream_error_message(body), "Overloaded");
    }

    #[test]
    fn upstream_error_message_reads_errors_wrapped_in_an_array() {
        let body = br#"[{"error":{"code":400,"message":"API key not valid","status":"INVALID_ARGUMENT"}}]"#;
        assert_eq!(upstream_error_message(body), "API key not valid");
    }

    #[test]
    fn upstream_error_message_falls_back_to_plain_text() {
        assert_eq!(
            upstream_error_message(b"  502 Bad Gateway\n"),
            "502 Bad Gateway"
        );
        assert_eq!(
            upstream_error_message(br#"{"detail":"nope"}"#),
            r#"{"detail":"nope"}"#
        );
    }

    #[test]
    fn upstream_error_message_names_an_empty_body() {
        assert_eq!(
            upstream_error_message(b""),
            "upstream returned an empty error body"
        );
    }

    #[test]
    fn upstream_error_message_is_truncated_to_500_characters_on_a_char_boundary() {
        let body = "é".repeat(600);
        let message = upstream_error_message(body.as_bytes());
        assert_eq!(message.chars().count(), 500);
    }

    #[test]
    fn upstream_error_message_survives_invalid_utf8() {
        assert_eq!(
            upstream_error_message(b"bad \xff byte"),
            "bad \u{fffd} byte"
        );
    }

    #[test]
    fn usage_counts_cache_tokens_as_prompt_tokens() {
        let usage = json!({"input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 20, "output_tokens": 7});
        assert_eq!(
            chat_usage(Some(&usage)),
            json!({"prompt_tokens": 35, "completion_tokens": 7, "total_tokens": 42})
        );
    }
}
