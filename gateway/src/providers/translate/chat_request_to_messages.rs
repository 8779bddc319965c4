//! An OpenAI-format client calling an Anthropic upstream: its Chat Completions request becomes a Messages request.

use super::chat_parts::{assistant_texts, content_part, tool_call, ContentPart, Image};
use super::tools::{tool_choice_to_anthropic, tools_to_anthropic};
use super::{copy_number, positive_integer, present, request_error, required_str, TranslateError};
use serde_json::{json, Map, Value};

/// Anthropic requires `max_tokens`; OpenAI clients usually omit it.
const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Translates an OpenAI Chat Completions request body into an Anthropic Messages request for `model`.
pub fn chat_request_to_messages(
    body: &Map<String, Value>,
    model: &str,
) -> Result<Value, TranslateError> {
    let Some(Value::Array(chat_messages)) = body.get("messages") else {
        return Err(request_error("messages", "must be an array of messages"));
    };
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let mut previous_was_tool_result = false;
    for (i, message) in chat_messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let message = message
            .as_object()
            .ok_or_else(|| request_error(&path, "must be an object"))?;
        let role = required_str(message, "role", &path)?;
        match role {
            "system" | "developer" => {
                system.push(joined_text(
                    message.get("content"),
                    &format!("{path}.content"),
                    "\n\n",
                )?);
                continue;
            }
            "user" => {
                messages.push(json!({"role": "user", "content": user_content(message, &path)?}))
            }
            "assistant" => messages
                .push(json!({"role": "assistant", "content": assistant_content(message, &path)?})),
            "tool" => {
                let block = tool_result_block(message, &path)?;
                // Anthropic wants all results for one assistant turn in a single user message.
                let previous_results = messages
                    .last_mut()
                    .filter(|_| previous_was_tool_result)
                    .and_then(|last| last.get_mut("content"))
                    .and_then(Value::as_array_mut);
                match previous_results {
                    Some(blocks) => blocks.push(block),
                    None => messages.push(json!({"role": "user", "content": [block]})),
                }
            }
            other => {
                return Err(request_error(
                    format!("{path}.role"),
                    format!("unsupported role {other:?}"),
                ))
            }
        }
        previous_was_tool_result = role == "tool";
    }

    let mut request = Map::new();
    request.insert("model".into(), model.into());
    if !system.is_empty() {
        request.insert("system".into(), system.join("\n\n").into());
    }
    request.insert("messages".into(), messages.into());
    let max_tokens = match present(body, "max_completion_tokens") {
        Some(value) => positive_integer(value, "max_completion_tokens")?,
        None => match present(body, "max_tokens") {
            Some(value) => positive_integer(value, "max_tokens")?,
            None => DEFAULT_MAX_TOKENS,
        },
    };
    request.insert("max_tokens".into(), max_tokens.into());
    copy_number(body, "temperature", &mut request)?;
    copy_number(body, "top_p", &mut request)?;
    if let Some(stop) = present(body, "stop") {
        request.insert("stop_sequences".into(), stop_sequences(stop)?);
    }
    if let Some(user) = present(body, "user") {
        let user = user
            .as_str()
            .ok_or_else(|| request_error("user", "must be a string"))?;
        request.insert("metadata".into(), json!({"user_id": user}));
    }
    let has_tools = match present(body, "tools") {
        Some(tools) => {
            request.insert("tools".into(), tools_to_anthropic(tools)?);
            true
        }
        None => false,
    };
    if let Some(choice) = tool_choice_to_anthropic(body, has_tools)? {
        request.insert("tool_choice".into(), choice);
    }
    if present(body, "stream").and_then(Value::as_bool) == Some(true) {
        request.insert("stream".into(), true.into());
    }
    Ok(Value::Object(request))
}

/// Text of a string or an array of text parts (system, developer and tool messages carry only text).
fn joined_text(
    content: Option<&Value>,
    path: &str,
    separator: &str,
) -> Result<String, TranslateError> {
    match content {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let part_path = format!("{path}[{j}]");
                let part = part
                    .as_object()
                    .ok_or_else(|| request_error(&part_path, "must be an object"))?;
                match required_str(part, "type", &part_path)? {
                    "text" => texts.push(required_str(part, "text", &part_path)?),
                    other => {
                        return Err(request_error(
                            &part_path,
                            format!("unsupported content part type {other:?}"),
                        ))
                    }
                }
            }
            Ok(texts.join(separator))
        }
        _ => Err(request_error(
            path,
            "must be a string or an array of text parts",
        )),
    }
}

fn user_content(message: &Map<String, Value>, path: &str) -> Result<Value, TranslateError> {
    let content_path = format!("{path}.content");
    match present(message, "content") {
        Some(Value::String(text)) => Ok(text.as_str().into()),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| content_part_to_block(part, &format!("{content_path}[{j}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        _ => Err(request_error(
            content_path,
            "must be a string or an array of content parts",
        )),
    }
}

fn content_part_to_block(part: &Value, path: &str) -> Result<Value, TranslateError> {
    Ok(match content_part(part, path)? {
        ContentPart::Text(text) => json!({"type": "text", "text": text}),
        ContentPart::Image(Image::Base64 { media_type, data }) => {
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
        }
        // Anthropic fetches other URLs itself.
        ContentPart::Image(Image::Url(url)) => {
            json!({"type": "image", "source": {"type": "url", "url": url}})
        }
    })
}

fn assistant_content(message: &Map<String, Value>, path: &str) -> Result<Value, TranslateError> {
    let content = present(message, "content");
    let tool_calls = present(message, "tool_calls");
    if let (Some(Value::String(text)), None) = (content, tool_calls) {
        return Ok(text.as_str().into());
    }
    // Anthropic rejects empty text blocks, which OpenAI clients send alongside tool calls.
    let mut blocks: Vec<Value> = assistant_texts(content, path)?
        .into_iter()
        .map(|text| json!({"type": "text", "text": text}))
        .collect();
    match tool_calls {
        None if content.is_none() => {
            return Err(request_error(
                path,
                "assistant message needs content or tool_calls",
            ))
        }
        None => {}
        Some(Value::Array(calls)) => {
            for (j, call) in calls.iter().enumerate() {
                let call = tool_call(call, &format!("{path}.tool_calls[{j}]"), true)?;
                blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}));
            }
        }
        Some(_) => {
            return Err(request_error(
                format!("{path}.tool_calls"),
                "must be an array",
            ))
        }
    }
    Ok(Value::Array(blocks))
}

fn tool_result_block(message: &Map<String, Value>, path: &str) -> Result<Value, TranslateError> {
    let tool_use_id = required_str(message, "tool_call_id", path)?;
    let content = match present(message, "content") {
        None => String::new(),
        content => joined_text(content, &format!("{path}.content"), "\n")?,
    };
    Ok(json!({"type": "tool_result", "tool_use_id": tool_use_id, "content": content}))
}

fn stop_sequences(stop: &Value) -> Result<Value, TranslateError> {
    match stop {
        Value::String(sequence) => Ok(json!([sequence])),
        Value::Array(sequences) if sequences.iter().all(Value::is_string) => Ok(stop.clone()),
        _ => Err(request_error(
            "stop",
            "must be a string or an array of strings",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Value {
        let body = body.as_object().expect("test body is an object").clone();
        chat_request_to_messages(&body, "claude-sonnet-4-5").expect("request translates")
    }

    fn rejection(body: Value) -> String {
        let body = body.as_object().expect("test body is an object").clone();
        match chat_request_to_messages(&body, "claude-sonnet-4-5") {
            Err(TranslateError::InvalidRequest(message)) => message,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    fn with_messages(messages: Value) -> Value {
        json!({"model": "anthropic/claude", "messages": messages})
    }

    #[test]
    fn system_and_developer_messages_are_joined_into_the_top_level_system() {
        let request = translate(with_messages(json!([
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric"}, {"type": "text", "text": "units."}]},
            {"role": "user", "content": "Hi"},
        ])));
        assert_eq!(request["system"], "Be brief.\n\nUse metric\n\nunits.");
        assert_eq!(
            request["messages"],
            json!([{"role": "user", "content": "Hi"}])
        );
    }

    #[test]
    fn model_comes_from_the_caller_and_fallbacks_are_dropped() {
        let request = translate(json!({
            "model": "anthropic/claude-sonnet-4-5",
            "fallbacks": ["openai/gpt-4o"],
            "messages": [{"role": "user", "content": "Hi"}],
        }));
        assert_eq!(request["model"], "claude-sonnet-4-5");
        assert!(request.get("fallbacks").is_none());
        assert!(request.get("system").is_none());
    }

    #[test]
    fn user_text_parts_become_text_blocks() {
        let request = translate(with_messages(
            json!([{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]),
        ));
        assert_eq!(
            request["messages"][0]["content"],
            json!([{"type": "text", "text": "Hello"}])
        );
    }

    #[test]
    fn data_url_images_become_base64_image_blocks() {
        let request = translate(with_messages(json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        ]}])));
        assert_eq!(
            request["messages"][0]["content"][0],
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
        );
    }

    #[test]
    fn remote_image_urls_become_url_image_blocks() {
        let request = translate(with_messages(json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]}])));
        assert_eq!(
            request["messages"][0]["content"][0],
            json!({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}})
        );
    }

    #[test]
    fn non_base64_data_urls_are_rejected_naming_the_field() {
        let message = rejection(with_messages(json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/svg+xml,<svg/>"}},
        ]}])));
        assert_eq!(
            message,
            "messages[0].content[0].image_url.url: only base64 data URLs are supported"
        );
    }

    #[test]
    fn unsupported_content_parts_are_rejected_naming_the_part() {
        let message = rejection(with_messages(json!([
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "listen"}, {"type": "input_audio", "input_audio": {}}]},
        ])));
        assert_eq!(
            message,
            "messages[2].content[1]: unsupported content part type \"input_audio\""
        );
    }

    #[test]
    fn assistant_string_content_stays_a_string() {
        let request = translate(with_messages(
            json!([{"role": "assistant", "content": "Sure."}]),
        ));
        assert_eq!(
            request["messages"],
            json!([{"role": "assistant", "content": "Sure."}])
        );
    }

    #[test]
    fn assistant_tool_calls_become_tool_use_blocks_after_the_text() {
        let request = translate(with_messages(
            json!([{"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            ]}]),
        ));
        assert_eq!(
            request["messages"][0]["content"],
            json!([
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            ])
        );
    }

    #[test]
    fn empty_tool_call_arguments_become_an_empty_object_and_null_content_adds_no_text() {
        let request = translate(with_messages(
            json!([{"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "now", "arguments": ""}},
            ]}]),
        ));
        assert_eq!(
            request["messages"][0]["content"],
            json!([{"type": "tool_use", "id": "call_1", "name": "now", "input": {}}])
        );
    }

    #[test]
    fn invalid_tool_call_arguments_are_rejected_naming_the_field() {
        let message = rejection(with_messages(json!([{"role": "assistant", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{not json"}},
        ]}])));
        assert!(
            message.starts_with("messages[0].tool_calls[0].function.arguments: is not valid JSON"),
            "{message}"
        );
    }

    #[test]
    fn assistant_without_content_or_tool_calls_is_rejected() {
        let message = rejection(with_messages(json!([{"role": "assistant"}])));
        assert_eq!(
            message,
            "messages[0]: assistant message needs content or tool_calls"
        );
    }

    #[test]
    fn tool_results_become_a_user_message_with_tool_result_blocks() {
        let request = translate(with_messages(json!([
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Rome\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
            {"role": "user", "content": "Thanks"},
        ])));
        let messages = request["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), 4);
        assert_eq!(
            messages[2],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "24C"},
            ]})
        );
        assert_eq!(messages[3], json!({"role": "user", "content": "Thanks"}));
    }

    #[test]
    fn tool_message_without_tool_call_id_is_rejected() {
        let message = rejection(with_messages(json!([{"role": "tool", "content": "x"}])));
        assert_eq!(message, "messages[0].tool_call_id: must be a string");
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let request =
            translate(json!({"messages": [], "max_tokens": 100, "max_completion_tokens": 200}));
        assert_eq!(request["max_tokens"], 200);
        let request = translate(json!({"messages": [], "max_tokens": 100}));
        assert_eq!(request["max_tokens"], 100);
    }

    #[test]
    fn max_tokens_defaults_to_4096() {
        assert_eq!(translate(json!({"messages": []}))["max_tokens"], 4096);
    }

    #[test]
    fn zero_max_tokens_is_rejected() {
        assert_eq!(
            rejection(json!({"messages": [], "max_tokens": 0})),
            "max_tokens: must be a positive integer"
        );
    }

    #[test]
    fn sampling_parameters_are_copied_and_openai_only_parameters_dropped() {
        let request = translate(json!({
            "messages": [], "temperature": 0.2, "top_p": 0.9,
            "n": 2, "seed": 7, "logprobs": true, "presence_penalty": 1, "response_format": {"type": "json_object"},
        }));
        assert_eq!(
            request,
            json!({"model": "claude-sonnet-4-5", "messages": [], "max_tokens": 4096, "temperature": 0.2, "top_p": 0.9})
        );
    }

    #[test]
    fn a_stop_string_becomes_a_one_element_stop_sequences_array() {
        assert_eq!(
            translate(json!({"messages": [], "stop": "END"}))["stop_sequences"],
            json!(["END"])
        );
        assert_eq!(
            translate(json!({"messages": [], "stop": ["a", "b"]}))["stop_sequences"],
            json!(["a", "b"])
        );
    }

    #[test]
    fn user_becomes_metadata_user_id() {
        assert_eq!(
            translate(json!({"messages": [], "user": "u-42"}))["metadata"],
            json!({"user_id": "u-42"})
        );
    }

    #[test]
    fn stream_is_forwarded_only_when_true() {
        assert_eq!(
            translate(json!({"messages": [], "stream": true}))["stream"],
            true
        );
        assert!(translate(json!({"messages": [], "stream": false}))
            .get("stream")
            .is_none());
        assert!(
            translate(json!({"messages": [], "stream_options": {"include_usage": true}}))
                .get("stream_options")
                .is_none()
        );
    }

    #[test]
    fn missing_messages_are_rejected() {
        assert_eq!(
            rejection(json!({"model": "x"})),
            "messages: must be an array of messages"
        );
        assert_eq!(
            rejection(json!({"messages": "hi"})),
            "messages: must be an array of messages"
        );
    }

    #[test]
    fn a_message_without_a_role_is_rejected_naming_its_index() {
        let message = rejection(with_messages(
            json!([{"role": "user", "content": "a"}, {"content": "b"}]),
        ));
        assert_eq!(message, "messages[1].role: must be a string");
    }

    #[test]
    fn unknown_roles_and_non_object_messages_are_rejected() {
        assert_eq!(
            rejection(with_messages(json!([{"role": "function", "content": "x"}]))),
            "messages[0].role: unsupported role \"function\""
        );
        assert_eq!(
            rejection(with_messages(json!(["hi"]))),
            "messages[0]: must be an object"
        );
    }

    #[test]
    fn user_message_without_content_is_rejected() {
        assert_eq!(
            rejection(with_messages(json!([{"role": "user"}]))),
            "messages[0].content: must be a string or an array of content parts"
        );
    }
}
