//! An OpenAI-format client calling Bedrock: the Converse answer becomes a Chat Completions
//! response.

use super::{chat_usage_of, now_unix_secs, response_error, TranslateError};
use serde_json::{json, Map, Value};

/// Translates a (non-streaming) Bedrock Converse response into an OpenAI Chat Completions
/// response for `model` (Converse answers do not name it).
pub fn converse_response_to_chat(response: &Value, model: &str) -> Result<Value, TranslateError> {
    let Some(object) = response.as_object() else {
        return Err(TranslateError::InvalidResponse(
            "upstream response is not a JSON object".into(),
        ));
    };
    let Some(Value::Array(blocks)) = response.pointer("/output/message/content") else {
        return Err(response_error(
            "output.message.content",
            "missing or not an array",
        ));
    };
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        if let Some(block_text) = block.get("text") {
            let block_text = block_text.as_str().ok_or_else(|| {
                response_error(
                    format!("output.message.content[{i}].text"),
                    "must be a string",
                )
            })?;
            text.get_or_insert_with(String::new).push_str(block_text);
        } else if let Some(tool_use) = block.get("toolUse") {
            tool_calls.push(tool_call(tool_use).ok_or_else(|| {
                response_error(
                    format!("output.message.content[{i}].toolUse"),
                    "needs a string toolUseId and name",
                )
            })?);
        }
        // reasoningContent and other blocks have no Chat Completions equivalent.
    }
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    message.insert("content".into(), text.map_or(Value::Null, Value::String));
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), tool_calls.into());
    }
    message.insert("refusal".into(), Value::Null);
    let finish_reason = finish_reason_for(object.get("stopReason").and_then(Value::as_str));
    Ok(json!({
        "id": format!("chatcmpl-bedrock-{}", now_unix_secs()),
        "object": "chat.completion",
        "created": now_unix_secs(),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": null}],
        "usage": usage(object.get("usage")),
    }))
}

/// A `toolUse` block as an OpenAI tool call.
fn tool_call(tool_use: &Value) -> Option<Value> {
    let id = tool_use.get("toolUseId")?.as_str()?;
    let name = tool_use.get("name")?.as_str()?;
    let arguments = tool_use
        .get("input")
        .map_or_else(|| "{}".to_owned(), Value::to_string);
    Some(json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}))
}

/// Bedrock `stopReason` → OpenAI `finish_reason`.
pub(super) fn finish_reason_for(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("guardrail_intervened" | "content_filtered") => "content_filter",
        // end_turn, stop_sequence and anything newer: the turn ended.
        _ => "stop",
    }
}

/// Bedrock usage → OpenAI usage: cache reads and writes are part of the prompt.
pub(super) fn usage(usage: Option<&Value>) -> Value {
    let count = |key: &str| {
        usage
            .and_then(|usage| usage.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    chat_usage_of(
        count("inputTokens")
            .saturating_add(count("cacheReadInputTokens"))
            .saturating_add(count("cacheWriteInputTokens")),
        count("outputTokens"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn converse_answer(content: Value, stop_reason: &str) -> Value {
        json!({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop_reason,
            "usage": {"inputTokens": 12, "outputTokens": 6, "cacheReadInputTokens": 3, "totalTokens": 21},
            "metrics": {"latencyMs": 310},
        })
    }

    #[test]
    fn a_text_answer_becomes_a_chat_completion() {
        let answer = converse_answer(json!([{"text": "Hello"}, {"text": " there"}]), "end_turn");
        let chat =
            converse_response_to_chat(&answer, "anthropic.claude-3-5-haiku").expect("translates");
        assert_eq!(chat["model"], "anthropic.claude-3-5-haiku");
        assert_eq!(
            chat["choices"][0],
            json!({"index": 0, "message": {"role": "assistant", "content": "Hello there", "refusal": null},
                   "finish_reason": "stop", "logprobs": null})
        );
        assert_eq!(
            chat["usage"],
            json!({"prompt_tokens": 15, "completion_tokens": 6, "total_tokens": 21})
        );
    }

    #[test]
    fn tool_use_becomes_tool_calls_and_stop_reasons_map() {
        let answer = converse_answer(
            json!([{"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}]),
            "tool_use",
        );
        let chat = converse_response_to_chat(&answer, "m").expect("translates");
        assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            chat["choices"][0]["message"]["tool_calls"],
            json!([{"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
        );
        for (bedrock, openai) in [
            ("max_tokens", "length"),
            ("stop_sequence", "stop"),
            ("guardrail_intervened", "content_filter"),
        ] {
            let chat =
                converse_response_to_chat(&converse_answer(json!([{"text": "x"}]), bedrock), "m")
                    .expect("translates");
            assert_eq!(chat["choices"][0]["finish_reason"], openai, "{bedrock}");
        }
    }

    #[test]
    fn answers_that_are_not_converse_answers_are_invalid_responses() {
        for answer in [
            json!([]),
            json!({}),
            json!({"output": {"message": {"content": 3}}}),
            json!({"output": {"message": {"content": [{"text": 5}]}}}),
            json!({"output": {"message": {"content": [{"toolUse": {"name": "x"}}]}}}),
        ] {
            match converse_response_to_chat(&answer, "m") {
                Err(TranslateError::InvalidResponse(message)) => {
                    assert!(message.starts_with("upstream "), "{answer}: {message}")
                }
                other => panic!("{answer}: expected InvalidResponse, got {other:?}"),
            }
        }
    }
}
