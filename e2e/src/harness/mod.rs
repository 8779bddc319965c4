//! Real processes for tests and benchmarks: the gateway binary and the mock provider, started on
//! free loopback ports, their output captured, killed when dropped; and what the tests do with
//! them: cluster configs and membership waits, metrics, a throwaway PostgreSQL database, and
//! one way to wait for a condition with a deadline.

mod cluster;
mod gateway;
mod metrics;
mod mock;
mod output;
mod ports;
mod postgres;
mod sse;
mod wait;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

pub use cluster::{
    cluster_statuses, wait_for_healthy, wait_for_members, ClusterNode, GossipTimings,
    CONVERGENCE_DEADLINE,
};
pub use gateway::{gateway_fails_with, gateway_rejects, Gateway};
pub use metrics::metric_value;
pub use mock::MockProvider;
pub use output::Output;
pub use ports::{free_tcp_ports, free_udp_and_tcp_ports, free_udp_ports};
pub use postgres::{postgres_store, stored_budget_usage};
pub use sse::{parse_sse, sse_events, sse_payloads};
pub use wait::{wait_until, Deadline};

/// How long a process may take to announce its address.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// The Python with the vendors' SDKs: `BIFROST_PYTHON`, else the `.venv` that
/// `make test-deps` creates (a missing one fails the test, naming the fix).
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("BIFROST_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run `make test-deps` (or set BIFROST_PYTHON to a python with the SDKs installed)",
        venv.display()
    );
    venv
}

/// Run `e2e/python/<script>` with `base` (a URL) as its argument; the JSON object it prints.
/// A failing script fails the test with its output.
pub async fn run_python_check(script: &str, base: &str) -> serde_json::Value {
    run_python_check_with(script, &[base]).await
}

/// [`run_python_check`] with `args` as the script's arguments.
pub async fn run_python_check_with(script: &str, args: &[&str]) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let output = tokio::process::Command::new(python())
        .arg(path)
        .args(args)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("the script prints JSON")
}

/// Path of a workspace binary next to the running test executable (`target/<profile>/NAME`).
/// `BIFROST_BIN_DIR` overrides the directory.
pub fn binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("BIFROST_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("the test knows its own path");
            // target/<profile>/deps/<test> → target/<profile>
            let mut dir = exe
                .parent()
                .expect("test binary has a directory")
                .to_path_buf();
            if dir.ends_with("deps") {
                dir.pop();
            }
            dir
        }
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first with `cargo build --workspace --bins` (`make test` does this)",
        path.display()
    );
    path
}

/// `text` as JSON, or a panic showing it.
pub fn json_of(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

/// A config with one OpenAI-format provider `openai` and one Anthropic-format provider
/// `anthropic`, both pointing at `mock`.
pub fn config_for(mock: &MockProvider) -> Value {
    serde_json::json!({
        "client": {"enable_logging": true},
        "providers": {
            "openai": {
                "keys": [{"name": "primary", "value": "sk-openai", "models": ["*"]}],
                "network_config": {"base_url": mock.base}
            },
            "anthropic": {
                "keys": [{"name": "primary", "value": "sk-anthropic", "models": ["*"]}],
                "network_config": {"base_url": mock.base}
            }
        },
        "config_store": {"enabled": false}
    })
}

/// `provider_configs` letting a virtual key use every model and key of `providers`. Empty or
/// missing lists allow nothing (Bifrost's `version: 2` semantics).
pub fn allow_all(providers: &[&str]) -> Value {
    providers
        .iter()
        .map(|provider| serde_json::json!({"provider": provider, "allowed_models": ["*"], "key_ids": ["*"]}))
        .collect()
}

/// [`allow_all`] for both providers of [`config_for`].
pub fn any_provider() -> Value {
    allow_all(&["openai", "anthropic"])
}

/// A test's dependency is missing (`missing`, and `remedy`: how to provide it). Outside CI the
/// test skips: this prints why and gives `None` for the caller to return. In CI (`CI` set) a
/// missing dependency is a failure, not a silent skip: this panics.
pub fn skip_unless_ci<T>(missing: &str, remedy: &str) -> Option<T> {
    assert!(
        std::env::var_os("CI").is_none(),
        "{missing}, and in CI (`CI` is set) that fails the test: {remedy}"
    );
    eprintln!("skipped: {missing} ({remedy})");
    None
}
