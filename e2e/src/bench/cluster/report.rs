//! The cluster benchmark's results: a text table for humans and JSON for tools.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

/// What the cluster should stay within; printed next to the numbers, never enforced.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ClusterTargets {
    /// Until every other node's view of a budget shows a request's spend.
    pub convergence_p99_ms: f64,
}

pub const CLUSTER_TARGETS: ClusterTargets = ClusterTargets {
    convergence_p99_ms: 500.0,
};

/// How the cluster benchmark was run.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSettings {
    pub convergence_nodes: usize,
    pub convergence_samples: usize,
    pub bandwidth_nodes: usize,
    pub bandwidth_keys: usize,
    pub bandwidth_rate: u32,
    pub bandwidth_duration_s: u64,
    pub limit_nodes: usize,
    /// Requests per minute of the overshoot runs' limit.
    pub limit: u64,
    pub limit_clients: usize,
    pub paced_rps: u32,
    /// Share of the machine's CPU other processes used in the second before the benchmark.
    pub busy_before_percent: Option<f64>,
}

/// Latency until a request's spend shows in other nodes' `GET /api/governance/usage`.
#[derive(Debug, Clone, Serialize)]
pub struct Convergence {
    pub nodes: usize,
    /// How often nodes flushed spend to the store during the run; `None`: not at all (spend
    /// travelled by gossip only).
    pub flush_interval_ms: Option<u64>,
    /// Requests sent (one at a time, round-robin over the nodes); fewer than asked when the run
    /// stopped on too many timeouts.
    pub samples: usize,
    /// Observations: samples × other nodes, timeouts excluded.
    pub observations: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Observations still not converged after the per-sample deadline.
    pub timeouts: usize,
    /// Times an observer's view went down between two polls (it should only grow).
    pub dips: usize,
}

/// Gossip traffic of one node during one phase.
#[derive(Debug, Clone, Serialize)]
pub struct NodeBandwidth {
    pub node: String,
    pub sent_bytes_per_s: f64,
    pub received_bytes_per_s: f64,
}

/// Gossip traffic of every node during one phase.
#[derive(Debug, Clone, Serialize)]
pub struct Bandwidth {
    /// `idle before load`, `under load`, `idle after load`.
    pub phase: String,
    pub seconds: f64,
    /// Requests per second sent to the whole cluster in this phase.
    pub request_rps: f64,
    pub nodes: Vec<NodeBandwidth>,
}

impl Bandwidth {
    /// Mean over nodes of (sent, received) bytes per second.
    pub fn mean(&self) -> (f64, f64) {
        let n = self.nodes.len().max(1) as f64;
        (
            self.nodes.iter().map(|n| n.sent_bytes_per_s).sum::<f64>() / n,
            self.nodes
                .iter()
                .map(|n| n.received_bytes_per_s)
                .sum::<f64>()
                / n,
        )
    }
}

/// How a rate limit is enforced across the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitMode {
    Gossip,
    Strict,
}

impl LimitMode {
    /// As printed.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gossip => "gossip",
            Self::Strict => "strict",
        }
    }
}

/// How fast the clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    /// As fast as the clients go.
    Max,
    /// Requests spaced to this many per second, all clients together.
    Rps(u32),
}

/// One run of many requests on one limited key, round-robin over the nodes.
#[derive(Debug, Clone, Serialize)]
pub struct LimitRun {
    pub mode: LimitMode,
    pub pacing: Pacing,
    pub clients: usize,
    pub limit: u64,
    pub sent: u64,
    pub admitted: u64,
    pub refused: u64,
    /// Answers other than 200 and 429, and requests without an answer.
    pub errors: u64,
    pub overshoot: i64,
    pub overshoot_percent: f64,
    pub rps: f64,
    /// Client-side latency of admitted requests.
    pub admitted_p50_ms: f64,
    pub admitted_p99_ms: f64,
}

/// Whether strict mode could be measured.
#[derive(Debug, Clone, Serialize)]
pub struct StrictSummary {
    pub available: bool,
    /// Why not, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Strict minus gossip, admitted requests of the paced runs.
    pub added_p50_ms: Option<f64>,
    pub added_p99_ms: Option<f64>,
}

/// Everything the cluster benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterResults {
    pub settings: ClusterSettings,
    pub convergence: Vec<Convergence>,
    pub bandwidth: Vec<Bandwidth>,
    pub limit_runs: Vec<LimitRun>,
    pub strict: StrictSummary,
    pub targets: ClusterTargets,
}

/// Nearest-rank percentile `p` (0-100) of `sorted`; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The strict summary from the runs: available when the config was accepted and no strict run
/// admitted more than the limit.
pub fn strict_summary(runs: &[LimitRun], rejected: Option<String>) -> StrictSummary {
    if let Some(reason) = rejected {
        return StrictSummary {
            available: false,
            reason: Some(reason),
            added_p50_ms: None,
            added_p99_ms: None,
        };
    }
    let strict: Vec<&LimitRun> = runs
        .iter()
        .filter(|r| r.mode == LimitMode::Strict)
        .collect();
    if strict.is_empty() {
        return StrictSummary {
            available: false,
            reason: Some("not run".to_string()),
            added_p50_ms: None,
            added_p99_ms: None,
        };
    }
    if let Some(over) = strict.iter().find(|r| r.admitted > r.limit) {
        return StrictSummary {
            available: false,
            reason: Some(format!(
                "admitted {} of a {} limit: no owner enforces it yet",
                over.admitted, over.limit
            )),
            added_p50_ms: None,
            added_p99_ms: None,
        };
    }
    let paced = |mode| {
        runs.iter()
            .find(|r| r.mode == mode && matches!(r.pacing, Pacing::Rps(_)) && r.admitted > 0)
    };
    let added =
        |f: fn(&LimitRun) -> f64| Some(f(paced(LimitMode::Strict)?) - f(paced(LimitMode::Gossip)?));
    StrictSummary {
        available: true,
        reason: None,
        added_p50_ms: added(|r| r.admitted_p50_ms),
        added_p99_ms: added(|r| r.admitted_p99_ms),
    }
}

fn convergence_label(c: &Convergence) -> String {
    match c.flush_interval_ms {
        Some(ms) => format!("spend seen, flush every {ms} ms"),
        None => "spend seen, gossip only".to_string(),
    }
}

fn pacing_label(pacing: Pacing, clients: usize) -> String {
    match pacing {
        Pacing::Max => format!("max c={clients}"),
        Pacing::Rps(rps) => format!("{rps} rps c={clients}"),
    }
}

/// The results as text tables followed by summary lines.
pub fn table(results: &ClusterResults) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<36}{:>6}{:>9}{:>9}{:>9}{:>8}{:>10}{:>6}",
        "cluster: counter convergence",
        "nodes",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "obs",
        "timeouts",
        "dips"
    );
    for c in &results.convergence {
        let _ = writeln!(
            out,
            "{:<36}{:>6}{:>9.1}{:>9.1}{:>9.1}{:>8}{:>10}{:>6}",
            convergence_label(c),
            c.nodes,
            c.p50_ms,
            c.p99_ms,
            c.max_ms,
            c.observations,
            c.timeouts,
            c.dips
        );
    }

    let _ = writeln!(
        out,
        "\n{:<36}{:>6}{:>9}{:>14}{:>14}",
        format!(
            "cluster: gossip, {} keys",
            thousands(results.settings.bandwidth_keys)
        ),
        "nodes",
        "req/s",
        "sent B/s/node",
        "recv B/s/node"
    );
    for phase in &results.bandwidth {
        let (sent, received) = phase.mean();
        let _ = writeln!(
            out,
            "{:<36}{:>6}{:>9.0}{:>14.0}{:>14.0}",
            phase.phase,
            phase.nodes.len(),
            phase.request_rps,
            sent,
            received
        );
    }

    let _ = writeln!(
        out,
        "\n{:<36}{:>6}{:>9}{:>10}{:>10}{:>9}{:>9}{:>9}",
        format!("cluster: limit {}/min", results.settings.limit),
        "nodes",
        "sent",
        "admitted",
        "overshoot",
        "rps",
        "p50_ms",
        "p99_ms"
    );
    for run in &results.limit_runs {
        let _ = writeln!(
            out,
            "{:<36}{:>6}{:>9}{:>10}{:>9.1}%{:>9.0}{:>9.1}{:>9.1}",
            format!(
                "{} {}",
                run.mode.name(),
                pacing_label(run.pacing, run.clients)
            ),
            results.settings.limit_nodes,
            run.sent,
            run.admitted,
            run.overshoot_percent,
            run.rps,
            run.admitted_p50_ms,
            run.admitted_p99_ms
        );
    }
    out.push('\n');
    let target = results.targets.convergence_p99_ms;
    for c in &results.convergence {
        let verdict = if c.p99_ms <= target && c.timeouts == 0 {
            "ok"
        } else {
            "OVER"
        };
        let _ = writeln!(
            out,
            "counter convergence ({} nodes, {}): p50 {:.1} ms, p99 {:.1} ms (target ≤ {target:.0}: {verdict}), max {:.1} ms",
            c.nodes,
            convergence_label(c).trim_start_matches("spend seen, "),
            c.p50_ms,
            c.p99_ms,
            c.max_ms
        );
    }
    if let Some(load) = results.bandwidth.iter().find(|b| b.phase == "under load") {
        let (sent, received) = load.mean();
        let _ = writeln!(
            out,
            "gossip per node ({} nodes, {} active keys, {:.0} req/s): {:.1} KB/s sent, {:.1} KB/s received",
            load.nodes.len(),
            thousands(results.settings.bandwidth_keys),
            load.request_rps,
            sent / 1000.0,
            received / 1000.0
        );
    }
    for run in results
        .limit_runs
        .iter()
        .filter(|r| r.mode == LimitMode::Gossip)
    {
        let _ = writeln!(
            out,
            "gossip-mode overshoot ({}): {} admitted of {} ({:+.1}%) at {:.0} req/s",
            pacing_label(run.pacing, run.clients),
            run.admitted,
            run.limit,
            run.overshoot_percent,
            run.rps
        );
    }
    let strict = &results.strict;
    if strict.available {
        let ms = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:+.2} ms"));
        let _ = writeln!(
            out,
            "strict mode added latency (paced, admitted requests): p50 {}, p99 {}",
            ms(strict.added_p50_ms),
            ms(strict.added_p99_ms)
        );
    } else {
        let _ = writeln!(
            out,
            "strict mode: not available ({})",
            strict.reason.as_deref().unwrap_or("unknown")
        );
    }
    if let Some(busy) = results
        .settings
        .busy_before_percent
        .filter(|&busy| busy > 10.0)
    {
        let _ = writeln!(
            out,
            "WARNING: other processes kept the machine {busy:.0}% busy just before the cluster \
             benchmark; these numbers are pessimistic"
        );
    }
    for run in results.limit_runs.iter().filter(|r| r.errors > 0) {
        let _ = writeln!(
            out,
            "WARNING: {} {} had {} failed request(s)",
            run.mode.name(),
            pacing_label(run.pacing, run.clients),
            run.errors
        );
    }
    out
}

/// `1,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Write `results` as pretty JSON, creating the directory.
pub fn write_json(results: &ClusterResults, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(results).context("serializing the results")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: LimitMode, pacing: Pacing, admitted: u64, p50: f64) -> LimitRun {
        LimitRun {
            mode,
            pacing,
            clients: 8,
            limit: 300,
            sent: 900,
            admitted,
            refused: 900 - admitted,
            errors: 0,
            overshoot: admitted as i64 - 300,
            overshoot_percent: (admitted as f64 - 300.0) / 3.0,
            rps: 1000.0,
            admitted_p50_ms: p50,
            admitted_p99_ms: p50 * 3.0,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 50.0), 50.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&sorted, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn strict_latency_is_compared_with_gossip_on_the_paced_runs() {
        let runs = vec![
            run(LimitMode::Gossip, Pacing::Max, 420, 9.0),
            run(LimitMode::Gossip, Pacing::Rps(100), 303, 2.0),
            run(LimitMode::Strict, Pacing::Max, 300, 12.0),
            run(LimitMode::Strict, Pacing::Rps(100), 300, 2.5),
        ];
        let summary = strict_summary(&runs, None);
        assert!(summary.available);
        assert_eq!(summary.added_p50_ms, Some(0.5));
        assert_eq!(summary.added_p99_ms, Some(1.5));
    }

    #[test]
    fn strict_is_unavailable_when_it_admits_over_the_limit_or_was_rejected() {
        let runs = vec![run(LimitMode::Strict, Pacing::Max, 350, 1.0)];
        let summary = strict_summary(&runs, None);
        assert!(!summary.available);
        assert!(summary.reason.expect("reason").contains("admitted 350"));
        let rejected = strict_summary(&[], Some("config rejected".into()));
        assert_eq!(rejected.reason.as_deref(), Some("config rejected"));
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
