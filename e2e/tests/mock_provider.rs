//! The `mock-provider` binary, driven over real HTTP as the gateway and its tests use it.

use std::time::{Duration, Instant};

use bifrost_e2e::harness::MockProvider;
use futures_util::StreamExt;
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};

/// A running `mock-provider` (the harness starts the real binary and kills it on drop) and a
/// client to drive it.
struct MockProcess {
    mock: MockProvider,
    client: Client,
}

impl MockProcess {
    async fn start(args: &[&str]) -> Self {
        Self {
            mock: MockProvider::start(args).await,
            client: Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.mock.base)
    }

    async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request is answered")
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request is answered");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("JSON body")
    }

    async fn configure(&self, update: Value) {
        let response = self.post("/mock/config", &update).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "config update {update} accepted"
        );
    }
}

fn chat_request(text: &str) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "an older question"},
            {"role": "assistant", "content": "an older answer"},
            {"role": "user", "content": [{"type": "text", "text": text}]},
        ],
    })
}

fn messages_request(text: &str, max_tokens: u64) -> Value {
    json!({
        "model": "claude-3-5-haiku-20241022",
        "max_tokens": max_tokens,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": text}],
    })
}

/// `(event name, data)` of each SSE event in a complete body.
fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = Some(value.to_owned());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push_str(value);
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            (name, data)
        })
        .collect()
}

fn parse(data: &str) -> Value {
    serde_json::from_str(data).unwrap_or_else(|error| panic!("{data:?} is not JSON: {error}"))
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("response has {name}"))
        .to_str()
        .expect("ASCII header")
}

#[tokio::test]
async fn chat_completion_replies_to_the_last_user_message_with_usage() {
    let mock = MockProcess::start(&["--chunks", "4"]).await;
    let response = mock
        .post("/v1/chat/completions", &chat_request("what is up"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "application/json");
    let body: Value = response.json().await.expect("JSON body");

    assert!(body["id"]
        .as_str()
        .expect("id")
        .starts_with("chatcmpl-mock-"));
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].as_u64().expect("created") > 1_700_000_000);
    assert_eq!(body["model"], "gpt-4o-mini");
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "mock reply to: what is up");
    assert_eq!(choice["finish_reason"], "stop");
    assert!(choice["logprobs"].is_null());
    // 3 + 3 + 3 + 3 words over all messages; 4 chunks.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16})
    );
}

#[tokio::test]
async fn chat_stream_sends_role_then_content_then_stop_then_usage_then_done() {
    let mock = MockProcess::start(&["--chunks", "5"]).await;
    let mut request = chat_request("stream me");
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    let response = mock.post("/v1/chat/completions", &request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(&response, "content-type").starts_with("text/event-stream"));
    let events = sse_events(&response.text().await.expect("body"));

    assert!(
        events.iter().all(|(name, _)| name.is_none()),
        "OpenAI events are unnamed"
    );
    let (last, chunks) = events.split_last().expect("events");
    assert_eq!(last.1, "[DONE]");
    let chunks: Vec<Value> = chunks.iter().map(|(_, data)| parse(data)).collect();
    assert_eq!(chunks.len(), 1 + 5 + 1 + 1);
    let id = &chunks[0]["id"];
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(&chunk["id"], id);
        assert_eq!(chunk["model"], "gpt-4o-mini");
    }

    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let content: String = chunks[1..6]
        .iter()
        .map(|chunk| {
            let piece = chunk["choices"][0]["delta"]["content"]
                .as_str()
                .expect("content delta");
            assert!(!piece.is_empty());
            assert!(chunk["choices"][0]["finish_reason"].is_null());
            piece.to_owned()
        })
        .collect();
    assert_eq!(content, "mock reply to: stream me");
    assert_eq!(chunks[6]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[6]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[7]["choices"], json!([]));
    assert_eq!(chunks[7]["usage"]["completion_tokens"], 5);
    assert!(chunks[..7].iter().all(|chunk| chunk["usage"].is_null()));

    let full = mock
        .post("/v1/chat/completions", &chat_request("stream me"))
        .await;
    let full: Value = full.json().await.expect("JSON body");
    assert_eq!(full["choices"][0]["message"]["content"], content.as_str());
}

#[tokio::test]
async fn chat_stream_without_include_usage_has_no_usage_chunk() {
    let mock = MockProcess::start(&[]).await;
    let mut request = chat_request("hi");
    request["stream"] = json!(true);
    let body = mock
        .post("/v1/chat/completions", &request)
        .await
        .text()
        .await
        .expect("body");
    let events = sse_events(&body);
    assert_eq!(events.last().expect("events").1, "[DONE]");
    for (_, data) in &events[..events.len() - 1] {
        let chunk = parse(data);
        assert!(chunk.get("usage").is_none(), "{chunk}");
        assert_eq!(chunk["choices"].as_array().expect("choices").len(), 1);
    }
}

#[tokio::test]
async fn chat_max_tokens_truncates_the_reply_with_finish_reason_length() {
    let mock = MockProcess::start(&["--chunks", "5"]).await;
    let mut request = chat_request("cut me short");
    request["max_completion_tokens"] = json!(2);
    let body: Value = mock
        .post("/v1/chat/completions", &request)
        .await
        .json()
        .await
        .expect("JSON");
    let content = body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    assert!("mock reply to: cut me short".starts_with(content));
    assert!(content.len() < "mock reply to: cut me short".len());
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn chat_without_messages_gets_an_openai_400() {
    let mock = MockProcess::start(&[]).await;
    let response = mock
        .post("/v1/chat/completions", &json!({"model": "gpt-4o"}))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("messages"));
    assert!(body["error"]["param"].is_null());
    assert!(body["error"]["code"].is_null());
}

#[tokio::test]
async fn malformed_bodies_get_400_and_the_server_keeps_serving() {
    let mock = MockProcess::start(&[]).await;
    let bodies = [
        "not json",
        "[]",
        "{\"model\": 5, \"messages\": []}",
        "{\"messages\": [{\"role\": 1}]}",
    ];
    for path in ["/v1/chat/completions", "/v1/embeddings", "/v1/messages"] {
        for body in bodies {
            let response = mock
                .client
                .post(mock.url(path))
                .body(body)
                .send()
                .await
                .expect("request is answered");
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path} {body}");
            let _: Value = response.json().await.expect("error body is JSON");
        }
    }
    assert_eq!(mock.get_json("/health").await["status"], "ok");
}

#[tokio::test]
async fn anthropic_message_has_one_text_block_and_usage() {
    let mock = MockProcess::start(&["--chunks", "3"]).await;
    let response = mock
        .post("/v1/messages", &messages_request("hello claude", 1024))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON body");
    assert!(body["id"].as_str().expect("id").starts_with("msg_mock_"));
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-3-5-haiku-20241022");
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": "mock reply to: hello claude"}])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert!(body["stop_sequence"].is_null());
    // "Be brief." + "hello claude": 4 words; 3 chunks.
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 4, "output_tokens": 3})
    );
}

#[tokio::test]
async fn anthropic_stream_events_come_in_anthropic_order() {
    let mock = MockProcess::start(&["--chunks", "4"]).await;
    let mut request = messages_request("stream please", 1024);
    request["stream"] = json!(true);
    let response = mock.post("/v1/messages", &request).await;
    assert!(header(&response, "content-type").starts_with("text/event-stream"));
    let events = sse_events(&response.text().await.expect("body"));

    let names: Vec<&str> = events
        .iter()
        .map(|(name, _)| name.as_deref().expect("named event"))
        .collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(["content_block_delta"; 4]);
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    let data: Vec<Value> = events.iter().map(|(_, data)| parse(data)).collect();
    for (name, value) in names.iter().zip(&data) {
        assert_eq!(value["type"], *name);
    }

    let start = &data[0]["message"];
    assert_eq!(start["content"], json!([]));
    assert!(start["stop_reason"].is_null());
    assert_eq!(
        start["usage"],
        json!({"input_tokens": 4, "output_tokens": 1})
    );
    assert_eq!(
        data[1]["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = data[3..7]
        .iter()
        .map(|event| {
            assert_eq!(event["delta"]["type"], "text_delta");
            event["delta"]["text"].as_str().expect("text").to_owned()
        })
        .collect();
    assert_eq!(text, "mock reply to: stream please");
    assert_eq!(
        data[8]["delta"],
        json!({"stop_reason": "end_turn", "stop_sequence": null})
    );
    assert_eq!(data[8]["usage"]["output_tokens"], 4);
}

#[tokio::test]
async fn anthropic_stream_stops_at_max_tokens() {
    let mock = MockProcess::start(&["--chunks", "4"]).await;
    let mut request = messages_request("stream please", 2);
    request["stream"] = json!(true);
    let body = mock
        .post("/v1/messages", &request)
        .await
        .text()
        .await
        .expect("body");
    let events = sse_events(&body);
    let deltas = events
        .iter()
        .filter(|(name, _)| name.as_deref() == Some("content_block_delta"));
    assert_eq!(deltas.count(), 2);
    let (_, message_delta) = events
        .iter()
        .find(|(name, _)| name.as_deref() == Some("message_delta"))
        .expect("message_delta");
    assert_eq!(parse(message_delta)["delta"]["stop_reason"], "max_tokens");
}

#[tokio::test]
async fn anthropic_without_max_tokens_gets_an_anthropic_400() {
    let mock = MockProcess::start(&[]).await;
    let request = json!({"model": "claude-3-5-haiku-20241022", "messages": [{"role": "user", "content": "hi"}]});
    let response = mock.post("/v1/messages", &request).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("max_tokens"));
}

#[tokio::test]
async fn embeddings_are_deterministic_and_sized_by_dimensions() {
    let mock = MockProcess::start(&["--embedding-dims", "12"]).await;
    let request =
        json!({"model": "text-embedding-3-small", "input": ["alpha beta", "gamma", "alpha beta"]});
    let body: Value = mock
        .post("/v1/embeddings", &request)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "text-embedding-3-small");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 5, "total_tokens": 5})
    );
    let data = body["data"].as_array().expect("data");
    assert_eq!(data.len(), 3);
    for (index, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], index);
        assert_eq!(item["embedding"].as_array().expect("vector").len(), 12);
    }
    assert_eq!(data[0]["embedding"], data[2]["embedding"]);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);

    let again = json!({"model": "text-embedding-3-small", "input": "alpha beta"});
    let again: Value = mock
        .post("/v1/embeddings", &again)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(again["data"][0]["embedding"], data[0]["embedding"]);

    let sized = json!({"model": "text-embedding-3-small", "input": "alpha beta", "dimensions": 3});
    let sized: Value = mock
        .post("/v1/embeddings", &sized)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        sized["data"][0]["embedding"]
            .as_array()
            .expect("vector")
            .len(),
        3
    );
}

#[tokio::test]
async fn embeddings_in_base64_decode_to_the_float_vector() {
    let mock = MockProcess::start(&["--embedding-dims", "4"]).await;
    let request =
        |format: &str| json!({"model": "e", "input": [[1, 2, 3]], "encoding_format": format});
    let floats: Value = mock
        .post("/v1/embeddings", &request("float"))
        .await
        .json()
        .await
        .expect("JSON");
    let base64: Value = mock
        .post("/v1/embeddings", &request("base64"))
        .await
        .json()
        .await
        .expect("JSON");

    let bytes = decode_base64(
        base64["data"][0]["embedding"]
            .as_str()
            .expect("base64 string"),
    );
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let expected: Vec<f32> = floats["data"][0]["embedding"]
        .as_array()
        .expect("vector")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect();
    assert_eq!(decoded, expected);
    assert_eq!(base64["usage"]["prompt_tokens"], 3);
}

/// Standard padded base64, as the Python SDK decodes it.
fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextets: Vec<u32> = text
        .trim_end_matches('=')
        .chars()
        .map(|c| ALPHABET.find(c).expect("base64 character") as u32)
        .collect();
    let mut bytes = Vec::new();
    for group in sextets.chunks(4) {
        let bits = group
            .iter()
            .enumerate()
            .fold(0, |bits, (i, s)| bits | s << (18 - 6 * i));
        bytes.extend(&bits.to_be_bytes()[1..group.len()]);
    }
    bytes
}

#[tokio::test]
async fn embeddings_without_input_get_an_openai_400() {
    let mock = MockProcess::start(&[]).await;
    let response = mock
        .post(
            "/v1/embeddings",
            &json!({"model": "text-embedding-3-small"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("input"));
}

#[tokio::test]
async fn models_are_listed_in_openai_format() {
    let mock = MockProcess::start(&["--models", "gpt-4o,claude-x"]).await;
    let body = mock.get_json("/v1/models").await;
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["gpt-4o", "claude-x"]);
    assert_eq!(body["data"][0]["object"], "model");
    assert_eq!(body["data"][0]["owned_by"], "mock");
    assert!(body["data"][0]["created"].is_u64());
}

#[tokio::test]
async fn models_are_listed_in_anthropic_format_when_anthropic_version_is_sent() {
    let mock = MockProcess::start(&["--models", "gpt-4o,claude-x"]).await;
    let response = mock
        .client
        .get(mock.url("/v1/models"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .expect("request is answered");
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["has_more"], false);
    assert_eq!(body["first_id"], "gpt-4o");
    assert_eq!(body["last_id"], "claude-x");
    let first = &body["data"][0];
    assert_eq!(first["type"], "model");
    assert_eq!(first["id"], "gpt-4o");
    assert_eq!(first["display_name"], "gpt-4o");
    assert!(first["created_at"]
        .as_str()
        .expect("created_at")
        .ends_with('Z'));
}

#[tokio::test]
async fn missing_key_gets_an_openai_401_when_keys_are_required() {
    let mock = MockProcess::start(&["--require-key", "sk-good"]).await;
    let response = mock.post("/v1/chat/completions", &chat_request("hi")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&response, "x-mock-key"), "");
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "invalid_api_key");
}

#[tokio::test]
async fn unknown_key_gets_an_anthropic_401_when_keys_are_required() {
    let mock = MockProcess::start(&["--require-key", "sk-good"]).await;
    let response = mock
        .client
        .post(mock.url("/v1/messages"))
        .header("x-api-key", "sk-bad")
        .json(&messages_request("hi", 10))
        .send()
        .await
        .expect("request is answered");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&response, "x-mock-key"), "sk-bad");
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");
}

#[tokio::test]
async fn required_keys_are_accepted_and_echoed_in_x_mock_key() {
    let mock = MockProcess::start(&["--require-key", "sk-one", "--require-key", "sk-two"]).await;
    let response = mock
        .client
        .post(mock.url("/v1/chat/completions"))
        .bearer_auth("sk-two")
        .json(&chat_request("hi"))
        .send()
        .await
        .expect("request is answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-mock-key"), "sk-two");

    let response = mock
        .client
        .post(mock.url("/v1/messages"))
        .header("x-api-key", "sk-one")
        .json(&messages_request("hi", 10))
        .send()
        .await
        .expect("request is answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-mock-key"), "sk-one");
}

#[tokio::test]
async fn anthropic_route_accepts_a_bearer_token_as_newer_sdks_send() {
    let mock = MockProcess::start(&["--require-key", "sk-one"]).await;
    let response = mock
        .client
        .post(mock.url("/v1/messages"))
        .bearer_auth("sk-one")
        .json(&messages_request("hi", 10))
        .send()
        .await
        .expect("request is answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-mock-key"), "sk-one");
}

#[tokio::test]
async fn fail_next_fails_that_many_requests_then_recovers() {
    let mock = MockProcess::start(&[]).await;
    mock.configure(json!({"fail_statuses": [503, 429], "fail_next": 2}))
        .await;

    for _ in 0..2 {
        let response = mock.post("/v1/chat/completions", &chat_request("hi")).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = response.json().await.expect("JSON body");
        assert_eq!(body["error"]["type"], "server_error");
    }
    let response = mock.post("/v1/chat/completions", &chat_request("hi")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.get_json("/mock/stats").await["failures_injected"], 2);
}

#[tokio::test]
async fn fail_percent_100_fails_every_request_in_the_provider_format() {
    let mock = MockProcess::start(&["--fail-percent", "100", "--fail-status", "429"]).await;
    let response = mock.post("/v1/chat/completions", &chat_request("hi")).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["error"]["type"], "rate_limit_error");

    let response = mock.post("/v1/messages", &messages_request("hi", 10)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["error"]["type"], "rate_limit_error");

    mock.configure(json!({"fail_statuses": [529]})).await;
    let response = mock.post("/v1/messages", &messages_request("hi", 10)).await;
    assert_eq!(response.status().as_u16(), 529);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn invalid_config_updates_are_rejected() {
    let mock = MockProcess::start(&[]).await;
    for update in [
        json!({"fail_percent": 101}),
        json!({"fail_statuses": [200]}),
        json!({"chunks": 0}),
        json!({"latency": 5}),
    ] {
        let response = mock.post("/mock/config", &update).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{update}");
    }
    assert_eq!(mock.get_json("/mock/config").await["fail_percent"], 0);
}

#[tokio::test]
async fn stats_count_requests_by_route_and_key_until_reset() {
    let mock = MockProcess::start(&[]).await;
    for key in ["k1", "k1", "k2"] {
        let response = mock
            .client
            .post(mock.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat_request("hi"))
            .send()
            .await
            .expect("request is answered");
        assert_eq!(response.status(), StatusCode::OK);
    }
    mock.post("/v1/embeddings", &json!({"model": "e", "input": "x"}))
        .await;
    let response = mock
        .client
        .post(mock.url("/v1/messages"))
        .header("x-api-key", "k2")
        .json(&messages_request("hi", 10))
        .send()
        .await
        .expect("request is answered");
    assert_eq!(response.status(), StatusCode::OK);
    mock.get_json("/v1/models").await;

    let stats = mock.get_json("/mock/stats").await;
    assert_eq!(stats["requests"], 5);
    assert_eq!(
        stats["by_route"],
        json!({"/v1/chat/completions": 3, "/v1/embeddings": 1, "/v1/messages": 1})
    );
    assert_eq!(stats["by_key"], json!({"k1": 2, "k2": 2}));
    assert_eq!(stats["failures_injected"], 0);

    let response = mock
        .client
        .post(mock.url("/mock/reset"))
        .send()
        .await
        .expect("answered");
    assert!(response.status().is_success());
    let stats = mock.get_json("/mock/stats").await;
    assert_eq!(stats["requests"], 0);
    assert_eq!(stats["by_key"], json!({}));
}

#[tokio::test]
async fn latency_delays_the_response() {
    let mock = MockProcess::start(&["--latency-ms", "300"]).await;
    let started = Instant::now();
    let response = mock.post("/v1/chat/completions", &chat_request("hi")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn stream_chunks_are_sent_as_they_are_produced() {
    let mock = MockProcess::start(&["--chunks", "4", "--chunk-delay-ms", "200"]).await;
    let mut request = chat_request("slowly");
    request["stream"] = json!(true);
    let started = Instant::now();
    let response = mock.post("/v1/chat/completions", &request).await;
    let mut body = response.bytes_stream();
    let mut received = String::new();
    let mut first_content_at = None;
    while let Some(frame) = body.next().await {
        received.push_str(std::str::from_utf8(&frame.expect("frame")).expect("UTF-8"));
        if first_content_at.is_none() && received.contains("\"content\":\"mock") {
            first_content_at = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    let first_content_at = first_content_at.expect("content arrived");
    // Three 200 ms pauses between four chunks; the first chunk does not wait for them.
    assert!(total >= Duration::from_millis(600), "{total:?}");
    assert!(
        total - first_content_at >= Duration::from_millis(500),
        "first {first_content_at:?}, total {total:?}"
    );
    assert!(received.ends_with("data: [DONE]\n\n"));
}
