//! Vertex AI as Bifrost configures it (`vertex_key_config`: project, region, the service
//! account's JSON key), against the mock: the gateway signs its own service-account assertion,
//! the mock's Google token endpoint checks it (RS256, against the account's public key) and
//! issues the token the Vertex routes require; Gemini's format both ways for Google's models,
//! Anthropic's at `:rawPredict` for Claude.

use std::path::PathBuf;
use std::time::Duration;

use bifrost_e2e::harness::{
    allow_all, config_for, json_of, run_python_check_with, sse_payloads, wait_until, Deadline,
    Gateway, MockProvider,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ACCOUNT: &str = "gateway@mock-project.iam.gserviceaccount.com";
/// Claude's model id on Vertex AI (`name@version`).
const CLAUDE: &str = "claude-sonnet-4@20250514";
/// The mock's Claude routes, as its stats name them.
const RAW_PREDICT: &str =
    "/v1/projects/{project}/locations/{location}/publishers/anthropic/models/{model}:rawPredict";

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/vertex")
        .join(name)
}

/// The mock accepting [`ACCOUNT`]'s signatures.
async fn google_mock(extra: &[&str]) -> MockProvider {
    let account = format!("{ACCOUNT}={}", testdata("public-key.der").display());
    let mut args = vec!["--google-service-account", account.as_str()];
    args.extend_from_slice(extra);
    MockProvider::start(&args).await
}

/// The test service account's JSON key, its token_uri at the mock.
fn service_account(mock: &MockProvider) -> String {
    let text = std::fs::read_to_string(testdata("service-account.json")).expect("test key");
    let mut key: Value = serde_json::from_str(&text).expect("JSON key");
    key["token_uri"] = json!(format!("{}/token", mock.base));
    key.to_string()
}

/// [`config_for`] plus a Vertex provider whose key is the test service account in
/// `us-central1`, `flash` deployed as `gemini-2.5-flash`, `sonnet` as [`CLAUDE`].
fn vertex_config(mock: &MockProvider) -> Value {
    let mut config = config_for(mock);
    config["providers"]["vertex"] = json!({
        "keys": [{"name": "sa", "models": ["*"], "vertex_key_config": {
            "project_id": "mock-project", "region": "us-central1",
            "auth_credentials": service_account(mock),
            "deployments": {"flash": "gemini-2.5-flash", "sonnet": CLAUDE}
        }}],
        "network_config": {"base_url": mock.base}
    });
    config
}

fn chat(content: &str, stream: bool) -> Value {
    json!({"model": "vertex/flash", "stream": stream, "stream_options": {"include_usage": stream},
           "messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": content}]})
}

#[tokio::test]
async fn a_service_account_token_reaches_the_projects_gemini_models() {
    let mock = google_mock(&["--chunks", "3"]).await;
    let gateway = Gateway::start(&vertex_config(&mock)).await;

    let (status, body) = gateway
        .post_json("/v1/chat/completions", &chat("hello vertex", false))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = json_of(&body);
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "mock reply to: hello vertex"
    );
    assert_eq!(answer["usage"]["completion_tokens"], 3, "{answer}");

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

    let (status, body) = gateway
        .post_json(
            "/anthropic/v1/messages",
            &json!({"model": "vertex/flash", "max_tokens": 32,
                    "messages": [{"role": "user", "content": "from anthropic"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        json_of(&body)["content"][0]["text"],
        "mock reply to: from anthropic"
    );

    let stats = mock.stats().await;
    assert_eq!(
        stats["google_token_requests"], 1,
        "one token for all three: {stats}"
    );
    assert_eq!(stats["by_key"][format!("sa:{ACCOUNT}")], 3, "{stats}");
    assert_eq!(stats["by_location"]["us-central1"], 3, "{stats}");
    assert_eq!(
        stats["by_model"]["gemini-2.5-flash"], 3,
        "the deployment's model: {stats}"
    );
}

#[tokio::test]
async fn embeddings_are_refused_naming_vertex() {
    let mock = google_mock(&[]).await;
    let gateway = Gateway::start(&vertex_config(&mock)).await;
    let (status, body) = gateway
        .post_json(
            "/v1/embeddings",
            &json!({"model": "vertex/text-embedding-005", "input": "hi"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("provider \\\"vertex\\\" (Vertex AI) has no embeddings endpoint"),
        "{body}"
    );
    assert_eq!(mock.requests().await, 0, "nothing was sent: {body}");
}

#[tokio::test]
async fn an_account_the_token_endpoint_does_not_know_is_answered_with_googles_reason() {
    // The mock knows another service account only: the assertion is refused.
    let other = format!(
        "someone@else.iam.gserviceaccount.com={}",
        testdata("public-key.der").display()
    );
    let mock = MockProvider::start(&["--google-service-account", other.as_str()]).await;
    let gateway = Gateway::start(&vertex_config(&mock)).await;
    let (status, body) = gateway
        .post_json("/v1/chat/completions", &chat("hi", false))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body.contains(&format!("Google token for {ACCOUNT}")) && body.contains("account not found"),
        "{body}"
    );
}

#[tokio::test]
async fn vertex_keys_are_checked_by_path() {
    let (status, stderr) = bifrost_e2e::harness::gateway_rejects(
        &json!({"providers": {"vertex": {"keys": [
            {"name": "a", "value": "k", "models": ["*"]},
            {"name": "b", "models": ["*"], "vertex_key_config": {"project_id": "My Project", "region": "us-central1",
                                                                "auth_credentials": "/nonexistent/key.json"}},
            {"name": "c", "models": ["*"], "vertex_key_config": {"project_id": "p", "region": "us-central1",
                                                                "auth_credentials": "{\"type\": \"authorized_user\"}"}},
            {"name": "d", "models": ["*"]}
        ]}}})
        .to_string(),
    )
    .await;
    assert!(!status.success());
    for path in [
        "providers.vertex.keys[3].vertex_key_config: required for Vertex AI",
        "providers.vertex.keys[1].vertex_key_config.project_id: must be a Google Cloud project id",
        "providers.vertex.keys[1].vertex_key_config.auth_credentials: cannot read the service account key file /nonexistent/key.json (auth_credentials)",
        "providers.vertex.keys[2].vertex_key_config.auth_credentials: not a service account's JSON key",
    ] {
        assert!(stderr.contains(path), "{path} missing from {stderr}");
    }
}

/// A Vertex API key without a project (express mode): the publisher's models at the global
/// endpoint, the key in `x-goog-api-key`.
#[tokio::test]
async fn a_vertex_api_key_reaches_the_publishers_models_in_express_mode() {
    let mock = MockProvider::start(&["--require-key", "vx-express-key"]).await;
    let mut config = config_for(&mock);
    config["providers"]["vertex"] = json!({
        "keys": [{"name": "express", "value": "vx-express-key", "models": ["*"]}],
        "network_config": {"base_url": mock.base}
    });
    let gateway = Gateway::start(&config).await;
    let mut body = chat("express", false);
    body["model"] = json!("vertex/gemini-2.5-flash");
    let (status, text) = gateway.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        json_of(&text)["choices"][0]["message"]["content"],
        "mock reply to: express"
    );
    let stats = mock.stats().await;
    assert_eq!(stats["by_key"]["vx-express-key"], 1, "{stats}");
    assert_eq!(stats["by_model"]["gemini-2.5-flash"], 1, "{stats}");
}

/// Claude on Vertex AI: an OpenAI caller's chat, stream and tool call go to the project's
/// `publishers/anthropic` model as Anthropic's Messages (the mock refuses a body with `model`
/// or without Vertex's `anthropic_version`), with the service account's token, and come back
/// in OpenAI's format.
#[tokio::test]
async fn claude_models_on_vertex_are_spoken_to_in_anthropics_format() {
    let mock = google_mock(&["--chunks", "3"]).await;
    let gateway = Gateway::start(&vertex_config(&mock)).await;
    let mut body = chat("hello claude", false);
    body["model"] = json!("vertex/sonnet");
    let (status, text) = gateway.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let answer = json_of(&text);
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "mock reply to: hello claude"
    );
    assert_eq!(answer["usage"]["completion_tokens"], 3, "{answer}");

    let mut body = chat("streamed claude", true);
    body["model"] = json!("vertex/sonnet");
    let (status, text) = gateway.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let events = sse_payloads(&text);
    let streamed: String = events
        .iter()
        .filter_map(|event| event["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, "mock reply to: streamed claude", "{text}");
    let usage = events.iter().find(|event| event["usage"].is_object());
    assert_eq!(
        usage.map(|event| event["usage"]["completion_tokens"].clone()),
        Some(json!(3)),
        "{text}"
    );

    // A model named by its id finds Claude too, without a deployment.
    let (status, text) = gateway
        .post_json(
            "/v1/chat/completions",
            &json!({"model": format!("vertex/{CLAUDE}"),
                    "messages": [{"role": "user", "content": "weather?"}],
                    "tools": [{"type": "function", "function": {"name": "get_weather",
                        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                       "required": ["city"]}}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let called = json_of(&text);
    assert_eq!(
        called["choices"][0]["finish_reason"], "tool_calls",
        "{text}"
    );
    let call = &called["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_weather", "{text}");
    assert_eq!(
        call["arguments"],
        json!({"city": "mock"}).to_string(),
        "{text}"
    );

    let stats = mock.stats().await;
    assert_eq!(stats["by_route"][RAW_PREDICT], 2, "{stats}");
    assert_eq!(
        stats["by_route"][RAW_PREDICT.replace(":rawPredict", ":streamRawPredict")],
        1,
        "{stats}"
    );
    assert_eq!(stats["by_model"][CLAUDE], 3, "{stats}");
    assert_eq!(stats["by_key"][format!("sa:{ACCOUNT}")], 3, "{stats}");
    assert_eq!(stats["google_token_requests"], 1, "{stats}");
}

/// The official SDKs as callers of Claude on Vertex AI: `anthropic`'s messages pass through in
/// Anthropic's format (message, stream, tool use), `openai`'s are translated (chat, stream with
/// usage, tool call).
#[tokio::test]
async fn both_sdks_reach_claude_on_vertex_through_the_gateway() {
    let mock = google_mock(&["--chunks", "3"]).await;
    let gateway = Gateway::start(&vertex_config(&mock)).await;
    let result =
        run_python_check_with("anthropic_sdk_check.py", &[&gateway.base, "vertex/sonnet"]).await;
    assert_eq!(
        result["content"], "mock reply to: hello from the anthropic sdk",
        "{result}"
    );
    assert!(result["input_tokens"].as_u64() > Some(0), "{result}");
    assert_eq!(
        result["streamed"],
        "mock reply to: streamed through the anthropic sdk"
    );
    assert_eq!(result["stream_output_tokens"], 3, "{result}");
    assert_eq!(result["stop_reason"], "tool_use", "{result}");
    assert_eq!(result["tool"], "get_weather");
    assert_eq!(result["input"], json!({"city": "mock"}));

    let result = run_python_check_with(
        "openai_on_gemini_check.py",
        &[&gateway.base, "vertex/sonnet"],
    )
    .await;
    assert_eq!(
        result["content"], "mock reply to: hello from the openai sdk",
        "{result}"
    );
    assert_eq!(result["streamed"], "mock reply to: streamed to gemini");
    assert_eq!(result["stream_completion_tokens"], 3, "{result}");
    assert_eq!(result["tool"], "get_weather");
    assert_eq!(result["arguments"], json!({"city": "mock"}));
    assert_eq!(result["finish_reason"], "tool_calls");
    let stats = mock.stats().await;
    assert_eq!(stats["by_model"][CLAUDE], 6, "all six on Claude: {stats}");
}

/// Claude on Vertex AI is charged at Anthropic's list price (the shipped table's
/// `claude-sonnet-4`), JSON and stream.
#[tokio::test]
async fn claude_on_vertex_is_charged_at_anthropics_list_price() {
    let mock = google_mock(&["--chunks", "4"]).await;
    let mut config = vertex_config(&mock);
    config["client"]["enforce_auth_on_inference"] = json!(true);
    config["governance"] = json!({
        "usage_flush_interval_ms": 100,
        "budgets": [{"id": "v", "max_limit": 100.0, "reset_duration": "1d"}],
        "virtual_keys": [{"id": "k", "value": "sk-bf-vertex", "budget_id": "v",
                          "provider_configs": allow_all(&["vertex"])}]
    });
    let gateway = Gateway::start(&config).await;
    let mut prompt_tokens = 0.0;
    for stream in [false, true] {
        let mut body = chat("spend on claude", stream);
        body["model"] = json!("vertex/sonnet");
        let response = reqwest::Client::new()
            .post(gateway.url("/v1/chat/completions"))
            .bearer_auth("sk-bf-vertex")
            .json(&body)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap_or_default();
        if !stream {
            let usage = &json_of(&text)["usage"];
            prompt_tokens = usage["prompt_tokens"].as_f64().unwrap_or(0.0);
            assert_eq!(usage["completion_tokens"], 4, "{text}");
        }
    }
    assert!(prompt_tokens > 0.0);
    let expected = 2.0 * (prompt_tokens * 0.000003 + 4.0 * 0.000015);
    wait_until(
        "both answers charged at claude-sonnet-4's price",
        Deadline::after(Duration::from_secs(10)),
        async || gateway.first_budget_usage().await,
        |usd| (usd - expected).abs() < 1e-12,
    )
    .await;
}

/// Application Default Credentials and key files: `auth_credentials` may be the path of the
/// key file; without it, the file `GOOGLE_APPLICATION_CREDENTIALS` names; without that, the
/// metadata server (`GCE_METADATA_HOST`, the mock here). Each reaches the same models with its
/// own kind of token.
#[tokio::test]
async fn key_files_and_application_default_credentials_get_tokens() {
    let mock = google_mock(&["--chunks", "2"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("service-account.json");
    std::fs::write(&key_file, service_account(&mock)).expect("key file");
    let key_file = key_file.to_str().expect("a UTF-8 path").to_owned();
    let with_credentials = |credentials: Option<&str>| {
        let mut config = vertex_config(&mock);
        let vertex = &mut config["providers"]["vertex"]["keys"][0]["vertex_key_config"];
        match credentials {
            Some(text) => vertex["auth_credentials"] = json!(text),
            None => {
                if let Some(fields) = vertex.as_object_mut() {
                    fields.remove("auth_credentials");
                }
            }
        }
        config
    };
    let ask = async |gateway: &Gateway, text: &str| {
        let (status, body) = gateway
            .post_json("/v1/chat/completions", &chat(text, false))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            json_of(&body)["choices"][0]["message"]["content"],
            format!("mock reply to: {text}")
        );
    };

    // The key file's path in auth_credentials: the service account's own assertion.
    let gateway = Gateway::start(&with_credentials(Some(&key_file))).await;
    ask(&gateway, "from a key file").await;
    let stats = mock.stats().await;
    assert_eq!(stats["google_token_requests"], 1, "{stats}");
    drop(gateway);

    // No auth_credentials: GOOGLE_APPLICATION_CREDENTIALS names the file.
    let config = with_credentials(None);
    let gateway =
        Gateway::start_with(&config, &[("GOOGLE_APPLICATION_CREDENTIALS", &key_file)]).await;
    ask(&gateway, "from adc").await;
    let stats = mock.stats().await;
    assert_eq!(stats["google_token_requests"], 2, "{stats}");
    assert_eq!(stats["metadata_token_requests"], 0, "{stats}");
    drop(gateway);

    // Neither: the metadata server's token for the machine's account.
    let host = mock.base.trim_start_matches("http://").to_owned();
    let gateway = Gateway::start_with(&config, &[("GCE_METADATA_HOST", &host)]).await;
    ask(&gateway, "on google cloud").await;
    ask(&gateway, "again").await;
    let stats = mock.stats().await;
    assert_eq!(stats["metadata_token_requests"], 1, "cached: {stats}");
    assert_eq!(stats["google_token_requests"], 2, "{stats}");
    assert_eq!(stats["by_key"][format!("sa:{ACCOUNT}")], 4, "{stats}");
}

/// Off Google Cloud, a key without credentials fails its requests with a 502 that says where
/// the gateway looked and what to configure.
#[tokio::test]
async fn without_any_google_credentials_the_answer_says_what_to_configure() {
    let mock = google_mock(&[]).await;
    let mut config = vertex_config(&mock);
    if let Some(fields) =
        config["providers"]["vertex"]["keys"][0]["vertex_key_config"].as_object_mut()
    {
        fields.remove("auth_credentials");
    }
    // A metadata server address where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let host = closed.local_addr().expect("address").to_string();
    drop(closed);
    let gateway = Gateway::start_with(&config, &[("GCE_METADATA_HOST", &host)]).await;
    let (status, body) = gateway
        .post_json("/v1/chat/completions", &chat("hi", false))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("metadata server"), "{body}");
    assert!(body.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{body}");
    assert_eq!(mock.requests().await, 0, "nothing reached Vertex: {body}");
}

/// Claude's errors on Vertex AI reach the caller in its own format: an upstream 400 as a 400
/// (not retried), a 429 as the upstream failure it is (502 after the attempt, naming it), in
/// OpenAI's and Anthropic's shapes.
#[tokio::test]
async fn claudes_errors_on_vertex_answer_in_the_callers_format() {
    let mock = google_mock(&[]).await;
    let gateway = Gateway::start(&vertex_config(&mock)).await;
    mock.configure(json!({"fail_next": 1, "fail_statuses": [400]}))
        .await;
    let (status, body) = gateway
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "vertex/sonnet",
                    "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(json_of(&body)["error"]["message"].is_string(), "{body}");

    mock.configure(json!({"fail_next": 1, "fail_statuses": [429]}))
        .await;
    let (status, body) = gateway
        .post_json(
            "/anthropic/v1/messages",
            &json!({"model": "vertex/sonnet", "max_tokens": 10,
                    "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let error = json_of(&body);
    assert_eq!(error["type"], "error", "{body}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("vertex returned 429")),
        "{error}"
    );
    let stats = mock.stats().await;
    assert_eq!(stats["by_route"][RAW_PREDICT], 2, "{stats}");
}
