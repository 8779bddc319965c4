//! The official `openai` Python SDK talks to the gateway (installed by `make test-deps` into
//! `.venv`; `BIFROST_PYTHON` names another interpreter).

use std::path::PathBuf;

use bifrost_e2e::harness::{any_provider, config_for, python, Gateway, MockProvider};
use serde_json::Value;

#[tokio::test]
async fn openai_python_sdk_gets_json_and_streamed_answers() {
    let mock = MockProvider::start(&["--chunks", "3"]).await;
    let mut config = config_for(&mock);
    config["client"]["enforce_auth_on_inference"] = serde_json::json!(true);
    config["governance"] = serde_json::json!({"virtual_keys": [{"id": "sdk", "value": "sk-bf-python-sdk-key", "provider_configs": any_provider()}]});
    let gateway = Gateway::start(&config).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/openai_sdk_check.py");
    let output = tokio::process::Command::new(python())
        .arg(script)
        .arg(&gateway.base)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "SDK script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_str(stdout.trim()).expect("script prints JSON");
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
