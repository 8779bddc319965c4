//! An OpenAI-format client calling an Anthropic upstream: the Messages response becomes a Chat Completions response.

use super::{chat_usage, finish_reason_for, now_unix_secs, response_error, TranslateError};
use serde_json::{json, Map, Value};

/// Translates a (non-streaming) Anthropic Messages response into an OpenAI Chat Completions response.
pub fn messages_response_to_chat(response: &Value) -> Result<Value, TranslateError> {
    let response = response.as_object().ok_or_else(|| {
        TranslateError::InvalidResponse("upstream response is not a JSON object".into())
    })?;
    if response.get("type").and_then(Value::as_str) == Some("error")
        || response.contains_key("error")
    {
        let message = response
            .get("error")
            .and_then(|error| error.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("no message");
        return Err(TranslateError::InvalidResponse(format!(
            "upstream returned an error: {message}"
        )));
    }
    let Some(Value::Array(blocks)) = response.get("content") else {
        return Err(response_error("content", "missing or not an array"));
    };
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let block_text = block.get("text").and_then(Value::as_str).ok_or_else(|| {
                    response_error(format!("content[{i}].text"), "must be a string")
                })?;
                text.get_or_insert_with(String::new).push_str(block_text);
            }
            Some("tool_use") => {
                let field = |key: &str| {
                    block.get(key).and_then(Value::as_str).ok_or_else(|| {
                        response_error(format!("content[{i}].{key}"), "must be a string")
                    })
                };
                let arguments = block
                    .get("input")
                    .map_or_else(|| "{}".to_owned(), Value::to_string);
                tool_calls.push(json!({
                    "id": field("id")?,
                    "type": "function",
                    "function": {"name": field("name")?, "arguments": arguments},
                }));
            }
            // Thinking and server-tool blocks have no Chat Completions equivalent.
            _ => {}
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    message.insert("content".into(), text.map_or(Value::Null, Value::String));
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), tool_calls.into());
    }
    message.insert("refusal".into(), Value::Null);
    let finish_reason = response
        .get("stop_reason")
        .and_then(Value::as_str)
        .map_or("stop", finish_reason_for);
    Ok(json!({
        "id": response.get("id").and_then(Value::as_str).unwrap_or_default(),
        "object": "chat.completion",
        "created": now_unix_secs(),
        "model": response.get("model").and_then(Value::as_str).unwrap_or_default(),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": null}],
        "usage": chat_usage(response.get("usage")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anthropic_response(content: Value, stop_reason: &str) -> Value {
        json!({
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 6},
        })
    }

    fn invalid_response(response: Value) -> String {
        match messages_response_to_chat(&response) {
            Err(TranslateError::InvalidResponse(message)) => message,
            other => panic!("expected InvalidResponse, got {other:?}"),
        }
    }

    #[test]
    fn a_text_response_becomes_a_chat_completion() {
        let response = anthropic_response(json!([{"type": "text", "text": "Hello!"}]), "end_turn");
        let chat = messages_response_to_chat(&response).expect("translates");
        assert!(chat["created"].as_u64().expect("created") > 1_700_000_000);
        let mut chat = chat;
        chat.as_object_mut().expect("object").remove("created");
        assert_eq!(
            chat,
            json!({
                "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
                "object": "chat.completion",
                "model": "claude-sonnet-4-5-20250929",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello!", "refusal": null},
                    "finish_reason": "stop",
                    "logprobs": null,
                }],
                "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
            })
        );
    }

    #[test]
    fn text_blocks_are_joined_and_thinking_is_left_out() {
        let response = anthropic_response(
            json!([
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Hello, "},
                {"type": "text", "text": "world"},
            ]),
            "end_turn",
        );
        let chat = messages_response_to_chat(&response).expect("translates");
        assert_eq!(chat["choices"][0]["message"]["content"], "Hello, world");
    }

    #[test]
    fn tool_use_blocks_become_tool_calls_with_json_string_arguments() {
        let response = anthropic_response(
            json!([{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]),
            "tool_use",
        );
        let chat = messages_response_to_chat(&response).expect("translates");
        let choice = &chat["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([{"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
        );
    }

    #[test]
    fn tool_calls_key_is_omitted_without_tool_use() {
        let response = anthropic_response(json!([{"type": "text", "text": "x"}]), "end_turn");
        let chat = messages_response_to_chat(&response).expect("translates");
        assert!(chat["choices"][0]["message"].get("tool_calls").is_none());
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        for (stop_reason, finish_reason) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            let chat = messages_response_to_chat(&anthropic_response(json!([]), stop_reason))
                .expect("translates");
            assert_eq!(
                chat["choices"][0]["finish_reason"], finish_reason,
                "{stop_reason}"
            );
        }
    }

    #[test]
    fn cache_tokens_count_as_prompt_tokens() {
        let mut response = anthropic_response(json!([]), "end_turn");
        response["usage"] =
            json!({"input_tokens": 3, "cache_read_input_tokens": 100, "output_tokens": 2});
        let chat = messages_response_to_chat(&response).expect("translates");
        assert_eq!(
            chat["usage"],
            json!({"prompt_tokens": 103, "completion_tokens": 2, "total_tokens": 105})
        );
    }

    #[test]
    fn an_anthropic_error_object_is_an_invalid_response() {
        let message = invalid_response(
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        );
        assert_eq!(message, "upstream returned an error: Overloaded");
    }

    #[test]
    fn missing_content_is_an_invalid_response() {
        let message = invalid_response(json!({"id": "msg_1", "type": "message"}));
        assert_eq!(
            message,
            "upstream response content: missing or not an array"
        );
        assert_eq!(
            invalid_response(json!("nope")),
            "upstream response is not a JSON object"
        );
    }

    #[test]
    fn a_tool_use_block_without_an_id_is_an_invalid_response() {
        let message = invalid_response(anthropic_response(
            json!([{"type": "tool_use", "name": "f", "input": {}}]),
            "tool_use",
        ));
        assert_eq!(message, "upstream response content[0].id: must be a string");
    }
}
