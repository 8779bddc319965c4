//! The official `openai` Python SDK talks to the gateway (installed by `make test-deps` into
//! `.venv`; `BIFROST_PYTHON` names another interpreter).

use bifrost_e2e::harness::{any_provider, config_for, run_python_check, Gateway, MockProvider};

#[tokio::test]
async fn openai_python_sdk_gets_json_and_streamed_answers() {
    let mock = MockProvider::start(&["--chunks", "3"]).await;
    let mut config = config_for(&mock);
    config["client"]["enforce_auth_on_inference"] = serde_json::json!(true);
    config["governance"] = serde_json::json!({"virtual_keys": [{"id": "sdk", "value": "sk-bf-python-sdk-key", "provider_configs": any_provider()}]});
    let gateway = Gateway::start(&config).await;
    let result = run_python_check("openai_sdk_check.py", &gateway.base).await;
    assert_eq!(
        result["content"],
        "mock reply to: hello from the python sdk"
    );
    assert!(result["prompt_tokens"].as_u64().unwrap_or(0) > 0);
    assert_eq!(
        result["streamed"],
        "mock reply to: stream through translation"
    );
    assert!(result["stream_completion_tokens"].as_u64().unwrap_or(0) > 0);
    let models = result["models"].as_array().expect("model ids");
    assert!(
        models.iter().any(|m| m == "openai/gpt-4o-mini"),
        "{models:?}"
    );
}
