//! `bench`: what the gateway costs on top of its upstream. Runs `oha` against the mock provider
//! directly and through the gateway, and reports added latency, peak throughput, the gateway's
//! CPU time per request and its memory. It prints numbers and never fails on them.

mod oha;
mod procfs;
mod report;
mod upstream;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::json;

use crate::harness::Gateway;
use oha::Load;
use procfs::{CpuReading, Memory};
use report::{Results, Run, Settings};
use upstream::Upstream;

/// Keeps the gateway's `listening` line (the harness waits for it) and drops everything below
/// warn elsewhere, so logging costs no CPU under load.
const GATEWAY_LOG_FILTER: &str = "warn,bifrost_gateway::server=info";

/// Command-line flags of the `bench` binary.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "bench", version, about = "Measure bifrost-gateway against the mock provider")]
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
}

/// Whether the client asks for a streamed answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Json,
    Stream,
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
}

/// Start the mock and the gateway, run every scenario, print the table and write the JSON.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let oha_version = oha::version(&args.oha).await?;
    let upstream = Upstream::start(args.mock_threads, args.chunks).await?;
    let gateway = Gateway::start_with(
        &gateway_config(&upstream.base),
        &[
            ("RUST_LOG", GATEWAY_LOG_FILTER),
            ("BIFROST_LOG_LEVEL", "warn"),
        ],
    )
    .await;
    let pid = gateway.pid();
    let clock_ticks = procfs::clock_ticks_per_second();
    eprintln!(
        "bench: {oha_version}; mock at {} ({} thread(s)), gateway at {} (pid {pid}); {} s per run",
        upstream.base, args.mock_threads, gateway.base, args.duration
    );

    let start_rss = Memory::read(pid)?.rss_kib;
    warm_up(&args, &gateway).await?;
    let idle_rss = Memory::read(pid)?.rss_kib;

    let mut runs = Vec::new();
    for mode in [Mode::Json, Mode::Stream] {
        for scenario in [Scenario::FixedRate, Scenario::Peak] {
            for target in [Target::Direct, Target::Gateway] {
                let base = match target {
                    Target::Direct => &upstream.base,
                    Target::Gateway => &gateway.base,
                };
                let load = load(&args, base, mode, scenario, target);
                eprintln!("bench: {} → {target:?}", report::scenario_label(&args_settings(&args), scenario, mode));
                let before = CpuReading::read(pid, clock_ticks)?;
                let measured = oha::run(&args.oha, &load).await?;
                let (cpu, cpu_source) = CpuReading::read(pid, clock_ticks)?.since(&before);
                let gateway_cpu = (target == Target::Gateway).then(|| report::GatewayCpu {
                    us_per_request: cpu.as_secs_f64() * 1e6 / measured.ok.max(1) as f64,
                    source: cpu_source,
                });
                runs.push(Run {
                    mode,
                    scenario,
                    target,
                    measured,
                    gateway_cpu,
                });
                // Let closed connections settle before the next run.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    let memory = Memory::read(pid)?;
    let results = Results::new(
        args_settings(&args),
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

fn args_settings(args: &BenchArgs) -> Settings {
    Settings {
        duration_s: args.duration,
        rate: args.rate,
        connections: args.connections,
        peak_concurrency: args.peak_concurrency,
        mock_threads: args.mock_threads,
        chunks: args.chunks,
    }
}

/// A few seconds of gentle traffic through the gateway in both modes, so the idle RSS includes
/// warm connection pools and the first run does not pay for them. Fails if the gateway does not
/// answer 2xx at all, since nothing after that would measure anything.
async fn warm_up(args: &BenchArgs, gateway: &Gateway) -> anyhow::Result<()> {
    for mode in [Mode::Json, Mode::Stream] {
        let load = Load {
            url: format!("{}/v1/chat/completions", gateway.base),
            body: request_body(mode, Target::Gateway),
            connections: args.connections.min(8),
            rate: Some(200),
            duration: Duration::from_secs(2),
        };
        let measured = oha::run(&args.oha, &load)
            .await
            .with_context(|| format!("warming up ({mode:?})"))?;
        if measured.ok == 0 {
            bail!(
                "the gateway answered no warm-up request ({mode:?}) with 2xx: {:?}",
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
        connections,
        rate,
        duration: Duration::from_secs(args.duration),
    }
}

/// A small chat request; through the gateway the model names its provider.
fn request_body(mode: Mode, target: Target) -> String {
    let model = match target {
        Target::Direct => "gpt-4o-mini",
        Target::Gateway => "openai/gpt-4o-mini",
    };
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 16,
        "stream": mode == Mode::Stream,
    })
    .to_string()
}

/// The gateway's config: one OpenAI-format provider at the mock, request logging off so that
/// per-request log lines do not count as gateway CPU.
fn gateway_config(upstream_base: &str) -> serde_json::Value {
    json!({
        "client": {"enable_logging": false},
        "providers": {
            "openai": {
                "keys": [{"name": "primary", "value": "sk-openai", "models": ["*"]}],
                "network_config": {"base_url": upstream_base}
            }
        },
        "config_store": {"enabled": false}
    })
}
