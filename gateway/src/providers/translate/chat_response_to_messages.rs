//! An Anthropic-format client calling an OpenAI-compatible upstream: the Chat Completions response becomes a
//! Messages response.

use super::{response_error, stop_reason_for, TranslateError};
use serde_json::{json, Value};

/// Translates a (non-streaming) OpenAI Chat Completions response into an Anthropic Messages response.
pub fn chat_response_to_messages(response: &Value) -> Result<Value, TranslateError> {
    let response = response.as_object().ok_or_else(|| {
        TranslateError::InvalidResponse("upstream response is not a JSON object".into())
    })?;
    if let Some(error) = response.get("error").filter(|error| !error.is_null()) {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        return Err(TranslateError::InvalidResponse(format!(
            "upstream returned an error: {message}"
        )));
    }
    let choice = response
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first())
        .ok_or_else(|| response_error("choices", "missing or empty"))?;
    let message = choice
        .get("message")
        .filter(|message| message.is_object())
        .ok_or_else(|| response_error("choices[0].message", "missing or not an object"))?;

    let mut content = Vec::new();
    let text = message_text(message)?;
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    if let Some(calls) = message.get("tool_calls").filter(|calls| !calls.is_null()) {
        let calls = calls
            .as_array()
            .ok_or_else(|| response_error("choices[0].message.tool_calls", "must be an array"))?;
        for (i, call) in calls.iter().enumerate() {
            let path = format!("choices[0].message.tool_calls[{i}]");
            let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
            let function = call
                .get("function")
                .ok_or_else(|| response_error(format!("{path}.function"), "missing"))?;
            content.push(tool_use_block(id, function, &format!("{path}.function"))?);
        }
    } else if let Some(function) = message.get("function_call").filter(|call| call.is_object()) {
        // The pre-tools function-calling format has no call id; Anthropic clients only need it to be unique.
        content.push(tool_use_block(
            "call_0",
            function,
            "choices[0].message.function_call",
        )?);
    }

    let stop_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map_or("end_turn", stop_reason_for);
    let usage = response.get("usage");
    let count = |key: &str| {
        usage
            .and_then(|usage| usage.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let id = response
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(json!({
        "id": format!("msg_{id}"),
        "type": "message",
        "role": "assistant",
        "model": response.get("model").and_then(Value::as_str).unwrap_or_default(),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {"input_tokens": count("prompt_tokens"), "output_tokens": count("completion_tokens")},
    }))
}

/// The assistant's text: a string, text parts, or (when the model declined) the refusal.
fn message_text(message: &Value) -> Result<String, TranslateError> {
    let text = match message.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect(),
        Some(_) => {
            return Err(response_error(
                "choices[0].message.content",
                "must be a string or null",
            ))
        }
    };
    if text.is_empty() {
        if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
            return Ok(refusal.to_owned());
        }
    }
    Ok(text)
}

fn tool_use_block(id: &str, function: &Value, path: &str) -> Result<Value, TranslateError> {
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| response_error(format!("{path}.name"), "must be a string"))?;
    // Models occasionally emit broken JSON arguments; the client still deserves the rest of the answer.
    let input = function
        .get("arguments")
        .and_then(Value::as_str)
        .and_then(|arguments| serde_json::from_str::<Value>(arguments).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_response(message: Value, finish_reason: &str) -> Value {
        json!({
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion",
            "created": 1_741_569_952,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": null}],
            "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29},
        })
    }

    fn invalid_response(response: Value) -> String {
        match chat_response_to_messages(&response) {
            Err(TranslateError::InvalidResponse(message)) => message,
            other => panic!("expected InvalidResponse, got {other:?}"),
        }
    }

    #[test]
    fn a_text_response_becomes_a_message() {
        let response = chat_response(
            json!({"role": "assistant", "content": "Hello!", "refusal": null}),
            "stop",
        );
        assert_eq!(
            chat_response_to_messages(&response).expect("translates"),
            json!({
                "id": "msg_chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
                "type": "message",
                "role": "assistant",
                "model": "gpt-4o-2024-08-06",
                "content": [{"type": "text", "text": "Hello!"}],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                "usage": {"input_tokens": 19, "output_tokens": 10},
            })
        );
    }

    #[test]
    fn tool_calls_become_tool_use_blocks_without_an_empty_text_block() {
        let response = chat_response(
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            ]}),
            "tool_calls",
        );
        let message = chat_response_to_messages(&response).expect("translates");
        assert_eq!(message["stop_reason"], "tool_use");
        assert_eq!(
            message["content"],
            json!([{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}])
        );
    }

    #[test]
    fn unparseable_tool_arguments_become_an_empty_input() {
        let response = chat_response(
            json!({"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"broken"}},
            ]}),
            "tool_calls",
        );
        let message = chat_response_to_messages(&response).expect("translates");
        assert_eq!(
            message["content"],
            json!([{"type": "tool_use", "id": "call_1", "name": "f", "input": {}}])
        );
    }

    #[test]
    fn a_legacy_function_call_becomes_a_tool_use_block() {
        let response = chat_response(
            json!({"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{\"a\":1}"}}),
            "function_call",
        );
        let message = chat_response_to_messages(&response).expect("translates");
        assert_eq!(message["stop_reason"], "tool_use");
        assert_eq!(
            message["content"],
            json!([{"type": "tool_use", "id": "call_0", "name": "f", "input": {"a": 1}}])
        );
    }

    #[test]
    fn finish_reasons_map_to_stop_reasons() {
        for (finish_reason, stop_reason) in [
            ("stop", "end_turn"),
            ("length", "max_tokens"),
            ("tool_calls", "tool_use"),
            ("function_call", "tool_use"),
            ("content_filter", "refusal"),
        ] {
            let response =
                chat_response(json!({"role": "assistant", "content": "x"}), finish_reason);
            let message = chat_response_to_messages(&response).expect("translates");
            assert_eq!(message["stop_reason"], stop_reason, "{finish_reason}");
        }
    }

    #[test]
    fn a_refusal_is_returned_as_text() {
        let response = chat_response(
            json!({"role": "assistant", "content": null, "refusal": "I can't help with that."}),
            "stop",
        );
        let message = chat_response_to_messages(&response).expect("translates");
        assert_eq!(
            message["content"],
            json!([{"type": "text", "text": "I can't help with that."}])
        );
    }

    #[test]
    fn an_openai_error_object_is_an_invalid_response() {
        let message = invalid_response(
            json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}),
        );
        assert_eq!(message, "upstream returned an error: Rate limit reached");
    }

    #[test]
    fn missing_choices_are_an_invalid_response() {
        assert_eq!(
            invalid_response(json!({"id": "x", "choices": []})),
            "upstream response choices: missing or empty"
        );
        assert_eq!(
            invalid_response(json!({"choices": [{"index": 0}]})),
            "upstream response choices[0].message: missing or not an object"
        );
    }

    #[test]
    fn a_tool_call_without_a_function_name_is_an_invalid_response() {
        let response = chat_response(
            json!({"role": "assistant", "tool_calls": [{"id": "c", "function": {}}]}),
            "tool_calls",
        );
        assert_eq!(
            invalid_response(response),
            "upstream response choices[0].message.tool_calls[0].function.name: must be a string"
        );
    }
}
