//! The `bifrost-gateway` binary as a child process: started on a free port (optionally on
//! another loopback address or in a network namespace), signalled, restarted, reconfigured.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use super::{binary, Output, START_DEADLINE};

/// A running `bifrost-gateway` with its config (and SQLite store, if any) in a temporary
/// directory that survives restarts.
pub struct Gateway {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// Its log lines (JSON).
    pub output: Output,
    /// The config file it was started with (rewrite it and send SIGHUP to reload).
    pub config_path: PathBuf,
    env: Vec<(String, String)>,
    dir: Arc<tempfile::TempDir>,
    /// The HTTP listen address (`--host`); gossip binds the same IP.
    host: String,
    /// The network namespace it runs in (`ip netns exec`), if any.
    netns: Option<String>,
}

impl Gateway {
    /// Start with `config` written as `config.json`.
    pub async fn start(config: &Value) -> Self {
        Self::start_with(config, &[]).await
    }

    /// Start with extra environment variables. A SQLite config store without a path gets one
    /// in the gateway's temporary directory.
    pub async fn start_with(config: &Value, env: &[(&str, &str)]) -> Self {
        Self::start_in(
            Arc::new(tempfile::tempdir().expect("temp dir")),
            config,
            env,
            "127.0.0.1",
            None,
        )
        .await
    }

    /// Start listening on `host` (any of 127.0.0.0/8 works on Linux loopback) instead of
    /// 127.0.0.1, so several nodes on one machine can share a gossip port.
    pub async fn start_on(host: &str, config: &Value, env: &[(&str, &str)]) -> Self {
        Self::start_in(
            Arc::new(tempfile::tempdir().expect("temp dir")),
            config,
            env,
            host,
            None,
        )
        .await
    }

    /// Start inside the network namespace `netns` (through `ip netns exec`, so as root),
    /// listening on `host`, an address in that namespace. `restart` keeps it there.
    pub async fn start_in_netns(
        netns: &str,
        host: &str,
        config: &Value,
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_in(
            Arc::new(tempfile::tempdir().expect("temp dir")),
            config,
            env,
            host,
            Some(netns),
        )
        .await
    }

    /// Start another gateway sharing this one's directory (and so its SQLite store).
    pub async fn start_beside(&self, config: &Value, env: &[(&str, &str)]) -> Self {
        Self::start_in(self.dir.clone(), config, env, "127.0.0.1", None).await
    }

    async fn start_in(
        dir: Arc<tempfile::TempDir>,
        config: &Value,
        env: &[(&str, &str)],
        host: &str,
        netns: Option<&str>,
    ) -> Self {
        let mut config = config.clone();
        let store = &mut config["config_store"];
        if store["enabled"] != Value::Bool(false)
            && store["type"].as_str().unwrap_or("sqlite") == "sqlite"
            && store["config"]["path"].is_null()
        {
            store["config"]["path"] =
                Value::String(dir.path().join("bifrost.db").display().to_string());
        }
        let config_path = dir
            .path()
            .join(format!("config-{}.json", fastrand::u32(..)));
        write_json(&config_path, &config);
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, base, output) = spawn_gateway(&config_path, &env, host, netns).await;
        Self {
            child,
            base,
            output,
            config_path,
            env,
            dir,
            host: host.to_string(),
            netns: netns.map(str::to_string),
        }
    }

    /// After the process exited (SIGTERM + `wait_exit`), start it again with the same config,
    /// environment and directory.
    pub async fn restart(&mut self) {
        let (child, base, output) = spawn_gateway(
            &self.config_path,
            &self.env,
            &self.host,
            self.netns.as_deref(),
        )
        .await;
        self.child = child;
        self.base = base;
        self.output = output;
    }

    /// A small chat completion with virtual key `vk` (`openai/gpt-4o-mini`, prompt "spend");
    /// the answer's status.
    pub async fn chat_as(&self, vk: &str) -> reqwest::StatusCode {
        reqwest::Client::new()
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(vk)
            .json(&serde_json::json!({"model": "openai/gpt-4o-mini",
                                      "messages": [{"role": "user", "content": "spend"}]}))
            .send()
            .await
            .expect("answered")
            .status()
    }

    /// `POST {path}` with JSON `body`: the status and the body text.
    pub async fn post_json(&self, path: &str, body: &Value) -> (reqwest::StatusCode, String) {
        let response = reqwest::Client::new()
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("answered");
        let status = response.status();
        (status, response.text().await.unwrap_or_default())
    }

    /// The first budget's spend this period, from `GET /api/governance/usage`.
    pub async fn first_budget_usage(&self) -> f64 {
        let usage: Value = reqwest::get(self.url("/api/governance/usage"))
            .await
            .expect("usage answered")
            .json()
            .await
            .expect("JSON");
        usage["budgets"][0]["current_usage"]
            .as_f64()
            .unwrap_or(-1.0)
    }

    /// The gateway's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("gateway still running")
    }

    /// Send a signal by name (`TERM`, `HUP`, `KILL`).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("gateway still running");
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    /// Wait for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("gateway did not exit within {within:?}"))
            .expect("wait on child")
    }

    /// Replace the config file (the running gateway reloads it on SIGHUP).
    pub fn write_config(&self, config: &Value) {
        write_json(&self.config_path, config);
    }

    /// Replace the config file with raw text.
    pub fn write_config_text(&self, text: &str) {
        std::fs::write(&self.config_path, text).expect("write config");
    }
}

async fn spawn_gateway(
    config_path: &Path,
    env: &[(String, String)],
    host: &str,
    netns: Option<&str>,
) -> (Child, String, Output) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut child = gateway_command_in(netns, config_path, &env, host)
        .spawn()
        .expect("bifrost-gateway starts");
    let output = Output::default();
    output.capture(child.stdout.take().expect("stdout piped"), "gateway");
    output.capture(child.stderr.take().expect("stderr piped"), "gateway");
    let Some(line) = output.wait_for("\"listening\"", START_DEADLINE).await else {
        panic!("gateway did not start: {:#?}", output.lines());
    };
    let event: Value = serde_json::from_str(&line).expect("JSON log line");
    let addr = event["http_addr"].as_str().expect("http_addr field");
    let port = addr.rsplit(':').next().expect("port");
    (child, format!("http://{host}:{port}"), output)
}

/// Run a gateway with `env` on a config file expected to stop it at start-up; its exit status
/// and everything it printed.
pub async fn gateway_fails_with(config_path: &Path, env: &[(&str, &str)]) -> (ExitStatus, String) {
    let output = tokio::time::timeout(START_DEADLINE, gateway_command(config_path, env).output())
        .await
        .expect("gateway exits in time")
        .expect("gateway runs");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status, text)
}

/// Run the gateway on a config expected to be rejected; its exit status and stderr.
pub async fn gateway_rejects(config_text: &str) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.json");
    std::fs::write(&path, config_text).expect("write config");
    let output = tokio::time::timeout(START_DEADLINE, gateway_command(&path, &[]).output())
        .await
        .expect("gateway exits in time")
        .expect("gateway runs");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn gateway_command(config_path: &Path, env: &[(&str, &str)]) -> Command {
    gateway_command_on(config_path, env, "127.0.0.1")
}

fn gateway_command_on(config_path: &Path, env: &[(&str, &str)], host: &str) -> Command {
    gateway_command_in(None, config_path, env, host)
}

/// The gateway command, run through `ip netns exec <netns>` when `netns` is set.
fn gateway_command_in(
    netns: Option<&str>,
    config_path: &Path,
    env: &[(&str, &str)],
    host: &str,
) -> Command {
    let mut command = match netns {
        Some(netns) => {
            let mut command = Command::new("ip");
            command
                .args(["netns", "exec", netns])
                .arg(binary("bifrost-gateway"));
            command
        }
        None => Command::new(binary("bifrost-gateway")),
    };
    command
        .arg("--config")
        .arg(config_path)
        .args(["--host", host, "--port", "0", "--log-format", "json"])
        .env_remove("BIFROST_CONFIG")
        .env_remove("BIFROST_PORT")
        .env_remove("BIFROST_HOST")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

fn write_json(path: &Path, value: &Value) {
    let text = serde_json::to_string_pretty(value).expect("serializable config");
    // Write then rename, so a reload never sees a half-written file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("move config into place");
}
