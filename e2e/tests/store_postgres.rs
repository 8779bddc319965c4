//! Several gateways sharing one PostgreSQL config store: concurrent start-ups don't race the
//! migrations, spend from every replica lands in the shared budget, and survives restarts.
//! `make test` runs this under `scripts/with-postgres.sh`, which sets BIFROST_TEST_POSTGRES_URL.

use std::time::Duration;

use bifrost_e2e::harness::{
    any_provider, config_for, postgres_store, wait_until, Deadline, Gateway, MockProvider,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn config(mock: &MockProvider, store: &Value) -> Value {
    let mut config = config_for(mock);
    config["config_store"] = store.clone();
    config["governance"] = json!({
        "budgets": [{"id": "shared", "max_limit": 1000.0, "reset_duration": "1M"}],
        "virtual_keys": [{"id": "k", "value": "sk-bf-shared-budget", "provider_configs": any_provider(), "budget_id": "shared"}],
        "pricing": [{"model": "gpt-4o-mini", "input_cost_per_token": 0.01, "output_cost_per_token": 0.02}],
        "usage_flush_interval_ms": 200
    });
    config
}

#[tokio::test]
async fn three_replicas_share_one_postgres_store_and_lose_no_spend_across_restarts() {
    let Some(store) = postgres_store() else {
        return;
    };
    let mock = MockProvider::start(&["--chunks", "5"]).await;
    let config = config(&mock, &store);
    let env = [("BIFROST_ENCRYPTION_KEY", "shared cluster secret")];
    // Start all three at once: migrations and key set-up must not race.
    let (a, b, c) = tokio::join!(
        Gateway::start_with(&config, &env),
        Gateway::start_with(&config, &env),
        Gateway::start_with(&config, &env)
    );
    let mut gateways = [a, b, c];
    for (i, gateway) in gateways.iter().enumerate() {
        for _ in 0..=i {
            assert_eq!(gateway.chat_as("sk-bf-shared-budget").await, StatusCode::OK);
        }
    }
    // 6 requests × $0.11, flushed by each replica and re-read by every replica.
    let deadline =
        Deadline::after(Duration::from_secs(10)).polling_every(Duration::from_millis(100));
    for (index, gateway) in gateways.iter().enumerate() {
        wait_until(
            &format!("replica {index} to agree on $0.66 spent"),
            deadline,
            async || gateway.first_budget_usage().await,
            |usd| (usd - 0.66).abs() <= 1e-9,
        )
        .await;
    }
    for gateway in &mut gateways {
        gateway.signal("TERM");
        assert_eq!(
            gateway.wait_exit(Duration::from_secs(20)).await.code(),
            Some(0)
        );
    }
    for gateway in &mut gateways {
        gateway.restart().await;
    }
    assert_eq!(
        gateways[0].chat_as("sk-bf-shared-budget").await,
        StatusCode::OK
    );
    gateways[0].signal("TERM");
    gateways[0].wait_exit(Duration::from_secs(20)).await;
    wait_until(
        "spend after the restarts to be exactly $0.77",
        Deadline::after(Duration::from_secs(10)).polling_every(Duration::from_millis(100)),
        async || gateways[1].first_budget_usage().await,
        |usd| (usd - 0.77).abs() <= 1e-9,
    )
    .await;
}

#[tokio::test]
async fn postgres_without_an_encryption_key_is_refused() {
    let Some(store) = postgres_store() else {
        return;
    };
    let mock = MockProvider::start(&[]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.json");
    std::fs::write(&path, config(&mock, &store).to_string()).expect("write config");
    let (status, output) = bifrost_e2e::harness::gateway_fails_with(&path, &[]).await;
    assert!(!status.success());
    assert!(
        output.contains("refusing to keep provider and virtual key secrets unencrypted"),
        "{output}"
    );
}
