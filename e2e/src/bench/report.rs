//! The benchmark's results: the table printed for humans and the JSON written for tools.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::oha::Measurement;
use super::procfs::CpuSource;
use super::{Mode, Scenario, Target};

/// What the gateway should stay within; printed next to the numbers, never enforced.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Targets {
    pub added_p50_us: f64,
    pub added_p99_us: f64,
    pub cpu_us_per_request: f64,
    pub idle_rss_mb: f64,
    pub governance_cpu_us_per_request: f64,
}

pub const TARGETS: Targets = Targets {
    added_p50_us: 50.0,
    added_p99_us: 250.0,
    cpu_us_per_request: 30.0,
    idle_rss_mb: 25.0,
    governance_cpu_us_per_request: 5.0,
};

/// How the benchmark was run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub duration_s: u64,
    pub rate: u32,
    pub connections: u32,
    pub peak_concurrency: u32,
    pub mock_threads: u32,
    pub chunks: u32,
    /// Share of the machine's CPU other processes used in the second before the benchmark.
    pub busy_before_percent: Option<f64>,
}

/// CPU time of the process answering the load generator (the mock or the gateway) in one run.
#[derive(Debug, Clone, Serialize)]
pub struct ServerCpu {
    /// CPU time divided by the 2xx answers.
    pub us_per_request: f64,
    pub source: CpuSource,
}

/// One `oha` run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub mode: Mode,
    pub scenario: Scenario,
    pub target: Target,
    #[serde(flatten)]
    pub measured: Measurement,
    pub server_cpu: ServerCpu,
}

/// The gateway's resident memory, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Rss {
    /// Right after it started listening.
    pub start_kib: u64,
    /// After the warm-up.
    pub idle_kib: u64,
    /// Highest of the whole benchmark (`VmHWM`).
    pub peak_kib: u64,
}

/// The gateway's resident memory, in MiB (reported as "MB").
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RssMb {
    pub start_mb: f64,
    pub idle_mb: f64,
    pub peak_mb: f64,
}

/// What the runs of one mode say about the gateway; `None` where a run had no 2xx answer.
#[derive(Debug, Clone, Serialize)]
pub struct ModeSummary {
    pub mode: Mode,
    pub added_p50_us: Option<f64>,
    pub added_p99_us: Option<f64>,
    pub cpu_us_per_request: Option<f64>,
    /// The mock's own CPU per request when it answers directly, as a baseline: the gateway
    /// serves the same request and also makes one, so about twice this is its natural floor.
    pub mock_cpu_us_per_request: Option<f64>,
    pub peak_rps_direct: Option<f64>,
    pub peak_rps_gateway: Option<f64>,
    /// Extra gateway CPU per request with 10,000 virtual keys loaded and a governed key
    /// (peak runs, where per-request CPU is least distorted by idle wake-ups).
    pub governance_cpu_us_per_request: Option<f64>,
}

/// Everything the benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub settings: Settings,
    pub oha_version: String,
    pub runs: Vec<Run>,
    pub summary: Vec<ModeSummary>,
    pub rss: RssMb,
    pub targets: Targets,
}

impl Results {
    /// Results of `runs`, with the per-mode summary derived from them.
    pub fn new(settings: Settings, oha_version: String, runs: Vec<Run>, rss: Rss) -> Self {
        let summary = [Mode::Json, Mode::Stream]
            .into_iter()
            .map(|mode| summarize(&runs, mode))
            .collect();
        let mb = |kib: u64| kib as f64 / 1024.0;
        Self {
            settings,
            oha_version,
            runs,
            summary,
            rss: RssMb {
                start_mb: mb(rss.start_kib),
                idle_mb: mb(rss.idle_kib),
                peak_mb: mb(rss.peak_kib),
            },
            targets: TARGETS,
        }
    }
}

fn summarize(runs: &[Run], mode: Mode) -> ModeSummary {
    let find = |scenario, target| {
        runs.iter()
            .find(|run| run.mode == mode && run.scenario == scenario && run.target == target)
            .filter(|run| run.measured.ok > 0)
    };
    let fixed_direct = find(Scenario::FixedRate, Target::Direct);
    let fixed_gateway = find(Scenario::FixedRate, Target::Gateway);
    let added = |percentile: fn(&Measurement) -> f64| {
        Some(percentile(&fixed_gateway?.measured) - percentile(&fixed_direct?.measured))
    };
    ModeSummary {
        mode,
        added_p50_us: added(|m| m.p50_us),
        added_p99_us: added(|m| m.p99_us),
        cpu_us_per_request: fixed_gateway.map(|run| run.server_cpu.us_per_request),
        mock_cpu_us_per_request: fixed_direct.map(|run| run.server_cpu.us_per_request),
        peak_rps_direct: find(Scenario::Peak, Target::Direct).map(|run| run.measured.rps),
        peak_rps_gateway: find(Scenario::Peak, Target::Gateway).map(|run| run.measured.rps),
        governance_cpu_us_per_request: find(Scenario::Peak, Target::Governed)
            .zip(find(Scenario::Peak, Target::Gateway))
            .map(|(governed, plain)| {
                governed.server_cpu.us_per_request - plain.server_cpu.us_per_request
            }),
    }
}

/// How a scenario is named in the table, e.g. `fixed 1000rps json`.
pub fn scenario_label(settings: &Settings, scenario: Scenario, mode: Mode) -> String {
    let mode = mode.name();
    match scenario {
        Scenario::FixedRate => format!("fixed {}rps {mode}", settings.rate),
        Scenario::Peak => format!("peak c={} {mode}", settings.peak_concurrency),
    }
}

/// `translated CPU per request (json, fixed rate): anthropic 31.0 us, gemini ... (pass-through
/// 22.0 us)`, when the runs have translated rows for `mode`.
fn translated_cpu(results: &Results, mode: Mode) -> Option<String> {
    let fixed = |target: Target| {
        results
            .runs
            .iter()
            .find(|run| {
                run.mode == mode && run.scenario == Scenario::FixedRate && run.target == target
            })
            .map(|run| run.server_cpu.us_per_request)
    };
    let rows: Vec<String> = super::Format::ALL
        .into_iter()
        .filter_map(|format| {
            let cpu = fixed(Target::Translated(format))?;
            let name = Target::Translated(format)
                .name()
                .trim_start_matches("gateway→");
            Some(format!("{name} {cpu:.1} us"))
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    let pass_through =
        fixed(Target::Gateway).map_or("n/a".to_owned(), |cpu| format!("{cpu:.1} us"));
    Some(format!(
        "gateway CPU per request by provider format ({}, fixed rate): {} (pass-through openai {pass_through})\n",
        mode.name(),
        rows.join(", ")
    ))
}

/// The results as a text table followed by the summary lines, each next to its target.
pub fn table(results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<22}{:<19}{:>9}{:>9}{:>10}{:>9}{:>8}{:>12}",
        "scenario", "target", "p50_us", "p99_us", "rps", "ok", "errors", "cpu_us/req"
    );
    for run in &results.runs {
        let m = &run.measured;
        let _ = writeln!(
            out,
            "{:<22}{:<19}{:>9.0}{:>9.0}{:>10.0}{:>9}{:>8}{:>12.1}",
            scenario_label(&results.settings, run.scenario, run.mode),
            run.target.name(),
            m.p50_us,
            m.p99_us,
            m.rps,
            m.ok,
            m.errors,
            run.server_cpu.us_per_request,
        );
    }
    out.push('\n');
    let targets = &results.targets;
    for summary in &results.summary {
        let mode = summary.mode.name();
        let _ = writeln!(
            out,
            "gateway added latency ({mode}): p50 {}, p99 {}",
            against(summary.added_p50_us, "us", targets.added_p50_us, true),
            against(summary.added_p99_us, "us", targets.added_p99_us, true),
        );
    }
    for summary in &results.summary {
        let mode = summary.mode.name();
        let _ = writeln!(
            out,
            "gateway CPU per request ({mode}): {}",
            against(
                summary.cpu_us_per_request,
                "us",
                targets.cpu_us_per_request,
                false
            ),
        );
    }
    for mode in [Mode::Json, Mode::Stream] {
        if let Some(line) = translated_cpu(results, mode) {
            out.push_str(&line);
        }
    }
    for summary in &results.summary {
        if summary.governance_cpu_us_per_request.is_some() {
            let _ = writeln!(
                out,
                "governance CPU per request (10,000 virtual keys, peak): {}",
                against(
                    summary.governance_cpu_us_per_request,
                    "us",
                    targets.governance_cpu_us_per_request,
                    true
                ),
            );
        }
    }
    let _ = writeln!(
        out,
        "gateway RSS: start {:.1} MB, idle {}, peak {:.1} MB",
        results.rss.start_mb,
        against(Some(results.rss.idle_mb), "MB", targets.idle_rss_mb, false),
        results.rss.peak_mb
    );
    for summary in &results.summary {
        let mode = summary.mode.name();
        let _ = writeln!(
            out,
            "peak throughput c={} ({mode}): direct {} rps, gateway {} rps",
            results.settings.peak_concurrency,
            number(summary.peak_rps_direct),
            number(summary.peak_rps_gateway),
        );
    }
    if let Some(busy) = results
        .settings
        .busy_before_percent
        .filter(|&busy| busy > 10.0)
    {
        let _ = writeln!(
            out,
            "WARNING: other processes kept the machine {busy:.0}% busy just before the benchmark; \
             they compete for CPU, so these numbers are pessimistic"
        );
    }
    let rate = f64::from(results.settings.rate);
    for run in results
        .runs
        .iter()
        .filter(|run| run.scenario == Scenario::FixedRate && run.measured.rps < rate * 0.95)
    {
        let _ = writeln!(
            out,
            "WARNING: {} via {} reached only {:.0} of {rate:.0} req/s: it cannot keep up with \
             {} connections, and its latencies include the queueing",
            scenario_label(&results.settings, run.scenario, run.mode),
            run.target.name(),
            run.measured.rps,
            results.settings.connections
        );
    }
    for run in results.runs.iter().filter(|run| run.measured.errors > 0) {
        let _ = writeln!(
            out,
            "WARNING: {} via {} had {} failed request(s): {:?}",
            scenario_label(&results.settings, run.scenario, run.mode),
            run.target.name(),
            run.measured.errors,
            run.measured.statuses
        );
    }
    out
}

/// `12 us (target ≤ 50: ok)`; `signed` prints a `+` on positive values.
fn against(value: Option<f64>, unit: &str, target: f64, signed: bool) -> String {
    let Some(value) = value else {
        return format!("n/a (target ≤ {target:.0} {unit})");
    };
    let verdict = if value <= target { "ok" } else { "OVER" };
    let sign = if signed && value >= 0.0 { "+" } else { "" };
    format!("{sign}{value:.1} {unit} (target ≤ {target:.0}: {verdict})")
}

fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |value| format!("{value:.0}"))
}

/// Write `results` as pretty JSON, creating the directory.
pub fn write_json(results: &Results, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(results).context("serializing the results")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn run(mode: Mode, scenario: Scenario, target: Target, p50_us: f64, errors: u64) -> Run {
        Run {
            mode,
            scenario,
            target,
            measured: Measurement {
                p50_us,
                p99_us: p50_us * 4.0,
                rps: if p50_us > 1e5 { 640.0 } else { 1000.0 },
                ok: 5000,
                errors,
                statuses: BTreeMap::from([("502".to_string(), errors)]),
            },
            server_cpu: ServerCpu {
                us_per_request: if target == Target::Gateway { 20.0 } else { 9.0 },
                source: CpuSource::Schedstat,
            },
        }
    }

    fn results(gateway_errors: u64) -> Results {
        let settings = Settings {
            duration_s: 5,
            rate: 1000,
            connections: 32,
            peak_concurrency: 64,
            mock_threads: 1,
            chunks: 5,
            busy_before_percent: Some(2.0),
        };
        let runs = vec![
            run(Mode::Json, Scenario::FixedRate, Target::Direct, 100.0, 0),
            run(
                Mode::Json,
                Scenario::FixedRate,
                Target::Gateway,
                130.0,
                gateway_errors,
            ),
            run(Mode::Stream, Scenario::FixedRate, Target::Gateway, 9e5, 0),
        ];
        let rss = Rss {
            start_kib: 8 * 1024,
            idle_kib: 10 * 1024,
            peak_kib: 30 * 1024,
        };
        Results::new(settings, "oha 1.0".into(), runs, rss)
    }

    #[test]
    fn added_latency_is_gateway_minus_direct_at_the_fixed_rate() {
        let summary = &results(0).summary[0];
        assert_eq!(summary.added_p50_us, Some(30.0));
        assert_eq!(summary.added_p99_us, Some(120.0));
        assert_eq!(summary.cpu_us_per_request, Some(20.0));
        assert_eq!(summary.mock_cpu_us_per_request, Some(9.0));
        assert_eq!(summary.peak_rps_gateway, None);
    }

    #[test]
    fn the_table_shows_targets_and_warns_about_errors() {
        let table = table(&results(7));
        assert!(table.contains("p50 +30.0 us (target ≤ 50: ok)"), "{table}");
        assert!(table.contains("idle 10.0 MB (target ≤ 25: ok)"), "{table}");
        assert!(
            table.contains("WARNING: fixed 1000rps json via gateway had 7 failed"),
            "{table}"
        );
        assert!(!table.contains("via direct"), "{table}");
        assert!(
            table.contains("fixed 1000rps stream via gateway reached only 640 of 1000 req/s"),
            "{table}"
        );
        assert!(!table.contains("json via gateway reached only"), "{table}");
    }
}
