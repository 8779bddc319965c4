//! Retries, fallbacks and circuit breakers against a misbehaving provider.

use std::time::Duration;

use bifrost_e2e::harness::{config_for, metric_value, Gateway, MockProvider};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "resilient?"}]})
}

async fn send(gateway: &Gateway, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .expect("answered")
}

#[tokio::test]
async fn retryable_failures_are_retried_with_backoff() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    config["providers"]["openai"]["network_config"] = json!({
        "base_url": mock.base, "max_retries": 2,
        "retry_backoff_initial_ms": 10, "retry_backoff_max_ms": 50
    });
    let gateway = Gateway::start(&config).await;
    mock.configure(json!({"fail_next": 2, "fail_statuses": [503]}))
        .await;
    let response = send(&gateway, &chat("openai/gpt-4o-mini")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.requests().await, 3, "two failures, then success");
    let text = gateway.metrics().await;
    assert_eq!(
        metric_value(&text, "bifrost_upstream_retries_total{provider=\"openai\"}"),
        Some(2.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_failing_model_falls_back_in_order() {
    let broken = MockProvider::start(&["--fail-percent", "100", "--fail-status", "503"]).await;
    let healthy = MockProvider::start(&[]).await;
    let mut config = config_for(&healthy);
    config["providers"]["broken"] = json!({
        "keys": [{"value": "k", "models": ["*"]}], "network_config": {"base_url": broken.base}
    });
    let gateway = Gateway::start(&config).await;
    let mut body = chat("broken/gpt-4o");
    body["fallbacks"] = json!(["anthropic/claude-3-5-haiku-20241022", "openai/gpt-4o-mini"]);
    healthy
        .configure(json!({"fail_next": 1, "fail_statuses": [500]}))
        .await;
    let response = send(&gateway, &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["x-bifrost-provider"],
        "openai",
        "third choice served"
    );
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(answer["model"], "gpt-4o-mini");
    assert_eq!(broken.requests().await, 1);
    assert_eq!(
        healthy.requests().await,
        2,
        "anthropic failed once, openai answered"
    );
    let text = gateway.metrics().await;
    assert_eq!(
        metric_value(
            &text,
            "bifrost_fallbacks_total{from=\"broken\",to=\"anthropic\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "bifrost_fallbacks_total{from=\"anthropic\",to=\"openai\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn an_open_circuit_skips_the_key_without_calling_it_then_half_opens() {
    let mock = MockProvider::start(&["--fail-percent", "100", "--fail-status", "500"]).await;
    let mut config = config_for(&mock);
    config["providers"]["openai"]["circuit_breaker"] = json!({
        "failure_threshold": 2, "success_threshold": 1, "timeout_seconds": 1, "half_open_requests": 1
    });
    let gateway = Gateway::start(&config).await;
    let body = chat("openai/gpt-4o-mini");
    for _ in 0..2 {
        assert_eq!(
            send(&gateway, &body).await.status(),
            StatusCode::BAD_GATEWAY
        );
    }
    let opened = send(&gateway, &body).await;
    assert_eq!(opened.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(opened.headers().contains_key("retry-after"));
    let error: Value = opened.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "circuit_open");
    assert_eq!(
        mock.requests().await,
        2,
        "the open circuit did not call the provider"
    );
    let text = gateway.metrics().await;
    assert_eq!(
        metric_value(
            &text,
            "bifrost_circuit_breaker_state{provider=\"openai\",key=\"primary\"}"
        ),
        Some(1.0),
        "{text}"
    );

    mock.configure(json!({"fail_percent": 0})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // the breaker's own open period
    assert_eq!(
        send(&gateway, &body).await.status(),
        StatusCode::OK,
        "half-open probe goes through"
    );
    let text = gateway.metrics().await;
    assert_eq!(
        metric_value(
            &text,
            "bifrost_circuit_breaker_state{provider=\"openai\",key=\"primary\"}"
        ),
        Some(0.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_rejected_key_is_retried_on_another_and_then_avoided() {
    let mock = MockProvider::start(&["--require-key", "good-key"]).await;
    let mut config = config_for(&mock);
    config["providers"]["openai"]["keys"] = json!([
        {"name": "bad", "value": "revoked-key", "weight": 1.0, "models": ["*"]},
        {"name": "good", "value": "good-key", "weight": 1.0, "models": ["*"]}
    ]);
    config["providers"]["openai"]["network_config"] = json!({
        "base_url": mock.base, "max_retries": 1, "retry_backoff_initial_ms": 1, "retry_backoff_max_ms": 1
    });
    config["providers"]["openai"]["circuit_breaker"] =
        json!({"failure_threshold": 2, "timeout_seconds": 60});
    let gateway = Gateway::start(&config).await;
    for _ in 0..30 {
        let response = send(&gateway, &chat("openai/gpt-4o-mini")).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let stats = mock.stats().await;
    assert_eq!(stats["by_key"]["good-key"], 30, "{stats}");
    assert!(
        stats["by_key"]["revoked-key"].as_u64().unwrap_or(0) <= 2,
        "bad key skipped once open: {stats}"
    );
}
