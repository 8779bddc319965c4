//! An Anthropic-format client calling an OpenAI-compatible upstream: its Messages request becomes a Chat
//! Completions request.

use super::tools::{insert_tool_choice_for_openai, tools_to_openai};
use super::{copy_number, positive_integer, present, request_error, required_str, TranslateError};
use serde_json::{json, Map, Value};

/// Translates an Anthropic Messages request body into an OpenAI Chat Completions request for `model`.
pub fn messages_request_to_chat(
    body: &Map<String, Value>,
    model: &str,
) -> Result<Value, TranslateError> {
    let Some(Value::Array(anthropic_messages)) = body.get("messages") else {
        return Err(request_error("messages", "must be an array of messages"));
    };
    let max_tokens = present(body, "max_tokens")
        .ok_or_else(|| request_error("max_tokens", "is required"))
        .and_then(|value| positive_integer(value, "max_tokens"))?;

    let mut messages = Vec::with_capacity(anthropic_messages.len() + 1);
    if let Some(system) = present(body, "system") {
        let system = system_text(system)?;
        if !system.is_empty() {
            messages.push(json!({"role": "system", "content": system}));
        }
    }
    for (i, message) in anthropic_messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let message = message
            .as_object()
            .ok_or_else(|| request_error(&path, "must be an object"))?;
        match required_str(message, "role", &path)? {
            "user" => push_user_messages(message, &path, &mut messages)?,
            "assistant" => messages.push(assistant_message(message, &path)?),
            other => {
                return Err(request_error(
                    format!("{path}.role"),
                    format!("unsupported role {other:?}"),
                ))
            }
        }
    }

    let mut request = Map::new();
    request.insert("model".into(), model.into());
    request.insert("messages".into(), messages.into());
    request.insert("max_tokens".into(), max_tokens.into());
    copy_number(body, "temperature", &mut request)?;
    copy_number(body, "top_p", &mut request)?;
    if let Some(stop) = present(body, "stop_sequences") {
        match stop {
            Value::Array(sequences) if sequences.iter().all(Value::is_string) => {
                request.insert("stop".into(), stop.clone());
            }
            _ => {
                return Err(request_error(
                    "stop_sequences",
                    "must be an array of strings",
                ))
            }
        }
    }
    if let Some(metadata) = present(body, "metadata") {
        let metadata = metadata
            .as_object()
            .ok_or_else(|| request_error("metadata", "must be an object"))?;
        if let Some(user) = present(metadata, "user_id") {
            let user = user
                .as_str()
                .ok_or_else(|| request_error("metadata.user_id", "must be a string"))?;
            request.insert("user".into(), user.into());
        }
    }
    if let Some(tools) = present(body, "tools") {
        request.insert("tools".into(), tools_to_openai(tools)?);
    }
    if let Some(choice) = present(body, "tool_choice") {
        insert_tool_choice_for_openai(choice, &mut request)?;
    }
    if present(body, "stream").and_then(Value::as_bool) == Some(true) {
        request.insert("stream".into(), true.into());
        request.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(request))
}

/// The texts of an array of `{type: "text", text}` blocks at `path`; any other block type is
/// an error (`why` explains the restriction).
fn text_blocks<'a>(
    blocks: &'a [Value],
    path: &str,
    why: &str,
) -> Result<Vec<&'a str>, TranslateError> {
    let mut texts = Vec::with_capacity(blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        let block_path = format!("{path}[{i}]");
        let block = block
            .as_object()
            .ok_or_else(|| request_error(&block_path, "must be an object"))?;
        match required_str(block, "type", &block_path)? {
            "text" => texts.push(required_str(block, "text", &block_path)?),
            other => {
                return Err(request_error(
                    &block_path,
                    format!("unsupported block type {other:?}{why}"),
                ))
            }
        }
    }
    Ok(texts)
}

fn system_text(system: &Value) -> Result<String, TranslateError> {
    match system {
        Value::String(text) => Ok(text.clone()),
        Value::Array(blocks) => Ok(text_blocks(blocks, "system", "")?.join("\n\n")),
        _ => Err(request_error(
            "system",
            "must be a string or an array of text blocks",
        )),
    }
}

/// A user turn becomes one `tool` message per tool result (OpenAI wants them right after the assistant's
/// tool calls), followed by a user message with whatever else the turn contained.
fn push_user_messages(
    message: &Map<String, Value>,
    path: &str,
    messages: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let content_path = format!("{path}.content");
    let blocks = match present(message, "content") {
        Some(Value::String(text)) => {
            messages.push(json!({"role": "user", "content": text}));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(request_error(
                content_path,
                "must be a string or an array of content blocks",
            ))
        }
    };
    let mut parts = Vec::new();
    let mut had_tool_results = false;
    for (j, block) in blocks.iter().enumerate() {
        let block_path = format!("{content_path}[{j}]");
        let block = block
            .as_object()
            .ok_or_else(|| request_error(&block_path, "must be an object"))?;
        match required_str(block, "type", &block_path)? {
            "text" => parts
                .push(json!({"type": "text", "text": required_str(block, "text", &block_path)?})),
            "image" => parts.push(image_part(block, &block_path)?),
            "tool_result" => {
                had_tool_results = true;
                messages.push(json!({
                    "role": "tool",
                    "tool_call_id": required_str(block, "tool_use_id", &block_path)?,
                    "content": tool_result_text(block, &block_path)?,
                }));
            }
            other => {
                return Err(request_error(
                    &block_path,
                    format!("unsupported block type {other:?}"),
                ))
            }
        }
    }
    if parts.is_empty() && had_tool_results {
        return Ok(());
    }
    let content = match parts.as_slice() {
        [only] if only.get("type").and_then(Value::as_str) == Some("text") => {
            only.get("text").cloned().unwrap_or_default()
        }
        _ => Value::Array(parts),
    };
    messages.push(json!({"role": "user", "content": content}));
    Ok(())
}

fn image_part(block: &Map<String, Value>, path: &str) -> Result<Value, TranslateError> {
    let source_path = format!("{path}.source");
    let source = present(block, "source")
        .and_then(Value::as_object)
        .ok_or_else(|| request_error(&source_path, "must be an object"))?;
    let url = match required_str(source, "type", &source_path)? {
        "base64" => format!(
            "data:{};base64,{}",
            required_str(source, "media_type", &source_path)?,
            required_str(source, "data", &source_path)?
        ),
        "url" => required_str(source, "url", &source_path)?.to_owned(),
        other => {
            return Err(request_error(
                format!("{source_path}.type"),
                format!("unsupported image source {other:?}"),
            ))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// OpenAI tool messages carry text only.
fn tool_result_text(block: &Map<String, Value>, path: &str) -> Result<String, TranslateError> {
    let content_path = format!("{path}.content");
    match present(block, "content") {
        None => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(blocks)) => Ok(text_blocks(
            blocks,
            &content_path,
            " in a tool result (OpenAI tool results are text only)",
        )?
        .join("\n")),
        Some(_) => Err(request_error(
            content_path,
            "must be a string or an array of text blocks",
        )),
    }
}

fn assistant_message(message: &Map<String, Value>, path: &str) -> Result<Value, TranslateError> {
    let content_path = format!("{path}.content");
    let blocks = match present(message, "content") {
        Some(Value::String(text)) => return Ok(json!({"role": "assistant", "content": text})),
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(request_error(
                content_path,
                "must be a string or an array of content blocks",
            ))
        }
    };
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let block_path = format!("{content_path}[{j}]");
        let block = block
            .as_object()
            .ok_or_else(|| request_error(&block_path, "must be an object"))?;
        match required_str(block, "type", &block_path)? {
            "text" => text.push_str(required_str(block, "text", &block_path)?),
            "tool_use" => {
                let arguments =
                    present(block, "input").map_or_else(|| "{}".to_owned(), Value::to_string);
                tool_calls.push(json!({
                    "id": required_str(block, "id", &block_path)?,
                    "type": "function",
                    "function": {"name": required_str(block, "name", &block_path)?, "arguments": arguments},
                }));
            }
            // Thinking is the model's own scratchpad; OpenAI-compatible upstreams have nowhere to put it.
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(request_error(
                    &block_path,
                    format!("unsupported block type {other:?}"),
                ))
            }
        }
    }
    let mut assistant = Map::new();
    assistant.insert("role".into(), "assistant".into());
    let content = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    assistant.insert("content".into(), content);
    if !tool_calls.is_empty() {
        assistant.insert("tool_calls".into(), tool_calls.into());
    }
    Ok(Value::Object(assistant))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Value {
        let body = body.as_object().expect("test body is an object").clone();
        messages_request_to_chat(&body, "gpt-4o").expect("request translates")
    }

    fn rejection(body: Value) -> String {
        let body = body.as_object().expect("test body is an object").clone();
        match messages_request_to_chat(&body, "gpt-4o") {
            Err(TranslateError::InvalidRequest(message)) => message,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    fn with_messages(messages: Value) -> Value {
        json!({"model": "openai/gpt-4o", "max_tokens": 1024, "messages": messages})
    }

    #[test]
    fn a_system_string_becomes_the_first_message() {
        let mut body = with_messages(json!([{"role": "user", "content": "Hi"}]));
        body["system"] = json!("Be brief.");
        assert_eq!(
            translate(body)["messages"],
            json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
        );
    }

    #[test]
    fn system_text_blocks_are_joined() {
        let mut body = with_messages(json!([]));
        body["system"] = json!([{"type": "text", "text": "One.", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "Two."}]);
        assert_eq!(
            translate(body)["messages"][0],
            json!({"role": "system", "content": "One.\n\nTwo."})
        );
    }

    #[test]
    fn a_single_text_block_collapses_to_a_string() {
        let request = translate(with_messages(
            json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]),
        ));
        assert_eq!(
            request["messages"],
            json!([{"role": "user", "content": "Hi"}])
        );
    }

    #[test]
    fn images_become_image_url_parts() {
        let request = translate(with_messages(json!([{"role": "user", "content": [
            {"type": "text", "text": "Compare"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/b.png"}},
        ]}])));
        assert_eq!(
            request["messages"][0]["content"],
            json!([
                {"type": "text", "text": "Compare"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/b.png"}},
            ])
        );
    }

    #[test]
    fn assistant_tool_use_blocks_become_tool_calls() {
        let request = translate(with_messages(json!([{"role": "assistant", "content": [
            {"type": "thinking", "thinking": "need weather", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        ]}])));
        assert_eq!(
            request["messages"][0],
            json!({"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            ]})
        );
    }

    #[test]
    fn assistant_content_is_null_when_only_tools_are_called() {
        let request = translate(with_messages(json!([{"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}},
        ]}])));
        assert_eq!(request["messages"][0]["content"], Value::Null);
        assert_eq!(
            request["messages"][0]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
    }

    #[test]
    fn tool_results_become_tool_messages_before_the_rest_of_the_user_turn() {
        let request = translate(with_messages(json!([{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "text", "text": "And tomorrow?"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "24C"}, {"type": "text", "text": "sunny"}]},
        ]}])));
        assert_eq!(
            request["messages"],
            json!([
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "24C\nsunny"},
                {"role": "user", "content": "And tomorrow?"},
            ])
        );
    }

    #[test]
    fn a_user_turn_of_only_tool_results_adds_no_user_message() {
        let request = translate(with_messages(json!([{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": true},
        ]}])));
        assert_eq!(
            request["messages"],
            json!([{"role": "tool", "tool_call_id": "toolu_1", "content": ""}])
        );
    }

    #[test]
    fn images_inside_tool_results_are_rejected_naming_the_block() {
        let message = rejection(with_messages(json!([{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}},
            ]},
        ]}])));
        assert!(
            message
                .starts_with("messages[0].content[0].content[0]: unsupported block type \"image\""),
            "{message}"
        );
    }

    #[test]
    fn unsupported_blocks_are_rejected_naming_the_block() {
        let message = rejection(with_messages(json!([
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": [{"type": "text", "text": "c"}, {"type": "document", "source": {}}]},
        ])));
        assert_eq!(
            message,
            "messages[2].content[1]: unsupported block type \"document\""
        );
    }

    #[test]
    fn max_tokens_is_required() {
        assert_eq!(
            rejection(json!({"messages": []})),
            "max_tokens: is required"
        );
        assert_eq!(
            rejection(json!({"messages": [], "max_tokens": "many"})),
            "max_tokens: must be a positive integer"
        );
    }

    #[test]
    fn missing_messages_are_rejected() {
        assert_eq!(
            rejection(json!({"max_tokens": 10})),
            "messages: must be an array of messages"
        );
    }

    #[test]
    fn a_message_with_an_unknown_role_is_rejected() {
        assert_eq!(
            rejection(with_messages(json!([{"role": "system", "content": "x"}]))),
            "messages[0].role: unsupported role \"system\""
        );
    }

    #[test]
    fn parameters_are_mapped_and_anthropic_only_ones_dropped() {
        let request = translate(json!({
            "model": "openai/gpt-4o", "fallbacks": ["x/y"], "messages": [], "max_tokens": 512,
            "temperature": 0.5, "top_p": 0.8, "top_k": 40, "stop_sequences": ["END"],
            "metadata": {"user_id": "u-1"}, "thinking": {"type": "enabled", "budget_tokens": 1024},
        }));
        assert_eq!(
            request,
            json!({"model": "gpt-4o", "messages": [], "max_tokens": 512, "temperature": 0.5, "top_p": 0.8, "stop": ["END"], "user": "u-1"})
        );
    }

    #[test]
    fn streaming_requests_ask_for_usage() {
        let mut body = with_messages(json!([]));
        body["stream"] = json!(true);
        let request = translate(body);
        assert_eq!(request["stream"], true);
        assert_eq!(request["stream_options"], json!({"include_usage": true}));
        assert!(translate(with_messages(json!([]))).get("stream").is_none());
    }
}
