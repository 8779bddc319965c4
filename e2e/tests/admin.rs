//! The admin API: CRUD through the config store, validation that names the field, masked
//! secrets, references protected on delete, and authentication.

use bifrost_e2e::harness::{any_provider, config_for, Gateway, MockProvider};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn with_store(mock: &MockProvider) -> Value {
    let mut config = config_for(mock);
    config["config_store"] = json!({"enabled": true, "type": "sqlite"});
    config["client"]["enforce_auth_on_inference"] = json!(true);
    config
}

async fn call(
    method: reqwest::Method,
    gateway: &Gateway,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, gateway.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("answered");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn governance_created_through_the_api_is_enforced_at_once() {
    let mock = MockProvider::start(&[]).await;
    let gateway = Gateway::start(&with_store(&mock)).await;
    let (status, body) = call(
        reqwest::Method::POST,
        &gateway,
        "/api/governance/budgets",
        Some(json!({"id": "b1", "max_limit": 5.0, "reset_duration": "1M"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = call(
        reqwest::Method::POST,
        &gateway,
        "/api/governance/virtual-keys",
        Some(json!({"id": "api-made", "value": "sk-bf-made-by-the-admin-api", "provider_configs": any_provider(), "budget_id": "b1"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["value"], "sk-bf-…-api",
        "the value is never returned in full"
    );

    let chat =
        json!({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth("sk-bf-made-by-the-admin-api")
        .json(&chat)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);

    // Deactivate by PUT with the masked value sent back: the secret is kept.
    let (_, mut vk) = call(
        reqwest::Method::GET,
        &gateway,
        "/api/governance/virtual-keys/api-made",
        None,
    )
    .await;
    vk["is_active"] = json!(false);
    let (status, body) = call(
        reqwest::Method::PUT,
        &gateway,
        "/api/governance/virtual-keys/api-made",
        Some(vk),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth("sk-bf-made-by-the-admin-api")
        .json(&chat)
        .send()
        .await
        .expect("answered");
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "inactive now, same secret"
    );

    let (status, body) = call(
        reqwest::Method::DELETE,
        &gateway,
        "/api/governance/budgets/b1",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("api-made"),
        "{body}"
    );
    let (status, _) = call(
        reqwest::Method::DELETE,
        &gateway,
        "/api/governance/virtual-keys/api-made",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(
        reqwest::Method::DELETE,
        &gateway,
        "/api/governance/budgets/b1",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(
        reqwest::Method::GET,
        &gateway,
        "/api/governance/budgets/b1",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invalid_writes_name_the_field() {
    let mock = MockProvider::start(&[]).await;
    let gateway = Gateway::start(&with_store(&mock)).await;
    let (status, body) = call(
        reqwest::Method::POST,
        &gateway,
        "/api/governance/virtual-keys",
        Some(json!({"id": "v", "value": "sk-bf-xxxxxxxxxxxx", "provider_configs": any_provider(), "budget_id": "missing"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("budget_id: no budget"),
        "{body}"
    );
    let (status, body) = call(
        reqwest::Method::POST,
        &gateway,
        "/api/governance/rate-limits",
        Some(json!({"id": "r", "request_max_limit": "ten"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("request_max_limit:"),
        "{body}"
    );
    let (status, body) = call(
        reqwest::Method::POST,
        &gateway,
        "/api/governance/budgets",
        Some(json!({"id": "b", "max_limit": 1, "reset_duration": "1 fortnight"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("reset_duration"),
        "{body}"
    );
}

#[tokio::test]
async fn provider_keys_are_masked_and_kept_on_update() {
    let mock = MockProvider::start(&["--require-key", "sk-upstream-secret-value"]).await;
    let mut config = with_store(&mock);
    config["client"]["enforce_auth_on_inference"] = json!(false);
    let gateway = Gateway::start(&config).await;
    let (status, body) = call(
        reqwest::Method::PUT,
        &gateway,
        "/api/providers/extra",
        Some(
            json!({"keys": [{"name": "main", "value": "sk-upstream-secret-value", "models": ["*"]}],
                    "network_config": {"base_url": mock.base}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, listed) = call(reqwest::Method::GET, &gateway, "/api/providers", None).await;
    let text = listed.to_string();
    assert!(
        !text.contains("sk-upstream-secret-value"),
        "no secret in listings: {text}"
    );
    let (_, mut provider) =
        call(reqwest::Method::GET, &gateway, "/api/providers/extra", None).await;
    provider["network_config"]["max_retries"] = json!(1);
    let (status, body) = call(
        reqwest::Method::PUT,
        &gateway,
        "/api/providers/extra",
        Some(provider),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .json(
            &json!({"model": "extra/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the real key survived the round trip"
    );
}

#[tokio::test]
async fn configured_credentials_are_required() {
    let mock = MockProvider::start(&[]).await;
    let mut config = with_store(&mock);
    config["governance"] = json!({"auth_config": {
        "is_enabled": true, "admin_username": "admin", "admin_password": "env.TEST_ADMIN_PASSWORD"
    }});
    let gateway = Gateway::start_with(
        &config,
        &[
            ("TEST_ADMIN_PASSWORD", "hunter2"),
            ("BIFROST_ADMIN_TOKEN", "tok-123"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status();
    let anonymous = client
        .get(gateway.url("/api/providers"))
        .send()
        .await
        .expect("answered");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let wrong = client
        .get(gateway.url("/api/providers"))
        .basic_auth("admin", Some("nope"))
        .send()
        .await
        .expect("answered");
    assert_eq!(status(wrong), StatusCode::UNAUTHORIZED);
    let basic = client
        .get(gateway.url("/api/providers"))
        .basic_auth("admin", Some("hunter2"))
        .send()
        .await
        .expect("answered");
    assert_eq!(status(basic), StatusCode::OK);
    let bearer = client
        .get(gateway.url("/api/providers"))
        .bearer_auth("tok-123")
        .send()
        .await
        .expect("answered");
    assert_eq!(status(bearer), StatusCode::OK);
}
