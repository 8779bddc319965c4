//! Translating there and back again keeps what both formats can express.

use super::test_support::{anthropic_sse, events_of, translate_stream};
use super::*;
use serde_json::json;

fn object(value: Value) -> Map<String, Value> {
    value.as_object().expect("test value is an object").clone()
}

#[test]
fn an_openai_request_survives_a_round_trip_through_anthropic() {
    let original = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this picture, and what's the weather there?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
            {"role": "assistant", "content": "Paris: 18C, sunny."},
        ],
        "max_tokens": 300,
        "temperature": 0.3,
        "stop": ["END"],
        "user": "u-7",
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "stream": true,
    });
    let anthropic =
        chat_request_to_messages(&object(original.clone()), "claude").expect("to Anthropic");
    let mut back = messages_request_to_chat(&object(anthropic), "gpt-4o").expect("back to OpenAI");
    assert_eq!(back["stream_options"], json!({"include_usage": true}));
    back.as_object_mut()
        .expect("object")
        .remove("stream_options");
    assert_eq!(back, original);
}

#[test]
fn an_anthropic_request_survives_a_round_trip_through_openai() {
    let original = json!({
        "model": "claude",
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/paris.jpg"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}]},
        ],
        "max_tokens": 300,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-7"},
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
    });
    let openai = messages_request_to_chat(&object(original.clone()), "gpt-4o").expect("to OpenAI");
    let back = chat_request_to_messages(&object(openai), "claude").expect("back to Anthropic");
    assert_eq!(back, original);
}

#[test]
fn an_anthropic_response_survives_a_round_trip_through_openai() {
    let original = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    });
    let chat = messages_response_to_chat(&original).expect("to OpenAI");
    let back = chat_response_to_messages(&chat).expect("back to Anthropic");
    assert_eq!(back["content"], original["content"]);
    assert_eq!(back["stop_reason"], original["stop_reason"]);
    assert_eq!(back["usage"], original["usage"]);
}

#[test]
fn an_anthropic_stream_survives_a_round_trip_through_openai_chunks() {
    let upstream = anthropic_sse(&[
        json!({"type": "message_start", "message": {"id": "msg_9", "type": "message", "role": "assistant", "content": [], "model": "claude", "usage": {"input_tokens": 11, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Ça va ✓ "}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 8}}),
        json!({"type": "message_stop"}),
    ]);
    let openai_stream = translate_stream(&mut MessagesStreamToChat::new(true), &upstream, 5);
    let back = translate_stream(&mut ChatStreamToMessages::new(), &openai_stream, 3);
    let events: Vec<Value> = events_of(&back)
        .iter()
        .map(|event| serde_json::from_str(&event.data).expect("JSON"))
        .collect();
    let text: String = events
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    let input: String = events
        .iter()
        .filter_map(|e| e["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(text, "Ça va ✓ ");
    assert_eq!(input, "{\"a\":1}");
    let tool_start = events
        .iter()
        .find(|e| e["content_block"]["type"] == "tool_use")
        .expect("tool block");
    assert_eq!(tool_start["index"], 1);
    assert_eq!(tool_start["content_block"]["id"], "toolu_1");
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .expect("message_delta");
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        delta["usage"],
        json!({"input_tokens": 11, "output_tokens": 8})
    );
    assert_eq!(events.last().expect("events")["type"], "message_stop");
}
