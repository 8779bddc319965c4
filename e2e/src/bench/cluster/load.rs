//! Client side of the cluster benchmark: requests, paced load, and reading a node's metrics and
//! budget view.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use super::report::{percentile, LimitMode, LimitRun, Pacing};

/// A small chat completion with virtual key `vk` on the gateway at `base`: its status.
pub async fn chat(client: &reqwest::Client, base: &str, vk: &str) -> anyhow::Result<StatusCode> {
    let response = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(vk)
        .json(&json!({"model": "openai/gpt-4o-mini",
                      "messages": [{"role": "user", "content": "Say hello in five words."}],
                      "max_tokens": 16}))
        .send()
        .await
        .with_context(|| format!("POST {base}/v1/chat/completions"))?;
    let status = response.status();
    // Read the body so the connection goes back to the pool.
    response.bytes().await.context("reading the answer")?;
    Ok(status)
}

/// Budget `budget`'s `current_usage` as the node at `base` sees it (admin API; loopback
/// callers need no token).
pub async fn budget_usage(
    client: &reqwest::Client,
    base: &str,
    budget: &str,
) -> anyhow::Result<f64> {
    let usage: Value = client
        .get(format!("{base}/api/governance/usage"))
        .send()
        .await
        .with_context(|| format!("GET {base}/api/governance/usage"))?
        .error_for_status()
        .context("usage answer")?
        .json()
        .await
        .context("usage JSON")?;
    usage["budgets"]
        .as_array()
        .and_then(|budgets| budgets.iter().find(|b| b["id"] == budget))
        .and_then(|b| b["current_usage"].as_f64())
        .with_context(|| format!("no budget {budget:?} in {base}'s usage"))
}

/// `bifrost_gossip_bytes_total` of the node at `base`: (sent, received).
pub async fn gossip_bytes(client: &reqwest::Client, base: &str) -> anyhow::Result<(f64, f64)> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .with_context(|| format!("GET {base}/metrics"))?
        .text()
        .await
        .context("metrics text")?;
    Ok((
        metric(&text, r#"bifrost_gossip_bytes_total{direction="sent"}"#)?,
        metric(&text, r#"bifrost_gossip_bytes_total{direction="received"}"#)?,
    ))
}

/// The value of `series` in Prometheus/OpenMetrics text.
fn metric(text: &str, series: &str) -> anyhow::Result<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.split_whitespace().next())
        .with_context(|| format!("no {series} in /metrics"))?
        .parse()
        .with_context(|| format!("{series} is not a number"))
}

/// Send `rate` requests per second for `duration`, round-robin over `targets` (gateway base,
/// virtual key), at most `max_in_flight` at a time; (sent, answered 200).
pub async fn paced_load(
    client: &reqwest::Client,
    targets: &[(String, String)],
    rate: u32,
    duration: Duration,
    max_in_flight: usize,
) -> (u64, u64) {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let ok = Arc::new(AtomicU64::new(0));
    let mut in_flight = JoinSet::new();
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < duration {
        let due = started + interval.mul_f64(sent as f64);
        tokio::time::sleep_until(due.into()).await;
        while in_flight.len() >= max_in_flight {
            in_flight.join_next().await;
        }
        let (base, vk) = targets[sent as usize % targets.len()].clone();
        let (client, ok) = (client.clone(), ok.clone());
        in_flight.spawn(async move {
            if matches!(chat(&client, &base, &vk).await, Ok(StatusCode::OK)) {
                ok.fetch_add(1, Ordering::Relaxed);
            }
        });
        sent += 1;
    }
    while in_flight.join_next().await.is_some() {}
    (sent, ok.load(Ordering::Relaxed))
}

/// One overshoot run: `total` requests with `vk`, round-robin over `bases`, from `clients`
/// concurrent clients, as fast as they go or spaced to a total rate.
#[allow(clippy::too_many_arguments)]
pub async fn limit_run(
    client: &reqwest::Client,
    bases: &[String],
    vk: &str,
    mode: LimitMode,
    limit: u64,
    total: u64,
    clients: usize,
    pacing: Pacing,
) -> LimitRun {
    let next = Arc::new(AtomicU64::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (client, next, outcomes) = (client.clone(), next.clone(), outcomes.clone());
        let (bases, vk) = (bases.to_vec(), vk.to_string());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if let Pacing::Rps(rps) = pacing {
                    let due = started + Duration::from_secs_f64(i as f64 / f64::from(rps.max(1)));
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent_at = Instant::now();
                let status = chat(&client, &bases[i as usize % bases.len()], &vk)
                    .await
                    .ok();
                let latency = sent_at.elapsed();
                if let Ok(mut outcomes) = outcomes.lock() {
                    outcomes.push((status, latency));
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let outcomes = outcomes.lock().map(|o| o.clone()).unwrap_or_default();
    let mut admitted_ms: Vec<f64> = outcomes
        .iter()
        .filter(|(status, _)| *status == Some(StatusCode::OK))
        .map(|(_, latency)| latency.as_secs_f64() * 1e3)
        .collect();
    admitted_ms.sort_by(f64::total_cmp);
    let admitted = admitted_ms.len() as u64;
    let refused = outcomes
        .iter()
        .filter(|(status, _)| *status == Some(StatusCode::TOO_MANY_REQUESTS))
        .count() as u64;
    let sent = outcomes.len() as u64;
    let overshoot = admitted as i64 - limit as i64;
    LimitRun {
        mode,
        pacing,
        clients,
        limit,
        sent,
        admitted,
        refused,
        errors: sent - admitted - refused,
        overshoot,
        overshoot_percent: overshoot as f64 * 100.0 / limit.max(1) as f64,
        rps: sent as f64 / elapsed.as_secs_f64().max(1e-9),
        admitted_p50_ms: percentile(&admitted_ms, 50.0),
        admitted_p99_ms: percentile(&admitted_ms, 99.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_bytes_are_read_by_direction() {
        let text = "# TYPE bifrost_gossip_bytes counter\n\
                    bifrost_gossip_bytes_total{direction=\"sent\"} 1234\n\
                    bifrost_gossip_bytes_total{direction=\"received\"} 5678.0\n";
        assert_eq!(
            metric(text, r#"bifrost_gossip_bytes_total{direction="sent"}"#).expect("sent"),
            1234.0
        );
        assert_eq!(
            metric(text, r#"bifrost_gossip_bytes_total{direction="received"}"#).expect("received"),
            5678.0
        );
        assert!(metric(text, "bifrost_nothing_total").is_err());
    }
}
