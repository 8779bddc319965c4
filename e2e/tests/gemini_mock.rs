//! The mock provider's Gemini API (v1beta) on its own: what Google's official `google-genai`
//! SDK sends gets answers it understands, and the raw wire gets Google's strictness, key checks
//! and error bodies.

use bifrost_e2e::harness::{parse_sse, run_python_check, MockProvider};
use reqwest::StatusCode;
use serde_json::{json, Value};

const MODEL_PATH: &str = "/v1beta/models/gemini-2.5-flash";

/// `POST {path}` with `body` and, when given, `x-goog-api-key`; the status and the body text.
async fn post(
    mock: &MockProvider,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> (StatusCode, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", mock.base))
        .json(body);
    if let Some(key) = key {
        request = request.header("x-goog-api-key", key);
    }
    let response = request.send().await.expect("answered");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|error| panic!("{error}: {body}"))
}

fn user_says(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

/// The mock's Gemini routes are what Google's client speaks: the `google-genai` package
/// (installed by `make test-deps`) gets answers from it directly.
#[tokio::test]
async fn the_mock_speaks_what_the_gemini_sdk_sends() {
    let mock = MockProvider::start(&[
        "--chunks",
        "3",
        "--models",
        "gemini-2.5-flash,gemini-embedding-001",
    ])
    .await;
    let result = run_python_check("gemini_sdk_check.py", &mock.base).await;
    assert_eq!(
        result["content"],
        "mock reply to: hello from the gemini sdk"
    );
    assert_eq!(result["prompt_tokens"], 5, "{result}");
    assert_eq!(result["streamed"], "mock reply to: streamed to gemini");
    assert_eq!(result["function_call"], "get_weather", "{result}");
    assert_eq!(result["function_args"], json!({"city": "mock"}), "{result}");
    assert_eq!(result["embeddings"], 2, "{result}");
    assert!(result["dimensions"].as_u64().unwrap_or(0) > 0, "{result}");
    let models = result["models"].as_array().cloned().unwrap_or_default();
    assert!(
        models.contains(&json!("models/gemini-2.5-flash")),
        "{result}"
    );

    let stats = mock.stats().await;
    assert_eq!(
        stats["by_key"]["gm-sdk-key"], 4,
        "sent as x-goog-api-key: {stats}"
    );
    let by_route = &stats["by_route"];
    assert_eq!(
        by_route["/v1beta/models/{model}:generateContent"], 2,
        "{stats}"
    );
    assert_eq!(
        by_route["/v1beta/models/{model}:streamGenerateContent"], 1,
        "{stats}"
    );
    assert_eq!(
        by_route["/v1beta/models/{model}:batchEmbedContents"], 1,
        "the SDK embeds through the batch method: {stats}"
    );
    assert_eq!(stats["by_model"]["gemini-2.5-flash"], 3, "{stats}");
    assert_eq!(stats["by_model"]["gemini-embedding-001"], 1, "{stats}");
}

#[tokio::test]
async fn unknown_fields_are_rejected_as_google_does() {
    let mock = MockProvider::start(&[]).await;
    let mut body = user_says("hi");
    body["stream"] = json!(true);
    let (status, text) = post(&mock, &format!("{MODEL_PATH}:generateContent"), None, &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let error = json_of(&text);
    assert_eq!(
        error["error"],
        json!({"code": 400, "status": "INVALID_ARGUMENT",
               "message": "Invalid JSON payload received. Unknown name \"stream\": Cannot find field."})
    );

    let mut body = user_says("hi");
    body["generationConfig"] = json!({"temperature": 0.2, "max_tokens": 5});
    let (status, text) = post(&mock, &format!("{MODEL_PATH}:generateContent"), None, &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let message = json_of(&text)["error"]["message"].clone();
    assert_eq!(
        message,
        "Invalid JSON payload received. Unknown name \"max_tokens\" at 'generation_config': \
         Cannot find field."
    );

    let (status, text) = post(&mock, &format!("{MODEL_PATH}:countTokens"), None, &body).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert_eq!(json_of(&text)["error"]["status"], "NOT_FOUND");
    assert_eq!(
        mock.requests().await,
        2,
        "the unknown method is not counted"
    );
}

#[tokio::test]
async fn a_missing_or_wrong_key_gets_googles_answer() {
    let mock = MockProvider::start(&["--require-key", "gm-good"]).await;
    let path = format!("{MODEL_PATH}:generateContent");
    let body = user_says("hi");

    let (status, text) = post(&mock, &path, None, &body).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert_eq!(json_of(&text)["error"]["status"], "PERMISSION_DENIED");

    let (status, text) = post(&mock, &path, Some("gm-wrong"), &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let error = json_of(&text);
    assert_eq!(error["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(
        error["error"]["message"],
        "API key not valid. Please pass a valid API key."
    );
    assert_eq!(error["error"]["details"][0]["reason"], "API_KEY_INVALID");

    let (status, text) = post(&mock, &format!("{path}?key=gm-good"), None, &body).await;
    assert_eq!(status, StatusCode::OK, "the key may come as ?key=: {text}");
    let (status, text) = post(&mock, &path, Some("gm-good"), &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");

    mock.configure(json!({"fail_next": 1, "fail_statuses": [429]}))
        .await;
    let (status, text) = post(&mock, &path, Some("gm-good"), &body).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    assert_eq!(
        json_of(&text)["error"]["status"],
        "RESOURCE_EXHAUSTED",
        "injected failures are Google errors too"
    );
    let stats = mock.stats().await;
    assert_eq!(stats["by_key"]["gm-good"], 3, "{stats}");
    assert_eq!(stats["failures_injected"], 1, "{stats}");
}

#[tokio::test]
async fn a_marked_prompt_is_blocked_in_both_forms() {
    let mock = MockProvider::start(&[]).await;
    let body = user_says("tell me [[block]] now");
    let (status, text) = post(&mock, &format!("{MODEL_PATH}:generateContent"), None, &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let answer = json_of(&text);
    assert_eq!(
        answer["promptFeedback"]["blockReason"], "SAFETY",
        "{answer}"
    );
    assert!(answer.get("candidates").is_none(), "{answer}");
    assert_eq!(answer["usageMetadata"]["promptTokenCount"], 4, "{answer}");

    let path = format!("{MODEL_PATH}:streamGenerateContent?alt=sse");
    let (status, text) = post(&mock, &path, None, &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let events = parse_sse(&text);
    assert_eq!(events.len(), 1, "{text}");
    let chunk = json_of(&events[0].1);
    assert_eq!(chunk["promptFeedback"]["blockReason"], "SAFETY", "{chunk}");
}

#[tokio::test]
async fn streams_come_as_sse_with_alt_sse_and_as_a_json_array_without() {
    let mock = MockProvider::start(&["--chunks", "4"]).await;
    let body = user_says("count me");
    let path = format!("{MODEL_PATH}:streamGenerateContent");

    let (status, text) = post(&mock, &format!("{path}?alt=sse"), None, &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let chunks: Vec<Value> = parse_sse(&text)
        .iter()
        .map(|(_, data)| json_of(data))
        .collect();
    let (status, text) = post(&mock, &path, None, &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let array = json_of(&text);
    assert_eq!(array.as_array().map(Vec::len), Some(4), "{text}");

    assert_eq!(chunks.len(), 4, "{chunks:?}");
    let text: String = chunks
        .iter()
        .filter_map(|chunk| chunk["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "mock reply to: count me");
    for chunk in &chunks[..3] {
        assert!(
            chunk["candidates"][0].get("finishReason").is_none(),
            "{chunk}"
        );
        assert_eq!(
            chunk["usageMetadata"],
            json!({"promptTokenCount": 2, "totalTokenCount": 2})
        );
    }
    assert_eq!(chunks[3]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        chunks[3]["usageMetadata"],
        json!({"promptTokenCount": 2, "candidatesTokenCount": 4, "totalTokenCount": 6})
    );
}
