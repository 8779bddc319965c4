//! An OpenAI-format client calling Bedrock: its Chat Completions request becomes a Converse
//! request. The model and streaming are in the URL (`/model/{modelId}/converse` or
//! `/converse-stream`), not in the body.

use super::chat_parts::{
    assistant_texts, chat_messages, content_part, function_tools, max_tokens, push_turn,
    stop_sequences, texts, tool_call, tool_result, ChatMessage, ContentPart, Image, Role,
    ToolResult,
};
use super::{positive_integer, present, request_error, required_str, TranslateError};
use serde_json::{json, Map, Value};

/// Translates an OpenAI Chat Completions request body into a Bedrock Converse body. `_model`
/// is unused: Bedrock names the model in the URL.
pub fn chat_request_to_converse(
    body: &Map<String, Value>,
    _model: &str,
) -> Result<Value, TranslateError> {
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for ChatMessage {
        path,
        role,
        message,
        ..
    } in chat_messages(body)?
    {
        let (role, blocks) = match role {
            Role::System => {
                let content_path = format!("{path}.content");
                system.extend(text_blocks(message.get("content"), &content_path)?);
                continue;
            }
            Role::User => ("user", user_blocks(message, &path)?),
            Role::Assistant => ("assistant", assistant_blocks(message, &path)?),
            // Bedrock takes tool results as blocks of a user turn.
            Role::Tool => ("user", vec![tool_result_block(message, &path)?]),
        };
        // Bedrock requires user and assistant turns to alternate.
        push_turn(&mut messages, role, "content", blocks);
    }

    let mut request = Map::new();
    request.insert("messages".into(), messages.into());
    if !system.is_empty() {
        request.insert("system".into(), system.into());
    }
    let config = inference_config(body)?;
    if !config.is_empty() {
        request.insert("inferenceConfig".into(), config.into());
    }
    if let Some(tool_config) = tool_config(body)? {
        request.insert("toolConfig".into(), tool_config);
    }
    unsupported(body)?;
    Ok(Value::Object(request))
}

/// Text blocks of a string or an array of text parts (system and developer messages).
fn text_blocks(content: Option<&Value>, path: &str) -> Result<Vec<Value>, TranslateError> {
    Ok(texts(content, path)?
        .into_iter()
        .map(|text| json!({"text": text}))
        .collect())
}

fn user_blocks(message: &Map<String, Value>, path: &str) -> Result<Vec<Value>, TranslateError> {
    let content_path = format!("{path}.content");
    match present(message, "content") {
        Some(Value::String(text)) => Ok(vec![json!({"text": text})]),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| user_block(part, &format!("{content_path}[{j}]")))
            .collect(),
        _ => Err(request_error(
            content_path,
            "must be a string or an array of content parts",
        )),
    }
}

/// A user content part as a Converse block; images go inline (png, jpeg, gif or webp), as
/// Converse takes no image URLs.
fn user_block(part: &Value, path: &str) -> Result<Value, TranslateError> {
    let url_path = || format!("{path}.image_url.url");
    match content_part(part, path)? {
        ContentPart::Text(text) => Ok(json!({"text": text})),
        ContentPart::Image(Image::Base64 { media_type, data }) => {
            let format = match media_type {
                "image/png" => "png",
                "image/jpeg" | "image/jpg" => "jpeg",
                "image/gif" => "gif",
                "image/webp" => "webp",
                other => {
                    return Err(request_error(
                        url_path(),
                        format!("Bedrock takes png, jpeg, gif or webp images (got {other:?})"),
                    ))
                }
            };
            Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
        }
        ContentPart::Image(Image::Url(_)) => Err(request_error(
            url_path(),
            "Bedrock takes images inline only: send a base64 data URL (data:image/png;base64,...)",
        )),
    }
}

/// An assistant message as Converse blocks: its text, then its tool calls as `toolUse`.
fn assistant_blocks(
    message: &Map<String, Value>,
    path: &str,
) -> Result<Vec<Value>, TranslateError> {
    let mut blocks: Vec<Value> = assistant_texts(present(message, "content"), path)?
        .into_iter()
        .map(|text| json!({"text": text}))
        .collect();
    match present(message, "tool_calls") {
        None => {}
        Some(Value::Array(calls)) => {
            for (j, call) in calls.iter().enumerate() {
                let call = tool_call(call, &format!("{path}.tool_calls[{j}]"), true)?;
                blocks.push(json!({"toolUse": {
                    "toolUseId": call.id, "name": call.name, "input": call.arguments,
                }}));
            }
        }
        Some(_) => {
            return Err(request_error(
                format!("{path}.tool_calls"),
                "must be an array",
            ))
        }
    }
    if blocks.is_empty() {
        return Err(request_error(
            path,
            "assistant message needs content or tool_calls",
        ));
    }
    Ok(blocks)
}

/// A tool message as a `toolResult` block; a result that is a JSON object goes as `json`.
fn tool_result_block(message: &Map<String, Value>, path: &str) -> Result<Value, TranslateError> {
    let id = required_str(message, "tool_call_id", path)?;
    let content = match tool_result(message, path)? {
        ToolResult::Json(object) => json!({"json": object}),
        ToolResult::Text(text) => json!({"text": text}),
    };
    Ok(json!({"toolResult": {"toolUseId": id, "content": [content]}}))
}

/// Token cap and sampling: OpenAI's top-level fields gathered into `inferenceConfig`.
fn inference_config(body: &Map<String, Value>) -> Result<Map<String, Value>, TranslateError> {
    let mut config = Map::new();
    if let Some(max_tokens) = max_tokens(body)? {
        config.insert("maxTokens".into(), max_tokens.into());
    }
    for (openai, bedrock) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(value) = present(body, openai) {
            if !value.is_number() {
                return Err(request_error(openai, "must be a number"));
            }
            config.insert(bedrock.into(), value.clone());
        }
    }
    if let Some(stop) = stop_sequences(body)? {
        config.insert("stopSequences".into(), stop);
    }
    Ok(config)
}

/// OpenAI tools and `tool_choice` → Converse `toolConfig` (`None` without tools).
fn tool_config(body: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let Some(tools) = present(body, "tools") else {
        if present(body, "tool_choice").is_some() {
            return Err(request_error("tool_choice", "needs tools"));
        }
        return Ok(None);
    };
    let specs: Vec<Value> = function_tools(tools)?
        .into_iter()
        .map(|function| {
            let mut spec = Map::new();
            spec.insert("name".into(), function.name.into());
            if let Some(description) = function.description {
                spec.insert("description".into(), description.clone());
            }
            let schema = function
                .parameters
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            spec.insert("inputSchema".into(), json!({"json": schema}));
            json!({"toolSpec": spec})
        })
        .collect();
    if specs.is_empty() {
        return Ok(None);
    }
    let mut config = Map::new();
    config.insert("tools".into(), specs.into());
    let choice = match present(body, "tool_choice") {
        None => None,
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => Some(json!({"auto": {}})),
            "required" => Some(json!({"any": {}})),
            "none" => {
                return Err(request_error(
                    "tool_choice",
                    "\"none\" has no Bedrock equivalent: send the request without tools",
                ))
            }
            other => {
                return Err(request_error(
                    "tool_choice",
                    format!("unsupported value {other:?}"),
                ))
            }
        },
        Some(Value::Object(choice)) => {
            let function = present(choice, "function")
                .and_then(Value::as_object)
                .ok_or_else(|| request_error("tool_choice.function", "must be an object"))?;
            let name = required_str(function, "name", "tool_choice.function")?;
            Some(json!({"tool": {"name": name}}))
        }
        Some(_) => {
            return Err(request_error(
                "tool_choice",
                "must be a string or an object",
            ))
        }
    };
    if let Some(choice) = choice {
        config.insert("toolChoice".into(), choice);
    }
    Ok(Some(Value::Object(config)))
}

/// OpenAI fields Converse cannot honour, refused rather than silently dropped.
fn unsupported(body: &Map<String, Value>) -> Result<(), TranslateError> {
    if let Some(n) = present(body, "n") {
        if positive_integer(n, "n")? != 1 {
            return Err(request_error(
                "n",
                "Bedrock answers with one choice: omit n or set it to 1",
            ));
        }
    }
    if let Some(format) = present(body, "response_format") {
        let kind = format.get("type").and_then(Value::as_str);
        if kind != Some("text") {
            return Err(request_error(
                "response_format",
                "Bedrock's Converse API has no JSON mode: ask for JSON in the prompt, or use a tool with the schema",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Value {
        let body = body.as_object().expect("test body is an object").clone();
        chat_request_to_converse(&body, "m").expect("request translates")
    }

    fn rejection(body: Value) -> String {
        let body = body.as_object().expect("test body is an object").clone();
        match chat_request_to_converse(&body, "m") {
            Err(TranslateError::InvalidRequest(message)) => message,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn a_conversation_becomes_messages_with_system_blocks_and_inference_config() {
        let request = translate(json!({
            "model": "bedrock/claude", "stream": true, "max_tokens": 100, "temperature": 0.3,
            "top_p": 0.9, "stop": ["END"],
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]},
            ],
        }));
        assert_eq!(
            request,
            json!({
                "system": [{"text": "Be brief."}],
                "messages": [
                    {"role": "user", "content": [{"text": "Hi"}]},
                    {"role": "assistant", "content": [{"text": "Hello."}]},
                    {"role": "user", "content": [{"text": "Weather?"},
                        {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}}]},
                ],
                "inferenceConfig": {"maxTokens": 100, "temperature": 0.3, "topP": 0.9, "stopSequences": ["END"]},
            })
        );
    }

    #[test]
    fn tools_calls_and_results_become_tool_specs_tool_use_and_tool_results() {
        let request = translate(json!({
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required",
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "tooluse_1", "content": "{\"celsius\": 21}"},
                {"role": "user", "content": "Thanks"},
            ],
        }));
        assert_eq!(
            request["toolConfig"],
            json!({"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}],
                   "toolChoice": {"any": {}}})
        );
        assert_eq!(
            request["messages"],
            json!([
                {"role": "user", "content": [{"text": "Weather in Paris?"}]},
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "tooluse_1", "content": [{"json": {"celsius": 21}}]}},
                    {"text": "Thanks"},
                ]},
            ]),
            "the tool result and the next user words are one user turn"
        );
    }

    #[test]
    fn what_converse_cannot_honour_is_refused_naming_the_field() {
        let user = json!([{"role": "user", "content": "Hi"}]);
        for (field, value, expected) in [
            (
                "n",
                json!(2),
                "n: Bedrock answers with one choice: omit n or set it to 1",
            ),
            (
                "response_format",
                json!({"type": "json_object"}),
                "response_format: Bedrock's Converse API has no JSON mode",
            ),
            ("tool_choice", json!("auto"), "tool_choice: needs tools"),
        ] {
            let mut body = json!({"messages": user});
            body[field] = value;
            let message = rejection(body);
            assert!(message.starts_with(expected), "{field}: {message}");
        }
        let message = rejection(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}));
        assert!(
            message.contains("Bedrock takes images inline only"),
            "{message}"
        );
    }
}
