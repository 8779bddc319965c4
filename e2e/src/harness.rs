//! Real processes for tests and benchmarks: the gateway binary and the mock provider, started on
//! free loopback ports, their output captured, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// How long a process may take to announce its address.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

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

/// Output lines of a child process, kept for assertions.
#[derive(Clone, Default)]
pub struct Output {
    lines: Arc<Mutex<Vec<String>>>,
    changed: Arc<Notify>,
}

impl Output {
    fn capture(&self, stream: impl AsyncRead + Unpin + Send + 'static, echo: &'static str) {
        let output = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if std::env::var_os("BIFROST_TEST_ECHO").is_some() {
                    eprintln!("[{echo}] {line}");
                }
                output.lines.lock().expect("output lock").push(line);
                output.changed.notify_waiters();
            }
            output.changed.notify_waiters();
        });
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("output lock").clone()
    }

    /// Wait until a line contains `needle`; the line.
    pub async fn wait_for(&self, needle: &str, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.changed.notified();
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return Some(line);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// Whether any line contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.lines().iter().any(|l| l.contains(needle))
    }
}

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

/// Read an SSE body to the end: `(event name, data)` per event, in order.
pub async fn sse_events(response: reqwest::Response) -> Vec<(Option<String>, String)> {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.expect("stream chunk"));
    }
    parse_sse(&String::from_utf8_lossy(&body))
}

/// Split SSE text into `(event name, data)` pairs.
pub fn parse_sse(body: &str) -> Vec<(Option<String>, String)> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = Some(name.trim().to_string());
                } else if let Some(payload) = line.strip_prefix("data:") {
                    data.push(payload.strip_prefix(' ').unwrap_or(payload));
                }
            }
            (event, data.join("\n"))
        })
        .collect()
}

/// `config_store` settings for a fresh database on the test PostgreSQL server named by
/// `BIFROST_TEST_POSTGRES_URL` (`make test` starts one). `None` outside CI when no server is
/// configured, so the caller skips; in CI a missing server is a failure.
pub fn postgres_store() -> Option<Value> {
    let Ok(url) = std::env::var("BIFROST_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "BIFROST_TEST_POSTGRES_URL is not set in CI: run the tests through `make test`"
        );
        eprintln!("skipped: BIFROST_TEST_POSTGRES_URL is not set (make test starts a PostgreSQL and sets it)");
        return None;
    };
    let name = format!("e2e_{}", fastrand::u64(..));
    let status = std::process::Command::new("psql")
        .args([url.as_str(), "-q", "-c", &format!("CREATE DATABASE {name}")])
        .status()
        .expect("psql runs");
    assert!(status.success(), "creating the test database failed");
    // postgres://user@host:port/db
    let rest = url.strip_prefix("postgres://").expect("postgres URL");
    let (user, rest) = rest.split_once('@').expect("user@host");
    let (host_port, _) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = host_port.rsplit_once(':').expect("host:port");
    Some(serde_json::json!({
        "enabled": true, "type": "postgres",
        "config": {"host": host, "port": port.parse::<u16>().expect("port"), "user": user,
                   "db_name": name, "ssl_mode": "disable"}
    }))
}

/// `n` distinct UDP ports free on 127.0.0.1 right now (for gossip). All are held until every one
/// is chosen, so they differ; another process could still take one before the caller binds it.
pub fn free_udp_ports(n: usize) -> Vec<u16> {
    let sockets: Vec<std::net::UdpSocket> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a free UDP port"))
        .collect();
    sockets
        .iter()
        .map(|s| s.local_addr().expect("bound socket has an address").port())
        .collect()
}

/// `n` distinct port numbers free for both UDP and TCP on 127.0.0.1 right now (gossip ports of
/// `consul` nodes, which also accept TCP health checks on the gossip port number).
pub fn free_udp_and_tcp_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::new();
    while held.len() < n {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a free UDP port");
        let port = udp
            .local_addr()
            .expect("bound socket has an address")
            .port();
        if let Ok(tcp) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push((udp, tcp, port));
        }
    }
    held.into_iter().map(|(_, _, port)| port).collect()
}

/// `n` distinct TCP ports free on 127.0.0.1 right now (for gRPC between cluster nodes).
pub fn free_tcp_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free TCP port"))
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .expect("bound listener has an address")
                .port()
        })
        .collect()
}

/// Failure-detection settings of a test cluster (`cluster_config.gossip.config`).
#[derive(Debug, Clone, Copy)]
pub struct GossipTimings {
    /// `timeout_seconds`.
    pub timeout_seconds: u64,
    /// `success_threshold`.
    pub success_threshold: u64,
    /// `failure_threshold`.
    pub failure_threshold: u64,
}

/// `base` as node `index` of a loopback cluster gossiping on `ports`, seeded with the others
/// (static peers), named `node-<index>`, in cluster `service_name`.
pub fn cluster_node_config(
    base: &Value,
    ports: &[u16],
    index: usize,
    timings: GossipTimings,
    service_name: &str,
) -> Value {
    let peers: Vec<String> = ports
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, port)| format!("127.0.0.1:{port}"))
        .collect();
    let mut config = base.clone();
    config["cluster_config"] = serde_json::json!({
        "enabled": true,
        "node_id": format!("node-{index}"),
        "region": "local",
        "peers": peers,
        // Nodes share one host: each needs its own gRPC port too.
        "grpc": {"port": free_tcp_ports(1)[0]},
        "gossip": {"port": ports[index],
                   "config": {"timeout_seconds": timings.timeout_seconds,
                              "success_threshold": timings.success_threshold,
                              "failure_threshold": timings.failure_threshold}},
        "discovery": {"service_name": service_name}
    });
    config
}

/// How long a test cluster may take to agree on its membership.
pub const CONVERGENCE_DEADLINE: Duration = Duration::from_secs(20);

impl Gateway {
    /// `GET /cluster/status`.
    pub async fn cluster_status(&self) -> Value {
        reqwest::get(self.url("/cluster/status"))
            .await
            .expect("status answered")
            .json()
            .await
            .expect("status JSON")
    }
}

/// Poll until every node in `nodes` counts `size` healthy members (every peer passed the
/// success threshold). Panics with the status of the first node that does not, after
/// [`CONVERGENCE_DEADLINE`].
pub async fn wait_for_healthy<'a>(nodes: impl IntoIterator<Item = &'a Gateway>, size: u64) {
    let deadline = std::time::Instant::now() + CONVERGENCE_DEADLINE;
    for node in nodes {
        while node.cluster_status().await["healthy_members"] != size {
            assert!(
                std::time::Instant::now() < deadline,
                "not {size} healthy members within {CONVERGENCE_DEADLINE:?}: {:#}",
                node.cluster_status().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Poll until every node in `nodes` reports `size` members; how long that took. Panics with
/// every node's status after [`CONVERGENCE_DEADLINE`].
pub async fn wait_for_members<'a>(
    nodes: impl IntoIterator<Item = &'a Gateway> + Clone,
    size: u64,
) -> Duration {
    let started = std::time::Instant::now();
    loop {
        let mut all = true;
        for node in nodes.clone() {
            all &= node.cluster_status().await["members"].as_u64() == Some(size);
        }
        if all {
            return started.elapsed();
        }
        if started.elapsed() > CONVERGENCE_DEADLINE {
            let mut seen = Vec::new();
            for node in nodes {
                seen.push(node.cluster_status().await);
            }
            panic!("no convergence to {size} members within {CONVERGENCE_DEADLINE:?}: {seen:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A budget's `current_usage` straight from the PostgreSQL database of `store` (a
/// [`postgres_store`] value), read with `psql`; `None` when the budget row does not exist.
pub fn stored_budget_usage(store: &Value, budget_id: &str) -> Option<f64> {
    let config = &store["config"];
    let url = format!(
        "postgres://{}@{}:{}/{}",
        config["user"].as_str().expect("user"),
        config["host"].as_str().expect("host"),
        config["port"],
        config["db_name"].as_str().expect("db_name")
    );
    let output = std::process::Command::new("psql")
        .args([url.as_str(), "-qtA", "-c"])
        .arg(format!(
            "SELECT current_usage FROM budgets WHERE id = '{}'",
            budget_id.replace('\'', "''")
        ))
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (!text.is_empty()).then(|| text.parse().expect("a number"))
}
