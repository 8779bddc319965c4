//! Signals: SIGTERM drains in-flight streams before exiting 0; SIGHUP reloads the config file
//! and keeps the running one when the file is bad.

use std::time::Duration;

use bifrost_e2e::harness::{config_for, parse_sse, Gateway, MockProvider};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn sigterm_turns_ready_off_and_lets_an_open_stream_finish() {
    // 10 chunks, 150 ms apart: the stream is still open when SIGTERM arrives.
    let mock = MockProvider::start(&["--chunks", "10", "--chunk-delay-ms", "150"]).await;
    let mut config = config_for(&mock);
    config["server"] = json!({"shutdown_delay_seconds": 1, "drain_timeout_seconds": 20});
    let mut gateway = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(gateway.url("/ready"))
            .send()
            .await
            .expect("ready")
            .status(),
        StatusCode::OK
    );

    let response = client
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({"model": "openai/gpt-4o-mini", "stream": true,
                      "messages": [{"role": "user", "content": "keep streaming while we shut down"}]}))
        .send()
        .await
        .expect("stream starts");
    let mut body = response.bytes_stream();
    let mut received = Vec::new();
    received.extend_from_slice(&body.next().await.expect("first chunk").expect("chunk"));

    gateway.signal("TERM");
    gateway
        .output
        .wait_for("shutdown requested", Duration::from_secs(5))
        .await
        .expect("SIGTERM logged");
    let ready = reqwest::Client::new()
        .get(gateway.url("/ready"))
        .send()
        .await
        .expect("still listening during the delay");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    while let Some(chunk) = body.next().await {
        received.extend_from_slice(&chunk.expect("stream continues through the drain"));
    }
    let events = parse_sse(&String::from_utf8_lossy(&received));
    assert_eq!(
        events.last().map(|(_, d)| d.as_str()),
        Some("[DONE]"),
        "stream completed"
    );
    let text: String = events
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "mock reply to: keep streaming while we shut down");

    let status = gateway.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "clean exit after the drain");
    assert!(
        reqwest::Client::new()
            .get(gateway.url("/health"))
            .send()
            .await
            .is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn sighup_reloads_a_good_config_and_keeps_the_old_one_on_a_bad_file() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    let mut gateway = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    let ask = |model: &'static str| {
        client
            .post(gateway.url("/v1/chat/completions"))
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    assert_eq!(
        ask("added/gpt-4o-mini").await.expect("answered").status(),
        StatusCode::NOT_FOUND
    );

    config["providers"]["added"] = json!({"keys": [{"value": "k", "models": ["*"]}], "network_config": {"base_url": mock.base}});
    gateway.write_config(&config);
    gateway.signal("HUP");
    gateway
        .output
        .wait_for("config reloaded", Duration::from_secs(10))
        .await
        .expect("reload logged");
    assert_eq!(
        ask("added/gpt-4o-mini").await.expect("answered").status(),
        StatusCode::OK
    );

    gateway.write_config_text("{\"providers\": {\"added\": {\"keys\": [{\"weight\": -1}]}}}");
    gateway.signal("HUP");
    let failure = gateway
        .output
        .wait_for("config reload failed", Duration::from_secs(10))
        .await
        .expect("failed reload logged");
    assert!(
        failure.contains("providers.added.keys[0].weight"),
        "the log names the field: {failure}"
    );
    assert_eq!(
        ask("added/gpt-4o-mini").await.expect("answered").status(),
        StatusCode::OK,
        "old config still serves"
    );
    assert_eq!(
        ask("openai/gpt-4o-mini").await.expect("answered").status(),
        StatusCode::OK
    );

    gateway.signal("TERM");
    assert_eq!(
        gateway.wait_exit(Duration::from_secs(20)).await.code(),
        Some(0)
    );
}
