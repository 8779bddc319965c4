//! An OpenAI-format client streaming from an Anthropic upstream: Messages stream events become
//! `chat.completion.chunk`s.

use super::{chat_usage, finish_reason_for, write_chat_error, ChatChunks};
use crate::providers::sse::{SseEvent, StreamTranslator};
use serde_json::{json, Map, Value};

/// Translates an Anthropic Messages event stream into OpenAI Chat Completions chunks, ending with `[DONE]`.
#[derive(Debug)]
pub struct MessagesStreamToChat {
    include_usage: bool,
    chunks: ChatChunks,
    /// Anthropic content-block index of each tool_use block, in order; the position is the OpenAI tool-call index.
    tool_blocks: Vec<u64>,
    /// Anthropic usage fields merged from `message_start` and `message_delta`.
    usage: Map<String, Value>,
    finish_reason: Option<&'static str>,
    finish_sent: bool,
    done: bool,
}

impl MessagesStreamToChat {
    /// `include_usage` mirrors the client's `stream_options.include_usage`: whether to send a final usage chunk.
    pub fn new(include_usage: bool) -> Self {
        Self {
            include_usage,
            chunks: ChatChunks::new(),
            tool_blocks: Vec::new(),
            usage: Map::new(),
            finish_reason: None,
            finish_sent: false,
            done: false,
        }
    }

    fn write_chunk(&self, delta: Value, finish_reason: Option<&str>, out: &mut Vec<u8>) {
        self.chunks.write(0, delta, finish_reason, out);
    }

    fn merge_usage(&mut self, usage: Option<&Value>) {
        if let Some(usage) = usage.and_then(Value::as_object) {
            for (key, value) in usage {
                if !value.is_null() {
                    self.usage.insert(key.clone(), value.clone());
                }
            }
        }
    }

    fn on_message_start(&mut self, data: &Value, out: &mut Vec<u8>) {
        let message = data.get("message");
        let field = |key: &str| {
            message
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        self.chunks.id = field("id").to_owned();
        self.chunks.model = field("model").to_owned();
        self.merge_usage(message.and_then(|m| m.get("usage")));
        self.write_chunk(json!({"role": "assistant", "content": ""}), None, out);
    }

    fn on_content_block_start(&mut self, data: &Value, out: &mut Vec<u8>) {
        let Some(block) = data.get("content_block") else {
            return;
        };
        match block.get("type").and_then(Value::as_str) {
            Some("tool_use") => {
                let tool_index = self.tool_blocks.len();
                self.tool_blocks.push(
                    data.get("index")
                        .and_then(Value::as_u64)
                        .unwrap_or_default(),
                );
                let field = |key: &str| block.get(key).and_then(Value::as_str).unwrap_or_default();
                let call = json!({
                    "index": tool_index,
                    "id": field("id"),
                    "type": "function",
                    "function": {"name": field("name"), "arguments": ""},
                });
                self.write_chunk(json!({"tool_calls": [call]}), None, out);
            }
            Some("text") => {
                let text = block
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !text.is_empty() {
                    self.write_chunk(json!({"content": text}), None, out);
                }
            }
            // Thinking and server-tool blocks have no Chat Completions equivalent.
            _ => {}
        }
    }

    fn on_content_block_delta(&mut self, data: &Value, out: &mut Vec<u8>) {
        let Some(delta) = data.get("delta") else {
            return;
        };
        let text_of = |key: &str| delta.get(key).and_then(Value::as_str).unwrap_or_default();
        match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => self.write_chunk(json!({"content": text_of("text")}), None, out),
            Some("input_json_delta") => {
                let block_index = data
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or_default();
                if let Some(tool_index) = self
                    .tool_blocks
                    .iter()
                    .position(|&index| index == block_index)
                {
                    let call = json!({"index": tool_index, "function": {"arguments": text_of("partial_json")}});
                    self.write_chunk(json!({"tool_calls": [call]}), None, out);
                }
            }
            _ => {}
        }
    }

    fn on_message_delta(&mut self, data: &Value, out: &mut Vec<u8>) {
        self.merge_usage(data.get("usage"));
        let stop_reason = data
            .get("delta")
            .and_then(|delta| delta.get("stop_reason"))
            .and_then(Value::as_str);
        let finish_reason = stop_reason.map_or("stop", finish_reason_for);
        self.finish_reason = Some(finish_reason);
        self.finish_sent = true;
        self.write_chunk(json!({}), Some(finish_reason), out);
    }

    /// Sends whatever the client still expects (finish chunk, usage chunk) and `[DONE]`, exactly once.
    fn close(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let finish = (!self.finish_sent).then(|| self.finish_reason.unwrap_or("stop"));
        let usage = self
            .include_usage
            .then(|| chat_usage(Some(&Value::Object(self.usage.clone()))));
        self.chunks.write_end(finish, usage, out);
        self.finish_sent = true;
        self.done = true;
    }

    fn fail(&mut self, message: &str, kind: &str, out: &mut Vec<u8>) {
        write_chat_error(message, kind, out);
        self.done = true;
    }
}

impl StreamTranslator for MessagesStreamToChat {
    fn on_event(&mut self, event: SseEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            self.fail(
                "upstream sent a stream event that is not JSON",
                "api_error",
                out,
            );
            return;
        };
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or_default();
        match kind {
            "message_start" => self.on_message_start(&data, out),
            "content_block_start" => self.on_content_block_start(&data, out),
            "content_block_delta" => self.on_content_block_delta(&data, out),
            "message_delta" => self.on_message_delta(&data, out),
            "message_stop" => self.close(out),
            "error" => {
                let error = data.get("error");
                let field = |key: &str| error.and_then(|e| e.get(key)).and_then(Value::as_str);
                let message = field("message").unwrap_or("upstream stream error");
                self.fail(message, field("type").unwrap_or("api_error"), out);
            }
            // ping, content_block_stop, and event types newer than this code.
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
    use crate::providers::sse::SseParser;
    use crate::providers::translate::test_support::{anthropic_sse, payloads_of, translate_stream};

    /// A text answer as Anthropic streams it, including a ping and block stops.
    const TEXT_STREAM: &str = concat!(
        "event: message_start\r\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\r\n",
        "\r\n",
        "event: content_block_start\r\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n",
        "\r\n",
        "event: ping\r\n",
        "data: {\"type\": \"ping\"}\r\n",
        "\r\n",
        "event: content_block_delta\r\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Héllo\"}}\r\n",
        "\r\n",
        "event: content_block_delta\r\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" wörld ✓\"}}\r\n",
        "\r\n",
        "event: content_block_stop\r\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\r\n",
        "\r\n",
        "event: message_delta\r\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\r\n",
        "\r\n",
        "event: message_stop\r\n",
        "data: {\"type\":\"message_stop\"}\r\n",
        "\r\n",
    );

    fn chunk_choice(chunk: &Value) -> &Value {
        &chunk["choices"][0]
    }

    fn tool_stream() -> Vec<u8> {
        anthropic_sse(&[
            json!({"type": "message_start", "message": {"id": "msg_2", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5", "usage": {"input_tokens": 40, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me check."}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Par"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "is\"}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 30}}),
            json!({"type": "message_stop"}),
        ])
    }

    #[test]
    fn a_text_stream_becomes_role_content_finish_chunks_and_done() {
        let out = translate_stream(
            &mut MessagesStreamToChat::new(false),
            TEXT_STREAM.as_bytes(),
            7,
        );
        let payloads = payloads_of(&out);
        assert_eq!(payloads.len(), 5, "{payloads:?}");
        for chunk in &payloads[..4] {
            assert_eq!(chunk["id"], "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY");
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["model"], "claude-sonnet-4-5-20250929");
            assert!(chunk["created"].is_u64());
            assert_eq!(chunk_choice(chunk)["index"], 0);
            assert_eq!(chunk_choice(chunk)["logprobs"], Value::Null);
        }
        assert_eq!(
            chunk_choice(&payloads[0])["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(chunk_choice(&payloads[0])["finish_reason"], Value::Null);
        assert_eq!(
            chunk_choice(&payloads[1])["delta"],
            json!({"content": "Héllo"})
        );
        assert_eq!(
            chunk_choice(&payloads[2])["delta"],
            json!({"content": " wörld ✓"})
        );
        assert_eq!(chunk_choice(&payloads[3])["delta"], json!({}));
        assert_eq!(chunk_choice(&payloads[3])["finish_reason"], "stop");
        assert_eq!(payloads[4], "[DONE]");
    }

    #[test]
    fn every_chunk_boundary_gives_the_same_chunks() {
        let whole = payloads_of(&translate_stream(
            &mut MessagesStreamToChat::new(true),
            TEXT_STREAM.as_bytes(),
            usize::MAX,
        ));
        for chunk_len in [1, 2, 3, 5, 11, 64] {
            let mut split = payloads_of(&translate_stream(
                &mut MessagesStreamToChat::new(true),
                TEXT_STREAM.as_bytes(),
                chunk_len,
            ));
            for (chunk, expected) in split.iter_mut().zip(&whole) {
                if let (Some(chunk), Some(created)) =
                    (chunk.as_object_mut(), expected.get("created"))
                {
                    chunk.insert("created".into(), created.clone());
                }
            }
            assert_eq!(split, whole, "chunk length {chunk_len}");
        }
    }

    #[test]
    fn chunk_boundaries_inside_data_field_and_utf8_character_are_handled() {
        let input = TEXT_STREAM.as_bytes();
        let delta_event = TEXT_STREAM
            .find("data: {\"type\":\"content_block_delta\"")
            .expect("delta event");
        let inside_data_field = delta_event + 3; // between "dat" and "a:"
        let inside_o_umlaut = TEXT_STREAM.find('ö').expect("multi-byte char") + 1;
        let mut parser = SseParser::default();
        let mut translator = MessagesStreamToChat::new(false);
        let mut events = Vec::new();
        let mut out = Vec::new();
        for piece in [
            &input[..inside_data_field],
            &input[inside_data_field..inside_o_umlaut],
            &input[inside_o_umlaut..],
        ] {
            parser.push(piece, &mut events);
            for event in events.drain(..) {
                translator.on_event(event, &mut out);
            }
        }
        translator.finish(&mut out);
        let contents: Vec<Value> = payloads_of(&out)
            .iter()
            .filter_map(|chunk| {
                chunk
                    .get("choices")
                    .and_then(|c| c[0]["delta"].get("content"))
                    .cloned()
            })
            .collect();
        assert_eq!(contents, [json!(""), json!("Héllo"), json!(" wörld ✓")]);
    }

    #[test]
    fn tool_use_blocks_stream_as_indexed_tool_call_deltas() {
        let payloads = payloads_of(&translate_stream(
            &mut MessagesStreamToChat::new(false),
            &tool_stream(),
            13,
        ));
        let deltas: Vec<&Value> = payloads
            .iter()
            .filter_map(|chunk| chunk.get("choices"))
            .map(|c| &c[0]["delta"])
            .collect();
        assert_eq!(
            deltas,
            [
                &json!({"role": "assistant", "content": ""}),
                &json!({"content": "Let me check."}),
                &json!({"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                &json!({"tool_calls": [{"index": 0, "function": {"arguments": ""}}]}),
                &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": \"Par"}}]}),
                &json!({"tool_calls": [{"index": 0, "function": {"arguments": "is\"}"}}]}),
                &json!({"tool_calls": [{"index": 1, "id": "toolu_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
                &json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
                &json!({}),
            ]
        );
        assert_eq!(
            payloads[payloads.len() - 2]["choices"][0]["finish_reason"],
            "tool_calls"
        );
        assert_eq!(payloads[payloads.len() - 1], "[DONE]");
    }

    #[test]
    fn a_usage_chunk_precedes_done_when_include_usage_is_set() {
        let payloads = payloads_of(&translate_stream(
            &mut MessagesStreamToChat::new(true),
            TEXT_STREAM.as_bytes(),
            64,
        ));
        let usage_chunk = &payloads[payloads.len() - 2];
        assert_eq!(usage_chunk["choices"], json!([]));
        assert_eq!(
            usage_chunk["usage"],
            json!({"prompt_tokens": 30, "completion_tokens": 15, "total_tokens": 45})
        );
        assert_eq!(usage_chunk["id"], "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY");
        assert_eq!(payloads[payloads.len() - 1], "[DONE]");
    }

    #[test]
    fn no_usage_chunk_without_include_usage() {
        let payloads = payloads_of(&translate_stream(
            &mut MessagesStreamToChat::new(false),
            TEXT_STREAM.as_bytes(),
            64,
        ));
        assert!(payloads.iter().all(|chunk| chunk.get("usage").is_none()));
    }

    #[test]
    fn max_tokens_stop_reason_finishes_with_length() {
        let stream = anthropic_sse(&[
            json!({"type": "message_start", "message": {"id": "msg_3", "model": "claude", "usage": {"input_tokens": 1}}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 4}}),
            json!({"type": "message_stop"}),
        ]);
        let payloads = payloads_of(&translate_stream(
            &mut MessagesStreamToChat::new(false),
            &stream,
            64,
        ));
        assert_eq!(payloads[1]["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn an_error_event_becomes_an_error_chunk_and_done() {
        let stream = anthropic_sse(&[
            json!({"type": "message_start", "message": {"id": "msg_4", "model": "claude"}}),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            json!({"type": "message_stop"}),
        ]);
        let payloads = payloads_of(&translate_stream(
            &mut MessagesStreamToChat::new(true),
            &stream,
            64,
        ));
        assert_eq!(
            payloads[1..],
            [
                json!({"error": {"message": "Overloaded", "type": "overloaded_error", "code": null}}),
                json!("[DONE]")
            ]
        );
    }

    #[test]
    fn an_event_that_is_not_json_becomes_an_error_chunk() {
        let payloads = payloads_of(&translate_stream(
            &mut MessagesStreamToChat::new(false),
            b"event: message_start\ndata: {oops\n\n",
            64,
        ));
        assert_eq!(
            payloads[0]["error"]["message"],
            "upstream sent a stream event that is not JSON"
        );
        assert_eq!(payloads[1], "[DONE]");
        assert_eq!(payloads.len(), 2);
    }

    #[test]
    fn a_stream_cut_short_still_finishes_with_stop_and_done() {
        let cut = &TEXT_STREAM.as_bytes()[..TEXT_STREAM
            .find("event: content_block_stop")
            .expect("stop event")];
        let payloads = payloads_of(&translate_stream(
            &mut MessagesStreamToChat::new(false),
            cut,
            9,
        ));
        let finish = &payloads[payloads.len() - 2];
        assert_eq!(finish["choices"][0]["delta"], json!({}));
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        assert_eq!(payloads[payloads.len() - 1], "[DONE]");
    }

    #[test]
    fn a_stream_cut_after_message_delta_does_not_repeat_the_finish_chunk() {
        let cut =
            &TEXT_STREAM.as_bytes()[..TEXT_STREAM.find("event: message_stop").expect("stop event")];
        let payloads = payloads_of(&translate_stream(
            &mut MessagesStreamToChat::new(false),
            cut,
            9,
        ));
        let finishes = payloads
            .iter()
            .filter(|chunk| chunk["choices"][0]["finish_reason"].is_string())
            .count();
        assert_eq!(finishes, 1);
        assert_eq!(payloads[payloads.len() - 1], "[DONE]");
    }

    #[test]
    fn done_is_never_sent_twice() {
        let mut translator = MessagesStreamToChat::new(true);
        let mut out = translate_stream(&mut translator, TEXT_STREAM.as_bytes(), 64);
        translator.finish(&mut out);
        let payloads = payloads_of(&out);
        assert_eq!(
            payloads
                .iter()
                .filter(|payload| *payload == "[DONE]")
                .count(),
            1
        );
    }

    #[test]
    fn an_empty_upstream_still_gets_a_finish_chunk_and_done() {
        let payloads = payloads_of(&translate_stream(
            &mut MessagesStreamToChat::new(false),
            b"",
            1,
        ));
        assert_eq!(payloads.len(), 2);
        assert_eq!(payloads[0]["choices"][0]["finish_reason"], "stop");
        assert_eq!(payloads[1], "[DONE]");
    }
}
