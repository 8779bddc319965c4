//! A bad config stops the gateway at start-up with every problem named by its path.

use bifrost_e2e::harness::gateway_rejects;

#[tokio::test]
async fn invalid_fields_are_named_and_the_process_exits_non_zero() {
    let (status, stderr) = gateway_rejects(
        r#"{
          "providers": {
            "openai": {"keys": [{"value": "sk", "weight": 0}],
                       "network_config": {"default_request_timeout_in_seconds": 0}},
            "mystery": {"keys": []}
          },
          "cluster_config": {"enabled": true}
        }"#,
    )
    .await;
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    for path in [
        "providers.openai.keys[0].weight",
        "providers.openai.network_config.default_request_timeout_in_seconds",
        "providers.mystery.network_config.base_url",
        "config_store.type",
    ] {
        assert!(stderr.contains(path), "{path} missing from: {stderr}");
    }
}

#[tokio::test]
async fn a_missing_environment_variable_is_named() {
    let (status, stderr) = gateway_rejects(
        r#"{"providers": {"openai": {"keys": [{"value": "env.BIFROST_TEST_SURELY_UNSET"}]}}}"#,
    )
    .await;
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("providers.openai.keys[0].value: environment variable BIFROST_TEST_SURELY_UNSET is not set"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_syntax_error_gives_line_and_column() {
    let (status, stderr) =
        gateway_rejects("{\n  \"providers\": {\n    \"openai\": ,\n  }\n}").await;
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("not valid JSON") && stderr.contains("line 3"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_config_that_is_not_an_object_is_refused() {
    for text in ["[]", "null"] {
        let (status, stderr) = gateway_rejects(text).await;
        assert_eq!(status.code(), Some(2), "{text}: {stderr}");
        assert!(
            stderr.contains("(root): the config must be an object"),
            "{text}: {stderr}"
        );
    }
}

#[tokio::test]
async fn every_type_error_every_semantic_error_and_the_warnings_are_printed_at_once() {
    let (status, stderr) = gateway_rejects(
        r#"{
          "client": {"initial_pool_size": "many"},
          "server": {"drain_timeout_seconds": "long"},
          "providers": {"openai": {"keys": [{"value": "sk", "weight": "heavy"}],
                                   "network_config": {"default_request_timeout_in_seconds": 0}}},
          "log_retention_days": 7
        }"#,
    )
    .await;
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    for expected in [
        "client.initial_pool_size:",
        "server.drain_timeout_seconds:",
        "providers.openai.keys[0].weight:",
        "providers.openai.network_config.default_request_timeout_in_seconds:",
        "warning: unknown field log_retention_days is ignored",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected} missing from: {stderr}"
        );
    }
}

/// `--check-config --explain`: a Bifrost file field by field, for a migration.
#[tokio::test]
async fn explain_lists_every_field_by_section_with_a_summary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bifrost.json");
    let document = serde_json::json!({
        "client": {"drop_excess_requests": true, "prometheus_labels": ["team"]},
        "providers": {
            "openai": {"keys": [{"name": "k", "value": "sk", "models": ["*"], "weight": 1,
                                 "use_for_batch_api": false}]},
            "replicate": {"keys": [{"name": "v", "value": "x", "models": ["*"], "weight": 1}]}
        },
        "logs_store": {"enabled": true, "type": "sqlite", "config": {"path": "./logs.db"}}
    });
    std::fs::write(&path, document.to_string()).expect("write config");
    let output = std::process::Command::new(bifrost_e2e::harness::binary("bifrost-gateway"))
        .args(["--check-config", "--explain", "--config"])
        .arg(&path)
        .output()
        .expect("gateway runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "a rejected field: {stdout}");
    for line in [
        "\nclient\n  honoured  drop_excess_requests\n",
        "  ignored   client.prometheus_labels: no custom metric labels",
        "  ignored   providers.openai.keys[].use_for_batch_api: no batch API",
        "  ignored   logs_store: no request log store",
        "  rejected  providers.replicate: Bifrost speaks Replicate's predictions API",
        "summary: 5 honoured, 0 differ, 3 ignored, 1 rejected",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
}
