//! Tool definitions and `tool_choice`, both directions: OpenAI function tools and Anthropic tools.

use super::chat_parts::function_tools;
use super::{present, request_error, required_str, TranslateError};
use serde_json::{json, Map, Value};

/// OpenAI function tools → Anthropic tool definitions.
pub(super) fn tools_to_anthropic(tools: &Value) -> Result<Value, TranslateError> {
    let translated: Vec<Value> = function_tools(tools)?
        .into_iter()
        .map(|function| {
            let mut tool = Map::new();
            tool.insert("name".into(), function.name.into());
            if let Some(description) = function.description {
                tool.insert("description".into(), description.clone());
            }
            let schema = function
                .parameters
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            tool.insert("input_schema".into(), schema);
            Value::Object(tool)
        })
        .collect();
    Ok(Value::Array(translated))
}

/// OpenAI `tool_choice` and `parallel_tool_calls` → Anthropic `tool_choice`.
pub(super) fn tool_choice_to_anthropic(
    body: &Map<String, Value>,
    has_tools: bool,
) -> Result<Option<Value>, TranslateError> {
    let choice = match present(body, "tool_choice") {
        None => None,
        Some(Value::String(mode)) => Some(match mode.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            other => {
                return Err(request_error(
                    "tool_choice",
                    format!("unsupported value {other:?}"),
                ))
            }
        }),
        Some(Value::Object(choice)) => {
            let function = present(choice, "function")
                .and_then(Value::as_object)
                .ok_or_else(|| request_error("tool_choice.function", "must be an object"))?;
            Some(
                json!({"type": "tool", "name": required_str(function, "name", "tool_choice.function")?}),
            )
        }
        Some(_) => {
            return Err(request_error(
                "tool_choice",
                "must be a string or an object",
            ))
        }
    };
    let parallel_disabled =
        present(body, "parallel_tool_calls").and_then(Value::as_bool) == Some(false);
    if !parallel_disabled {
        return Ok(choice);
    }
    let mut choice = match choice {
        Some(choice) => choice,
        None if has_tools => json!({"type": "auto"}),
        None => return Ok(None),
    };
    // `none` takes no options in Anthropic's schema.
    if choice.get("type").and_then(Value::as_str) != Some("none") {
        if let Some(choice) = choice.as_object_mut() {
            choice.insert("disable_parallel_tool_use".into(), true.into());
        }
    }
    Ok(Some(choice))
}

/// Anthropic tool definitions → OpenAI function tools.
pub(super) fn tools_to_openai(tools: &Value) -> Result<Value, TranslateError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| request_error("tools", "must be an array"))?;
    let mut translated = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let tool = tool
            .as_object()
            .ok_or_else(|| request_error(&path, "must be an object"))?;
        // Typed tools (web_search_20250305, bash_20250124, ...) run on Anthropic's side only.
        if let Some(kind) = present(tool, "type") {
            if kind.as_str() != Some("custom") {
                return Err(request_error(
                    format!("{path}.type"),
                    format!("unsupported tool type {kind}"),
                ));
            }
        }
        let mut function = Map::new();
        function.insert("name".into(), required_str(tool, "name", &path)?.into());
        if let Some(description) = present(tool, "description") {
            function.insert("description".into(), description.clone());
        }
        let parameters = present(tool, "input_schema")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        function.insert("parameters".into(), parameters);
        translated.push(json!({"type": "function", "function": function}));
    }
    Ok(Value::Array(translated))
}

/// Anthropic `tool_choice` → OpenAI `tool_choice` (and `parallel_tool_calls`).
pub(super) fn insert_tool_choice_for_openai(
    choice: &Value,
    request: &mut Map<String, Value>,
) -> Result<(), TranslateError> {
    let choice = choice
        .as_object()
        .ok_or_else(|| request_error("tool_choice", "must be an object"))?;
    let translated = match required_str(choice, "type", "tool_choice")? {
        "auto" => json!("auto"),
        "any" => json!("required"),
        "none" => json!("none"),
        "tool" => {
            json!({"type": "function", "function": {"name": required_str(choice, "name", "tool_choice")?}})
        }
        other => {
            return Err(request_error(
                "tool_choice.type",
                format!("unsupported value {other:?}"),
            ))
        }
    };
    request.insert("tool_choice".into(), translated);
    if present(choice, "disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
        request.insert("parallel_tool_calls".into(), false.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{chat_request_to_messages, messages_request_to_chat};
    use super::*;

    /// An OpenAI request with these extra fields, translated to Anthropic.
    fn to_anthropic(fields: Value) -> Result<Value, TranslateError> {
        let mut body = fields
            .as_object()
            .expect("test fields are an object")
            .clone();
        body.insert("messages".into(), json!([]));
        chat_request_to_messages(&body, "claude")
    }

    /// An Anthropic request with these extra fields, translated to OpenAI.
    fn to_openai(fields: Value) -> Result<Value, TranslateError> {
        let mut body = fields
            .as_object()
            .expect("test fields are an object")
            .clone();
        body.insert("messages".into(), json!([]));
        body.insert("max_tokens".into(), json!(100));
        messages_request_to_chat(&body, "gpt-4o")
    }

    fn rejection(result: Result<Value, TranslateError>) -> String {
        match result {
            Err(TranslateError::InvalidRequest(message)) => message,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn function_tools_become_anthropic_tools_with_a_default_schema() {
        let request = to_anthropic(json!({"tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "now"}},
        ]}))
        .expect("translates");
        assert_eq!(
            request["tools"],
            json!([
                {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}},
            ])
        );
    }

    #[test]
    fn non_function_tools_are_rejected_naming_the_tool() {
        let result = to_anthropic(json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]}));
        assert_eq!(
            rejection(result),
            "tools[0].type: unsupported tool type \"custom\""
        );
    }

    #[test]
    fn tool_choice_strings_map_to_anthropic_types() {
        for (openai, anthropic) in [("auto", "auto"), ("required", "any"), ("none", "none")] {
            let request = to_anthropic(json!({"tool_choice": openai})).expect("translates");
            assert_eq!(
                request["tool_choice"],
                json!({"type": anthropic}),
                "{openai}"
            );
        }
    }

    #[test]
    fn a_named_function_tool_choice_becomes_a_tool_choice() {
        let choice = json!({"type": "function", "function": {"name": "get_weather"}});
        let request = to_anthropic(json!({"tool_choice": choice})).expect("translates");
        assert_eq!(
            request["tool_choice"],
            json!({"type": "tool", "name": "get_weather"})
        );
    }

    #[test]
    fn an_unknown_tool_choice_is_rejected() {
        let result = to_anthropic(json!({"tool_choice": "sometimes"}));
        assert_eq!(
            rejection(result),
            "tool_choice: unsupported value \"sometimes\""
        );
    }

    #[test]
    fn parallel_tool_calls_false_disables_parallel_tool_use() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        let choice_of =
            |fields: Value| to_anthropic(fields).expect("translates")["tool_choice"].clone();
        assert_eq!(
            choice_of(
                json!({"tools": tools, "tool_choice": "required", "parallel_tool_calls": false})
            ),
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        assert_eq!(
            choice_of(json!({"tools": tools, "parallel_tool_calls": false})),
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        assert_eq!(
            choice_of(json!({"tools": tools, "tool_choice": "none", "parallel_tool_calls": false})),
            json!({"type": "none"})
        );
    }

    #[test]
    fn anthropic_tools_become_function_tools() {
        let request = to_openai(json!({"tools": [
            {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"type": "custom", "name": "now"},
        ]}))
        .expect("translates");
        assert_eq!(
            request["tools"],
            json!([
                {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
            ])
        );
    }

    #[test]
    fn server_tools_are_rejected_naming_the_tool() {
        let result =
            to_openai(json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}));
        assert_eq!(
            rejection(result),
            "tools[0].type: unsupported tool type \"web_search_20250305\""
        );
    }

    #[test]
    fn tool_choice_types_map_back_to_openai() {
        for (anthropic, openai) in [
            (json!({"type": "auto"}), json!("auto")),
            (json!({"type": "any"}), json!("required")),
            (json!({"type": "none"}), json!("none")),
            (
                json!({"type": "tool", "name": "f"}),
                json!({"type": "function", "function": {"name": "f"}}),
            ),
        ] {
            let request = to_openai(json!({"tool_choice": anthropic})).expect("translates");
            assert_eq!(request["tool_choice"], openai, "{anthropic}");
            assert!(request.get("parallel_tool_calls").is_none());
        }
    }

    #[test]
    fn disable_parallel_tool_use_becomes_parallel_tool_calls_false() {
        let choice = json!({"type": "auto", "disable_parallel_tool_use": true});
        let request = to_openai(json!({"tool_choice": choice})).expect("translates");
        assert_eq!(request["parallel_tool_calls"], false);
    }

    #[test]
    fn a_tool_choice_without_a_type_is_rejected() {
        let result = to_openai(json!({"tool_choice": {"name": "f"}}));
        assert_eq!(rejection(result), "tool_choice.type: must be a string");
    }
}
