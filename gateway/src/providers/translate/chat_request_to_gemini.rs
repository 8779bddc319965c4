//! An OpenAI-format client calling Gemini: its Chat Completions request becomes a
//! `generateContent` request. The model and `stream` are not in Gemini's body: both are in the
//! URL (`/models/{model}:generateContent` or `:streamGenerateContent`).

use super::chat_parts::{
    assistant_texts, chat_messages, content_part, function_tools, max_tokens, push_turn,
    stop_sequences, texts, tool_call, tool_result, ChatMessage, ContentPart, Image, Role,
    ToolResult,
};
use super::{positive_integer, present, request_error, required_str, TranslateError};
use serde_json::{json, Map, Value};

/// Translates an OpenAI Chat Completions request body into a Gemini `generateContent` body.
/// `_model` is unused: Gemini names the model in the URL.
pub fn chat_request_to_gemini(
    body: &Map<String, Value>,
    _model: &str,
) -> Result<Value, TranslateError> {
    let mut system: Vec<Value> = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    for ChatMessage {
        path,
        role,
        message,
        earlier,
    } in chat_messages(body)?
    {
        let (role, parts) = match role {
            Role::System => {
                let content_path = format!("{path}.content");
                system.extend(text_parts(message.get("content"), &content_path)?);
                continue;
            }
            Role::User => ("user", user_parts(message, &path)?),
            Role::Assistant => ("model", model_parts(message, &path)?),
            // Gemini takes function results as parts of a user turn.
            Role::Tool => ("user", vec![function_response(message, earlier, &path)?]),
        };
        push_turn(&mut contents, role, "parts", parts);
    }

    let mut request = Map::new();
    request.insert("contents".into(), contents.into());
    if !system.is_empty() {
        request.insert("systemInstruction".into(), json!({"parts": system}));
    }
    let config = generation_config(body)?;
    if !config.is_empty() {
        request.insert("generationConfig".into(), config.into());
    }
    if let Some(tools) = present(body, "tools") {
        request.insert("tools".into(), function_declarations(tools)?);
    }
    if let Some(choice) = present(body, "tool_choice") {
        request.insert("toolConfig".into(), tool_config(choice)?);
    }
    Ok(Value::Object(request))
}

/// Text parts of a string or an array of text parts (system and developer messages).
fn text_parts(content: Option<&Value>, path: &str) -> Result<Vec<Value>, TranslateError> {
    Ok(texts(content, path)?
        .into_iter()
        .map(|text| json!({"text": text}))
        .collect())
}

fn user_parts(message: &Map<String, Value>, path: &str) -> Result<Vec<Value>, TranslateError> {
    let content_path = format!("{path}.content");
    match present(message, "content") {
        Some(Value::String(text)) => Ok(vec![json!({"text": text})]),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| user_part(part, &format!("{content_path}[{j}]")))
            .collect(),
        _ => Err(request_error(
            content_path,
            "must be a string or an array of content parts",
        )),
    }
}

/// A user content part as a Gemini part; images go inline, as Gemini does not fetch URLs.
fn user_part(part: &Value, path: &str) -> Result<Value, TranslateError> {
    match content_part(part, path)? {
        ContentPart::Text(text) => Ok(json!({"text": text})),
        ContentPart::Image(Image::Base64 { media_type, data }) => {
            Ok(json!({"inlineData": {"mimeType": media_type, "data": data}}))
        }
        ContentPart::Image(Image::Url(_)) => Err(request_error(
            format!("{path}.image_url.url"),
            "Gemini takes images inline only: send a base64 data URL (data:image/png;base64,...)",
        )),
    }
}

/// An assistant message as the parts of a `model` turn: its text, then its tool calls as
/// function calls.
fn model_parts(message: &Map<String, Value>, path: &str) -> Result<Vec<Value>, TranslateError> {
    let mut parts: Vec<Value> = assistant_texts(present(message, "content"), path)?
        .into_iter()
        .map(|text| json!({"text": text}))
        .collect();
    match present(message, "tool_calls") {
        None => {}
        Some(Value::Array(calls)) => {
            for (j, call) in calls.iter().enumerate() {
                let call = tool_call(call, &format!("{path}.tool_calls[{j}]"), false)?;
                parts.push(json!({"functionCall": {"name": call.name, "args": call.arguments}}));
            }
        }
        Some(_) => {
            return Err(request_error(
                format!("{path}.tool_calls"),
                "must be an array",
            ))
        }
    }
    if parts.is_empty() {
        return Err(request_error(
            path,
            "assistant message needs content or tool_calls",
        ));
    }
    Ok(parts)
}

/// A tool message as a function response. Gemini matches results to calls by function name,
/// which OpenAI's tool message does not carry: it is the name of the nearest earlier tool call
/// with the message's `tool_call_id`.
fn function_response(
    message: &Map<String, Value>,
    earlier: &[Value],
    path: &str,
) -> Result<Value, TranslateError> {
    let id = required_str(message, "tool_call_id", path)?;
    let name = earlier
        .iter()
        .rev()
        .filter_map(|m| m.get("tool_calls").and_then(Value::as_array))
        .flatten()
        .find(|call| call.get("id").and_then(Value::as_str) == Some(id))
        .and_then(|call| call.get("function"))
        .and_then(|function| function.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            request_error(
                format!("{path}.tool_call_id"),
                format!("no earlier assistant tool call has the id {id:?} (Gemini needs the called function's name)"),
            )
        })?;
    // A result that is a JSON object is the response itself; anything else is its content.
    let response = match tool_result(message, path)? {
        ToolResult::Json(object) => object,
        ToolResult::Text(text) => json!({"content": text}),
    };
    Ok(json!({"functionResponse": {"name": name, "response": response}}))
}

/// Sampling and output settings: OpenAI's top-level fields gathered into `generationConfig`.
fn generation_config(body: &Map<String, Value>) -> Result<Map<String, Value>, TranslateError> {
    let mut config = Map::new();
    if let Some(max_tokens) = max_tokens(body)? {
        config.insert("maxOutputTokens".into(), max_tokens.into());
    }
    for (openai, gemini) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(value) = present(body, openai) {
            if !value.is_number() {
                return Err(request_error(openai, "must be a number"));
            }
            config.insert(gemini.into(), value.clone());
        }
    }
    if let Some(seed) = present(body, "seed") {
        if seed.as_i64().is_none() {
            return Err(request_error("seed", "must be an integer"));
        }
        config.insert("seed".into(), seed.clone());
    }
    if let Some(n) = present(body, "n") {
        config.insert("candidateCount".into(), positive_integer(n, "n")?.into());
    }
    if let Some(stop) = stop_sequences(body)? {
        config.insert("stopSequences".into(), stop);
    }
    if let Some(format) = present(body, "response_format") {
        response_format(format, &mut config)?;
    }
    Ok(config)
}

/// `response_format`: JSON mode and JSON schemas become Gemini's response MIME type and schema.
fn response_format(format: &Value, config: &mut Map<String, Value>) -> Result<(), TranslateError> {
    let format = format
        .as_object()
        .ok_or_else(|| request_error("response_format", "must be an object"))?;
    match required_str(format, "type", "response_format")? {
        "text" => {}
        "json_object" => {
            config.insert("responseMimeType".into(), "application/json".into());
        }
        "json_schema" => {
            let schema = present(format, "json_schema")
                .and_then(|spec| spec.get("schema"))
                .filter(|schema| schema.is_object())
                .ok_or_else(|| {
                    request_error("response_format.json_schema.schema", "must be an object")
                })?;
            config.insert("responseMimeType".into(), "application/json".into());
            config.insert("responseJsonSchema".into(), schema.clone());
        }
        other => {
            return Err(request_error(
                "response_format.type",
                format!("unsupported value {other:?}"),
            ))
        }
    }
    Ok(())
}

/// OpenAI function tools → one Gemini tool holding every function declaration. Parameters go
/// as `parametersJsonSchema`, which takes JSON Schema as OpenAI callers write it.
fn function_declarations(tools: &Value) -> Result<Value, TranslateError> {
    let declarations: Vec<Value> = function_tools(tools)?
        .into_iter()
        .map(|function| {
            let mut declaration = Map::new();
            declaration.insert("name".into(), function.name.into());
            if let Some(description) = function.description {
                declaration.insert("description".into(), description.clone());
            }
            if let Some(parameters) = function.parameters {
                declaration.insert("parametersJsonSchema".into(), parameters.clone());
            }
            Value::Object(declaration)
        })
        .collect();
    if declarations.is_empty() {
        return Ok(json!([]));
    }
    Ok(json!([{"functionDeclarations": declarations}]))
}

/// OpenAI `tool_choice` → Gemini's function calling mode.
fn tool_config(choice: &Value) -> Result<Value, TranslateError> {
    let config = match choice {
        Value::String(mode) => match mode.as_str() {
            "auto" => json!({"mode": "AUTO"}),
            "required" => json!({"mode": "ANY"}),
            "none" => json!({"mode": "NONE"}),
            other => {
                return Err(request_error(
                    "tool_choice",
                    format!("unsupported value {other:?}"),
                ))
            }
        },
        Value::Object(choice) => {
            let function = present(choice, "function")
                .and_then(Value::as_object)
                .ok_or_else(|| request_error("tool_choice.function", "must be an object"))?;
            let name = required_str(function, "name", "tool_choice.function")?;
            json!({"mode": "ANY", "allowedFunctionNames": [name]})
        }
        _ => {
            return Err(request_error(
                "tool_choice",
                "must be a string or an object",
            ))
        }
    };
    Ok(json!({"functionCallingConfig": config}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Value {
        let body = body.as_object().expect("test body is an object").clone();
        chat_request_to_gemini(&body, "gemini-2.5-flash").expect("request translates")
    }

    fn rejection(body: Value) -> String {
        let body = body.as_object().expect("test body is an object").clone();
        match chat_request_to_gemini(&body, "gemini-2.5-flash") {
            Err(TranslateError::InvalidRequest(message)) => message,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn a_conversation_becomes_contents_with_a_system_instruction() {
        let request = translate(json!({
            "model": "gemini/gemini-2.5-flash",
            "stream": true,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            ],
        }));
        assert_eq!(
            request,
            json!({
                "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use metric units."}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "Hi"}]},
                    {"role": "model", "parts": [{"text": "Hello."}]},
                    {"role": "user", "parts": [{"text": "Weather?"}]},
                ],
            }),
            "no model and no stream in the body: both are in the URL"
        );
    }

    #[test]
    fn sampling_fields_go_into_the_generation_config() {
        let request = translate(json!({
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 100, "temperature": 0.2, "top_p": 0.9, "stop": "END", "seed": 7, "n": 2,
            "presence_penalty": 0.5, "frequency_penalty": -0.5,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        }));
        assert_eq!(
            request["generationConfig"],
            json!({
                "maxOutputTokens": 100, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"],
                "seed": 7, "candidateCount": 2, "presencePenalty": 0.5, "frequencyPenalty": -0.5,
                "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"},
            })
        );
        let request = translate(json!({
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 100, "max_completion_tokens": 50,
        }));
        assert_eq!(request["generationConfig"]["maxOutputTokens"], 50);
    }

    #[test]
    fn tools_and_tool_choice_become_function_declarations_and_a_calling_mode() {
        let request = translate(json!({
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": false}}},
                {"type": "function", "function": {"name": "now"}},
            ],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        }));
        assert_eq!(
            request["tools"],
            json!([{"functionDeclarations": [
                {"name": "get_weather", "description": "Weather", "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": false}},
                {"name": "now"},
            ]}])
        );
        assert_eq!(
            request["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
        );
        for (openai, gemini) in [("auto", "AUTO"), ("required", "ANY"), ("none", "NONE")] {
            let request = translate(json!({
                "messages": [{"role": "user", "content": "Hi"}], "tool_choice": openai,
            }));
            assert_eq!(
                request["toolConfig"]["functionCallingConfig"]["mode"],
                gemini
            );
        }
    }

    #[test]
    fn tool_calls_and_their_results_become_function_calls_and_responses_by_name() {
        let request = translate(json!({"messages": [
            {"role": "user", "content": "Weather in Paris and Oslo?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"celsius\": 21}"},
            {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
        ]}));
        assert_eq!(
            request["contents"],
            json!([
                {"role": "user", "parts": [{"text": "Weather in Paris and Oslo?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_time", "args": {}}},
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"celsius": 21}}},
                    {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}},
                ]},
            ])
        );
    }

    #[test]
    fn a_tool_result_without_its_call_is_refused_naming_the_field() {
        let message = rejection(json!({"messages": [
            {"role": "user", "content": "Hi"},
            {"role": "tool", "tool_call_id": "call_9", "content": "x"},
        ]}));
        assert!(
            message.starts_with(
                "messages[1].tool_call_id: no earlier assistant tool call has the id \"call_9\""
            ),
            "{message}"
        );
    }

    #[test]
    fn data_url_images_are_inline_data_and_other_urls_are_refused() {
        let request = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]}]}));
        assert_eq!(
            request["contents"][0]["parts"][1],
            json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
        );
        let message = rejection(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]}]}));
        assert!(
            message.starts_with(
                "messages[0].content[0].image_url.url: Gemini takes images inline only"
            ),
            "{message}"
        );
    }

    #[test]
    fn malformed_fields_are_refused_naming_them() {
        let user = json!([{"role": "user", "content": "Hi"}]);
        for (field, value, expected) in [
            ("n", json!(0), "n: must be a positive integer"),
            ("seed", json!("x"), "seed: must be an integer"),
            ("top_p", json!("x"), "top_p: must be a number"),
            (
                "response_format",
                json!({"type": "xml"}),
                "response_format.type: unsupported value \"xml\"",
            ),
            (
                "tools",
                json!([{"type": "web_search"}]),
                "tools[0].type: unsupported tool type \"web_search\"",
            ),
        ] {
            let mut body = json!({"messages": user});
            body[field] = value;
            assert_eq!(rejection(body), expected, "{field}");
        }
        assert_eq!(
            rejection(json!({"messages": [{"role": "assistant", "content": ""}]})),
            "messages[0]: assistant message needs content or tool_calls"
        );
    }
}
