//! An OpenAI-format client calling Gemini: the `generateContent` answer becomes a Chat
//! Completions response, one choice per candidate. A prompt Gemini blocked (no candidates, a
//! `promptFeedback.blockReason`) is [`TranslateError::Blocked`].

use super::{now_unix_secs, response_error, TranslateError};
use serde_json::{json, Map, Value};

/// Translates a (non-streaming) Gemini `generateContent` response into an OpenAI Chat
/// Completions response; `model` names it when Gemini does not (`modelVersion`).
pub fn gemini_response_to_chat(response: &Value, model: &str) -> Result<Value, TranslateError> {
    let response = response.as_object().ok_or_else(|| {
        TranslateError::InvalidResponse("upstream response is not a JSON object".into())
    })?;
    if let Some(error) = response.get("error") {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        return Err(TranslateError::InvalidResponse(format!(
            "upstream returned an error: {message}"
        )));
    }
    let candidates = match response.get("candidates") {
        Some(Value::Array(candidates)) if !candidates.is_empty() => candidates,
        None | Some(Value::Array(_)) => {
            return Err(match block_reason(response) {
                Some(reason) => TranslateError::Blocked(reason),
                None => response_error("candidates", "missing or empty"),
            })
        }
        Some(_) => return Err(response_error("candidates", "must be an array")),
    };
    let mut choices = Vec::with_capacity(candidates.len());
    for (i, candidate) in candidates.iter().enumerate() {
        choices.push(choice(candidate, i)?);
    }
    Ok(json!({
        "id": response_id(response),
        "object": "chat.completion",
        "created": now_unix_secs(),
        "model": response.get("modelVersion").and_then(Value::as_str).unwrap_or(model),
        "choices": choices,
        "usage": chat_usage(response.get("usageMetadata")),
    }))
}

/// Why Gemini blocked the prompt, as a message for the caller; `None` when it did not.
pub(super) fn block_reason(response: &Map<String, Value>) -> Option<String> {
    let feedback = response.get("promptFeedback")?;
    let reason = feedback.get("blockReason").and_then(Value::as_str)?;
    let detail = feedback
        .get("blockReasonMessage")
        .and_then(Value::as_str)
        .map(|message| format!(": {message}"))
        .unwrap_or_default();
    Some(format!(
        "Gemini blocked the prompt (blockReason {reason}){detail}"
    ))
}

pub(super) fn response_id(response: &Map<String, Value>) -> String {
    match response.get("responseId").and_then(Value::as_str) {
        Some(id) => format!("chatcmpl-{id}"),
        None => format!("chatcmpl-gemini-{}", now_unix_secs()),
    }
}

fn choice(candidate: &Value, position: usize) -> Result<Value, TranslateError> {
    let index = candidate
        .get("index")
        .and_then(Value::as_u64)
        .unwrap_or(position as u64);
    let path = format!("candidates[{position}]");
    let parts = match candidate.get("content").and_then(|c| c.get("parts")) {
        None => &[][..],
        Some(Value::Array(parts)) => parts.as_slice(),
        Some(_) => {
            return Err(response_error(
                format!("{path}.content.parts"),
                "must be an array",
            ))
        }
    };
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        match Part::of(part) {
            Part::Text(part_text) => text.get_or_insert_with(String::new).push_str(part_text),
            Part::Call(call) => tool_calls.push(tool_call(call, tool_calls.len())),
            Part::Other => {}
            Part::Malformed(problem) => {
                return Err(response_error(
                    format!("{path}.content.parts[{j}]"),
                    problem,
                ))
            }
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    message.insert("content".into(), text.map_or(Value::Null, Value::String));
    let finish_reason = finish_reason_for(
        candidate.get("finishReason").and_then(Value::as_str),
        !tool_calls.is_empty(),
    );
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), tool_calls.into());
    }
    message.insert("refusal".into(), Value::Null);
    Ok(
        json!({"index": index, "message": message, "finish_reason": finish_reason, "logprobs": null}),
    )
}

/// What one part of a candidate's content is to a Chat Completions caller.
pub(super) enum Part<'a> {
    /// Answer text (thought summaries are not answer text).
    Text(&'a str),
    /// A function call: `{"name", "args", "id"?}`.
    Call(&'a Value),
    /// Thoughts, code execution, inline data: nothing Chat Completions has.
    Other,
    Malformed(&'static str),
}

impl<'a> Part<'a> {
    pub(super) fn of(part: &'a Value) -> Part<'a> {
        if part.get("thought").and_then(Value::as_bool) == Some(true) {
            return Part::Other;
        }
        if let Some(text) = part.get("text") {
            return text
                .as_str()
                .map_or(Part::Malformed("text must be a string"), Part::Text);
        }
        match part.get("functionCall") {
            Some(call) if call.get("name").and_then(Value::as_str).is_some() => Part::Call(call),
            Some(_) => Part::Malformed("functionCall needs a string name"),
            None => Part::Other,
        }
    }
}

/// A Gemini function call as an OpenAI tool call. Gemini's call ids are optional; without one
/// the call's position names it (a tool result comes back matched by function name anyway).
pub(super) fn tool_call(call: &Value, position: usize) -> Value {
    let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .map_or_else(|| format!("call_{position}_{name}"), str::to_owned);
    let arguments = call
        .get("args")
        .map_or_else(|| "{}".to_owned(), Value::to_string);
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
}

/// Gemini `finishReason` → OpenAI `finish_reason`; a turn that called functions ends in
/// `tool_calls` as OpenAI callers expect.
pub(super) fn finish_reason_for(reason: Option<&str>, called_tools: bool) -> &'static str {
    match reason {
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY",
        ) => "content_filter",
        _ if called_tools => "tool_calls",
        // STOP, OTHER, MALFORMED_FUNCTION_CALL and anything newer: the turn ended.
        _ => "stop",
    }
}

/// Gemini `usageMetadata` → OpenAI usage: thinking tokens are completion tokens (they are
/// billed as output), cached prompt tokens are part of the prompt.
pub(super) fn chat_usage(usage: Option<&Value>) -> Value {
    let count = |key: &str| {
        usage
            .and_then(|usage| usage.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let prompt = count("promptTokenCount");
    let thoughts = count("thoughtsTokenCount");
    let completion = count("candidatesTokenCount").saturating_add(thoughts);
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt.saturating_add(completion),
        "prompt_tokens_details": {"cached_tokens": count("cachedContentTokenCount")},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gemini_answer(parts: Value, finish_reason: &str) -> Value {
        json!({
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish_reason, "index": 0}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 6, "thoughtsTokenCount": 4, "totalTokenCount": 22},
            "modelVersion": "gemini-2.5-flash",
            "responseId": "abc123",
        })
    }

    #[test]
    fn a_text_answer_becomes_a_chat_completion() {
        let answer = gemini_answer(
            json!([{"text": "thinking...", "thought": true}, {"text": "Hello"}, {"text": " there"}]),
            "STOP",
        );
        let mut chat = gemini_response_to_chat(&answer, "gemini-2.5-flash").expect("translates");
        assert!(chat["created"].as_u64().expect("created") > 1_700_000_000);
        chat.as_object_mut().expect("object").remove("created");
        assert_eq!(
            chat,
            json!({
                "id": "chatcmpl-abc123",
                "object": "chat.completion",
                "model": "gemini-2.5-flash",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello there", "refusal": null},
                    "finish_reason": "stop",
                    "logprobs": null,
                }],
                "usage": {
                    "prompt_tokens": 12, "completion_tokens": 10, "total_tokens": 22,
                    "prompt_tokens_details": {"cached_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 4},
                },
            })
        );
    }

    #[test]
    fn function_calls_become_tool_calls() {
        let answer = gemini_answer(
            json!([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}, {"functionCall": {"id": "fc-7", "name": "now"}}]),
            "STOP",
        );
        let chat = gemini_response_to_chat(&answer, "m").expect("translates");
        let choice = &chat["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([
                {"id": "call_0_get_weather", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "fc-7", "type": "function", "function": {"name": "now", "arguments": "{}"}},
            ])
        );
    }

    #[test]
    fn finish_reasons_map_to_openai_ones() {
        for (gemini, openai) in [
            ("STOP", "stop"),
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("OTHER", "stop"),
        ] {
            let chat = gemini_response_to_chat(&gemini_answer(json!([{"text": "x"}]), gemini), "m")
                .expect("translates");
            assert_eq!(chat["choices"][0]["finish_reason"], openai, "{gemini}");
        }
    }

    #[test]
    fn a_blocked_prompt_is_a_block_not_a_bad_answer() {
        let answer = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 8}});
        match gemini_response_to_chat(&answer, "m") {
            Err(TranslateError::Blocked(message)) => {
                assert_eq!(message, "Gemini blocked the prompt (blockReason SAFETY)")
            }
            other => panic!("expected Blocked, got {other:?}"),
        }
    }

    #[test]
    fn answers_that_are_not_gemini_answers_are_invalid_responses() {
        for answer in [
            json!([]),
            json!({}),
            json!({"candidates": 3}),
            json!({"candidates": [{"content": {"parts": [{"text": 5}]}}]}),
            json!({"candidates": [{"content": {"parts": [{"functionCall": {}}]}}]}),
            json!({"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}),
        ] {
            match gemini_response_to_chat(&answer, "m") {
                Err(TranslateError::InvalidResponse(message)) => {
                    assert!(message.starts_with("upstream "), "{answer}: {message}")
                }
                other => panic!("{answer}: expected InvalidResponse, got {other:?}"),
            }
        }
    }
}
