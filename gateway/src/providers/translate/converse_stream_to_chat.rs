//! An OpenAI-format client streaming from Bedrock (`converse-stream`): the event-stream
//! messages, decoded by `providers::eventstream` into events named by their `:event-type`,
//! become `chat.completion.chunk`s.

use super::converse_response_to_chat::{finish_reason_for, usage};
use super::{write_chat_error, ChatChunks};
use crate::providers::eventstream::EXCEPTION_PREFIX;
use crate::providers::sse::{SseEvent, StreamTranslator};
use serde_json::{json, Value};

/// Translates a Bedrock ConverseStream into OpenAI Chat Completions chunks, ending with
/// `[DONE]` after the `metadata` event (which carries the usage).
#[derive(Debug)]
pub struct ConverseStreamToChat {
    include_usage: bool,
    chunks: ChatChunks,
    /// Content-block index of each `toolUse` block, in order; the position is the OpenAI
    /// tool-call index.
    tool_blocks: Vec<u64>,
    usage: Option<Value>,
    started: bool,
    finish_sent: bool,
    done: bool,
}

impl ConverseStreamToChat {
    /// `include_usage` mirrors the client's `stream_options.include_usage`.
    pub fn new(include_usage: bool) -> Self {
        Self {
            include_usage,
            chunks: ChatChunks::new(),
            tool_blocks: Vec::new(),
            usage: None,
            started: false,
            finish_sent: false,
            done: false,
        }
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            self.chunks.id = format!("chatcmpl-bedrock-{}", self.chunks.created);
            self.chunks
                .write(0, json!({"role": "assistant", "content": ""}), None, out);
        }
    }

    fn on_block_start(&mut self, data: &Value, out: &mut Vec<u8>) {
        let Some(tool_use) = data.pointer("/start/toolUse") else {
            return;
        };
        let index = self.tool_blocks.len();
        let block = data
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or_default();
        self.tool_blocks.push(block);
        let field = |key: &str| {
            tool_use
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let call = json!({
            "index": index, "id": field("toolUseId"), "type": "function",
            "function": {"name": field("name"), "arguments": ""},
        });
        self.chunks
            .write(0, json!({"tool_calls": [call]}), None, out);
    }

    fn on_block_delta(&mut self, data: &Value, out: &mut Vec<u8>) {
        let Some(delta) = data.get("delta") else {
            return;
        };
        if let Some(text) = delta.get("text").and_then(Value::as_str) {
            self.chunks.write(0, json!({"content": text}), None, out);
        } else if let Some(input) = delta.pointer("/toolUse/input").and_then(Value::as_str) {
            let block = data.get("contentBlockIndex").and_then(Value::as_u64);
            let position = self.tool_blocks.iter().position(|&b| Some(b) == block);
            if let Some(index) = position {
                let call = json!({"index": index, "function": {"arguments": input}});
                self.chunks
                    .write(0, json!({"tool_calls": [call]}), None, out);
            }
        }
        // reasoningContent deltas have no Chat Completions equivalent.
    }

    fn on_message_stop(&mut self, data: &Value, out: &mut Vec<u8>) {
        let reason = finish_reason_for(data.get("stopReason").and_then(Value::as_str));
        self.finish_sent = true;
        self.chunks.write(0, json!({}), Some(reason), out);
    }

    /// Sends what the client still expects (a finish chunk, the usage chunk) and `[DONE]`.
    fn close(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.started {
            self.fail("upstream stream ended before any answer", "api_error", out);
            return;
        }
        let finish = (!self.finish_sent).then_some("stop");
        let usage = self.include_usage.then(|| usage(self.usage.as_ref()));
        self.chunks.write_end(finish, usage, out);
        self.done = true;
    }

    fn fail(&mut self, message: &str, kind: &str, out: &mut Vec<u8>) {
        write_chat_error(message, kind, out);
        self.done = true;
    }
}

impl StreamTranslator for ConverseStreamToChat {
    fn on_event(&mut self, event: SseEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let name = event.event.as_deref().unwrap_or_default();
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            self.fail(
                "upstream sent a stream event that is not JSON",
                "api_error",
                out,
            );
            return;
        };
        if let Some(exception) = name.strip_prefix(EXCEPTION_PREFIX) {
            let message = data
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("upstream stream error");
            // Bedrock's throttling is a rate limit, its unavailability an overload (Anthropic
            // callers get `rate_limit_error` and `overloaded_error`, and back off or retry).
            let kind = match exception {
                "throttlingException" => "rate_limit_error",
                "serviceUnavailableException" => "overloaded_error",
                "validationException" => "invalid_request_error",
                _ => "api_error",
            };
            self.fail(&format!("{exception}: {message}"), kind, out);
            return;
        }
        match name {
            "messageStart" => self.start(out),
            "contentBlockStart" => {
                self.start(out);
                self.on_block_start(&data, out);
            }
            "contentBlockDelta" => {
                self.start(out);
                self.on_block_delta(&data, out);
            }
            "messageStop" => {
                self.start(out);
                self.on_message_stop(&data, out);
            }
            "metadata" => self.usage = data.get("usage").cloned(),
            // contentBlockStop and event types newer than this code.
            _ => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.close(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::translate::test_support::payloads_of;

    fn event(name: &str, data: Value) -> SseEvent {
        SseEvent {
            event: Some(name.into()),
            data: data.to_string(),
        }
    }

    fn translate(events: Vec<SseEvent>, include_usage: bool) -> Vec<Value> {
        let mut translator = ConverseStreamToChat::new(include_usage);
        let mut out = Vec::new();
        for event in events {
            translator.on_event(event, &mut out);
        }
        translator.finish(&mut out);
        payloads_of(&out)
    }

    #[test]
    fn a_text_stream_becomes_chunks_a_finish_and_usage() {
        let payloads = translate(
            vec![
                event("messageStart", json!({"role": "assistant"})),
                event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": "Héllo"}}),
                ),
                event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": " ✓"}}),
                ),
                event("contentBlockStop", json!({"contentBlockIndex": 0})),
                event("messageStop", json!({"stopReason": "end_turn"})),
                event(
                    "metadata",
                    json!({"usage": {"inputTokens": 9, "outputTokens": 2, "totalTokens": 11}, "metrics": {"latencyMs": 5}}),
                ),
            ],
            true,
        );
        let text: String = payloads
            .iter()
            .filter_map(|p| p["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Héllo ✓");
        assert_eq!(
            payloads[payloads.len() - 3]["choices"][0]["finish_reason"],
            "stop"
        );
        assert_eq!(
            payloads[payloads.len() - 2]["usage"],
            json!({"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11})
        );
        assert_eq!(payloads[payloads.len() - 1], "[DONE]");
    }

    #[test]
    fn tool_use_streams_as_tool_call_deltas() {
        let payloads = translate(
            vec![
                event("messageStart", json!({"role": "assistant"})),
                event(
                    "contentBlockStart",
                    json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}}),
                ),
                event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\":"}}}),
                ),
                event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Paris\"}"}}}),
                ),
                event("messageStop", json!({"stopReason": "tool_use"})),
            ],
            false,
        );
        let calls: Vec<&Value> = payloads
            .iter()
            .filter_map(|p| p["choices"][0]["delta"].get("tool_calls"))
            .collect();
        assert_eq!(calls[0][0]["id"], "tooluse_1");
        assert_eq!(calls[0][0]["function"]["name"], "get_weather");
        let arguments: String = calls
            .iter()
            .filter_map(|c| c[0]["function"]["arguments"].as_str())
            .collect();
        assert_eq!(arguments, "{\"city\":\"Paris\"}");
        assert!(calls.iter().all(|c| c[0]["index"] == 0));
        assert_eq!(
            payloads[payloads.len() - 2]["choices"][0]["finish_reason"],
            "tool_calls"
        );
    }

    #[test]
    fn an_exception_ends_the_stream_with_an_error() {
        let payloads = translate(
            vec![
                event("messageStart", json!({"role": "assistant"})),
                event(
                    &format!("{EXCEPTION_PREFIX}throttlingException"),
                    json!({"message": "Too many requests, please wait before trying again."}),
                ),
            ],
            true,
        );
        let error = &payloads[payloads.len() - 2];
        assert_eq!(error["error"]["type"], "rate_limit_error");
        assert!(
            payloads[0]["choices"].is_array(),
            "the answer had started: {payloads:?}"
        );
        assert!(error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("throttlingException: Too many")));
        assert_eq!(payloads[payloads.len() - 1], "[DONE]");
    }
}
