//! Bedrock Mantle, AWS Bedrock's OpenAI-compatible API, as Bifrost configures it
//! (`bedrock_mantle` with `bedrock_mantle_key_config`: IAM credentials and region, or a Bedrock
//! API key as the key's value): the mock checks the SigV4 signature (signing name
//! `bedrock-mantle`) with its own implementation, proven first with the openai SDK signed by
//! botocore; then the gateway's own signed requests, JSON and stream, both caller dialects,
//! deployments, a wrong secret, and API keys as bearer tokens.

use std::time::Duration;

use bifrost_e2e::harness::{
    allow_all, config_for, json_of, run_python_check_with, sse_payloads, wait_until, Deadline,
    Gateway, MockProvider,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const AKID: &str = "AKIDMANTLETEST";
const SECRET: &str = "mantle-test-secret/with+symbols";
const MODEL: &str = "openai.gpt-oss-120b-1:0";

/// The mock checking SigV4 with [`AKID`] / [`SECRET`], and `mantle-api-key` as a bearer key.
async fn signing_mock(extra: &[&str]) -> MockProvider {
    let credentials = format!("{AKID}:{SECRET}");
    let mut args = vec![
        "--aws-credentials",
        credentials.as_str(),
        "--require-key",
        "mantle-api-key",
    ];
    args.extend_from_slice(extra);
    MockProvider::start(&args).await
}

/// [`config_for`] plus `bedrock_mantle` with an IAM key in `us-west-2` (secret `secret`),
/// `gpt-oss` deployed as [`MODEL`], the endpoint moved to the mock.
fn mantle_config(mock: &MockProvider, secret: &str) -> Value {
    let mut config = config_for(mock);
    config["providers"]["bedrock_mantle"] = json!({
        "keys": [{"name": "iam", "models": ["*"], "bedrock_mantle_key_config": {
            "access_key": AKID, "secret_key": secret, "region": "us-west-2",
            "deployments": {"gpt-oss": MODEL}
        }}],
        "network_config": {"base_url": mock.base}
    });
    config
}

/// The mock is what AWS's clients speak to Mantle: the openai SDK with botocore's SigV4 gets
/// its answers, and a wrong secret is refused with AWS's 403.
#[tokio::test]
async fn the_openai_sdk_signed_by_botocore_talks_to_the_mock_as_mantle() {
    let mock = signing_mock(&["--chunks", "3"]).await;
    let credentials = format!("{AKID}:{SECRET}");
    let result = run_python_check_with("mantle_sdk_check.py", &[&mock.base, &credentials]).await;
    assert_eq!(
        result["content"], "mock reply to: hello from mantle",
        "{result}"
    );
    assert_eq!(
        result["streamed"], "mock reply to: streamed from mantle",
        "{result}"
    );
    assert_eq!(result["refused"], 403, "{result}");
    let stats = mock.stats().await;
    assert_eq!(stats["by_key"][AKID], 3, "{stats}");
    assert_eq!(stats["by_region"]["us-west-2"], 3, "{stats}");
}

#[tokio::test]
async fn signed_requests_reach_mantle_in_both_dialects() {
    let mock = signing_mock(&["--chunks", "3"]).await;
    let gateway = Gateway::start(&mantle_config(&mock, SECRET)).await;
    let chat = |stream: bool| {
        json!({"model": "bedrock_mantle/gpt-oss", "stream": stream,
               "stream_options": {"include_usage": stream},
               "messages": [{"role": "user", "content": "hi mantle"}]})
    };
    let (status, body) = gateway
        .post_json("/v1/chat/completions", &chat(false))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = json_of(&body);
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "mock reply to: hi mantle"
    );
    assert_eq!(answer["model"], MODEL, "the deployment was sent: {body}");

    let (status, body) = gateway.post_json("/v1/chat/completions", &chat(true)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text: String = sse_payloads(&body)
        .iter()
        .filter_map(|event| event["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "mock reply to: hi mantle", "{body}");

    let (status, body) = gateway
        .post_json(
            "/anthropic/v1/messages",
            &json!({"model": "bedrock_mantle/gpt-oss", "max_tokens": 32,
                    "messages": [{"role": "user", "content": "from anthropic"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        json_of(&body)["content"][0]["text"],
        "mock reply to: from anthropic"
    );
    let stats = mock.stats().await;
    assert_eq!(stats["by_key"][AKID], 3, "all three signed: {stats}");
    assert_eq!(stats["by_region"]["us-west-2"], 3, "{stats}");
}

/// A wrong secret is the upstream's 403 (a key failure: no other key, so 502 naming AWS's
/// reason); a Bedrock API key goes as a bearer token instead of a signature.
#[tokio::test]
async fn a_wrong_secret_is_refused_and_api_keys_go_as_bearer_tokens() {
    let mock = signing_mock(&[]).await;
    let gateway = Gateway::start(&mantle_config(&mock, "wrong")).await;
    let (status, body) = gateway
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "bedrock_mantle/gpt-oss",
                    "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("signature"), "{body}");
    drop(gateway);

    let mut config = config_for(&mock);
    config["providers"]["bedrock_mantle"] = json!({
        "keys": [{"name": "api-key", "value": "mantle-api-key", "models": ["*"],
                  "bedrock_mantle_key_config": {"region": "us-east-2"}}],
        "network_config": {"base_url": mock.base}
    });
    let gateway = Gateway::start(&config).await;
    let (status, body) = gateway
        .post_json(
            "/v1/chat/completions",
            &json!({"model": format!("bedrock_mantle/{MODEL}"),
                    "messages": [{"role": "user", "content": "bearer"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stats = mock.stats().await;
    assert_eq!(stats["by_key"]["mantle-api-key"], 1, "{stats}");
}

/// Mantle keys are checked by path under Bifrost's field name; `arn` is not Mantle's.
#[tokio::test]
async fn mantle_keys_are_checked_by_path() {
    let (status, stderr) = bifrost_e2e::harness::gateway_rejects(
        &json!({"providers": {"bedrock_mantle": {"keys": [
            {"name": "a", "models": ["*"], "bedrock_mantle_key_config": {"access_key": "AKID"}},
            {"name": "b", "models": ["*"], "bedrock_mantle_key_config": {
                "access_key": "AKID", "secret_key": "s", "arn": "arn:aws:bedrock:us-east-1:1:x"}},
            {"name": "c", "models": ["*"], "bedrock_mantle_key_config": {"region": "US East"}}
        ]}}})
        .to_string(),
    )
    .await;
    assert!(!status.success());
    for path in [
        "providers.bedrock_mantle.keys[0].bedrock_mantle_key_config.secret_key: required with access_key",
        "providers.bedrock_mantle.keys[1].bedrock_mantle_key_config.arn: not read by Bedrock Mantle",
        "providers.bedrock_mantle.keys[2].bedrock_mantle_key_config.region: must be an AWS region",
    ] {
        assert!(stderr.contains(path), "{path} missing from {stderr}");
    }
}

/// Mantle's spend: the alias `gpt-oss` is priced as its deployment (the shipped
/// `openai.gpt-oss-120b` price), JSON and a stream whose usage the caller did not ask for.
#[tokio::test]
async fn mantle_usage_is_charged_at_the_shipped_price() {
    let mock = signing_mock(&["--chunks", "4"]).await;
    let mut config = mantle_config(&mock, SECRET);
    config["client"]["enforce_auth_on_inference"] = json!(true);
    config["governance"] = json!({
        "usage_flush_interval_ms": 100,
        "budgets": [{"id": "m", "max_limit": 100.0, "reset_duration": "1d"}],
        "virtual_keys": [{"id": "k", "value": "sk-bf-mantle", "budget_id": "m",
                          "provider_configs": allow_all(&["bedrock_mantle"])}]
    });
    let gateway = Gateway::start(&config).await;
    let mut prompt_tokens = 0.0;
    for stream in [false, true] {
        let response = reqwest::Client::new()
            .post(gateway.url("/v1/chat/completions"))
            .bearer_auth("sk-bf-mantle")
            .json(&json!({"model": "bedrock_mantle/gpt-oss", "stream": stream,
                          "messages": [{"role": "user", "content": "spend on mantle"}]}))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap_or_default();
        if stream {
            assert!(!text.contains("\"usage\":{"), "not asked for: {text}");
        } else {
            let usage = &json_of(&text)["usage"];
            prompt_tokens = usage["prompt_tokens"].as_f64().unwrap_or(0.0);
            assert_eq!(usage["completion_tokens"], 4, "{text}");
        }
    }
    assert!(prompt_tokens > 0.0);
    let expected = 2.0 * (prompt_tokens * 1.5e-7 + 4.0 * 6e-7);
    wait_until(
        "both answers charged at openai.gpt-oss-120b's price",
        Deadline::after(Duration::from_secs(10)),
        async || gateway.first_budget_usage().await,
        |usd| (usd - expected).abs() < 1e-12,
    )
    .await;
}
