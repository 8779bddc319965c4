//! The mock provider's AWS Bedrock Runtime (Converse) on its own: what the official `boto3` SDK
//! sends, SigV4-signed, gets answers it understands, and the raw wire gets AWS's refusals,
//! strictness, error bodies and event-stream frames.

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use bifrost_e2e::harness::{run_python_check, MockProvider};
use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};

const MODEL: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
const PROFILE_ARN: &str = "arn:aws:bedrock:us-west-2:123456789012:inference-profile/\
                           us.anthropic.claude-3-5-haiku-20241022-v1:0";

/// An answer: status, headers and body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    /// The `x-amzn-ErrorType` AWS names an error's type in.
    fn error_type(&self) -> &str {
        self.headers
            .get("x-amzn-errortype")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// `POST /model/<MODEL>/<operation>` with `body` and, when given, an `Authorization` value.
async fn post(
    mock: &MockProvider,
    operation: &str,
    authorization: Option<&str>,
    body: &Value,
) -> Answer {
    let mut request = reqwest::Client::new()
        .post(format!("{}/model/{MODEL}/{operation}", mock.base))
        .json(body);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.expect("answered");
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.bytes().await.unwrap_or_default(),
    }
}

fn user_says(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": [{"text": text}]}]})
}

/// The `:event-type` and JSON payload of each event-stream message of `body`, checking that
/// each is an `event` of JSON.
fn events(mut body: Bytes) -> Vec<(String, Value)> {
    let mut decoder = MessageFrameDecoder::new();
    let mut events = Vec::new();
    loop {
        let frame = decoder.decode_frame(&mut body).expect("a valid frame");
        let DecodedFrame::Complete(message) = frame else {
            break;
        };
        let header = |name: &str| {
            message
                .headers()
                .iter()
                .find(|header| header.name().as_str() == name)
                .and_then(|header| header.value().as_string().ok())
                .map(|value| value.as_str().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(header(":message-type"), "event");
        assert_eq!(header(":content-type"), "application/json");
        let payload = serde_json::from_slice(message.payload()).expect("a JSON payload");
        events.push((header(":event-type"), payload));
    }
    assert!(body.is_empty(), "{} bytes after the last frame", body.len());
    events
}

/// The mock's Bedrock routes are what AWS's client speaks: the `boto3` package (installed by
/// `make test-deps`) signs with SigV4, and the mock's own verifier accepts its signatures
/// (the model id's `%3A` signed as `%253A`) and refuses a wrong secret as AWS does.
#[tokio::test]
async fn the_mock_speaks_what_boto3_sends() {
    let mock = MockProvider::start(&[
        "--aws-credentials",
        "AKIDMOCKEXAMPLE:mock-secret",
        "--chunks",
        "3",
    ])
    .await;
    let result = run_python_check("bedrock_sdk_check.py", &mock.base).await;
    assert_eq!(
        result["content"], "mock reply to: hello from boto3",
        "{result}"
    );
    assert_eq!(result["stop_reason"], "end_turn", "{result}");
    assert_eq!(
        result["usage"],
        json!({"inputTokens": 5, "outputTokens": 3, "totalTokens": 8}),
        "the system prompt's words count: {result}"
    );
    assert_eq!(
        result["streamed"],
        "mock reply to: streamed through bedrock"
    );
    assert_eq!(result["stream_stop_reason"], "end_turn", "{result}");
    assert_eq!(
        result["stream_usage"],
        json!({"inputTokens": 3, "outputTokens": 3, "totalTokens": 6}),
        "{result}"
    );
    assert_eq!(result["tool_name"], "get_weather", "{result}");
    assert_eq!(result["tool_input"], json!({"city": "mock"}), "{result}");
    assert_eq!(result["tool_stop_reason"], "tool_use", "{result}");
    assert_eq!(
        result["profile_content"], "mock reply to: through a profile",
        "{result}"
    );
    assert_eq!(
        result["wrong_secret"]["code"], "InvalidSignatureException",
        "{result}"
    );
    assert_eq!(result["wrong_secret"]["status"], 403, "{result}");

    let stats = mock.stats().await;
    assert_eq!(stats["by_key"]["AKIDMOCKEXAMPLE"], 5, "{stats}");
    assert_eq!(stats["by_region"]["us-west-2"], 5, "{stats}");
    assert_eq!(stats["by_route"]["/model/{modelId}/converse"], 4, "{stats}");
    assert_eq!(
        stats["by_route"]["/model/{modelId}/converse-stream"], 1,
        "{stats}"
    );
    assert_eq!(stats["by_model"][MODEL], 4, "{stats}");
    assert_eq!(
        stats["by_model"][PROFILE_ARN], 1,
        "the ARN is counted decoded: {stats}"
    );
}

#[tokio::test]
async fn callers_are_refused_as_aws_refuses_them() {
    let mock = MockProvider::start(&[
        "--aws-credentials",
        "AKIDMOCKEXAMPLE:mock-secret",
        "--require-key",
        "bk-mock-key",
    ])
    .await;
    let body = user_says("hi");

    let unsigned = post(&mock, "converse", None, &body).await;
    assert_eq!(unsigned.status, StatusCode::FORBIDDEN);
    assert_eq!(unsigned.error_type(), "MissingAuthenticationTokenException");
    assert_eq!(
        unsigned.json(),
        json!({"message": "Missing Authentication Token"})
    );

    let unknown = "AWS4-HMAC-SHA256 Credential=AKIDUNKNOWN/20250101/us-east-1/bedrock/\
                   aws4_request, SignedHeaders=host;x-amz-date, Signature=00";
    let refused = post(&mock, "converse", Some(unknown), &body).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.error_type(), "UnrecognizedClientException");
    assert_eq!(
        refused.json()["message"],
        "The security token included in the request is invalid."
    );

    let incomplete = "AWS4-HMAC-SHA256 Credential=AKIDMOCKEXAMPLE/20250101/us-east-1/bedrock/\
                      aws4_request";
    let refused = post(&mock, "converse", Some(incomplete), &body).await;
    assert_eq!(refused.error_type(), "IncompleteSignatureException");

    let keyed = post(&mock, "converse", Some("Bearer bk-mock-key"), &body).await;
    assert_eq!(
        keyed.status,
        StatusCode::OK,
        "a Bedrock API key: {:?}",
        keyed.body
    );
    let wrong = post(&mock, "converse", Some("Bearer bk-wrong"), &body).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(wrong.error_type(), "AccessDeniedException");

    let stats = mock.stats().await;
    assert_eq!(stats["by_key"]["bk-mock-key"], 1, "{stats}");
    assert_eq!(stats["by_key"]["AKIDUNKNOWN"], 1, "{stats}");
    assert_eq!(stats["by_region"]["us-east-1"], 1, "{stats}");
}

#[tokio::test]
async fn bodies_are_checked_as_aws_checks_them() {
    let mock = MockProvider::start(&[]).await;
    let mut body = user_says("hi");
    body["maxTokens"] = json!(5);
    let answer = post(&mock, "converse", None, &body).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_type(), "ValidationException");
    assert_eq!(
        answer.json()["message"],
        "Malformed input request: #: extraneous key [maxTokens] is not permitted, please \
         reformat your input and try again."
    );

    let twice = json!({"messages": [{"role": "user", "content": [{"text": "a"}]},
                                     {"role": "user", "content": [{"text": "b"}]}]});
    let answer = post(&mock, "converse-stream", None, &twice).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_type(), "ValidationException");
    assert_eq!(
        answer.json()["message"],
        "A conversation must alternate between user and assistant roles. Make sure the \
         conversation alternates between user and assistant roles and try again."
    );

    mock.configure(json!({"fail_next": 1, "fail_statuses": [503]}))
        .await;
    let answer = post(&mock, "converse-stream", None, &user_says("hi")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer.error_type(),
        "ServiceUnavailableException",
        "injected failures are AWS errors too"
    );
    assert!(answer.json()["message"].is_string());
    let stats = mock.stats().await;
    assert_eq!(stats["failures_injected"], 1, "{stats}");
}

#[tokio::test]
async fn a_stream_is_event_stream_messages_in_converse_order() {
    let mock = MockProvider::start(&["--chunks", "4"]).await;
    let answer = post(&mock, "converse-stream", None, &user_says("count me")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer
            .headers
            .get("content-type")
            .and_then(|value| value.to_str().ok()),
        Some("application/vnd.amazon.eventstream")
    );
    let events = events(answer.body);
    let types: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        types,
        [
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata",
        ]
    );
    assert_eq!(events[0].1, json!({"role": "assistant"}));
    let text: String = events[1..5]
        .iter()
        .filter_map(|(_, payload)| payload["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "mock reply to: count me");
    assert_eq!(events[5].1, json!({"contentBlockIndex": 0}));
    assert_eq!(events[6].1, json!({"stopReason": "end_turn"}));
    assert_eq!(
        events[7].1["usage"],
        json!({"inputTokens": 2, "outputTokens": 4, "totalTokens": 6})
    );
    assert!(events[7].1["metrics"]["latencyMs"].is_u64());
}

/// The mock's STS is what `boto3`'s STS client speaks: `assume_role` (SigV4 for `sts`, the
/// Query API, XML answers) grants the role's temporary credentials, which sign a Converse call
/// with their session token, and a wrong external id is STS's 403 `AccessDenied`.
#[tokio::test]
async fn the_mock_sts_grants_what_boto3_assumes() {
    let mock = MockProvider::start(&[
        "--aws-credentials",
        "AKIDMOCKEXAMPLE:mock-secret",
        "--sts-role",
        "arn:aws:iam::123456789012:role/bedrock-caller=ASIAMOCKROLE:role-secret:ext-42",
    ])
    .await;
    let result = run_python_check("sts_sdk_check.py", &mock.base).await;
    assert_eq!(result["access_key_id"], "ASIAMOCKROLE", "{result}");
    assert_eq!(result["has_session_token"], true, "{result}");
    let lifetime = result["lifetime_secs"].as_i64().unwrap_or_default();
    assert!(
        (890..=900).contains(&lifetime),
        "DurationSeconds=900: {result}"
    );
    assert_eq!(
        result["assumed_arn"],
        "arn:aws:sts::123456789012:assumed-role/bedrock-caller/boto3-check"
    );
    assert_eq!(result["content"], "mock reply to: as the role", "{result}");
    assert_eq!(
        result["wrong_external_id"]["code"], "AccessDenied",
        "{result}"
    );
    assert_eq!(result["wrong_external_id"]["status"], 403, "{result}");
    let stats = mock.stats().await;
    assert_eq!(stats["sts_requests"], 2, "{stats}");
    assert_eq!(stats["sts_failures"], 1, "{stats}");
    assert_eq!(stats["by_key"]["ASIAMOCKROLE"], 1, "{stats}");
}

/// Temporary credentials need the session token STS issued with them: without one, or with one
/// the mock did not issue, AWS's 403.
#[tokio::test]
async fn the_roles_key_without_its_session_token_is_refused() {
    let mock = MockProvider::start(&[
        "--aws-credentials",
        "AKIDMOCKEXAMPLE:mock-secret",
        "--sts-role",
        "arn:aws:iam::123456789012:role/r=ASIAMOCKROLE:role-secret",
    ])
    .await;
    let forged = "AWS4-HMAC-SHA256 Credential=ASIAMOCKROLE/20250101/us-east-1/bedrock/\
                  aws4_request, SignedHeaders=host;x-amz-date, Signature=00";
    let refused = post(&mock, "converse", Some(forged), &user_says("hi")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.error_type(), "UnrecognizedClientException");

    let unsigned = reqwest::Client::new()
        .post(format!("{}/", mock.base))
        .form(&[("Action", "AssumeRole"), ("Version", "2011-06-15")])
        .send()
        .await
        .expect("answered");
    assert_eq!(unsigned.status(), StatusCode::FORBIDDEN);
    let body = unsigned.text().await.unwrap_or_default();
    assert!(
        body.contains("<Code>MissingAuthenticationToken</Code>") && body.contains("<RequestId>"),
        "STS's XML error: {body}"
    );
}

/// The mock's InvokeModel embeddings and mid-stream throttling are what `boto3` reads:
/// `invoke_model` on Titan and Cohere gets each family's answer (with Bedrock's token-count
/// header), and a stream throttled after its first text raises boto3's `EventStreamError` with
/// code `throttlingException`.
#[tokio::test]
async fn boto3_reads_the_mocks_embeddings_and_mid_stream_throttling() {
    let mock = MockProvider::start(&[
        "--aws-credentials",
        "AKIDMOCKEXAMPLE:mock-secret",
        "--chunks",
        "4",
    ])
    .await;
    let result = run_python_check("bedrock_invoke_check.py", &mock.base).await;
    assert_eq!(result["titan_dims"], 512, "{result}");
    assert_eq!(result["titan_tokens"], 2, "{result}");
    assert_eq!(result["titan_header_tokens"], "2", "{result}");
    assert_eq!(result["cohere_count"], 2, "{result}");
    assert_eq!(result["cohere_dims"], 1024, "{result}");
    assert!(
        (result["cohere_norm"].as_f64().unwrap_or_default() - 1.0).abs() < 1e-4,
        "{result}"
    );
    assert_eq!(result["cohere_response_type"], "embeddings_floats");
    assert_eq!(result["cohere_texts"], json!(["one", "two words"]));
    assert_eq!(result["cohere_header_tokens"], "3", "{result}");
    let streamed = result["streamed_before_throttle"]
        .as_str()
        .unwrap_or_default();
    assert!(
        !streamed.is_empty() && "mock reply to: slow [[throttle]] down now".starts_with(streamed),
        "{result}"
    );
    assert_eq!(
        result["throttled"]["code"], "throttlingException",
        "{result}"
    );
    assert_eq!(
        result["throttled"]["message"],
        "Too many requests, please wait before trying again."
    );
    let stats = mock.stats().await;
    assert_eq!(stats["by_route"]["/model/{modelId}/invoke"], 2, "{stats}");
    assert_eq!(stats["by_key"]["AKIDMOCKEXAMPLE"], 3, "{stats}");
}

/// InvokeModel bodies are checked as Bedrock checks them: each family's fields only.
#[tokio::test]
async fn invoke_model_bodies_are_checked_as_bedrock_checks_them() {
    let mock = MockProvider::start(&[]).await;
    let invoke = async |model: &str, body: Value| {
        let response = reqwest::Client::new()
            .post(format!("{}/model/{model}/invoke", mock.base))
            .json(&body)
            .send()
            .await
            .expect("answered");
        let kind = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        (
            status,
            kind,
            body["message"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let (status, kind, message) = invoke(
        "amazon.titan-embed-text-v2:0",
        json!({"inputText": "a", "input_type": "search_query"}),
    )
    .await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::BAD_REQUEST, "ValidationException")
    );
    assert!(message.contains("extraneous key [input_type]"), "{message}");
    let (status, _, message) = invoke("cohere.embed-english-v3", json!({"texts": ["a"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message.contains("required key [input_type] not found"),
        "{message}"
    );
    let (status, _, message) = invoke("anthropic.claude-v2", json!({"prompt": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message, "The provided model identifier is invalid.");
}
