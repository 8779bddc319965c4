//! The `mock-provider` binary as a child process.

use std::process::Stdio;

use serde_json::Value;
use tokio::process::{Child, Command};

use super::{binary, wait_until, Deadline, Output, START_DEADLINE};

/// A running `mock-provider`.
pub struct MockProvider {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// Its stdout and stderr.
    pub output: Output,
    client: reqwest::Client,
}

impl MockProvider {
    /// Start one with extra flags (see `mock-provider --help`).
    pub async fn start(args: &[&str]) -> Self {
        let threads: &[&str] = if args.contains(&"--threads") {
            &[]
        } else {
            &["--threads", "2"]
        };
        let mut child = Command::new(binary("mock-provider"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(threads)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("mock-provider starts");
        let output = Output::default();
        output.capture(child.stdout.take().expect("stdout piped"), "mock");
        output.capture(child.stderr.take().expect("stderr piped"), "mock");
        let line = output
            .wait_for("mock-provider listening on ", START_DEADLINE)
            .await
            .unwrap_or_else(|| panic!("mock-provider did not start: {:?}", output.lines()));
        let base = line
            .split("listening on ")
            .nth(1)
            .expect("address after the prefix")
            .trim()
            .to_string();
        Self {
            child,
            base,
            output,
            client: reqwest::Client::new(),
        }
    }

    /// `GET /mock/stats`.
    pub async fn stats(&self) -> Value {
        self.client
            .get(format!("{}/mock/stats", self.base))
            .send()
            .await
            .expect("mock answers")
            .json()
            .await
            .expect("stats JSON")
    }

    /// Number of inference requests the mock has received.
    pub async fn requests(&self) -> u64 {
        self.stats().await["requests"].as_u64().unwrap_or(0)
    }

    /// Wait until the mock has received at least `count` inference requests.
    pub async fn wait_for_requests(&self, count: u64, deadline: Deadline) {
        wait_until(
            &format!("{count} request(s) to reach the mock (observed: its request count)"),
            deadline,
            async || self.requests().await,
            |requests| *requests >= count,
        )
        .await;
    }

    /// `POST /mock/config` with a partial config.
    pub async fn configure(&self, settings: Value) {
        let response = self
            .client
            .post(format!("{}/mock/config", self.base))
            .json(&settings)
            .send()
            .await
            .expect("mock answers");
        assert!(response.status().is_success(), "mock rejected {settings}");
    }

    /// Stop it (connections to it are refused afterwards).
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
