//! The admin API cannot be driven by web pages (cross-site forms, DNS rebinding), ids are
//! bounded, auth schemes are case-insensitive; `/v1/models` honours virtual keys; malformed
//! chat bodies never reach the provider.

use bifrost_e2e::harness::{any_provider, config_for, Gateway, MockProvider};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn with_store(mock: &MockProvider) -> Value {
    let mut config = config_for(mock);
    config["config_store"] = json!({"enabled": true, "type": "sqlite"});
    config
}

async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("answered");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

const VK: &str = r#"{"id": "csrf", "value": "sk-bf-made-by-a-web-page"}"#;

#[tokio::test]
async fn a_cross_origin_text_plain_post_creates_nothing() {
    let mock = MockProvider::start(&[]).await;
    let gateway = Gateway::start(&with_store(&mock)).await;
    let client = reqwest::Client::new();
    let (status, body) = answer(
        client
            .post(gateway.url("/api/governance/virtual-keys"))
            .header("content-type", "text/plain")
            .header("origin", "http://evil.example")
            .body(VK),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = answer(
        client
            .post(gateway.url("/api/governance/virtual-keys"))
            .header("content-type", "text/plain")
            .body(VK),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert!(message(&body).contains("application/json"), "{body}");
    let (_, listed) = answer(client.get(gateway.url("/api/governance/virtual-keys"))).await;
    assert_eq!(listed["count"], 0, "no key was created: {listed}");
    assert_eq!(
        gateway.chat_as("sk-bf-made-by-a-web-page").await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_foreign_host_is_refused_without_credentials() {
    let mock = MockProvider::start(&[]).await;
    let gateway = Gateway::start(&with_store(&mock)).await;
    let (status, body) = answer(
        reqwest::Client::new()
            .get(gateway.url("/api/providers"))
            .header("host", "evil.example"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(message(&body).contains("Host"), "{body}");
}

#[tokio::test]
async fn an_allowed_origin_is_served() {
    let mock = MockProvider::start(&[]).await;
    let mut config = with_store(&mock);
    config["governance"] =
        json!({"auth_config": {"admin_allowed_origins": ["https://admin.example.com"]}});
    let gateway = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    let (status, body) = answer(
        client
            .post(gateway.url("/api/governance/virtual-keys"))
            .header("origin", "https://admin.example.com")
            .header("sec-fetch-site", "cross-site")
            .json(&json!({"id": "ui", "value": "sk-bf-made-by-the-admin-ui", "provider_configs": any_provider()})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = answer(
        client
            .get(gateway.url("/api/providers"))
            .header("origin", "https://other.example.com"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn redirect_provider(gateway: &Gateway, bearer: Option<&str>, base_url: &str) -> StatusCode {
    let client = reqwest::Client::new();
    let with_auth = |request: reqwest::RequestBuilder| match bearer {
        Some(token) => request.header("authorization", format!("bearer {token}")),
        None => request,
    };
    let (_, mut provider) =
        answer(with_auth(client.get(gateway.url("/api/providers/openai")))).await;
    provider["network_config"]["base_url"] = json!(base_url);
    let (status, body) = answer(with_auth(
        client
            .put(gateway.url("/api/providers/openai"))
            .json(&provider),
    ))
    .await;
    if status != StatusCode::OK {
        assert!(message(&body).contains("base_url"), "{body}");
    }
    status
}

#[tokio::test]
async fn moving_a_masked_key_elsewhere_needs_credentials() {
    let mock = MockProvider::start(&[]).await;
    let mut config = with_store(&mock);
    config["providers"]["openai"]["keys"][0]["value"] = json!("sk-openai-real-secret");
    let gateway = Gateway::start(&config).await;
    assert_eq!(
        redirect_provider(&gateway, None, "http://127.0.0.1:9").await,
        StatusCode::FORBIDDEN
    );

    let mut config = with_store(&mock);
    config["governance"] = json!({"auth_config": {"admin_token": "adm-token"}});
    let gateway = Gateway::start(&config).await;
    assert_eq!(
        redirect_provider(&gateway, Some("adm-token"), "http://127.0.0.1:9").await,
        StatusCode::OK,
        "lowercase bearer scheme accepted, and credentials allow the move"
    );
}

#[tokio::test]
async fn ids_with_nul_or_1000_characters_are_refused() {
    let mock = MockProvider::start(&[]).await;
    let gateway = Gateway::start(&with_store(&mock)).await;
    let client = reqwest::Client::new();
    let long = "a".repeat(1000);
    for id in ["bad\u{0}id", long.as_str()] {
        let (status, body) = answer(
            client
                .post(gateway.url("/api/governance/teams"))
                .json(&json!({"id": id})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(message(&body).starts_with("id:"), "{body}");
    }
    let (status, body) = answer(client.get(gateway.url("/api/governance/teams/bad%00id"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) =
        answer(client.get(gateway.url(&format!("/api/governance/teams/{long}")))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

fn governed(mock: &MockProvider) -> Value {
    let mut config = config_for(mock);
    config["client"]["enforce_auth_on_inference"] = json!(true);
    config["providers"]["openai"]["keys"][0]["models"] = json!(["gpt-4o-mini", "gpt-4o"]);
    config["providers"]["anthropic"]["keys"][0]["models"] = json!(["claude-3-5-haiku"]);
    config["governance"] = json!({"virtual_keys": [
        {"id": "narrow", "value": "sk-bf-narrow-key",
         "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o-mini"], "key_ids": ["*"]}]}
    ]});
    config
}

#[tokio::test]
async fn models_need_a_key_and_show_only_what_it_may_use() {
    let mock = MockProvider::start(&[]).await;
    let gateway = Gateway::start(&governed(&mock)).await;
    let client = reqwest::Client::new();
    let (status, body) = answer(client.get(gateway.url("/v1/models"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]["type"].is_string(),
        "OpenAI error shape: {body}"
    );
    let (status, body) = answer(
        client
            .get(gateway.url("/v1/models"))
            .header("authorization", "bearer sk-bf-narrow-key"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .map(|d| d.iter().filter_map(|m| m["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["openai/gpt-4o-mini"], "{body}");
}

#[tokio::test]
async fn a_lowercase_bearer_virtual_key_serves_inference() {
    let mock = MockProvider::start(&[]).await;
    let gateway = Gateway::start(&governed(&mock)).await;
    let (status, body) = answer(
        reqwest::Client::new()
            .post(gateway.url("/v1/chat/completions"))
            .header("authorization", "BEARER sk-bf-narrow-key")
            .json(&json!({"model": "openai/gpt-4o-mini",
                          "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn malformed_chat_bodies_are_refused_before_the_provider() {
    let mock = MockProvider::start(&[]).await;
    let gateway = Gateway::start(&config_for(&mock)).await;
    let client = reqwest::Client::new();
    let user = json!([{"role": "user", "content": "hi"}]);
    for body in [
        json!({"model": "openai/gpt-4o-mini", "messages": user, "max_tokens": -1e20}),
        json!({"model": "openai/gpt-4o-mini", "messages": user, "max_tokens": 1e300}),
        json!({"model": "openai/gpt-4o-mini", "messages": user, "max_completion_tokens": 5_000_000_000u64}),
        json!({"model": "openai/gpt-4o-mini", "messages": "hi"}),
        json!({"model": "openai/gpt-4o-mini", "messages": [1, 2]}),
        json!({"model": "openai/gpt-4o-mini", "messages": [{"content": "no role"}]}),
    ] {
        let (status, answer_body) =
            answer(client.post(gateway.url("/v1/chat/completions")).json(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer_body}");
        assert_eq!(
            answer_body["error"]["type"], "invalid_request_error",
            "{answer_body}"
        );
    }
    assert_eq!(
        mock.requests().await,
        0,
        "nothing malformed reaches the provider"
    );
}
