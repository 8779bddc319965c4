//! An Anthropic-format client streaming from an OpenAI-compatible upstream: `chat.completion.chunk`s become
//! Messages stream events.

use super::stop_reason_for;
use crate::providers::sse::{write_event, SseEvent, StreamTranslator};
use serde_json::{json, Value};

/// Translates OpenAI Chat Completions chunks into an Anthropic Messages event stream.
#[derive(Debug, Default)]
pub struct ChatStreamToMessages {
    started: bool,
    finished: bool,
    next_block: usize,
    open_block: Option<OpenBlock>,
    /// `(OpenAI tool-call index, Anthropic content-block index)` for every tool call seen.
    tool_blocks: Vec<(u64, usize)>,
    stop_reason: Option<&'static str>,
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text(usize),
    ToolUse(usize),
}

impl OpenBlock {
    fn index(self) -> usize {
        match self {
            OpenBlock::Text(index) | OpenBlock::ToolUse(index) => index,
        }
    }
}

impl ChatStreamToMessages {
    /// A translator for one response stream.
    pub fn new() -> Self {
        Self::default()
    }

    fn emit(out: &mut Vec<u8>, data: Value) {
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        write_event(out, Some(&kind), &data.to_string());
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        self.started = true;
        Self::emit(
            out,
            json!({
                "type": "message_start",
                "message": {
                    "id": format!("msg_{id}"),
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                },
            }),
        );
    }

    fn close_open_block(&mut self, out: &mut Vec<u8>) {
        if let Some(block) = self.open_block.take() {
            Self::emit(
                out,
                json!({"type": "content_block_stop", "index": block.index()}),
            );
        }
    }

    fn open_block(&mut self, block: OpenBlock, content_block: Value, out: &mut Vec<u8>) {
        self.close_open_block(out);
        Self::emit(
            out,
            json!({"type": "content_block_start", "index": block.index(), "content_block": content_block}),
        );
        self.open_block = Some(block);
        self.next_block += 1;
    }

    fn on_text(&mut self, text: &str, out: &mut Vec<u8>) {
        let index = match self.open_block {
            Some(OpenBlock::Text(index)) => index,
            _ => {
                let index = self.next_block;
                self.open_block(
                    OpenBlock::Text(index),
                    json!({"type": "text", "text": ""}),
                    out,
                );
                index
            }
        };
        Self::emit(
            out,
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
        );
    }

    fn on_tool_call(&mut self, position: usize, call: &Value, out: &mut Vec<u8>) {
        let tool_index = call
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let function = call.get("function");
        let function_field = |key: &str| function.and_then(|f| f.get(key)).and_then(Value::as_str);
        let known = self
            .tool_blocks
            .iter()
            .find(|(seen, _)| *seen == tool_index)
            .map(|&(_, block)| block);
        let block = match known {
            Some(block) => block,
            None => {
                let block = self.next_block;
                let id = match call.get("id").and_then(Value::as_str) {
                    Some(id) => id.to_owned(),
                    None => format!("call_{tool_index}"),
                };
                let content_block = json!({
                    "type": "tool_use",
                    "id": id,
                    "name": function_field("name").unwrap_or_default(),
                    "input": {},
                });
                self.open_block(OpenBlock::ToolUse(block), content_block, out);
                self.tool_blocks.push((tool_index, block));
                block
            }
        };
        if let Some(arguments) =
            function_field("arguments").filter(|arguments| !arguments.is_empty())
        {
            Self::emit(
                out,
                json!({
                    "type": "content_block_delta",
                    "index": block,
                    "delta": {"type": "input_json_delta", "partial_json": arguments},
                }),
            );
        }
    }

    fn on_chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if !self.started {
            let field = |key: &str| chunk.get(key).and_then(Value::as_str).unwrap_or_default();
            self.start(field("id"), field("model"), out);
        }
        if let Some(usage) = chunk.get("usage").filter(|usage| usage.is_object()) {
            let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
            self.input_tokens = count("prompt_tokens");
            self.output_tokens = count("completion_tokens");
        }
        let choices = chunk
            .get("choices")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        // Anthropic has a single candidate; other choices (n > 1) have nowhere to go.
        let first_choice = choices
            .iter()
            .find(|choice| choice.get("index").and_then(Value::as_u64).unwrap_or(0) == 0);
        let Some(choice) = first_choice else { return };
        if let Some(delta) = choice.get("delta") {
            if let Some(text) = delta
                .get("content")
                .and_then(Value::as_str)
                .filter(|text| !text.is_empty())
            {
                self.on_text(text, out);
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (position, call) in calls.iter().enumerate() {
                    self.on_tool_call(position, call, out);
                }
            }
        }
        if let Some(finish_reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = Some(stop_reason_for(finish_reason));
        }
    }

    /// Closes the open block and sends `message_delta` and `message_stop`, exactly once.
    fn close(&mut self, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        if !self.started {
            self.start("", "", out);
        }
        self.close_open_block(out);
        Self::emit(
            out,
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
                "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
            }),
        );
        Self::emit(out, json!({"type": "message_stop"}));
        self.finished = true;
    }

    /// An Anthropic stream ends at its error event, of Anthropic's error `kind`.
    fn fail(&mut self, message: &str, kind: &str, out: &mut Vec<u8>) {
        Self::emit(
            out,
            json!({"type": "error", "error": {"type": kind, "message": message}}),
        );
        self.finished = true;
    }
}

/// Anthropic's error type for a Chat Completions stream error's `type`: the ones both APIs
/// share (a rate limit, an overloaded upstream, a bad request) keep their meaning, so that
/// clients back off or retry as they would on Anthropic; anything else is `api_error`.
fn anthropic_error_type(openai_type: Option<&str>) -> &'static str {
    match openai_type {
        Some("rate_limit_error" | "rate_limit_exceeded" | "requests" | "tokens") => {
            "rate_limit_error"
        }
        Some("overloaded_error") => "overloaded_error",
        Some("invalid_request_error") => "invalid_request_error",
        Some("authentication_error") => "authentication_error",
        Some("permission_error") => "permission_error",
        Some("not_found_error") => "not_found_error",
        Some("request_too_large") => "request_too_large",
        _ => "api_error",
    }
}

impl StreamTranslator for ChatStreamToMessages {
    fn on_event(&mut self, event: SseEvent, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        let data = event.data.trim();
        if data == "[DONE]" {
            self.close(out);
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            self.fail(
                "upstream sent a stream chunk that is not JSON",
                "api_error",
                out,
            );
            return;
        };
        if let Some(error) = chunk.get("error").filter(|error| !error.is_null()) {
            let message = match error {
                Value::String(message) => message.clone(),
                _ => match error.get("message").and_then(Value::as_str) {
                    Some(message) => message.to_owned(),
                    None => error.to_string(),
                },
            };
            let kind = anthropic_error_type(error.get("type").and_then(Value::as_str));
            self.fail(&message, kind, out);
            return;
        }
        self.on_chunk(&chunk, out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.close(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::translate::test_support::{events_of, openai_sse, translate_stream};

    fn chunk(delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": "chatcmpl-123",
            "object": "chat.completion.chunk",
            "created": 1_694_268_190,
            "model": "gpt-4o-mini",
            "system_fingerprint": "fp_44709d6fcb",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        })
    }

    fn usage_chunk() -> Value {
        json!({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1_694_268_190, "model": "gpt-4o-mini",
               "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}})
    }

    /// Event names paired with their JSON payloads; also checks that each payload's `type` matches its name.
    fn translate(input: &[u8], chunk_len: usize) -> Vec<(String, Value)> {
        let out = translate_stream(&mut ChatStreamToMessages::new(), input, chunk_len);
        events_of(&out)
            .into_iter()
            .map(|event| {
                let name = event.event.expect("every Anthropic event is named");
                let data: Value = serde_json::from_str(&event.data).expect("JSON data");
                assert_eq!(data["type"], name.as_str());
                (name, data)
            })
            .collect()
    }

    fn names(events: &[(String, Value)]) -> Vec<&str> {
        events.iter().map(|(name, _)| name.as_str()).collect()
    }

    fn text_stream() -> Vec<u8> {
        openai_sse(&[
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "Héllo"}), None),
            chunk(json!({"content": " wörld ✓"}), None),
            chunk(json!({}), Some("stop")),
            usage_chunk(),
        ])
    }

    #[test]
    fn text_chunks_become_a_message_with_one_text_block() {
        let events = translate(&text_stream(), 1);
        assert_eq!(
            names(&events),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(
            events[0].1,
            json!({"type": "message_start", "message": {
                "id": "msg_chatcmpl-123", "type": "message", "role": "assistant", "model": "gpt-4o-mini", "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0},
            }})
        );
        assert_eq!(
            events[1].1,
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        );
        assert_eq!(
            events[2].1,
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Héllo"}})
        );
        assert_eq!(events[3].1["delta"]["text"], " wörld ✓");
        assert_eq!(
            events[4].1,
            json!({"type": "content_block_stop", "index": 0})
        );
        assert_eq!(
            events[5].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"input_tokens": 9, "output_tokens": 12}})
        );
        assert_eq!(events[6].1, json!({"type": "message_stop"}));
    }

    #[test]
    fn every_chunk_boundary_gives_the_same_events() {
        let input = text_stream();
        let whole = translate(&input, input.len());
        for chunk_len in 1..40 {
            assert_eq!(
                translate(&input, chunk_len),
                whole,
                "chunk length {chunk_len}"
            );
        }
    }

    #[test]
    fn tool_calls_open_tool_use_blocks_after_closing_the_text_block() {
        let input = openai_sse(&[
            chunk(json!({"role": "assistant", "content": "Checking."}), None),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
        ]);
        let events = translate(&input, 5);
        let payloads: Vec<&Value> = events.iter().map(|(_, data)| data).collect();
        assert_eq!(
            payloads[1..],
            [
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}}),
                &json!({"type": "content_block_stop", "index": 0}),
                &json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}}),
                &json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
                &json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
                &json!({"type": "content_block_stop", "index": 1}),
                &json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}}}),
                &json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
                &json!({"type": "content_block_stop", "index": 2}),
                &json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"input_tokens": 0, "output_tokens": 0}}),
                &json!({"type": "message_stop"}),
            ]
        );
    }

    #[test]
    fn an_empty_role_chunk_opens_no_text_block() {
        let input = openai_sse(&[
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({}), Some("length")),
        ]);
        let events = translate(&input, 64);
        assert_eq!(
            names(&events),
            ["message_start", "message_delta", "message_stop"]
        );
        assert_eq!(events[1].1["delta"]["stop_reason"], "max_tokens");
    }

    #[test]
    fn usage_in_the_finish_chunk_is_reported() {
        let mut last = chunk(json!({}), Some("stop"));
        last["usage"] = json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7});
        let events = translate(&openai_sse(&[last]), 64);
        assert_eq!(
            events[1].1["usage"],
            json!({"input_tokens": 3, "output_tokens": 4})
        );
    }

    #[test]
    fn a_stream_without_done_is_closed_by_finish() {
        let input = openai_sse(&[chunk(json!({"content": "partial"}), None)]);
        let without_done = &input[..input.len() - b"data: [DONE]\n\n".len()];
        let events = translate(without_done, 3);
        assert_eq!(
            names(&events),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[4].1["delta"]["stop_reason"], "end_turn");
    }

    #[test]
    fn message_stop_is_sent_once_even_when_finish_follows_done() {
        let mut translator = ChatStreamToMessages::new();
        let mut out = translate_stream(&mut translator, &text_stream(), 64);
        translator.finish(&mut out);
        translator.on_event(
            SseEvent {
                event: None,
                data: "[DONE]".into(),
            },
            &mut out,
        );
        let stops = events_of(&out)
            .iter()
            .filter(|event| event.event.as_deref() == Some("message_stop"))
            .count();
        assert_eq!(stops, 1);
    }

    #[test]
    fn an_empty_upstream_still_gets_a_complete_message() {
        let events = translate(b"", 1);
        assert_eq!(
            names(&events),
            ["message_start", "message_delta", "message_stop"]
        );
    }

    #[test]
    fn an_error_chunk_becomes_an_error_event_and_ends_the_stream() {
        let input = openai_sse(&[
            chunk(json!({"content": "Hi"}), None),
            json!({"error": {"message": "The server had an error", "type": "server_error", "code": null}}),
            chunk(json!({"content": "ignored"}), None),
        ]);
        let events = translate(&input, 64);
        assert_eq!(
            names(&events),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "error"
            ]
        );
        assert_eq!(
            events[3].1,
            json!({"type": "error", "error": {"type": "api_error", "message": "The server had an error"}})
        );
    }

    #[test]
    fn a_rate_limit_or_overload_keeps_its_anthropic_type() {
        for (openai, anthropic) in [
            ("rate_limit_error", "rate_limit_error"),
            ("overloaded_error", "overloaded_error"),
            ("invalid_request_error", "invalid_request_error"),
            ("server_error", "api_error"),
        ] {
            let input = openai_sse(&[
                chunk(json!({"content": "Hi"}), None),
                json!({"error": {"message": "slow down", "type": openai, "code": null}}),
            ]);
            let events = translate(&input, 64);
            assert_eq!(events[3].1["error"]["type"], anthropic, "{openai}");
        }
    }

    #[test]
    fn a_chunk_that_is_not_json_becomes_an_error_event() {
        let events = translate(b"data: {oops\n\n", 64);
        assert_eq!(names(&events), ["error"]);
        assert_eq!(
            events[0].1["error"]["message"],
            "upstream sent a stream chunk that is not JSON"
        );
    }

    #[test]
    fn choices_other_than_the_first_are_ignored() {
        let mut second = chunk(json!({"content": "other"}), None);
        second["choices"][0]["index"] = json!(1);
        let events = translate(
            &openai_sse(&[chunk(json!({"content": "first"}), None), second]),
            64,
        );
        let texts: Vec<&Value> = events
            .iter()
            .filter_map(|(_, data)| data["delta"].get("text"))
            .collect();
        assert_eq!(texts, [&json!("first")]);
    }
}
