//! Durable state in the SQLite config store: spend survives restarts exactly, restarting with
//! the same config never resets usage, secrets are encrypted, a wrong key is refused.

use std::time::Duration;

use bifrost_e2e::harness::{any_provider, config_for, gateway_fails_with, Gateway, MockProvider};
use reqwest::StatusCode;
use serde_json::{json, Value};

const KEY: (&str, &str) = ("BIFROST_ENCRYPTION_KEY", "correct horse battery staple");

fn config(mock: &MockProvider) -> Value {
    let mut config = config_for(mock);
    config["providers"]["openai"]["keys"][0]["value"] = json!("sk-plaintext-must-not-be-stored");
    config["config_store"] = json!({"enabled": true, "type": "sqlite"});
    config["governance"] = json!({
        "budgets": [{"id": "b", "max_limit": 1000.0, "reset_duration": "1M"}],
        "virtual_keys": [{"id": "k", "value": "sk-bf-restart-safety-key", "provider_configs": any_provider(), "budget_id": "b"}],
        "pricing": [{"model": "gpt-4o-mini", "input_cost_per_token": 0.01, "output_cost_per_token": 0.02}],
        // Long on purpose: only the shutdown flush can have written the spend.
        "usage_flush_interval_ms": 600000
    });
    config
}

#[tokio::test]
async fn spend_survives_sigterm_restarts_exactly_and_a_restart_does_not_reset_it() {
    let mock = MockProvider::start(&["--chunks", "5"]).await;
    let mut gateway = Gateway::start_with(&config(&mock), &[KEY]).await;
    let ready = reqwest::get(gateway.url("/ready"))
        .await
        .expect("ready answered");
    assert_eq!(ready.status(), StatusCode::OK, "the store answers its ping");
    // 1 prompt token ($0.01) + 5 completion tokens ($0.10) per request.
    for _ in 0..7 {
        assert_eq!(
            gateway.chat_as("sk-bf-restart-safety-key").await,
            StatusCode::OK
        );
    }
    gateway.signal("TERM");
    assert_eq!(
        gateway.wait_exit(Duration::from_secs(20)).await.code(),
        Some(0)
    );
    gateway.restart().await;
    assert!(
        (gateway.first_budget_usage().await - 0.77).abs() < 1e-9,
        "exactly 7 × $0.11 after the first restart"
    );

    for _ in 0..3 {
        assert_eq!(
            gateway.chat_as("sk-bf-restart-safety-key").await,
            StatusCode::OK
        );
    }
    gateway.signal("TERM");
    assert_eq!(
        gateway.wait_exit(Duration::from_secs(20)).await.code(),
        Some(0)
    );
    gateway.restart().await; // same config file imported again
    assert!(
        (gateway.first_budget_usage().await - 1.10).abs() < 1e-9,
        "nothing lost, nothing reset"
    );
}

#[tokio::test]
async fn provider_keys_are_encrypted_at_rest_and_a_wrong_key_is_refused() {
    let mock = MockProvider::start(&[]).await;
    let mut gateway = Gateway::start_with(&config(&mock), &[KEY]).await;
    assert_eq!(
        gateway.chat_as("sk-bf-restart-safety-key").await,
        StatusCode::OK,
        "the decrypted key works upstream"
    );
    gateway.signal("TERM");
    gateway.wait_exit(Duration::from_secs(20)).await;

    for file in ["bifrost.db", "bifrost.db-wal"] {
        let bytes = std::fs::read(gateway.dir().join(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("sk-plaintext-must-not-be-stored"),
            "{file} holds the provider key in plaintext"
        );
        assert!(
            !text.contains("sk-bf-restart-safety-key"),
            "{file} holds the virtual key in plaintext"
        );
    }

    let (status, output) = gateway_fails_with(
        &gateway.config_path,
        &[("BIFROST_ENCRYPTION_KEY", "a different key")],
    )
    .await;
    assert!(!status.success());
    assert!(output.contains("encryption key does not match"), "{output}");
}
