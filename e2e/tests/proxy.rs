//! Real HTTP through the gateway to the mock provider: both API formats, JSON and SSE.

use bifrost_e2e::harness::{config_for, sse_events, Gateway, MockProvider};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn setup() -> (MockProvider, Gateway) {
    let mock = MockProvider::start(&["--chunks", "4"]).await;
    let gateway = Gateway::start(&config_for(&mock)).await;
    (mock, gateway)
}

#[tokio::test]
async fn chat_completion_json_comes_back_from_the_provider() {
    let (_mock, gateway) = setup().await;
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hello gateway"}]}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-bifrost-provider"], "openai");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["model"], "gpt-4o-mini",
        "the provider saw the model without its prefix"
    );
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "mock reply to: hello gateway"
    );
    assert!(body["usage"]["total_tokens"].as_u64().unwrap_or(0) > 0);
}

#[tokio::test]
async fn chat_completion_stream_passes_chunks_in_order_with_done_last() {
    let (_mock, gateway) = setup().await;
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({
            "model": "openai/gpt-4o-mini", "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "stream this please"}]
        }))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/event-stream"));
    let events = sse_events(response).await;
    assert_eq!(events.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, data)| serde_json::from_str(data).expect("chunk JSON"))
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "mock reply to: stream this please");
    let usage = chunks.last().expect("usage chunk");
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0);
}

#[tokio::test]
async fn embeddings_and_models_are_served() {
    let (_mock, gateway) = setup().await;
    let client = reqwest::Client::new();
    let response = client
        .post(gateway.url("/v1/embeddings"))
        .json(&json!({"model": "openai/text-embedding-3-small", "input": ["a", "b"]}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["data"][1]["index"], 1);

    let models: Value = client
        .get(gateway.url("/v1/models"))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&"openai/gpt-4o-mini"), "{ids:?}");
    assert!(
        ids.contains(&"anthropic/claude-3-5-haiku-20241022"),
        "{ids:?}"
    );
}

#[tokio::test]
async fn anthropic_callers_reach_an_anthropic_provider_unchanged() {
    let (_mock, gateway) = setup().await;
    let response = reqwest::Client::new()
        .post(gateway.url("/anthropic/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(
            &json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 64,
                      "messages": [{"role": "user", "content": "hi claude"}]}),
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"][0]["text"], "mock reply to: hi claude");
}

#[tokio::test]
async fn openai_callers_can_use_an_anthropic_provider() {
    let (_mock, gateway) = setup().await;
    let client = reqwest::Client::new();
    let body: Value = client
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({"model": "anthropic/claude-3-5-haiku-20241022",
                      "messages": [{"role": "system", "content": "be brief"},
                                   {"role": "user", "content": "translate me"}]}))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "mock reply to: translate me"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    let response = client
        .post(gateway.url("/v1/chat/completions"))
        .json(
            &json!({"model": "anthropic/claude-3-5-haiku-20241022", "stream": true,
                      "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "stream translated"}]}),
        )
        .send()
        .await
        .expect("answered");
    let events = sse_events(response).await;
    assert_eq!(events.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).expect("chunk JSON"))
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "mock reply to: stream translated");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    assert!(chunks
        .iter()
        .any(|c| c["usage"]["completion_tokens"].as_u64().is_some()));
}

#[tokio::test]
async fn anthropic_callers_can_use_an_openai_provider() {
    let (_mock, gateway) = setup().await;
    let client = reqwest::Client::new();
    let body: Value = client
        .post(gateway.url("/anthropic/v1/messages"))
        .json(
            &json!({"model": "openai/gpt-4o-mini", "max_tokens": 64, "system": "be brief",
                      "messages": [{"role": "user", "content": "other way round"}]}),
        )
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"][0]["text"], "mock reply to: other way round");
    assert_eq!(body["stop_reason"], "end_turn");

    let response = client
        .post(gateway.url("/anthropic/v1/messages"))
        .json(
            &json!({"model": "openai/gpt-4o-mini", "max_tokens": 64, "stream": true,
                      "messages": [{"role": "user", "content": "stream it back"}]}),
        )
        .send()
        .await
        .expect("answered");
    let events = sse_events(response).await;
    let names: Vec<&str> = events.iter().filter_map(|(e, _)| e.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(names.contains(&"content_block_start") && names.contains(&"message_delta"));
    let text: String = events
        .iter()
        .filter(|(e, _)| e.as_deref() == Some("content_block_delta"))
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, "mock reply to: stream it back");
}
