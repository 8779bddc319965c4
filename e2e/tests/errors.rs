//! Every error case answers in the caller's format with the right status.

use bifrost_e2e::harness::{config_for, Deadline, Gateway, MockProvider};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn post(
    gateway: &Gateway,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(gateway.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("answered");
    let status = response.status();
    (status, response.json().await.expect("error body is JSON"))
}

fn openai_error(body: &Value) -> &str {
    assert!(
        body["error"]["type"].is_string(),
        "OpenAI error shape: {body}"
    );
    body["error"]["message"].as_str().unwrap_or_default()
}

fn anthropic_error(body: &Value) -> &str {
    assert_eq!(body["type"], "error", "Anthropic error shape: {body}");
    assert!(body["error"]["type"].is_string(), "{body}");
    body["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn malformed_json_is_a_400_in_each_callers_format() {
    let mock = MockProvider::start(&[]).await;
    let gateway = Gateway::start(&config_for(&mock)).await;
    let (status, body) = post(&gateway, "/v1/chat/completions", "{\"model\": ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(openai_error(&body).contains("not valid JSON"), "{body}");
    let (status, body) = post(&gateway, "/anthropic/v1/messages", "[1, 2]").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(anthropic_error(&body).contains("JSON object"), "{body}");
    let (status, body) = post(&gateway, "/v1/chat/completions", r#"{"messages": []}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(openai_error(&body).starts_with("model:"), "{body}");
    assert_eq!(
        mock.requests().await,
        0,
        "nothing malformed reaches the provider"
    );
}

#[tokio::test]
async fn unknown_provider_or_model_is_a_404() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    config["providers"]["openai"]["keys"][0]["models"] = json!(["gpt-4o-mini"]);
    let gateway = Gateway::start(&config).await;
    let (status, body) = post(
        &gateway,
        "/v1/chat/completions",
        r#"{"model": "nowhere/gpt-4o", "messages": []}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        openai_error(&body).contains("\"nowhere\" is not configured"),
        "{body}"
    );
    let (status, body) = post(
        &gateway,
        "/v1/chat/completions",
        r#"{"model": "openai/gpt-5-secret", "messages": []}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(openai_error(&body).contains("not served"), "{body}");
    let (status, body) = post(
        &gateway,
        "/anthropic/v1/messages",
        r#"{"model": "nowhere/claude", "max_tokens": 5, "messages": []}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    anthropic_error(&body);
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    config["client"]["max_request_body_size_mb"] = json!(1);
    let gateway = Gateway::start(&config).await;
    let big = "x".repeat(1024 * 1024 + 10);
    let body =
        json!({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": big}]});
    let (status, body) = post(&gateway, "/v1/chat/completions", body.to_string()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        openai_error(&body).contains("max_request_body_size_mb"),
        "{body}"
    );

    // Without a Content-Length (chunked upload) the limit still holds.
    let chunks = futures_util::stream::iter(
        (0..3).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 512 * 1024]))),
    );
    let response = reqwest::Client::new()
        .post(gateway.url("/anthropic/v1/messages"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_slow_upstream_is_a_504() {
    let mock = MockProvider::start(&["--latency-ms", "3000"]).await;
    let mut config = config_for(&mock);
    config["providers"]["openai"]["network_config"]["default_request_timeout_in_seconds"] =
        json!(1);
    let gateway = Gateway::start(&config).await;
    let started = std::time::Instant::now();
    let (status, body) = post(
        &gateway,
        "/v1/chat/completions",
        r#"{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        openai_error(&body).contains("did not answer within 1s"),
        "{body}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_millis(2900),
        "gave up at the timeout"
    );
}

#[tokio::test]
async fn failing_upstreams_are_a_502() {
    let mock = MockProvider::start(&["--fail-percent", "100", "--fail-status", "500"]).await;
    let gateway = Gateway::start(&config_for(&mock)).await;
    let (status, body) = post(
        &gateway,
        "/anthropic/v1/messages",
        r#"{"model": "anthropic/claude-3-5-haiku-20241022", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}],
            "fallbacks": ["openai/gpt-4o-mini"]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let message = anthropic_error(&body);
    assert!(
        message.contains("all upstreams failed") && message.contains("500"),
        "{body}"
    );
    assert_eq!(
        mock.requests().await,
        2,
        "the model and its fallback were each tried once"
    );
}

#[tokio::test]
async fn an_upstream_client_error_is_passed_on_not_retried() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    config["providers"]["openai"]["network_config"]["max_retries"] = json!(3);
    let gateway = Gateway::start(&config).await;
    // A body the gateway passes on but the provider refuses (the mock, told to, answers 400).
    mock.configure(json!({"fail_statuses": [400], "fail_next": 4}))
        .await;
    let (status, body) = post(
        &gateway,
        "/v1/chat/completions",
        r#"{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    openai_error(&body);
    assert_eq!(mock.requests().await, 1, "a 400 is not retried");
}

#[tokio::test]
async fn a_saturated_provider_answers_429_when_excess_is_dropped() {
    let mock = MockProvider::start(&["--latency-ms", "400"]).await;
    let mut config = config_for(&mock);
    config["client"]["drop_excess_requests"] = json!(true);
    config["providers"]["openai"]["concurrency_and_buffer_size"] =
        json!({"concurrency": 1, "buffer_size": 0});
    let gateway = Gateway::start(&config).await;
    let body =
        r#"{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}"#;
    let slow = post(&gateway, "/v1/chat/completions", body);
    let rejected = async {
        // Wait until the first request holds the only slot.
        mock.wait_for_requests(
            1,
            Deadline::after(std::time::Duration::from_secs(5))
                .polling_every(std::time::Duration::from_millis(5)),
        )
        .await;
        post(&gateway, "/v1/chat/completions", body).await
    };
    let ((first, _), (second, error)) = tokio::join!(slow, rejected);
    assert_eq!(first, StatusCode::OK);
    assert_eq!(second, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error["error"]["code"], "provider_busy", "{error}");
}
