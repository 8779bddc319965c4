//! AWS Bedrock as Bifrost configures it (`bedrock_key_config`: IAM credentials, region,
//! deployments, ARN), against the mock's Converse API, which checks every SigV4 signature with
//! its own implementation: OpenAI and Anthropic callers, JSON and event streams, tools, usage
//! charged, errors in the caller's format.

use std::time::Duration;

use bifrost_e2e::harness::{
    allow_all, config_for, json_of, parse_sse, sse_payloads, wait_until, Deadline, Gateway,
    MockProvider,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const AKID: &str = "AKIDGATEWAYTEST";
const SECRET: &str = "gateway-test-secret/with+symbols";
const MODEL: &str = "bedrock/claude-haiku";
const MODEL_ID: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";

/// The mock checking SigV4 with [`AKID`] / [`SECRET`].
async fn signing_mock(extra: &[&str]) -> MockProvider {
    let credentials = format!("{AKID}:{SECRET}");
    let mut args = vec!["--aws-credentials", credentials.as_str()];
    args.extend_from_slice(extra);
    MockProvider::start(&args).await
}

/// [`config_for`] plus a Bedrock provider `bedrock` whose key signs with [`AKID`] in
/// `us-west-2`, `claude-haiku` deployed as [`MODEL_ID`].
fn bedrock_config(mock: &MockProvider, secret: &str) -> Value {
    let mut config = config_for(mock);
    config["providers"]["bedrock"] = json!({
        "keys": [{"name": "iam", "models": ["*"], "bedrock_key_config": {
            "access_key": AKID, "secret_key": secret, "region": "us-west-2",
            "deployments": {"claude-haiku": MODEL_ID}
        }}],
        "network_config": {"base_url": mock.base}
    });
    config
}

fn chat(content: &str, stream: bool) -> Value {
    json!({"model": MODEL, "stream": stream, "stream_options": {"include_usage": stream},
           "messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": content}]})
}

#[tokio::test]
async fn signed_chat_and_streams_reach_the_deployed_model() {
    let mock = signing_mock(&["--chunks", "3"]).await;
    let gateway = Gateway::start(&bedrock_config(&mock, SECRET)).await;

    let (status, body) = gateway
        .post_json("/v1/chat/completions", &chat("hello bedrock", false))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = json_of(&body);
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "mock reply to: hello bedrock"
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert!(
        answer["usage"]["prompt_tokens"].as_u64() > Some(0),
        "{answer}"
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
    assert_eq!(events.last(), Some(&json!("[DONE]")), "{body}");
    assert_eq!(
        events[events.len() - 2]["usage"]["completion_tokens"],
        3,
        "{body}"
    );

    let stats = mock.stats().await;
    assert_eq!(
        stats["by_model"][MODEL_ID], 2,
        "the deployment's model id: {stats}"
    );
    assert_eq!(
        stats["by_key"][AKID], 2,
        "both signed with the key: {stats}"
    );
    assert_eq!(
        stats["by_region"]["us-west-2"], 2,
        "the key's region scoped the signatures: {stats}"
    );
}

#[tokio::test]
async fn a_wrong_secret_fails_the_signature_check_and_is_answered_in_the_callers_format() {
    let mock = signing_mock(&[]).await;
    let gateway = Gateway::start(&bedrock_config(&mock, "not-the-secret")).await;
    // A refused key is a failed attempt (401/403 move on to other keys, as for every
    // provider): with no other key, 502 naming Bedrock's 403 and its reason.
    let (status, body) = gateway
        .post_json("/v1/chat/completions", &chat("hi", false))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let error = json_of(&body);
    assert!(
        error["error"]["message"].as_str().is_some_and(
            |m| m.contains("403") && m.contains("signature we calculated does not match")
        ),
        "{error}"
    );
    let (status, body) = gateway.post_json("/anthropic/v1/messages",
        &json!({"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(
        json_of(&body)["type"],
        "error",
        "Anthropic's error format: {body}"
    );
}

#[tokio::test]
async fn an_inference_profile_arn_is_the_model_id_and_temporary_credentials_are_signed() {
    let mock = signing_mock(&[]).await;
    let mut config = bedrock_config(&mock, SECRET);
    let key = &mut config["providers"]["bedrock"]["keys"][0]["bedrock_key_config"];
    key["arn"] = json!("arn:aws:bedrock:us-west-2:123456789012:inference-profile");
    key["deployments"] = json!({"claude-haiku": "us.anthropic.claude-3-5-haiku-20241022-v1:0"});
    key["session_token"] = json!("FwoGZXIvYXdzEXAMPLE//token==");
    let gateway = Gateway::start(&config).await;
    let (status, body) = gateway
        .post_json("/v1/chat/completions", &chat("through a profile", false))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stats = mock.stats().await;
    let profile = "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0";
    assert_eq!(stats["by_model"][profile], 1, "{stats}");
}

#[tokio::test]
async fn tool_calls_round_trip_through_converse() {
    let mock = signing_mock(&[]).await;
    let gateway = Gateway::start(&bedrock_config(&mock, SECRET)).await;
    let tools = json!([{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let mut body = json!({"model": MODEL, "tools": tools,
                          "messages": [{"role": "user", "content": "weather in Paris?"}]});
    let (status, text) = gateway.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let answer = json_of(&text);
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{answer}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments = json_of(call["function"]["arguments"].as_str().unwrap_or_default());
    assert_eq!(arguments, json!({"city": "mock"}));

    let messages = body["messages"].as_array_mut().expect("messages");
    messages.push(choice["message"].clone());
    messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": "21 degrees"}));
    let (status, text) = gateway.post_json("/v1/chat/completions", &body).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the tool result went back by toolUseId: {text}"
    );
    assert_eq!(
        json_of(&text)["choices"][0]["finish_reason"],
        "stop",
        "{text}"
    );

    body["stream"] = json!(true);
    body["messages"] = json!([{"role": "user", "content": "weather in Oslo?"}]);
    let (status, text) = gateway.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let events = sse_payloads(&text);
    let arguments: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(json_of(&arguments), json!({"city": "mock"}), "{text}");
    assert!(
        events
            .iter()
            .any(|e| e["choices"][0]["finish_reason"] == "tool_calls"),
        "{text}"
    );
}

#[tokio::test]
async fn anthropic_callers_reach_bedrock_through_chat_completions() {
    let mock = signing_mock(&["--chunks", "4"]).await;
    let gateway = Gateway::start(&bedrock_config(&mock, SECRET)).await;
    let messages = |stream: bool| {
        json!({"model": MODEL, "max_tokens": 64, "stream": stream, "system": "Be brief.",
               "messages": [{"role": "user", "content": "hello from anthropic"}]})
    };
    let (status, body) = gateway
        .post_json("/anthropic/v1/messages", &messages(false))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = json_of(&body);
    assert_eq!(
        answer["content"][0]["text"],
        "mock reply to: hello from anthropic"
    );
    assert_eq!(answer["usage"]["output_tokens"], 4, "{answer}");

    let (status, body) = gateway
        .post_json("/anthropic/v1/messages", &messages(true))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = parse_sse(&body);
    let names: Vec<&str> = events
        .iter()
        .filter_map(|(name, _)| name.as_deref())
        .collect();
    assert_eq!(names.first(), Some(&"message_start"), "{body}");
    assert_eq!(names.last(), Some(&"message_stop"), "{body}");
    let text: String = events
        .iter()
        .filter_map(|(_, data)| serde_json::from_str::<Value>(data).ok())
        .filter_map(|data| data["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "mock reply to: hello from anthropic", "{body}");
}

#[tokio::test]
async fn bedrock_usage_is_charged_to_the_virtual_keys_budget() {
    let mock = signing_mock(&["--chunks", "5"]).await;
    let mut config = bedrock_config(&mock, SECRET);
    config["client"]["enforce_auth_on_inference"] = json!(true);
    config["governance"] = json!({
        "pricing": [{"provider": "*", "model": "claude-haiku",
                     "input_cost_per_token": 0.01, "output_cost_per_token": 0.02}],
        "usage_flush_interval_ms": 100,
        "budgets": [{"id": "b", "max_limit": 100.0, "reset_duration": "1d"}],
        "virtual_keys": [{"id": "k", "value": "sk-bf-bedrock", "budget_id": "b",
                          "provider_configs": allow_all(&["bedrock"])}]
    });
    let gateway = Gateway::start(&config).await;
    let mut expected = 0.0;
    for stream in [false, true] {
        let mut body = chat("spend", stream);
        body["stream_options"] = json!({"include_usage": false});
        let response = reqwest::Client::new()
            .post(gateway.url("/v1/chat/completions"))
            .bearer_auth("sk-bf-bedrock")
            .json(&body)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap_or_default();
        if !stream {
            let usage = &json_of(&text)["usage"];
            let prompt = usage["prompt_tokens"].as_f64().unwrap_or(0.0);
            assert!(prompt > 0.0, "{text}");
            expected = 2.0 * (prompt * 0.01 + 5.0 * 0.02);
        }
    }
    wait_until(
        "both answers charged",
        Deadline::after(Duration::from_secs(10)),
        async || gateway.first_budget_usage().await,
        |usd| (usd - expected).abs() < 1e-9,
    )
    .await;
}

#[tokio::test]
async fn bedrock_keys_are_checked_by_path() {
    let (status, stderr) = bifrost_e2e::harness::gateway_rejects(
        &json!({"providers": {"bedrock": {"keys": [
            {"name": "a", "models": ["*"], "bedrock_key_config": {"access_key": "AKID"}},
            {"name": "b", "models": ["*"], "bedrock_key_config": {"region": "US East"}},
            {"name": "c", "models": ["*"], "bedrock_key_config": {
                "access_key": "AKID", "secret_key": "s", "role_arn": "arn:aws:iam::1:role/x"}},
            {"name": "d", "models": ["*"], "value": "bedrock-api-key", "bedrock_key_config": {
                "role_arn": ROLE_ARN}}
        ]}}})
        .to_string(),
    )
    .await;
    assert!(!status.success());
    for path in [
        "providers.bedrock.keys[0].bedrock_key_config.secret_key: required with access_key",
        "providers.bedrock.keys[1].bedrock_key_config: needs IAM credentials",
        "providers.bedrock.keys[1].bedrock_key_config.region: must be an AWS region",
        "providers.bedrock.keys[2].bedrock_key_config.role_arn: must be an IAM role's ARN",
        "providers.bedrock.keys[3].bedrock_key_config.role_arn: needs the key's own IAM credentials",
    ] {
        assert!(stderr.contains(path), "{path} missing from {stderr}");
    }
}

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/bedrock-caller";
const ROLE_AKID: &str = "ASIAROLETEMPORARY";
const ROLE_SECRET: &str = "role-temporary-secret/+";

/// The mock as STS too: [`AKID`] may assume [`ROLE_ARN`] (external id `ext-42`), whose
/// credentials live `ttl` seconds.
async fn sts_mock(ttl: &str) -> MockProvider {
    let role = format!("{ROLE_ARN}={ROLE_AKID}:{ROLE_SECRET}:ext-42");
    signing_mock(&["--sts-role", &role, "--sts-ttl-secs", ttl]).await
}

/// [`bedrock_config`] whose key assumes [`ROLE_ARN`] with `external_id`, and a gateway that
/// asks the mock for it (`AWS_ENDPOINT_URL_STS`).
async fn role_gateway(mock: &MockProvider, external_id: &str) -> Gateway {
    let mut config = bedrock_config(mock, SECRET);
    let key = &mut config["providers"]["bedrock"]["keys"][0]["bedrock_key_config"];
    key["role_arn"] = json!(ROLE_ARN);
    key["external_id"] = json!(external_id);
    key["session_name"] = json!("e2e-session");
    Gateway::start_with(&config, &[("AWS_ENDPOINT_URL_STS", &mock.base)]).await
}

/// A key with `role_arn`: its own credentials assume the role once, the role's temporary
/// credentials (with their session token) sign every Bedrock request, and they are assumed
/// again before they expire, while every request meanwhile is answered.
#[tokio::test]
async fn a_role_arn_key_signs_with_the_roles_credentials_and_renews_them() {
    let mock = sts_mock("4").await;
    let gateway = role_gateway(&mock, "ext-42").await;
    for content in ["one", "two", "three"] {
        let (status, body) = gateway
            .post_json("/v1/chat/completions", &chat(content, false))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            json_of(&body)["choices"][0]["message"]["content"],
            format!("mock reply to: {content}")
        );
    }
    let stats = mock.stats().await;
    assert_eq!(stats["sts_requests"], 1, "one AssumeRole for all: {stats}");
    assert_eq!(
        stats["by_key"][ROLE_AKID], 3,
        "the role's key signed: {stats}"
    );
    assert!(stats["by_key"].get(AKID).is_none(), "{stats}");
    // 4 s credentials are renewed after about 2 s.
    wait_until(
        "the role to be assumed again",
        Deadline::after(Duration::from_secs(15)).polling_every(Duration::from_millis(250)),
        async || {
            let (status, body) = gateway
                .post_json("/v1/chat/completions", &chat("again", false))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            mock.stats().await["sts_requests"].as_u64().unwrap_or(0)
        },
        |calls| *calls >= 2,
    )
    .await;
    let stats = mock.stats().await;
    assert_eq!(stats["sts_failures"], 0, "{stats}");
    let (status, body) = gateway
        .post_json("/v1/chat/completions", &chat("streamed", true))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A role whose trust policy wants another external id: STS refuses, which is the key's failed
/// attempt, answered 502 naming the role and STS's error; nothing reaches Bedrock.
#[tokio::test]
async fn a_wrong_external_id_is_a_502_naming_stss_refusal() {
    let mock = sts_mock("3600").await;
    let gateway = role_gateway(&mock, "not-ext-42").await;
    let (status, body) = gateway
        .post_json("/v1/chat/completions", &chat("hi", false))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let message = json_of(&body)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains(&format!("STS AssumeRole of {ROLE_ARN}"))
            && message.contains("403 Forbidden: AccessDenied: User: ")
            && message.contains("is not authorized to perform: sts:AssumeRole"),
        "{message}"
    );
    let stats = mock.stats().await;
    assert!(stats["sts_failures"].as_u64() >= Some(1), "{stats}");
    assert_eq!(stats["requests"], 0, "nothing reached Bedrock: {stats}");
}

/// The official `anthropic` package on the gateway's Anthropic endpoint, its model on Bedrock
/// (every request SigV4-signed and checked by the mock): a message, a stream and a tool use.
#[tokio::test]
async fn the_anthropic_sdk_talks_to_bedrock_through_the_gateway() {
    let mock = signing_mock(&["--chunks", "3"]).await;
    let gateway = Gateway::start(&bedrock_config(&mock, SECRET)).await;
    let result = bifrost_e2e::harness::run_python_check_with(
        "anthropic_sdk_check.py",
        &[&gateway.base, MODEL],
    )
    .await;
    assert_eq!(
        result["content"],
        "mock reply to: hello from the anthropic sdk"
    );
    assert_eq!(
        result["streamed"],
        "mock reply to: streamed through the anthropic sdk"
    );
    assert_eq!(result["stream_output_tokens"], 3, "{result}");
    assert_eq!(result["stop_reason"], "tool_use");
    assert_eq!(result["tool"], "get_weather");
    assert_eq!(result["input"], json!({"city": "mock"}));
    assert_eq!(mock.stats().await["by_key"][AKID], 3, "all three signed");
}

/// [`bedrock_config`] with embedding models deployed: `titan-v2`, `titan-v1` and `cohere-en`.
fn embeddings_config(mock: &MockProvider) -> Value {
    let mut config = bedrock_config(mock, SECRET);
    config["providers"]["bedrock"]["keys"][0]["bedrock_key_config"]["deployments"] = json!({
        "claude-haiku": MODEL_ID,
        "titan-v2": "amazon.titan-embed-text-v2:0",
        "titan-v1": "amazon.titan-embed-text-v1",
        "cohere-en": "cohere.embed-english-v3",
    });
    config
}

/// The L2 norm of a JSON vector.
fn norm(vector: &Value) -> f64 {
    let values = vector.as_array().cloned().unwrap_or_default();
    values
        .iter()
        .filter_map(Value::as_f64)
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
}

/// OpenAI embeddings on Bedrock: a Titan model gets one InvokeModel call with Titan's body, a
/// Cohere model one with Cohere's (several texts at once), both answered in OpenAI's format
/// with the tokens Bedrock counted, base64 when asked.
#[tokio::test]
async fn titan_and_cohere_embeddings_come_back_in_openais_format() {
    let mock = signing_mock(&[]).await;
    let gateway = Gateway::start(&embeddings_config(&mock)).await;

    let (status, body) = gateway
        .post_json(
            "/v1/embeddings",
            &json!({"model": "bedrock/titan-v2", "input": "hello titan", "dimensions": 256}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let titan = json_of(&body);
    assert_eq!(titan["object"], "list", "{titan}");
    assert_eq!(titan["model"], "titan-v2");
    assert_eq!(titan["data"][0]["index"], 0);
    assert_eq!(titan["data"][0]["object"], "embedding");
    let vector = &titan["data"][0]["embedding"];
    assert_eq!(vector.as_array().map(Vec::len), Some(256), "{titan}");
    assert!((norm(vector) - 1.0).abs() < 1e-4, "a unit vector: {titan}");
    assert_eq!(titan["usage"]["prompt_tokens"], 2, "{titan}");

    let (status, body) = gateway
        .post_json(
            "/v1/embeddings",
            &json!({"model": "bedrock/cohere-en", "input": ["one two", "three"],
                    "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cohere = json_of(&body);
    let data = cohere["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(data.len(), 2, "{cohere}");
    assert_eq!(data[1]["index"], 1);
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data[1]["embedding"].as_str().unwrap_or_default())
        .expect("base64 floats");
    assert_eq!(bytes.len(), 1024 * 4, "Cohere's 1024 float32s");
    assert_eq!(
        cohere["usage"]["prompt_tokens"], 3,
        "from x-amzn-bedrock-input-token-count: {cohere}"
    );

    let stats = mock.stats().await;
    assert_eq!(stats["by_route"]["/model/{modelId}/invoke"], 2, "{stats}");
    assert_eq!(
        stats["by_model"]["amazon.titan-embed-text-v2:0"], 1,
        "{stats}"
    );
    assert_eq!(stats["by_model"]["cohere.embed-english-v3"], 1, "{stats}");
    assert_eq!(stats["by_key"][AKID], 2, "signed: {stats}");
}

/// What Bedrock's embedding models cannot take is refused with 400 in OpenAI's format, naming
/// the limit, before anything is sent: several texts for Titan, dimensions for Titan V1, a
/// model that is no Titan or Cohere embedding model.
#[tokio::test]
async fn embeddings_bedrock_cannot_serve_are_refused_before_anything_is_sent() {
    let mock = signing_mock(&[]).await;
    let gateway = Gateway::start(&embeddings_config(&mock)).await;
    for (body, expected) in [
        (
            json!({"model": "bedrock/titan-v2", "input": ["a", "b"]}),
            "input: Amazon Titan (amazon.titan-embed-text-v2:0) embeds one text per request (this one has 2)",
        ),
        (
            json!({"model": "bedrock/titan-v1", "input": "a", "dimensions": 256}),
            "dimensions: amazon.titan-embed-text-v1 has a fixed size (1536)",
        ),
        (
            json!({"model": MODEL, "input": "hi"}),
            "is not an embedding model the gateway speaks on Bedrock",
        ),
    ] {
        let (status, text) = gateway.post_json("/v1/embeddings", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        let error = json_of(&text);
        assert_eq!(error["error"]["code"], "invalid_request", "{error}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{expected} not in {message}");
    }
    assert_eq!(mock.requests().await, 0, "nothing was sent");
}

/// Embedding usage is charged: Cohere's tokens come from Bedrock's header, Titan's from its
/// body.
#[tokio::test]
async fn bedrock_embeddings_are_charged_by_the_tokens_bedrock_counted() {
    let mock = signing_mock(&[]).await;
    let mut config = embeddings_config(&mock);
    config["client"]["enforce_auth_on_inference"] = json!(true);
    config["governance"] = json!({
        "pricing": [{"provider": "*", "model": "cohere-en",
                     "input_cost_per_token": 0.01, "output_cost_per_token": 0.0},
                    {"provider": "*", "model": "titan-v2",
                     "input_cost_per_token": 0.1, "output_cost_per_token": 0.0}],
        "usage_flush_interval_ms": 100,
        "budgets": [{"id": "b", "max_limit": 100.0, "reset_duration": "1d"}],
        "virtual_keys": [{"id": "k", "value": "sk-bf-embed", "budget_id": "b",
                          "provider_configs": allow_all(&["bedrock"])}]
    });
    let gateway = Gateway::start(&config).await;
    for body in [
        json!({"model": "bedrock/cohere-en", "input": ["one two three", "four"]}),
        json!({"model": "bedrock/titan-v2", "input": "five six"}),
    ] {
        let response = reqwest::Client::new()
            .post(gateway.url("/v1/embeddings"))
            .bearer_auth("sk-bf-embed")
            .json(&body)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), StatusCode::OK);
    }
    wait_until(
        "both embeddings charged",
        Deadline::after(Duration::from_secs(10)),
        async || gateway.first_budget_usage().await,
        |usd| (usd - (4.0 * 0.01 + 2.0 * 0.1)).abs() < 1e-9,
    )
    .await;
}

/// The official `openai` package's `embeddings.create` (which asks for base64 and decodes it)
/// on Bedrock's Titan and Cohere models through the gateway.
#[tokio::test]
async fn the_openai_sdk_gets_bedrock_embeddings_through_the_gateway() {
    let mock = signing_mock(&[]).await;
    let gateway = Gateway::start(&embeddings_config(&mock)).await;
    let result = bifrost_e2e::harness::run_python_check(
        "openai_on_bedrock_embeddings_check.py",
        &gateway.base,
    )
    .await;
    assert_eq!(result["titan_dims"], 512, "{result}");
    assert_eq!(result["titan_tokens"], 3, "{result}");
    assert_eq!(result["cohere_count"], 3, "{result}");
    assert_eq!(result["cohere_dims"], 1024, "{result}");
    assert!(
        (result["cohere_norm"].as_f64().unwrap_or_default() - 1.0).abs() < 1e-4,
        "{result}"
    );
    assert_eq!(result["titan_many"]["status"], 400, "{result}");
    assert!(
        result["titan_many"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("embeds one text per request")),
        "{result}"
    );
}

/// Bedrock throttling a stream after it started (a `throttlingException` message after some
/// text): the caller has the text so far, then an error event in its own format naming the
/// throttling, a rate limit in both.
#[tokio::test]
async fn a_throttled_stream_ends_with_a_rate_limit_error_in_the_callers_format() {
    let mock = signing_mock(&["--chunks", "4"]).await;
    let gateway = Gateway::start(&bedrock_config(&mock, SECRET)).await;

    let (status, body) = gateway
        .post_json(
            "/v1/chat/completions",
            &chat("slow [[throttle]] down now", true),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the stream had started: {body}");
    let events = sse_payloads(&body);
    let text: String = events
        .iter()
        .filter_map(|event| event["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(
        !text.is_empty() && "mock reply to: slow [[throttle]] down now".starts_with(&text),
        "the first chunks: {body}"
    );
    let error = &events[events.len() - 2];
    assert_eq!(error["error"]["type"], "rate_limit_error", "{body}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("throttlingException: Too many requests")),
        "{body}"
    );
    assert_eq!(events.last(), Some(&json!("[DONE]")), "{body}");

    let (status, body) = gateway
        .post_json(
            "/anthropic/v1/messages",
            &json!({"model": MODEL, "max_tokens": 64, "stream": true,
                    "messages": [{"role": "user", "content": "slow [[throttle]] down now"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = parse_sse(&body);
    let names: Vec<&str> = events
        .iter()
        .filter_map(|(name, _)| name.as_deref())
        .collect();
    assert_eq!(names.first(), Some(&"message_start"), "{body}");
    assert!(names.contains(&"content_block_delta"), "{body}");
    assert_eq!(names.last(), Some(&"error"), "{body}");
    let (_, data) = events.last().expect("an error event");
    let error = json_of(data);
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["type"], "rate_limit_error", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("throttlingException")),
        "{error}"
    );
}

/// Bedrock's 429 `ThrottlingException` before a stream starts is a retryable failure: the
/// retry goes to the other key, and the caller gets the whole stream.
#[tokio::test]
async fn a_429_throttling_before_the_stream_moves_on_to_another_key() {
    let mock = MockProvider::start(&[
        "--aws-credentials",
        &format!("{AKID}:{SECRET},AKIDSECONDKEY:second-secret"),
        "--chunks",
        "2",
    ])
    .await;
    let mut config = bedrock_config(&mock, SECRET);
    let provider = &mut config["providers"]["bedrock"];
    let mut second = provider["keys"][0].clone();
    second["name"] = json!("second");
    second["bedrock_key_config"]["access_key"] = json!("AKIDSECONDKEY");
    second["bedrock_key_config"]["secret_key"] = json!("second-secret");
    provider["keys"].as_array_mut().expect("keys").push(second);
    provider["network_config"]["max_retries"] = json!(1);
    provider["network_config"]["retry_backoff_initial_ms"] = json!(10);
    provider["network_config"]["retry_backoff_max_ms"] = json!(10);
    let gateway = Gateway::start(&config).await;
    mock.configure(json!({"fail_next": 1, "fail_statuses": [429]}))
        .await;
    let (status, body) = gateway
        .post_json("/v1/chat/completions", &chat("after a throttle", true))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text: String = sse_payloads(&body)
        .iter()
        .filter_map(|event| event["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "mock reply to: after a throttle", "{body}");
    let stats = mock.stats().await;
    assert_eq!(stats["failures_injected"], 1, "{stats}");
    assert_eq!(stats["by_key"][AKID], 1, "{stats}");
    assert_eq!(
        stats["by_key"]["AKIDSECONDKEY"], 1,
        "one attempt per key: {stats}"
    );
}
