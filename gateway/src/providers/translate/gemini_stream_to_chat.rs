//! An OpenAI-format client streaming from Gemini (`streamGenerateContent?alt=sse`): each SSE
//! event is a partial `generateContent` answer, and becomes `chat.completion.chunk`s.

use super::gemini_response_to_chat::{
    block_reason, chat_usage, finish_reason_for, response_id, tool_call, Part,
};
use super::{write_chat_error, ChatChunks};
use crate::providers::sse::{SseEvent, StreamTranslator};
use serde_json::{json, Value};

/// Translates a Gemini answer stream into OpenAI Chat Completions chunks, ending with `[DONE]`.
#[derive(Debug)]
pub struct GeminiStreamToChat {
    include_usage: bool,
    chunks: ChatChunks,
    /// Per candidate index: tool calls sent so far (the OpenAI tool-call index of the next).
    tool_calls: Vec<usize>,
    /// The last `usageMetadata` seen: Gemini repeats it, growing, on every event.
    usage: Option<Value>,
    started: bool,
    /// Candidates whose finish chunk was sent.
    finished: Vec<u64>,
    done: bool,
}

impl GeminiStreamToChat {
    /// `include_usage` mirrors the client's `stream_options.include_usage`.
    pub fn new(include_usage: bool) -> Self {
        Self {
            include_usage,
            chunks: ChatChunks::new(),
            tool_calls: Vec::new(),
            usage: None,
            started: false,
            finished: Vec::new(),
            done: false,
        }
    }

    fn write_chunk(&self, index: u64, delta: Value, finish: Option<&str>, out: &mut Vec<u8>) {
        self.chunks.write(index, delta, finish, out);
    }

    fn on_answer(&mut self, answer: &serde_json::Map<String, Value>, out: &mut Vec<u8>) {
        if let Some(usage) = answer.get("usageMetadata").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let candidates = answer
            .get("candidates")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        if !self.started {
            if candidates.is_empty() {
                if let Some(reason) = block_reason(answer) {
                    self.fail(&reason, "content_filter", out);
                }
                return;
            }
            self.started = true;
            self.chunks.id = response_id(answer);
            self.chunks.model = answer
                .get("modelVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            self.write_chunk(0, json!({"role": "assistant", "content": ""}), None, out);
        }
        for (position, candidate) in candidates.iter().enumerate() {
            self.on_candidate(candidate, position, out);
        }
    }

    fn on_candidate(&mut self, candidate: &Value, position: usize, out: &mut Vec<u8>) {
        let index = candidate
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let Ok(slot) = usize::try_from(index) else {
            return;
        };
        if self.finished.contains(&index) || slot > 64 {
            return;
        }
        if self.tool_calls.len() <= slot {
            self.tool_calls.resize(slot + 1, 0);
        }
        let parts = candidate
            .get("content")
            .and_then(|content| content.get("parts"))
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        for part in parts {
            match Part::of(part) {
                Part::Text(text) if !text.is_empty() => {
                    self.write_chunk(index, json!({"content": text}), None, out)
                }
                Part::Call(call) => {
                    let position = self.tool_calls[slot];
                    self.tool_calls[slot] += 1;
                    let mut call = tool_call(call, position);
                    call["index"] = position.into();
                    self.write_chunk(index, json!({"tool_calls": [call]}), None, out);
                }
                _ => {}
            }
        }
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
            let finish = finish_reason_for(Some(reason), self.tool_calls[slot] > 0);
            self.finished.push(index);
            self.write_chunk(index, json!({}), Some(finish), out);
        }
    }

    /// Sends whatever the client still expects (a finish chunk, the usage chunk) and `[DONE]`.
    fn close(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.started {
            self.fail("upstream stream ended before any answer", "api_error", out);
            return;
        }
        let finish = self.finished.is_empty().then_some("stop");
        let usage = self.include_usage.then(|| chat_usage(self.usage.as_ref()));
        self.chunks.write_end(finish, usage, out);
        self.done = true;
    }

    fn fail(&mut self, message: &str, kind: &str, out: &mut Vec<u8>) {
        write_chat_error(message, kind, out);
        self.done = true;
    }
}

impl StreamTranslator for GeminiStreamToChat {
    fn on_event(&mut self, event: SseEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let Ok(Value::Object(answer)) = serde_json::from_str::<Value>(&event.data) else {
            self.fail(
                "upstream sent a stream event that is not a JSON object",
                "api_error",
                out,
            );
            return;
        };
        if let Some(error) = answer.get("error") {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("upstream stream error");
            self.fail(message, "api_error", out);
            return;
        }
        self.on_answer(&answer, out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.close(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::translate::test_support::{payloads_of, translate_stream};

    /// Gemini's SSE: data-only events, CRLF-separated, usage on every event.
    fn gemini_sse(events: &[Value]) -> Vec<u8> {
        let mut out = Vec::new();
        for event in events {
            out.extend_from_slice(format!("data: {event}\r\n\r\n").as_bytes());
        }
        out
    }

    fn text_stream() -> Vec<u8> {
        gemini_sse(&[
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Héllo"}]}, "index": 0}], "usageMetadata": {"promptTokenCount": 9}, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": " wörld ✓"}]}, "index": 0}], "usageMetadata": {"promptTokenCount": 9}, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 5, "totalTokenCount": 14}, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}),
        ])
    }

    #[test]
    fn a_text_stream_becomes_chunks_with_a_finish_and_usage_at_every_chunk_size() {
        let input = text_stream();
        for chunk_len in [1, 7, input.len()] {
            let mut translator = GeminiStreamToChat::new(true);
            let payloads = payloads_of(&translate_stream(&mut translator, &input, chunk_len));
            let deltas: Vec<&Value> = payloads
                .iter()
                .filter_map(|p| p.get("choices")?.get(0)?.get("delta"))
                .collect();
            assert_eq!(deltas[0], &json!({"role": "assistant", "content": ""}));
            let text: String = deltas
                .iter()
                .filter_map(|d| d.get("content").and_then(Value::as_str))
                .collect();
            assert_eq!(text, "Héllo wörld ✓", "chunk length {chunk_len}");
            let finishes: Vec<&Value> = payloads
                .iter()
                .filter_map(|p| p.get("choices")?.get(0)?.get("finish_reason"))
                .filter(|f| !f.is_null())
                .collect();
            assert_eq!(finishes, [&json!("stop")]);
            let usage = &payloads[payloads.len() - 2];
            assert_eq!(usage["choices"], json!([]));
            assert_eq!(usage["usage"]["prompt_tokens"], 9);
            assert_eq!(usage["usage"]["completion_tokens"], 5);
            assert_eq!(payloads[payloads.len() - 1], "[DONE]");
            assert!(payloads
                .iter()
                .all(|p| p == "[DONE]" || p["id"] == "chatcmpl-r1"));
        }
    }

    #[test]
    fn without_include_usage_no_usage_chunk_is_sent() {
        let mut translator = GeminiStreamToChat::new(false);
        let payloads = payloads_of(&translate_stream(&mut translator, &text_stream(), 64));
        assert!(payloads.iter().all(|p| p.get("usage").is_none()));
    }

    #[test]
    fn function_calls_stream_as_whole_tool_calls_and_finish_with_tool_calls() {
        let input = gemini_sse(&[
            json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "now", "args": {}}},
        ]}, "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 10}}),
        ]);
        let mut translator = GeminiStreamToChat::new(false);
        let payloads = payloads_of(&translate_stream(&mut translator, &input, 16));
        let calls: Vec<&Value> = payloads
            .iter()
            .filter_map(|p| p["choices"][0]["delta"].get("tool_calls"))
            .collect();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0][0]["index"], 0);
        assert_eq!(calls[0][0]["function"]["name"], "get_weather");
        assert_eq!(calls[0][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(calls[1][0]["index"], 1);
        let finish = &payloads[payloads.len() - 2]["choices"][0]["finish_reason"];
        assert_eq!(finish, "tool_calls");
    }

    #[test]
    fn a_blocked_prompt_and_an_upstream_error_end_the_stream_with_an_error() {
        for (event, expected) in [
            (
                json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}),
                "Gemini blocked the prompt (blockReason SAFETY)",
            ),
            (
                json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}),
                "The model is overloaded.",
            ),
        ] {
            let mut translator = GeminiStreamToChat::new(true);
            let payloads =
                payloads_of(&translate_stream(&mut translator, &gemini_sse(&[event]), 8));
            assert_eq!(payloads.len(), 2, "{payloads:?}");
            assert_eq!(payloads[0]["error"]["message"], expected);
            assert_eq!(payloads[1], "[DONE]");
        }
    }

    #[test]
    fn hostile_events_give_whole_events_and_never_panic() {
        for data in [
            "null", "[]", "5", "{\"candidates\": 5}", "{\"candidates\": [5, null, {}]}",
            "{\"candidates\": [{\"index\": 99999999999, \"content\": {\"parts\": [1]}}]}",
            "{\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": 3}, {\"text\": 4}]}, \"finishReason\": 2}]}",
            "not json",
        ] {
            let mut out = Vec::new();
            let mut translator = GeminiStreamToChat::new(true);
            translator.on_event(SseEvent { event: None, data: data.into() }, &mut out);
            translator.finish(&mut out);
            assert!(out.ends_with(b"data: [DONE]\n\n"), "{data}");
        }
    }
}
