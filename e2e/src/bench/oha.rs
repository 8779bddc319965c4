//! Runs the `oha` load generator as a subprocess and reads its JSON summary.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::process::Command;

/// One load run: POST `body` to `url` for `duration`.
#[derive(Debug, Clone)]
pub struct Load {
    pub url: String,
    pub body: String,
    /// Connections kept open (and requests in flight at most).
    pub connections: u32,
    /// Requests per second; `None` sends as fast as the connections allow.
    pub rate: Option<u32>,
    pub duration: Duration,
    /// The `Authorization` header value.
    pub authorization: String,
}

/// What `oha` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measurement {
    pub p50_us: f64,
    pub p99_us: f64,
    pub rps: f64,
    /// Answers with a 2xx status.
    pub ok: u64,
    /// Answers with another status, plus requests that got no answer at all.
    pub errors: u64,
    /// Count per status code, and per transport error message, so errors can be told apart.
    pub statuses: BTreeMap<String, u64>,
}

/// `oha --version`, or an error saying how to install it.
pub async fn version(oha: &Path) -> anyhow::Result<String> {
    let output = Command::new(oha)
        .arg("--version")
        .output()
        .await
        .with_context(|| {
            format!(
                "cannot run {}: install it with scripts/install-tools.sh",
                oha.display()
            )
        })?;
    if !output.status.success() {
        bail!("{} --version failed: {}", oha.display(), output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Run `load` and parse the summary.
pub async fn run(oha: &Path, load: &Load) -> anyhow::Result<Measurement> {
    let mut command = Command::new(oha);
    command
        .arg("--no-tui")
        .args(["--output-format", "json"])
        // Requests still in flight at the deadline finish instead of being counted as errors.
        .arg("--wait-ongoing-requests-after-deadline")
        .args(["-z", &format!("{}ms", load.duration.as_millis())])
        .args(["-c", &load.connections.to_string()])
        .args(["-m", "POST", "-T", "application/json"])
        .args(["-H", &format!("Authorization: {}", load.authorization)])
        .args(["-d", &load.body]);
    if let Some(rate) = load.rate {
        // Latency counted from when a request was due, so a stall is not hidden by sending less.
        command
            .args(["-q", &rate.to_string()])
            .arg("--latency-correction");
    }
    let output = command
        .arg(&load.url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", oha.display()))?;
    if !output.status.success() {
        bail!(
            "oha against {} failed ({}): {}",
            load.url,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let summary: Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "oha printed no JSON: {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    parse(&summary)
        .with_context(|| format!("reading oha's summary of the run against {}", load.url))
}

/// Pull the numbers out of `oha --output-format json` (times there are in seconds).
pub fn parse(summary: &Value) -> anyhow::Result<Measurement> {
    let seconds = |pointer: &str| -> anyhow::Result<f64> {
        summary
            .pointer(pointer)
            .and_then(Value::as_f64)
            .with_context(|| format!("no number at {pointer}"))
    };
    let mut statuses = BTreeMap::new();
    let (mut ok, mut errors) = (0, 0);
    for (code, count) in counts(summary, "statusCodeDistribution")? {
        let status: u16 = code
            .parse()
            .with_context(|| format!("status code {code:?} is not a number"))?;
        if (200..300).contains(&status) {
            ok += count;
        } else {
            errors += count;
        }
        statuses.insert(code, count);
    }
    for (message, count) in counts(summary, "errorDistribution")? {
        errors += count;
        statuses.insert(message, count);
    }
    // With no successful request oha reports no latencies; that is a measurement, not a bug.
    let percentile = |name: &str| -> anyhow::Result<f64> {
        if ok == 0 {
            return Ok(f64::NAN);
        }
        Ok(seconds(&format!("/latencyPercentiles/{name}"))? * 1e6)
    };
    Ok(Measurement {
        p50_us: percentile("p50")?,
        p99_us: percentile("p99")?,
        rps: seconds("/summary/requestsPerSec")?,
        ok,
        errors,
        statuses,
    })
}

/// A `{"key": count}` object of the summary.
fn counts(summary: &Value, field: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let object = summary
        .get(field)
        .and_then(Value::as_object)
        .with_context(|| format!("no {field} object"))?;
    object
        .iter()
        .map(|(key, count)| {
            let count = count
                .as_u64()
                .with_context(|| format!("{field}.{key} is not a count: {count}"))?;
            Ok((key.clone(), count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary() -> Value {
        json!({
            "summary": {"successRate": 1.0, "requestsPerSec": 998.5},
            "latencyPercentiles": {"p50": 0.000210, "p99": 0.001_5},
            "statusCodeDistribution": {"200": 9_000, "502": 10},
            "errorDistribution": {"connection closed": 2}
        })
    }

    #[test]
    fn latencies_are_microseconds_and_errors_include_non_2xx_and_transport_failures() {
        let measured = parse(&summary()).expect("parses");
        assert!((measured.p50_us - 210.0).abs() < 1e-6);
        assert!((measured.p99_us - 1_500.0).abs() < 1e-6);
        assert_eq!((measured.ok, measured.errors), (9_000, 12));
        assert_eq!(measured.statuses["connection closed"], 2);
    }

    #[test]
    fn a_missing_field_is_named_in_the_error() {
        let mut broken = summary();
        broken["summary"]
            .as_object_mut()
            .expect("object")
            .remove("requestsPerSec");
        let error = format!("{:#}", parse(&broken).expect_err("incomplete"));
        assert!(error.contains("/summary/requestsPerSec"), "{error}");
    }
}
