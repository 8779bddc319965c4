//! Element caps (`client.max_*_per_request`): a body over a cap is refused in the caller's
//! error format before anything reaches the provider; a body just under the caps is served.

use bifrost_e2e::harness::{config_for, Gateway, MockProvider};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn post(gateway: &Gateway, path: &str, body: &Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(gateway.url(path))
        .json(body)
        .send()
        .await
        .expect("answered");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn chat(model: &str, messages: usize) -> Value {
    json!({"model": model, "messages": vec![json!({"role": "user", "content": "hi"}); messages]})
}

fn anthropic(model: &str, messages: usize, blocks_each: usize) -> Value {
    let block = json!({"type": "text", "text": "hi"});
    json!({
        "model": model,
        "max_tokens": 16,
        "messages": vec![json!({"role": "user", "content": vec![block; blocks_each]}); messages],
    })
}

#[tokio::test]
async fn too_many_messages_are_refused_in_the_openai_format_before_the_provider() {
    let mock = MockProvider::start(&[]).await;
    let gateway = Gateway::start(&config_for(&mock)).await;
    let (status, body) = post(
        &gateway,
        "/v1/chat/completions",
        &chat("openai/gpt-4o-mini", 10_001),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");
    assert_eq!(
        body["error"]["message"],
        "messages: at most 10000 messages per request (this one has 10001)"
    );
    assert_eq!(mock.requests().await, 0);
}

#[tokio::test]
async fn too_many_content_blocks_are_refused_in_the_anthropic_format_before_the_provider() {
    let mock = MockProvider::start(&[]).await;
    let gateway = Gateway::start(&config_for(&mock)).await;
    // 10,010 blocks in 110 messages: under the message cap, over the block cap.
    let (status, body) = post(
        &gateway,
        "/anthropic/v1/messages",
        &anthropic("claude-3-5-haiku-20241022", 110, 91),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("messages[].content: at most 10000 content blocks per request"),
        "{message}"
    );
    assert!(message.ends_with("(this one has 10010)"), "{message}");
    assert_eq!(mock.requests().await, 0);
}

#[tokio::test]
async fn an_over_cap_body_is_refused_before_translation_too() {
    let mock = MockProvider::start(&[]).await;
    let gateway = Gateway::start(&config_for(&mock)).await;
    let mut tools = chat("anthropic/claude-3-5-haiku-20241022", 1);
    tools["tools"] = json!(vec![
        json!({"type": "function", "function": {"name": "f"}});
        1_001
    ]);
    let (status, body) = post(&gateway, "/v1/chat/completions", &tools).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"]["message"],
        "tools: at most 1000 tools per request (this one has 1001)"
    );
    let (status, body) = post(
        &gateway,
        "/anthropic/v1/messages",
        &anthropic("openai/gpt-4o-mini", 10_001, 1),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(mock.requests().await, 0);
}

#[tokio::test]
async fn bodies_just_under_the_caps_are_served_in_both_formats() {
    let mock = MockProvider::start(&[]).await;
    let gateway = Gateway::start(&config_for(&mock)).await;
    for (path, body) in [
        ("/v1/chat/completions", chat("openai/gpt-4o-mini", 10_000)),
        (
            "/v1/chat/completions",
            chat("anthropic/claude-3-5-haiku-20241022", 10_000),
        ),
        (
            "/anthropic/v1/messages",
            anthropic("claude-3-5-haiku-20241022", 100, 100),
        ),
        (
            "/anthropic/v1/messages",
            anthropic("openai/gpt-4o-mini", 10_000, 1),
        ),
    ] {
        let (status, answer) = post(&gateway, path, &body).await;
        assert_eq!(status, StatusCode::OK, "{path} {}: {answer}", body["model"]);
    }
    assert_eq!(mock.requests().await, 4);
}

#[tokio::test]
async fn the_caps_follow_the_client_config() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    config["client"]["max_messages_per_request"] = json!(2);
    let gateway = Gateway::start(&config).await;
    let (status, body) = post(
        &gateway,
        "/v1/chat/completions",
        &chat("openai/gpt-4o-mini", 3),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"]["message"],
        "messages: at most 2 messages per request (this one has 3)"
    );
    let (status, body) = post(
        &gateway,
        "/v1/chat/completions",
        &chat("openai/gpt-4o-mini", 2),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(mock.requests().await, 1);
}
