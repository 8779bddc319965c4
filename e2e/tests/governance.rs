//! Virtual keys, rate limits, budgets and the customer → team → key hierarchy, through real
//! HTTP against a gateway process. Every scenario runs three times: config store disabled
//! (usage in memory), SQLite, and PostgreSQL (`make test` provides the server).

use std::time::Duration;

use bifrost_e2e::harness::{
    any_provider, config_for, metric_value, postgres_store, sse_events, wait_until, Deadline,
    Gateway, MockProvider,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The mock's prices: $0.01 per prompt token, $0.02 per completion token.
fn governed(store: &Value, mock: &MockProvider, governance: Value) -> Value {
    let mut config = config_for(mock);
    config["config_store"] = store.clone();
    config["client"]["enforce_auth_on_inference"] = json!(true);
    let mut governance = governance;
    governance["pricing"] = json!([
        {"provider": "*", "model": "gpt-4o-mini", "input_cost_per_token": 0.01, "output_cost_per_token": 0.02}
    ]);
    governance["usage_flush_interval_ms"] = json!(100);
    config["governance"] = governance;
    config
}

fn chat(content: &str) -> Value {
    json!({"model": "openai/gpt-4o-mini", "max_tokens": 8,
           "messages": [{"role": "user", "content": content}]})
}

/// The key only matters for SQL stores (PostgreSQL refuses to store secrets without one).
async fn start(config: &Value) -> Gateway {
    Gateway::start_with(config, &[("BIFROST_ENCRYPTION_KEY", "governance test key")]).await
}

async fn send(gateway: &Gateway, vk: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .json(body);
    if let Some(vk) = vk {
        request = request.bearer_auth(vk);
    }
    request.send().await.expect("answered")
}

async fn error_of(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("JSON error");
    (
        status,
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

async fn virtual_keys_are_required_and_checked(store: Value) {
    let mock = MockProvider::start(&[]).await;
    let gateway = start(&governed(
        &store,
        &mock,
        json!({"virtual_keys": [
            {"id": "active", "value": "sk-bf-active", "provider_configs": any_provider()},
            {"id": "off", "value": "sk-bf-off", "provider_configs": any_provider(), "is_active": false},
            {"id": "legacy", "value": "legacy-value", "provider_configs": any_provider()}
        ]}),
    ))
    .await;
    let body = chat("hi");
    assert_eq!(
        send(&gateway, None, &body).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, message) = error_of(send(&gateway, Some("sk-bf-nope"), &body).await).await;
    assert_eq!(
        (status, message.as_str()),
        (StatusCode::FORBIDDEN, "unknown virtual key")
    );
    let (status, message) = error_of(send(&gateway, Some("sk-bf-off"), &body).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(message.contains("inactive"), "{message}");
    assert_eq!(
        send(&gateway, Some("sk-bf-active"), &body).await.status(),
        StatusCode::OK
    );

    let client = reqwest::Client::new();
    let via_header = client
        .post(gateway.url("/v1/chat/completions"))
        .header("x-bf-vk", "legacy-value")
        .json(&body)
        .send()
        .await
        .expect("answered");
    assert_eq!(via_header.status(), StatusCode::OK);
    let anthropic = client
        .post(gateway.url("/anthropic/v1/messages"))
        .header("x-api-key", "sk-bf-active")
        .json(
            &json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(anthropic.status(), StatusCode::OK);
    let unauthorized = client
        .post(gateway.url("/anthropic/v1/messages"))
        .json(
            &json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    let body: Value = unauthorized.json().await.expect("JSON");
    assert_eq!(
        body["error"]["type"], "authentication_error",
        "Anthropic format: {body}"
    );
}

async fn provider_configs_restrict_providers_models_and_keys(store: Value) {
    let mock = MockProvider::start(&[]).await;
    let mut config = governed(
        &store,
        &mock,
        json!({"virtual_keys": [{"id": "narrow", "value": "sk-bf-narrow", "provider_configs": [
            {"provider": "openai", "allowed_models": ["gpt-4o-mini"], "key_ids": ["second"]}
        ]}]}),
    );
    config["providers"]["openai"]["keys"] = json!([
        {"name": "first", "value": "sk-first", "weight": 100.0, "models": ["*"]},
        {"name": "second", "value": "sk-second", "weight": 1.0, "models": ["*"]}
    ]);
    let gateway = start(&config).await;
    for _ in 0..5 {
        assert_eq!(
            send(&gateway, Some("sk-bf-narrow"), &chat("x"))
                .await
                .status(),
            StatusCode::OK
        );
    }
    let stats = mock.stats().await;
    assert_eq!(
        stats["by_key"]["sk-second"], 5,
        "only the allowed key is used: {stats}"
    );

    let mut other_model = chat("x");
    other_model["model"] = json!("openai/gpt-4o");
    let (status, message) =
        error_of(send(&gateway, Some("sk-bf-narrow"), &other_model).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        message.contains("may not use model \"gpt-4o\""),
        "{message}"
    );
    let mut other_provider = chat("x");
    other_provider["model"] = json!("anthropic/claude-3-5-haiku-20241022");
    let (status, message) =
        error_of(send(&gateway, Some("sk-bf-narrow"), &other_provider).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        message.contains("may not use provider \"anthropic\""),
        "{message}"
    );

    let mut bare = chat("x");
    bare["model"] = json!("gpt-4o-mini");
    let response = send(&gateway, Some("sk-bf-narrow"), &bare).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "a bare model goes to the key's provider"
    );
    assert_eq!(response.headers()["x-bifrost-provider"], "openai");
}

async fn the_request_after_the_limit_gets_429_with_headers_until_the_window_rolls_over(
    store: Value,
) {
    let mock = MockProvider::start(&[]).await;
    let gateway = start(&governed(
        &store,
        &mock,
        json!({
            "rate_limits": [{"id": "three", "request_max_limit": 3, "request_reset_duration": "2s"}],
            "virtual_keys": [{"id": "limited", "value": "sk-bf-limited", "provider_configs": any_provider(), "rate_limit_id": "three"}]
        }),
    ))
    .await;
    // Start at the beginning of a window so all four requests fall into the same one.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(2000 - now % 2000 + 20)).await;
    for remaining in [2, 1, 0] {
        let response = send(&gateway, Some("sk-bf-limited"), &chat("x")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-ratelimit-limit-requests"], "3");
        assert_eq!(
            response.headers()["x-ratelimit-remaining-requests"],
            remaining.to_string().as_str()
        );
    }
    let refused = send(&gateway, Some("sk-bf-limited"), &chat("x")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let headers = refused.headers().clone();
    assert_eq!(headers["x-ratelimit-limit-requests"], "3");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
    assert!(headers["x-ratelimit-reset-requests"]
        .to_str()
        .unwrap_or("")
        .ends_with('s'));
    let retry_after: u64 = headers["retry-after"]
        .to_str()
        .unwrap_or("9")
        .parse()
        .unwrap_or(9);
    assert!((1..=2).contains(&retry_after), "retry-after {retry_after}");
    let (_, message) = error_of(refused).await;
    assert!(message.contains("3 requests"), "{message}");
    assert_eq!(
        mock.requests().await,
        3,
        "the refused request never reached the provider"
    );

    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(
        send(&gateway, Some("sk-bf-limited"), &chat("x"))
            .await
            .status(),
        StatusCode::OK
    );
}

async fn token_limits_are_charged_real_usage_streaming_included(store: Value) {
    // The mock answers 5 completion tokens and counts prompt words as prompt tokens.
    let mock = MockProvider::start(&["--chunks", "5"]).await;
    let gateway = start(&governed(
        &store,
        &mock,
        json!({
            "rate_limits": [{"id": "tokens", "token_max_limit": 20, "token_reset_duration": "1h"}],
            "virtual_keys": [{"id": "t", "value": "sk-bf-t", "provider_configs": any_provider(), "rate_limit_id": "tokens"}]
        }),
    ))
    .await;
    // 1 prompt word + 5 completion tokens = 6 real tokens per request, far below the estimate
    // (body size / 4 + max_tokens): the limit must follow real usage, not the estimate.
    assert_eq!(
        send(&gateway, Some("sk-bf-t"), &chat("one")).await.status(),
        StatusCode::OK
    );
    let mut stream = chat("two");
    stream["stream"] = json!(true);
    let response = send(&gateway, Some("sk-bf-t"), &stream).await;
    assert_eq!(response.status(), StatusCode::OK);
    let events = sse_events(response).await;
    assert!(
        events
            .iter()
            .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
            .all(|chunk| chunk["usage"].is_null() && chunk["choices"] != json!([])),
        "the usage chunk the gateway asked for is not shown to a caller who did not ask: {events:?}"
    );
    assert_eq!(events.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
    let third = send(&gateway, Some("sk-bf-t"), &chat("three")).await;
    assert_eq!(third.status(), StatusCode::OK, "12 of 20 tokens used");
    assert_eq!(third.headers()["x-ratelimit-limit-tokens"], "20");
    // 18 used now; the next request is admitted (18 < 20) and brings it to 24.
    assert_eq!(
        send(&gateway, Some("sk-bf-t"), &chat("four"))
            .await
            .status(),
        StatusCode::OK
    );
    let (status, message) = error_of(send(&gateway, Some("sk-bf-t"), &chat("five")).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(message.contains("20 tokens"), "{message}");
}

async fn the_in_flight_cap_refuses_concurrent_requests_beyond_it(store: Value) {
    let mock = MockProvider::start(&["--latency-ms", "400"]).await;
    let gateway = start(&governed(
        &store,
        &mock,
        json!({"virtual_keys": [{"id": "one", "value": "sk-bf-one", "provider_configs": any_provider(), "max_in_flight": 1}]}),
    ))
    .await;
    let body = chat("slow");
    let first = send(&gateway, Some("sk-bf-one"), &body);
    let second = async {
        mock.wait_for_requests(
            1,
            Deadline::after(Duration::from_secs(5)).polling_every(Duration::from_millis(5)),
        )
        .await;
        send(&gateway, Some("sk-bf-one"), &body).await
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.status(), StatusCode::OK);
    let (status, message) = error_of(second).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(message.contains("in flight"), "{message}");
    assert_eq!(
        send(&gateway, Some("sk-bf-one"), &body).await.status(),
        StatusCode::OK
    );
}

async fn budgets_are_charged_at_every_level_and_name_the_exhausted_one(store: Value) {
    let mock = MockProvider::start(&["--chunks", "5"]).await;
    let gateway = start(&governed(
        &store,
        &mock,
        json!({
            "budgets": [
                {"id": "vk-budget", "max_limit": 100.0, "reset_duration": "1d"},
                {"id": "team-budget", "max_limit": 0.25, "reset_duration": "1M"},
                {"id": "customer-budget", "max_limit": 100.0, "reset_duration": "1Y"}
            ],
            "customers": [{"id": "acme", "budget_id": "customer-budget"}],
            "teams": [{"id": "platform", "customer_id": "acme", "budget_id": "team-budget"}],
            "virtual_keys": [{"id": "dev", "value": "sk-bf-dev", "provider_configs": any_provider(), "team_id": "platform", "budget_id": "vk-budget"}]
        }),
    ))
    .await;
    // Each request: 1 prompt token ($0.01) + 5 completion tokens ($0.10) = $0.11.
    for _ in 0..3 {
        assert_eq!(
            send(&gateway, Some("sk-bf-dev"), &chat("hello"))
                .await
                .status(),
            StatusCode::OK
        );
    }
    let (status, message) = error_of(send(&gateway, Some("sk-bf-dev"), &chat("hello")).await).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(
        message.contains("team-budget") && message.contains("team \"platform\""),
        "{message}"
    );
    assert!(
        message.contains("$0.3300"),
        "three requests charged: {message}"
    );

    // Usage gauges are refreshed by the flush loop (every 100 ms here).
    wait_until(
        "the spend gauge of virtual key dev to show $0.33",
        Deadline::after(Duration::from_secs(5)),
        async || {
            let metrics = gateway.metrics().await;
            assert!(
                metrics.contains(
                    "bifrost_governance_rejections_total{reason=\"budget\",detail=\"team\"} 1"
                ),
                "{metrics}"
            );
            metric_value(
                &metrics,
                "bifrost_virtual_key_spend_usd{virtual_key=\"dev\"}",
            )
        },
        |spend| spend.is_some_and(|usd| (usd - 0.33).abs() < 1e-9),
    )
    .await;
}

async fn an_exhausted_budget_admits_again_after_its_reset(store: Value) {
    let mock = MockProvider::start(&["--chunks", "5"]).await;
    let gateway = start(&governed(
        &store,
        &mock,
        json!({
            "budgets": [{"id": "tiny", "max_limit": 0.05, "reset_duration": "2s"}],
            "virtual_keys": [{"id": "k", "value": "sk-bf-k", "provider_configs": any_provider(), "budget_id": "tiny"}]
        }),
    ))
    .await;
    assert_eq!(
        send(&gateway, Some("sk-bf-k"), &chat("a")).await.status(),
        StatusCode::OK
    );
    let (status, message) = error_of(send(&gateway, Some("sk-bf-k"), &chat("b")).await).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(message.contains("virtual key \"k\""), "{message}");
    // Poll across the 2 s boundary until the budget admits again.
    wait_until(
        "the budget to reset and admit again",
        Deadline::after(Duration::from_secs(6)).polling_every(Duration::from_millis(100)),
        async || send(&gateway, Some("sk-bf-k"), &chat("c")).await.status(),
        |status| *status == StatusCode::OK,
    )
    .await;
}

/// Bifrost's `["*"]` in `key_ids` and `allowed_models` means every key and every model.
async fn a_star_in_key_ids_and_allowed_models_means_every_one(store: Value) {
    let mock = MockProvider::start(&[]).await;
    let mut config = governed(
        &store,
        &mock,
        json!({"virtual_keys": [{"id": "all", "value": "sk-bf-all", "provider_configs": [
            {"provider": "openai", "allowed_models": ["*"], "key_ids": ["*"]}
        ]}]}),
    );
    config["providers"]["openai"]["keys"] = json!([
        {"name": "first", "value": "sk-first", "weight": 1.0, "models": ["*"]},
        {"name": "second", "value": "sk-second", "weight": 1.0, "models": ["*"]}
    ]);
    let gateway = start(&config).await;
    for model in ["openai/gpt-4o-mini", "openai/gpt-4o"] {
        for _ in 0..10 {
            let mut body = chat("x");
            body["model"] = json!(model);
            let response = send(&gateway, Some("sk-bf-all"), &body).await;
            assert_eq!(response.status(), StatusCode::OK, "{model}");
        }
    }
    let stats = mock.stats().await;
    for key in ["sk-first", "sk-second"] {
        assert!(
            stats["by_key"][key].as_u64().is_some_and(|n| n > 0),
            "both keys serve the star: {stats}"
        );
    }
}

/// Each scenario as three tests: `<scenario>::in_memory`, `::on_sqlite`, `::on_postgres`.
macro_rules! on_every_store {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use serde_json::json;

            #[tokio::test]
            async fn in_memory() {
                super::$scenario(json!({"enabled": false})).await;
            }

            #[tokio::test]
            async fn on_sqlite() {
                super::$scenario(json!({"enabled": true, "type": "sqlite"})).await;
            }

            #[tokio::test]
            async fn on_postgres() {
                if let Some(store) = super::postgres_store() {
                    super::$scenario(store).await;
                }
            }
        }
    )*};
}

on_every_store!(
    virtual_keys_are_required_and_checked,
    provider_configs_restrict_providers_models_and_keys,
    the_request_after_the_limit_gets_429_with_headers_until_the_window_rolls_over,
    token_limits_are_charged_real_usage_streaming_included,
    the_in_flight_cap_refuses_concurrent_requests_beyond_it,
    budgets_are_charged_at_every_level_and_name_the_exhausted_one,
    an_exhausted_budget_admits_again_after_its_reset,
    a_star_in_key_ids_and_allowed_models_means_every_one,
);
