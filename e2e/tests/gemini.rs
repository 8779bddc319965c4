//! Gemini as a provider: OpenAI and Anthropic callers reach the mock's Gemini API (v1beta,
//! `x-goog-api-key`) through the gateway's translation, answers and streams come back in the
//! caller's format, usage from `usageMetadata` is charged, and Gemini's errors and blocks are
//! answered in the caller's format.

use std::time::Duration;

use bifrost_e2e::harness::{
    allow_all, config_for, json_of, parse_sse, run_python_check, sse_payloads, wait_until,
    Deadline, Gateway, MockProvider,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const MODEL: &str = "gemini/gemini-2.5-flash";

/// [`config_for`] plus a Gemini provider `gemini` with key `gm-key` at the mock.
fn gemini_config(mock: &MockProvider) -> Value {
    let mut config = config_for(mock);
    config["providers"]["gemini"] = json!({
        "keys": [{"name": "studio", "value": "gm-key", "models": ["*"]}],
        "network_config": {"base_url": mock.base}
    });
    config
}

fn chat(content: &str, stream: bool) -> Value {
    json!({"model": MODEL, "stream": stream, "stream_options": {"include_usage": stream},
           "messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": content}]})
}

#[tokio::test]
async fn openai_callers_chat_and_stream_on_gemini() {
    let mock = MockProvider::start(&["--chunks", "3"]).await;
    let gateway = Gateway::start(&gemini_config(&mock)).await;

    let (status, body) = gateway
        .post_json("/v1/chat/completions", &chat("hello gemini", false))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = json_of(&body);
    assert_eq!(answer["object"], "chat.completion");
    let choice = &answer["choices"][0];
    assert_eq!(
        choice["message"]["content"], "mock reply to: hello gemini",
        "{answer}"
    );
    assert_eq!(choice["finish_reason"], "stop");
    let usage = &answer["usage"];
    assert!(usage["prompt_tokens"].as_u64() > Some(0), "{answer}");
    assert_eq!(
        usage["completion_tokens"], 3,
        "one token per chunk: {answer}"
    );

    let (status, body) = gateway
        .post_json("/v1/chat/completions", &chat("streamed here", true))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = sse_payloads(&body);
    let text: String = events
        .iter()
        .filter_map(|event| event["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "mock reply to: streamed here", "{body}");
    assert_eq!(events.last(), Some(&json!("[DONE]")), "{body}");
    let usage = &events[events.len() - 2];
    assert_eq!(usage["choices"], json!([]), "{body}");
    assert_eq!(usage["usage"]["completion_tokens"], 3, "{body}");
    assert!(
        events
            .iter()
            .any(|event| event["choices"][0]["finish_reason"] == "stop"),
        "{body}"
    );

    let stats = mock.stats().await;
    assert_eq!(stats["by_model"]["gemini-2.5-flash"], 2, "{stats}");
    assert_eq!(
        stats["by_key"]["gm-key"], 2,
        "sent as x-goog-api-key: {stats}"
    );
    assert_eq!(
        stats["by_route"]["/v1beta/models/{model}:streamGenerateContent"], 1,
        "{stats}"
    );
}

#[tokio::test]
async fn tool_calls_round_trip_through_gemini() {
    let mock = MockProvider::start(&[]).await;
    let gateway = Gateway::start(&gemini_config(&mock)).await;
    let tools = json!([{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"], "additionalProperties": false}}}]);
    let mut body = json!({"model": MODEL, "tools": tools,
                          "messages": [{"role": "user", "content": "weather in Paris?"}]});
    let (status, text) = gateway.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let answer = json_of(&text);
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{answer}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather", "{answer}");
    let arguments = json_of(call["function"]["arguments"].as_str().unwrap_or_default());
    assert_eq!(arguments, json!({"city": "mock"}));

    // The caller sends the result back by the call's id; Gemini gets it by function name.
    let messages = body["messages"].as_array_mut().expect("messages");
    messages.push(choice["message"].clone());
    messages
        .push(json!({"role": "tool", "tool_call_id": call["id"], "content": "{\"celsius\": 21}"}));
    let (status, text) = gateway.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let answer = json_of(&text);
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
    assert_eq!(
        answer["choices"][0]["message"]["content"], "mock reply to: weather in Paris?",
        "{answer}"
    );

    body["stream"] = json!(true);
    body["messages"] = json!([{"role": "user", "content": "weather in Oslo?"}]);
    let (status, text) = gateway.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let events = sse_payloads(&text);
    let streamed_call = events
        .iter()
        .find_map(|event| event["choices"][0]["delta"]["tool_calls"][0].as_object())
        .unwrap_or_else(|| panic!("no tool call in {text}"));
    assert_eq!(streamed_call["function"]["name"], "get_weather");
    assert_eq!(streamed_call["index"], 0);
    assert!(
        events
            .iter()
            .any(|event| event["choices"][0]["finish_reason"] == "tool_calls"),
        "{text}"
    );
}

#[tokio::test]
async fn anthropic_callers_reach_gemini_through_chat_completions() {
    let mock = MockProvider::start(&["--chunks", "4"]).await;
    let gateway = Gateway::start(&gemini_config(&mock)).await;
    let messages = |stream: bool| {
        json!({"model": MODEL, "max_tokens": 64, "stream": stream, "system": "Be brief.",
               "messages": [{"role": "user", "content": "hello from anthropic"}]})
    };
    let (status, body) = gateway
        .post_json("/anthropic/v1/messages", &messages(false))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = json_of(&body);
    assert_eq!(answer["type"], "message", "{answer}");
    assert_eq!(
        answer["content"][0]["text"],
        "mock reply to: hello from anthropic"
    );
    assert_eq!(answer["stop_reason"], "end_turn");
    assert_eq!(answer["usage"]["output_tokens"], 4, "{answer}");

    let (status, body) = gateway
        .post_json("/anthropic/v1/messages", &messages(true))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = parse_sse(&body);
    let names: Vec<&str> = events
        .iter()
        .filter_map(|(name, _)| name.as_deref())
        .collect();
    assert_eq!(names.first(), Some(&"message_start"), "{body}");
    assert_eq!(names.last(), Some(&"message_stop"), "{body}");
    let text: String = events
        .iter()
        .filter_map(|(_, data)| serde_json::from_str::<Value>(data).ok())
        .filter_map(|data| data["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "mock reply to: hello from anthropic", "{body}");
    let usage = events
        .iter()
        .filter_map(|(_, data)| serde_json::from_str::<Value>(data).ok())
        .find(|data| data["type"] == "message_delta")
        .unwrap_or_else(|| panic!("no message_delta in {body}"));
    assert_eq!(usage["usage"]["output_tokens"], 4, "{body}");
}

#[tokio::test]
async fn embeddings_go_as_one_batch_and_come_back_as_openai_vectors() {
    let mock = MockProvider::start(&["--embedding-dims", "16"]).await;
    let gateway = Gateway::start(&gemini_config(&mock)).await;
    let (status, body) = gateway.post_json("/v1/embeddings",
        &json!({"model": "gemini/gemini-embedding-001", "input": ["first", "second"], "dimensions": 8}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = json_of(&body);
    assert_eq!(answer["object"], "list");
    assert_eq!(answer["model"], "gemini-embedding-001");
    let data = answer["data"].as_array().expect("data");
    assert_eq!(data.len(), 2, "{answer}");
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["index"], i);
        assert_eq!(
            item["embedding"].as_array().map(Vec::len),
            Some(8),
            "{answer}"
        );
    }
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);

    // What the openai SDK asks for by default: base64 little-endian float32.
    let (status, body) = gateway.post_json("/v1/embeddings",
        &json!({"model": "gemini/gemini-embedding-001", "input": "first", "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let encoded = json_of(&body)["data"][0]["embedding"].clone();
    assert!(
        encoded.as_str().is_some_and(|text| text.len() == 88),
        "16 floats: {encoded}"
    );

    let (status, body) = gateway
        .post_json(
            "/v1/embeddings",
            &json!({"model": "gemini/gemini-embedding-001", "input": [[1, 2, 3]]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("input[0]: must be a string"), "{body}");
    let stats = mock.stats().await;
    assert_eq!(
        stats["by_route"]["/v1beta/models/{model}:batchEmbedContents"], 2,
        "the refused one never left: {stats}"
    );
}

#[tokio::test]
async fn gemini_usage_is_charged_to_the_virtual_keys_budget() {
    let mock = MockProvider::start(&["--chunks", "5"]).await;
    let mut config = gemini_config(&mock);
    config["client"]["enforce_auth_on_inference"] = json!(true);
    config["governance"] = json!({
        "pricing": [{"provider": "*", "model": "gemini-2.5-flash",
                     "input_cost_per_token": 0.01, "output_cost_per_token": 0.02}],
        "usage_flush_interval_ms": 100,
        "budgets": [{"id": "g", "max_limit": 100.0, "reset_duration": "1d"}],
        "virtual_keys": [{"id": "k", "value": "sk-bf-gemini", "budget_id": "g",
                          "provider_configs": allow_all(&["gemini"])}]
    });
    let gateway = Gateway::start(&config).await;
    let mut expected = 0.0;
    for stream in [false, true] {
        let mut body = chat("spend", stream);
        // The stream's usage is needed to charge it, asked for or not.
        body["stream_options"] = json!({"include_usage": false});
        let response = reqwest::Client::new()
            .post(gateway.url("/v1/chat/completions"))
            .bearer_auth("sk-bf-gemini")
            .json(&body)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap_or_default();
        if stream {
            assert!(!text.contains("\"usage\""), "not asked for: {text}");
        } else {
            let usage = &json_of(&text)["usage"];
            let prompt = usage["prompt_tokens"].as_f64().unwrap_or(0.0);
            assert!(prompt > 0.0, "{text}");
            assert_eq!(usage["completion_tokens"], 5);
            expected = 2.0 * (prompt * 0.01 + 5.0 * 0.02);
        }
    }
    let seen = wait_until(
        "both answers charged",
        Deadline::after(Duration::from_secs(10)),
        async || gateway.first_budget_usage().await,
        |usd| (usd - expected).abs() < 1e-9,
    )
    .await;
    assert!(seen > 0.0);
}

#[tokio::test]
async fn gemini_errors_and_blocks_answer_in_the_callers_format() {
    let mock = MockProvider::start(&["--require-key", "gm-key"]).await;
    let mut config = gemini_config(&mock);
    config["providers"]["wrong"] = json!({
        "custom_provider_config": {"base_provider_type": "gemini"},
        "keys": [{"name": "bad", "value": "gm-wrong", "models": ["*"]}],
        "network_config": {"base_url": mock.base}
    });
    let gateway = Gateway::start(&config).await;

    // A prompt Gemini blocks is the caller's problem: 400 content_filter, JSON or stream.
    let (status, body) = gateway
        .post_json("/v1/chat/completions", &chat("[[block]] this", false))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error = json_of(&body);
    assert_eq!(error["error"]["code"], "content_filter", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("blockReason SAFETY")),
        "{error}"
    );
    let (status, body) = gateway
        .post_json("/v1/chat/completions", &chat("[[block]] this", true))
        .await;
    assert_eq!(status, StatusCode::OK, "the stream had started: {body}");
    let events = sse_payloads(&body);
    assert_eq!(events[0]["error"]["type"], "content_filter", "{body}");
    assert_eq!(events.last(), Some(&json!("[DONE]")));

    // Google answers a wrong key with 400 INVALID_ARGUMENT: passed on, in OpenAI's format.
    let mut wrong = chat("hi", false);
    wrong["model"] = json!("wrong/gemini-2.5-flash");
    let (status, body) = gateway.post_json("/v1/chat/completions", &wrong).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error = json_of(&body);
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("API key not valid")),
        "{error}"
    );

    // Rate limited upstream, no retries configured (as for every provider): 502 naming the
    // 429, in Anthropic's format for an Anthropic caller.
    mock.configure(json!({"fail_next": 1, "fail_statuses": [429]}))
        .await;
    let (status, body) = gateway.post_json("/anthropic/v1/messages",
        &json!({"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let error = json_of(&body);
    assert_eq!(error["type"], "error", "{body}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("gemini returned 429")),
        "{error}"
    );
}

#[tokio::test]
async fn gemini_models_are_listed_from_the_provider() {
    let mock = MockProvider::start(&["--models", "gemini-2.5-flash,gemini-embedding-001"]).await;
    let mut config = gemini_config(&mock);
    config["providers"]
        .as_object_mut()
        .expect("providers")
        .retain(|name, _| name == "gemini");
    let gateway = Gateway::start(&config).await;
    let listed: Value = reqwest::get(gateway.url("/v1/models"))
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .map(|models| models.iter().filter_map(|m| m["id"].as_str()).collect())
        .unwrap_or_default();
    assert!(ids.contains(&"gemini/gemini-2.5-flash"), "{listed}");
    assert!(ids.contains(&"gemini/gemini-embedding-001"), "{listed}");
}

/// The official `openai` package (installed by `make test-deps`) through the gateway to
/// Gemini: what an OpenAI application sends, Gemini answers, and the SDK reads it, its default
/// base64 embeddings included.
#[tokio::test]
async fn the_openai_sdk_talks_to_gemini_through_the_gateway() {
    let mock = MockProvider::start(&["--chunks", "3", "--embedding-dims", "12"]).await;
    let gateway = Gateway::start(&gemini_config(&mock)).await;
    let result = run_python_check("openai_on_gemini_check.py", &gateway.base).await;
    assert_eq!(
        result["content"],
        "mock reply to: hello from the openai sdk"
    );
    assert!(result["prompt_tokens"].as_u64() > Some(0), "{result}");
    assert_eq!(result["streamed"], "mock reply to: streamed to gemini");
    assert_eq!(result["stream_completion_tokens"], 3, "{result}");
    assert_eq!(result["tool"], "get_weather");
    assert_eq!(result["arguments"], json!({"city": "mock"}));
    assert_eq!(result["finish_reason"], "tool_calls");
    assert_eq!(result["embeddings"], json!([12, 12]), "{result}");
    // The mock's vectors, decoded from base64 float32 by the SDK, are finite numbers.
    assert!(
        result["first_value"].as_f64().is_some_and(f64::is_finite),
        "{result}"
    );
}

/// The official `anthropic` package (installed by `make test-deps`) on the gateway's Anthropic
/// endpoint, its model on Gemini: a message, a stream and a tool use, as the SDK parses them.
#[tokio::test]
async fn the_anthropic_sdk_talks_to_gemini_through_the_gateway() {
    let mock = MockProvider::start(&["--chunks", "3"]).await;
    let gateway = Gateway::start(&gemini_config(&mock)).await;
    let result = bifrost_e2e::harness::run_python_check_with(
        "anthropic_sdk_check.py",
        &[&gateway.base, MODEL],
    )
    .await;
    assert_eq!(
        result["content"],
        "mock reply to: hello from the anthropic sdk"
    );
    assert!(result["input_tokens"].as_u64() > Some(0), "{result}");
    assert_eq!(
        result["streamed"],
        "mock reply to: streamed through the anthropic sdk"
    );
    assert_eq!(result["stream_output_tokens"], 3, "{result}");
    assert_eq!(result["stop_reason"], "tool_use");
    assert_eq!(result["tool"], "get_weather");
    assert_eq!(result["input"], json!({"city": "mock"}));
}
