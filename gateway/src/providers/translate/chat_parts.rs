//! The pieces of an OpenAI Chat Completions request that every translation onto another
//! format reads the same way: content parts, images, assistant text, tool calls. Each
//! translator decides what they become; the checks and their messages live here once.

use super::{positive_integer, present, request_error, required_str, TranslateError};
use serde_json::{json, Map, Value};

/// One content part of a user message.
pub(super) enum ContentPart<'a> {
    Text(&'a str),
    Image(Image<'a>),
}

/// Where an `image_url` part's image is.
pub(super) enum Image<'a> {
    /// A `data:<media>;base64,<data>` URL, split.
    Base64 { media_type: &'a str, data: &'a str },
    /// Any other URL, for the provider to fetch.
    Url(&'a str),
}

/// A user content part at `path`: text or an image; anything else is refused naming the part.
pub(super) fn content_part<'a>(
    part: &'a Value,
    path: &str,
) -> Result<ContentPart<'a>, TranslateError> {
    let part = part
        .as_object()
        .ok_or_else(|| request_error(path, "must be an object"))?;
    match required_str(part, "type", path)? {
        "text" => Ok(ContentPart::Text(required_str(part, "text", path)?)),
        "image_url" => {
            let url = match present(part, "image_url") {
                Some(Value::String(url)) => url.as_str(),
                Some(Value::Object(image)) => {
                    required_str(image, "url", &format!("{path}.image_url"))?
                }
                _ => {
                    return Err(request_error(
                        format!("{path}.image_url"),
                        "must be an object with a url",
                    ))
                }
            };
            image(url, &format!("{path}.image_url.url")).map(ContentPart::Image)
        }
        other => Err(request_error(
            path,
            format!("unsupported content part type {other:?}"),
        )),
    }
}

fn image<'a>(url: &'a str, path: &str) -> Result<Image<'a>, TranslateError> {
    let Some(data_url) = url.strip_prefix("data:") else {
        return Ok(Image::Url(url));
    };
    let (header, data) = data_url
        .split_once(',')
        .ok_or_else(|| request_error(path, "data URL has no ',' before its data"))?;
    let media_type = header
        .strip_suffix(";base64")
        .ok_or_else(|| request_error(path, "only base64 data URLs are supported"))?;
    // Parameters such as `;charset=` may sit between the media type and `;base64`.
    let media_type = media_type.split(';').next().unwrap_or_default();
    Ok(Image::Base64 { media_type, data })
}

/// The non-empty texts of an assistant message's `content` (a string, or text and refusal
/// parts), at `path` (the message).
pub(super) fn assistant_texts<'a>(
    content: Option<&'a Value>,
    path: &str,
) -> Result<Vec<&'a str>, TranslateError> {
    match content {
        None => Ok(Vec::new()),
        Some(Value::String(text)) if text.is_empty() => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![text.as_str()]),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let part_path = format!("{path}.content[{j}]");
                let part = part
                    .as_object()
                    .ok_or_else(|| request_error(&part_path, "must be an object"))?;
                let text = match required_str(part, "type", &part_path)? {
                    "text" => required_str(part, "text", &part_path)?,
                    "refusal" => required_str(part, "refusal", &part_path)?,
                    other => {
                        return Err(request_error(
                            &part_path,
                            format!("unsupported content part type {other:?}"),
                        ))
                    }
                };
                if !text.is_empty() {
                    texts.push(text);
                }
            }
            Ok(texts)
        }
        Some(_) => Err(request_error(
            format!("{path}.content"),
            "must be a string or an array",
        )),
    }
}

/// One of an assistant message's `tool_calls`.
pub(super) struct ToolCall<'a> {
    /// Present when the call was read with `needs_id`.
    pub id: Option<&'a str>,
    pub name: &'a str,
    /// The parsed `arguments`: always a JSON object (`{}` for none).
    pub arguments: Value,
}

/// The tool call at `path`; `needs_id` when the target format refers to calls by id.
pub(super) fn tool_call<'a>(
    call: &'a Value,
    path: &str,
    needs_id: bool,
) -> Result<ToolCall<'a>, TranslateError> {
    let call = call
        .as_object()
        .ok_or_else(|| request_error(path, "must be an object"))?;
    if let Some(kind) = present(call, "type") {
        if kind.as_str() != Some("function") {
            return Err(request_error(
                format!("{path}.type"),
                format!("unsupported tool call type {kind}"),
            ));
        }
    }
    let id = match needs_id {
        true => Some(required_str(call, "id", path)?),
        false => None,
    };
    let function_path = format!("{path}.function");
    let function = present(call, "function")
        .and_then(Value::as_object)
        .ok_or_else(|| request_error(&function_path, "must be an object"))?;
    let name = required_str(function, "name", &function_path)?;
    let arguments_path = format!("{function_path}.arguments");
    let arguments = match present(function, "arguments") {
        None => "",
        Some(Value::String(arguments)) => arguments.as_str(),
        Some(_) => return Err(request_error(&arguments_path, "must be a string of JSON")),
    };
    let arguments = if arguments.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str::<Value>(arguments).map_err(|error| {
            request_error(&arguments_path, format!("is not valid JSON ({error})"))
        })?
    };
    if !arguments.is_object() {
        return Err(request_error(&arguments_path, "must encode a JSON object"));
    }
    Ok(ToolCall {
        id,
        name,
        arguments,
    })
}

/// One of a request's OpenAI function `tools`.
pub(super) struct FunctionTool<'a> {
    pub name: &'a str,
    pub description: Option<&'a Value>,
    pub parameters: Option<&'a Value>,
}

/// The request's `tools`, each a function tool; any other kind is refused naming the tool.
pub(super) fn function_tools(tools: &Value) -> Result<Vec<FunctionTool<'_>>, TranslateError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| request_error("tools", "must be an array"))?;
    let mut functions = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let tool: &Map<String, Value> = tool
            .as_object()
            .ok_or_else(|| request_error(&path, "must be an object"))?;
        let kind = required_str(tool, "type", &path)?;
        if kind != "function" {
            return Err(request_error(
                format!("{path}.type"),
                format!("unsupported tool type {kind:?}"),
            ));
        }
        let function_path = format!("{path}.function");
        let function = present(tool, "function")
            .and_then(Value::as_object)
            .ok_or_else(|| request_error(&function_path, "must be an object"))?;
        functions.push(FunctionTool {
            name: required_str(function, "name", &function_path)?,
            description: present(function, "description"),
            parameters: present(function, "parameters"),
        });
    }
    Ok(functions)
}

/// The role of a Chat Completions message (`developer` is a system message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One of the body's `messages`, checked to be an object with a known role.
pub(super) struct ChatMessage<'a> {
    /// `messages[i]`, for error messages.
    pub path: String,
    pub role: Role,
    pub message: &'a Map<String, Value>,
    /// The messages before it (a tool result looks up its call there).
    pub earlier: &'a [Value],
}

/// The body's `messages`, each checked; an unknown role is refused naming the message.
pub(super) fn chat_messages(
    body: &Map<String, Value>,
) -> Result<Vec<ChatMessage<'_>>, TranslateError> {
    let Some(Value::Array(messages)) = body.get("messages") else {
        return Err(request_error("messages", "must be an array of messages"));
    };
    let mut checked = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let message = message
            .as_object()
            .ok_or_else(|| request_error(&path, "must be an object"))?;
        let role = match required_str(message, "role", &path)? {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => {
                return Err(request_error(
                    format!("{path}.role"),
                    format!("unsupported role {other:?}"),
                ))
            }
        };
        checked.push(ChatMessage {
            path,
            role,
            message,
            earlier: &messages[..i],
        });
    }
    Ok(checked)
}

/// Appends a turn of `role` holding `blocks` (in its `field`), merged into the previous turn
/// when that has the same role: formats whose turns must alternate get tool results and the
/// user's next words as one user turn.
pub(super) fn push_turn(turns: &mut Vec<Value>, role: &str, field: &str, blocks: Vec<Value>) {
    let previous = turns
        .last_mut()
        .filter(|last| last.get("role").and_then(Value::as_str) == Some(role))
        .and_then(|last| last.get_mut(field))
        .and_then(Value::as_array_mut);
    match previous {
        Some(previous) => previous.extend(blocks),
        None => turns.push(json!({"role": role, field: blocks})),
    }
}

/// The texts of a string or an array of text parts (system, developer and tool messages).
pub(super) fn texts<'a>(
    content: Option<&'a Value>,
    path: &str,
) -> Result<Vec<&'a str>, TranslateError> {
    match content {
        Some(Value::String(text)) => Ok(vec![text.as_str()]),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| {
                let part_path = format!("{path}[{j}]");
                let part = part
                    .as_object()
                    .ok_or_else(|| request_error(&part_path, "must be an object"))?;
                match required_str(part, "type", &part_path)? {
                    "text" => required_str(part, "text", &part_path),
                    other => Err(request_error(
                        &part_path,
                        format!("unsupported content part type {other:?}"),
                    )),
                }
            })
            .collect(),
        _ => Err(request_error(
            path,
            "must be a string or an array of text parts",
        )),
    }
}

/// A tool message's result: its text, or the JSON object it holds.
pub(super) enum ToolResult<'a> {
    Json(Value),
    Text(std::borrow::Cow<'a, str>),
}

/// The result a tool message at `path` carries (its text parts joined by newlines).
pub(super) fn tool_result<'a>(
    message: &'a Map<String, Value>,
    path: &str,
) -> Result<ToolResult<'a>, TranslateError> {
    let text = match present(message, "content") {
        None => std::borrow::Cow::Borrowed(""),
        content => {
            let mut parts = texts(content, &format!("{path}.content"))?;
            match parts.len() {
                1 => std::borrow::Cow::Borrowed(parts.remove(0)),
                _ => std::borrow::Cow::Owned(parts.join("\n")),
            }
        }
    };
    Ok(match serde_json::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => ToolResult::Json(object),
        _ => ToolResult::Text(text),
    })
}

/// The token cap: `max_completion_tokens`, else `max_tokens`.
pub(super) fn max_tokens(body: &Map<String, Value>) -> Result<Option<u64>, TranslateError> {
    match present(body, "max_completion_tokens") {
        Some(value) => positive_integer(value, "max_completion_tokens").map(Some),
        None => present(body, "max_tokens")
            .map(|value| positive_integer(value, "max_tokens"))
            .transpose(),
    }
}

/// `stop` as a list of stop sequences.
pub(super) fn stop_sequences(body: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    match present(body, "stop") {
        None => Ok(None),
        Some(Value::String(stop)) => Ok(Some(json!([stop]))),
        Some(stop @ Value::Array(sequences)) if sequences.iter().all(Value::is_string) => {
            Ok(Some(stop.clone()))
        }
        Some(_) => Err(request_error(
            "stop",
            "must be a string or an array of strings",
        )),
    }
}
