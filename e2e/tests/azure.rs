//! Azure OpenAI as Bifrost configures it (`azure_key_config`: endpoint, deployments,
//! api_version), against the mock's Azure routes: the deployment in the path, `api-version` in
//! the query, the key in `api-key`.

use bifrost_e2e::harness::{config_for, parse_sse, run_python_check, Gateway, MockProvider};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn post(gateway: &Gateway, path: &str, body: Value) -> (StatusCode, String) {
    let response = reqwest::Client::new()
        .post(gateway.url(path))
        .json(&body)
        .send()
        .await
        .expect("answered");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn chat_streams_and_embeddings_reach_the_models_deployment() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    config["providers"]["azure"] = json!({"keys": [{
        "name": "eastus", "value": "sk-azure-eastus", "weight": 1,
        "azure_key_config": {"endpoint": format!("{}/", mock.base),
                             "deployments": {"gpt-4o": "prod-4o"},
                             "api_version": "2024-10-21"},
        "models": ["text-embedding-3-small"]
    }]});
    let gateway = Gateway::start(&config).await;
    let chat = |stream: bool| {
        json!({"model": "azure/gpt-4o", "stream": stream,
               "messages": [{"role": "user", "content": "hi"}]})
    };
    let (status, body) = post(&gateway, "/v1/chat/completions", chat(false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert!(
        answer["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("mock reply")),
        "{answer}"
    );
    let (status, body) = post(&gateway, "/v1/chat/completions", chat(true)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = parse_sse(&body);
    assert_eq!(
        events.last().map(|(_, data)| data.as_str()),
        Some("[DONE]"),
        "{body}"
    );
    let (status, body) = post(
        &gateway,
        "/v1/embeddings",
        json!({"model": "azure/text-embedding-3-small", "input": "hi"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let stats = mock.stats().await;
    assert_eq!(stats["by_deployment"]["prod-4o"], 2, "{stats}");
    assert_eq!(
        stats["by_deployment"]["text-embedding-3-small"], 1,
        "{stats}"
    );
    assert_eq!(
        stats["by_key"]["sk-azure-eastus"], 3,
        "the key went as api-key: {stats}"
    );

    let (status, _) = post(
        &gateway,
        "/v1/chat/completions",
        json!({"model": "azure/gpt-35", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a model the key does not serve"
    );
}

#[tokio::test]
async fn without_an_api_version_the_v1_api_is_used() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    config["providers"]["azure"] = json!({"keys": [{
        "name": "v1", "value": "sk-azure-v1", "weight": 1,
        "azure_key_config": {"endpoint": mock.base},
        "models": ["gpt-4o-mini"]
    }]});
    let gateway = Gateway::start(&config).await;
    let (status, body) = post(
        &gateway,
        "/v1/chat/completions",
        json!({"model": "azure/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stats = mock.stats().await;
    assert_eq!(stats["by_deployment"]["gpt-4o-mini"], 1, "{stats}");
    assert_eq!(stats["by_key"]["sk-azure-v1"], 1, "{stats}");
}

/// Azure's v1 API with `deployments`: the deployment goes in the body's `model` (chat, stream
/// and embeddings), the caller's own text untouched.
#[tokio::test]
async fn on_the_v1_api_the_deployment_is_the_bodys_model() {
    let mock = MockProvider::start(&["--chunks", "2"]).await;
    let mut config = config_for(&mock);
    config["providers"]["azure"] = json!({"keys": [{
        "name": "v1", "value": "sk-azure-v1",
        "azure_key_config": {"endpoint": mock.base,
                             "deployments": {"gpt-4o": "prod-4o", "text-embedding-3-small": "emb"}},
        "models": []
    }]});
    let gateway = Gateway::start(&config).await;
    for stream in [false, true] {
        let (status, body) = post(
            &gateway,
            "/v1/chat/completions",
            json!({"model": "azure/gpt-4o", "stream": stream,
                   "messages": [{"role": "user", "content": "gpt-4o hi"}]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if !stream {
            let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            assert_eq!(
                answer["choices"][0]["message"]["content"],
                "mock reply to: gpt-4o hi"
            );
        }
    }
    let (status, body) = post(
        &gateway,
        "/v1/embeddings",
        json!({"model": "azure/text-embedding-3-small", "input": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stats = mock.stats().await;
    assert_eq!(stats["by_deployment"]["prod-4o"], 2, "{stats}");
    assert_eq!(stats["by_deployment"]["emb"], 1, "{stats}");
    assert!(stats["by_deployment"].get("gpt-4o").is_none(), "{stats}");
}

#[tokio::test]
async fn an_azure_key_needs_its_resource_and_a_whole_entra_application() {
    let (status, stderr) = bifrost_e2e::harness::gateway_rejects(
        &json!({"providers": {"azure": {"keys": [
            {"name": "a", "value": "k", "models": ["*"]},
            {"name": "b", "models": ["*"],
             "azure_key_config": {"endpoint": "https://r.openai.azure.com",
                                  "client_id": "app", "client_secret": "s"}}
        ]}}})
        .to_string(),
    )
    .await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    for path in [
        "providers.azure.keys[0].azure_key_config: required for Azure OpenAI",
        "providers.azure.keys[1].azure_key_config.tenant_id: required for Entra ID",
    ] {
        assert!(stderr.contains(path), "{path} missing from {stderr}");
    }
}

/// The mock's Azure routes are what Azure's official client speaks: the `openai` package's
/// `AzureOpenAI` (installed by `make test-deps`) gets answers from it directly.
#[tokio::test]
async fn the_mock_speaks_what_the_azure_openai_sdk_sends() {
    let mock = MockProvider::start(&["--chunks", "3"]).await;
    let result = run_python_check("azure_sdk_check.py", &mock.base).await;
    assert_eq!(result["content"], "mock reply to: hello from the azure sdk");
    assert_eq!(result["streamed"], "mock reply to: streamed to azure");
    assert!(result["dimensions"].as_u64().unwrap_or(0) > 0, "{result}");
    let stats = mock.stats().await;
    assert_eq!(stats["by_deployment"]["prod-4o"], 2, "{stats}");
    assert_eq!(stats["by_deployment"]["embed-small"], 1, "{stats}");
    assert_eq!(
        stats["by_key"]["sk-azure-sdk"], 3,
        "sent as api-key: {stats}"
    );
}

/// A caller's own key on Azure goes to the configured resource, as `api-key`.
#[tokio::test]
async fn a_direct_key_on_azure_goes_to_the_resource_as_api_key() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    config["client"]["allow_direct_keys"] = json!(true);
    config["providers"]["azure"] = json!({"keys": [{
        "name": "eastus", "value": "sk-azure-configured", "weight": 1,
        "azure_key_config": {"endpoint": mock.base, "api_version": "2024-10-21",
                             "deployments": {"gpt-4o": "prod-4o"}}
    }]});
    let gateway = Gateway::start(&config).await;
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .header("x-bf-direct-key", "true")
        .header("authorization", "Bearer sk-callers-azure-key")
        .json(&json!({"model": "azure/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    let stats = mock.stats().await;
    assert_eq!(stats["by_key"]["sk-callers-azure-key"], 1, "{stats}");
    assert!(
        stats["by_key"].get("sk-azure-configured").is_none(),
        "{stats}"
    );
    assert_eq!(stats["by_deployment"]["prod-4o"], 1, "{stats}");
}

/// An Azure key as an Entra ID application, the mock playing Entra's token endpoint
/// (`AZURE_AUTHORITY_HOST` points at it): the token is fetched once, sent as a bearer on every
/// request, and fetched again before it expires.
#[tokio::test]
async fn an_entra_application_gets_a_token_reuses_it_and_renews_it_before_it_expires() {
    let mock = MockProvider::start(&[
        "--entra-client",
        "tenant-1:app-1:s3cret",
        "--entra-token-ttl-secs",
        "2",
    ])
    .await;
    let mut config = config_for(&mock);
    config["providers"]["azure"] = json!({"keys": [{
        "name": "entra", "models": ["gpt-4o"],
        "azure_key_config": {"endpoint": mock.base, "api_version": "2024-10-21",
                             "deployments": {"gpt-4o": "prod-4o"},
                             "client_id": "app-1", "client_secret": "s3cret", "tenant_id": "tenant-1"}
    }]});
    let gateway = Gateway::start_with(&config, &[("AZURE_AUTHORITY_HOST", &mock.base)]).await;
    let chat = json!({"model": "azure/gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..2 {
        let (status, body) = post(&gateway, "/v1/chat/completions", chat.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let stats = mock.stats().await;
    assert_eq!(stats["token_requests"], 1, "one token for both: {stats}");
    assert_eq!(
        stats["by_key"]["entra:app-1"], 2,
        "sent as the bearer: {stats}"
    );
    // A 2 s token is renewed after 1 s; every request meanwhile is answered.
    bifrost_e2e::harness::wait_until(
        "the token to be renewed",
        bifrost_e2e::harness::Deadline::after(std::time::Duration::from_secs(10))
            .polling_every(std::time::Duration::from_millis(200)),
        async || {
            let (status, body) = post(&gateway, "/v1/chat/completions", chat.clone()).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            mock.stats().await["token_requests"].as_u64().unwrap_or(0)
        },
        |tokens| *tokens >= 2,
    )
    .await;
}

/// A wrong application secret: the key's attempt fails with Entra's own reason.
#[tokio::test]
async fn a_wrong_entra_secret_is_answered_with_entras_reason() {
    let mock = MockProvider::start(&["--entra-client", "tenant-1:app-1:s3cret"]).await;
    let mut config = config_for(&mock);
    config["providers"]["azure"] = json!({"keys": [{
        "name": "entra", "models": ["gpt-4o"],
        "azure_key_config": {"endpoint": mock.base, "api_version": "2024-10-21",
                             "client_id": "app-1", "client_secret": "wrong", "tenant_id": "tenant-1"}
    }]});
    let gateway = Gateway::start_with(&config, &[("AZURE_AUTHORITY_HOST", &mock.base)]).await;
    let (status, body) = post(
        &gateway,
        "/v1/chat/completions",
        json!({"model": "azure/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body.contains("Entra ID token for client app-1") && body.contains("AADSTS7000215"),
        "{body}"
    );
    let stats = mock.stats().await;
    assert_eq!(
        stats["by_deployment"]["gpt-4o"],
        Value::Null,
        "nothing reached Azure without a token: {stats}"
    );
}
