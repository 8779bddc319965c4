//! `bench`: what the gateway costs on top of its upstream. Runs `oha` against the mock provider
//! directly and through the gateway, and reports added latency, peak throughput, the gateway's
//! CPU time per request and its memory; then cluster numbers (`cluster`). It prints numbers and
//! never fails on them.

mod cluster;
mod oha;
mod procfs;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::json;

use crate::harness::{allow_all, Gateway, MockProvider};
use oha::Load;
use procfs::{CpuReading, Memory};
use report::{Results, Run, ServerCpu, Settings};

/// Keeps the gateway's `listening` line (the harness waits for it) and drops everything below
/// warn elsewhere, so logging costs no CPU under load.
const GATEWAY_LOG_FILTER: &str = "warn,bifrost_gateway::server=info";

/// Command-line flags of the `bench` binary.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "bench",
    version,
    about = "Measure bifrost-gateway against the mock provider"
)]
pub struct BenchArgs {
    /// Seconds each load run lasts.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: u64,

    /// Requests per second of the fixed-rate runs.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,

    /// Connections of the fixed-rate runs.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,

    /// Connections of the peak-throughput runs (no rate limit).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub peak_concurrency: u32,

    /// Tokio worker threads of the mock provider.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub mock_threads: u32,

    /// Content chunks per streamed answer.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub chunks: u32,

    /// The `oha` executable.
    #[arg(long, env = "OHA", default_value = "oha")]
    pub oha: PathBuf,

    /// Where the results are written as JSON.
    #[arg(long, default_value = "target/bench/results.json")]
    pub output: PathBuf,

    /// Run only the cluster benchmark (needs BIFROST_TEST_POSTGRES_URL).
    #[arg(long, conflicts_with = "skip_cluster")]
    pub cluster_only: bool,

    /// Skip the cluster benchmark.
    #[arg(long)]
    pub skip_cluster: bool,

    /// Requests of the counter-convergence run (each observed by the 4 other nodes).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub convergence_samples: u64,

    /// Active virtual keys (each with a rate limit and a budget) of the gossip-bandwidth run.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub cluster_keys: u64,

    /// Requests per second (whole cluster) of the gossip-bandwidth run; it lasts `--duration`.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    pub cluster_rate: u32,

    /// Where the cluster results are written as JSON.
    #[arg(long, default_value = "target/bench/cluster.json")]
    pub cluster_output: PathBuf,
}

impl BenchArgs {
    fn settings(&self, busy_before_percent: Option<f64>) -> Settings {
        Settings {
            duration_s: self.duration,
            rate: self.rate,
            connections: self.connections,
            peak_concurrency: self.peak_concurrency,
            mock_threads: self.mock_threads,
            chunks: self.chunks,
            busy_before_percent,
        }
    }
}

/// Whether the client asks for a streamed answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Json,
    Stream,
}

impl Mode {
    /// As printed and serialized.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Stream => "stream",
        }
    }
}

/// A load shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// `--rate` requests per second over `--connections`.
    FixedRate,
    /// As fast as `--peak-concurrency` connections go.
    Peak,
}

/// Who answers the load generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Direct,
    Gateway,
    /// A second gateway with 10,000 virtual keys loaded; requests carry one of them, with a
    /// rate limit and a budget, so every admission step runs.
    Governed,
    /// The plain gateway, its OpenAI-format request translated to another provider format
    /// (the mock answers in it, and the answer is translated back).
    Translated(Format),
}

/// The provider formats a translated run reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Anthropic,
    Gemini,
    Bedrock,
    Azure,
    Vertex,
    Mantle,
}

impl Format {
    /// Every format, in table order.
    pub const ALL: [Format; 6] = [
        Format::Anthropic,
        Format::Gemini,
        Format::Bedrock,
        Format::Azure,
        Format::Vertex,
        Format::Mantle,
    ];

    /// The model a request names to reach the format.
    fn model(self) -> &'static str {
        match self {
            Format::Anthropic => "anthropic/claude-3-5-haiku-20241022",
            Format::Gemini => "gemini/gemini-2.5-flash",
            Format::Bedrock => "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0",
            Format::Azure => "azure/gpt-4o-mini",
            Format::Vertex => "vertex/gemini-2.5-flash",
            Format::Mantle => "bedrock_mantle/openai.gpt-oss-120b-1:0",
        }
    }
}

impl Target {
    /// As printed and serialized.
    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Gateway => "gateway",
            Self::Governed => "governed",
            Self::Translated(Format::Anthropic) => "gateway→anthropic",
            Self::Translated(Format::Gemini) => "gateway→gemini",
            Self::Translated(Format::Bedrock) => "gateway→bedrock",
            Self::Translated(Format::Azure) => "gateway→azure",
            Self::Translated(Format::Vertex) => "gateway→vertex",
            Self::Translated(Format::Mantle) => "gateway→mantle (SigV4)",
        }
    }
}

/// Run the single-gateway benchmark, then the cluster one (as the flags say).
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if !args.cluster_only {
        single_gateway(&args).await?;
    }
    if !args.skip_cluster {
        cluster::run(&args).await?;
    }
    Ok(())
}

/// Start the mock and the gateway, run every scenario, print the table and write the JSON.
async fn single_gateway(args: &BenchArgs) -> anyhow::Result<()> {
    let settings = args.settings(busy_percent(Duration::from_secs(1)).await);
    let oha_version = oha::version(&args.oha).await?;
    let threads = args.mock_threads.to_string();
    let chunks = args.chunks.to_string();
    let mut upstream = MockProvider::start(&["--threads", &threads, "--chunks", &chunks]).await;
    let mut gateway = Gateway::start_with(
        &gateway_config(&upstream.base),
        &[
            ("RUST_LOG", GATEWAY_LOG_FILTER),
            ("BIFROST_LOG_LEVEL", "warn"),
        ],
    )
    .await;
    let gateway_pid = gateway.pid();
    let mut governed = Gateway::start_with(
        &governed_config(&upstream.base),
        &[
            ("RUST_LOG", GATEWAY_LOG_FILTER),
            ("BIFROST_LOG_LEVEL", "warn"),
        ],
    )
    .await;
    let bench = Bench {
        args,
        upstream: &upstream,
        gateway: &gateway,
        governed: &governed,
        clock_ticks: procfs::clock_ticks_per_second(),
    };
    eprintln!(
        "bench: {oha_version}; mock at {} ({} thread(s)), gateway at {} (pid {gateway_pid}); {} s per run",
        upstream.base, args.mock_threads, gateway.base, args.duration
    );

    let start_rss = Memory::read(gateway_pid)?.rss_kib;
    warm_up(args, &gateway, Target::Gateway).await?;
    warm_up(args, &governed, Target::Governed).await?;
    let idle_rss = Memory::read(gateway_pid)?.rss_kib;

    let mut runs = Vec::new();
    for mode in [Mode::Json, Mode::Stream] {
        for scenario in [Scenario::FixedRate, Scenario::Peak] {
            for target in [Target::Direct, Target::Gateway, Target::Governed] {
                if target == Target::Governed && mode == Mode::Stream {
                    continue;
                }
                eprintln!(
                    "bench: {} via {}",
                    report::scenario_label(&settings, scenario, mode),
                    target.name()
                );
                runs.push(bench.measure(mode, scenario, target).await?);
                // Let closed connections settle before the next run.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        // Each provider format at the fixed rate: the gateway's CPU per request when it
        // translates, next to the pass-through "gateway" row above (Azure is OpenAI's format
        // at another address: pass-through too).
        for format in Format::ALL {
            let target = Target::Translated(format);
            eprintln!(
                "bench: {} via {}",
                report::scenario_label(&settings, Scenario::FixedRate, mode),
                target.name()
            );
            runs.push(bench.measure(mode, Scenario::FixedRate, target).await?);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    let memory = Memory::read(gateway_pid)?;
    // Stop and reap both here rather than leave it to their drop.
    for process in [&mut gateway, &mut governed] {
        process.signal("TERM");
        process.wait_exit(Duration::from_secs(10)).await;
    }
    upstream.stop().await;

    let results = Results::new(
        settings,
        oha_version,
        runs,
        report::Rss {
            start_kib: start_rss,
            idle_kib: idle_rss,
            peak_kib: memory.peak_rss_kib,
        },
    );
    print!("{}", report::table(&results));
    report::write_json(&results, &args.output)?;
    eprintln!("bench: results written to {}", args.output.display());
    Ok(())
}

/// How busy the machine is over `window`, in percent of all its CPUs.
async fn busy_percent(window: Duration) -> Option<f64> {
    let (busy_before, total_before) = procfs::machine_ticks()?;
    tokio::time::sleep(window).await;
    let (busy_after, total_after) = procfs::machine_ticks()?;
    let total = total_after.checked_sub(total_before).filter(|&t| t > 0)?;
    Some(busy_after.saturating_sub(busy_before) as f64 * 100.0 / total as f64)
}

/// The processes under test and how to load them.
struct Bench<'a> {
    args: &'a BenchArgs,
    upstream: &'a MockProvider,
    gateway: &'a Gateway,
    governed: &'a Gateway,
    clock_ticks: u64,
}

impl Bench<'_> {
    /// One `oha` run against `target`, with the CPU time of the process answering it: the mock
    /// alone for direct runs is the baseline the gateway's figure compares against.
    async fn measure(&self, mode: Mode, scenario: Scenario, target: Target) -> anyhow::Result<Run> {
        let (base, pid) = match target {
            Target::Direct => (
                &self.upstream.base,
                self.upstream.pid().context("the mock provider exited")?,
            ),
            Target::Gateway | Target::Translated(_) => (&self.gateway.base, self.gateway.pid()),
            Target::Governed => (&self.governed.base, self.governed.pid()),
        };
        let load = load(self.args, base, mode, scenario, target);
        let before = CpuReading::read(pid, self.clock_ticks)?;
        let measured = oha::run(&self.args.oha, &load).await?;
        let (cpu, source) = CpuReading::read(pid, self.clock_ticks)?.since(&before);
        Ok(Run {
            mode,
            scenario,
            target,
            server_cpu: ServerCpu {
                us_per_request: cpu.as_secs_f64() * 1e6 / measured.ok.max(1) as f64,
                source,
            },
            measured,
        })
    }
}

/// A few seconds of gentle traffic through the gateway in both modes, so the idle RSS includes
/// warm connection pools and the first run does not pay for them. Fails if the gateway does not
/// answer 2xx at all, since nothing after that would measure anything.
async fn warm_up(args: &BenchArgs, gateway: &Gateway, target: Target) -> anyhow::Result<()> {
    for mode in [Mode::Json, Mode::Stream] {
        let load = Load {
            url: format!("{}/v1/chat/completions", gateway.base),
            body: request_body(mode, target),
            authorization: authorization(target),
            connections: args.connections.min(8),
            rate: Some(200),
            duration: Duration::from_secs(2),
        };
        let measured = oha::run(&args.oha, &load)
            .await
            .with_context(|| format!("warming up ({})", mode.name()))?;
        if measured.ok == 0 {
            bail!(
                "the gateway answered no warm-up request ({}) with 2xx: {:?}",
                mode.name(),
                measured.statuses
            );
        }
    }
    Ok(())
}

fn load(args: &BenchArgs, base: &str, mode: Mode, scenario: Scenario, target: Target) -> Load {
    let (connections, rate) = match scenario {
        Scenario::FixedRate => (args.connections, Some(args.rate)),
        Scenario::Peak => (args.peak_concurrency, None),
    };
    Load {
        url: format!("{base}/v1/chat/completions"),
        body: request_body(mode, target),
        authorization: authorization(target),
        connections,
        rate,
        duration: Duration::from_secs(args.duration),
    }
}

/// Number of virtual keys the governed gateway loads.
const VIRTUAL_KEYS: usize = 10_000;

/// The governed run's virtual key (one in the middle of the 10,000).
fn authorization(target: Target) -> String {
    match target {
        Target::Governed => format!("Bearer {}", vk_value(VIRTUAL_KEYS / 2)),
        _ => "Bearer sk-bench".to_string(),
    }
}

fn vk_value(index: usize) -> String {
    format!("sk-bf-bench-{index:05}-0123456789abcdef")
}

/// The plain gateway's config plus 10,000 virtual keys in 100 teams, each with a generous
/// rate limit and budget (never reached), in memory (no store) so only governance is added.
fn governed_config(upstream_base: &str) -> serde_json::Value {
    let mut config = gateway_config(upstream_base);
    let teams: Vec<_> = (0..100)
        .map(|t| json!({"id": format!("team-{t}"), "budget_id": "team-budget"}))
        .collect();
    let keys: Vec<_> = (0..VIRTUAL_KEYS)
        .map(|i| {
            json!({"id": format!("vk-{i}"), "value": vk_value(i), "provider_configs": allow_all(&["openai"]), "team_id": format!("team-{}", i % 100),
                   "rate_limit_id": "generous", "budget_id": "vk-budget"})
        })
        .collect();
    config["client"]["enforce_auth_on_inference"] = json!(true);
    config["config_store"] = json!({"enabled": false});
    config["governance"] = json!({
        "budgets": [
            {"id": "vk-budget", "max_limit": 1.0e9, "reset_duration": "1M"},
            {"id": "team-budget", "max_limit": 1.0e9, "reset_duration": "1M"}
        ],
        "rate_limits": [{"id": "generous", "request_max_limit": 1_000_000_000u64, "request_reset_duration": "1h",
                         "token_max_limit": 1_000_000_000_000u64, "token_reset_duration": "1h"}],
        "teams": teams,
        "virtual_keys": keys,
    });
    config
}

/// A small chat request; through the gateway the model names its provider.
fn request_body(mode: Mode, target: Target) -> String {
    let model = match target {
        Target::Direct => "gpt-4o-mini",
        Target::Gateway | Target::Governed => "openai/gpt-4o-mini",
        Target::Translated(format) => format.model(),
    };
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 16,
        "stream": mode == Mode::Stream,
    })
    .to_string()
}

/// The gateway's config: an OpenAI-format provider at the mock and one of every other format
/// the translated runs reach (Bedrock with an API key, Vertex in express mode: no token
/// exchange in the measured path; Bedrock Mantle with IAM credentials, so its row is the cost of
/// SigV4 signing on a pass-through), request logging off so that per-request log lines do
/// not count as gateway CPU.
fn gateway_config(upstream_base: &str) -> serde_json::Value {
    let at_mock = |name: &str, key: serde_json::Value| {
        let mut key = key;
        key["name"] = json!("primary");
        key["models"] = json!(["*"]);
        (
            name.to_owned(),
            json!({"keys": [key], "network_config": {"base_url": upstream_base}}),
        )
    };
    let mut providers: serde_json::Map<String, serde_json::Value> = [
        at_mock("openai", json!({"value": "sk-openai"})),
        at_mock("anthropic", json!({"value": "sk-anthropic"})),
        at_mock("gemini", json!({"value": "gm-bench"})),
        at_mock("bedrock", json!({"value": "bedrock-api-key"})),
        at_mock("vertex", json!({"value": "vx-bench"})),
    ]
    .into_iter()
    .collect();
    // Bedrock Mantle with IAM credentials: OpenAI's format passed through, every request
    // signed (the mock takes any signature).
    providers.insert(
        "bedrock_mantle".into(),
        json!({"keys": [{"name": "primary", "models": ["*"],
                         "bedrock_mantle_key_config": {"access_key": "AKIDBENCH",
                                                       "secret_key": "bench-secret"}}],
               "network_config": {"base_url": upstream_base}}),
    );
    providers.insert(
        "azure".into(),
        json!({"keys": [{"name": "primary", "value": "sk-azure", "models": ["*"],
                         "azure_key_config": {"endpoint": upstream_base, "api_version": "2024-10-21"}}]}),
    );
    json!({
        "client": {"enable_logging": false},
        "providers": providers,
        "config_store": {"enabled": false}
    })
}

#[cfg(test)]
mod tests {
    use super::{gateway_config, governed_config};
    use crate::harness::binary;

    /// The configs the bench starts gateways with pass the gateway's own check, so a change
    /// to what the gateway accepts cannot leave `make bench` broken while `make test` passes.
    #[test]
    fn the_bench_configs_pass_the_gateways_check() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, config) in [
            ("gateway", gateway_config("http://127.0.0.1:9")),
            ("governed", governed_config("http://127.0.0.1:9")),
        ] {
            let path = dir.path().join(format!("{name}.json"));
            std::fs::write(&path, config.to_string()).expect("write config");
            let output = std::process::Command::new(binary("bifrost-gateway"))
                .arg("--check-config")
                .arg("--config")
                .arg(&path)
                .output()
                .expect("the gateway runs");
            assert!(
                output.status.success(),
                "{name} config refused: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
