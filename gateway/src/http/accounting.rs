//! Governance on the request path: a virtual key's restrictions applied to the targets, the
//! admission with an estimate, and settlement with the real usage.

use std::sync::Arc;

use http::HeaderMap;
use serde_json::{Map, Value};

use super::errors::rate_limit_headers;
use crate::cluster::rpc::StrictOutcome;
use crate::config::ClusterLimitMode;
use crate::error::GatewayError;
use crate::governance::admission::{Admission, Estimate, LimitStatus};
use crate::governance::counters::{CounterKey, Metric};
use crate::governance::index::{ProviderRule, VirtualKey};
use crate::governance::usage::TokenUsage;
use crate::governance::{self, now_ms, provider_rule, DEFAULT_COMPLETION_ESTIMATE};
use crate::routing::{RoutingTable, Target};
use crate::state::{AppState, Runtime};

/// An admitted request's charge, settled when the answer (or stream) is complete.
pub struct Charge {
    admission: Admission,
    runtime: Arc<Runtime>,
    /// Prompt tokens assumed when the upstream reports none.
    pub prompt_estimate: u64,
}

impl Charge {
    /// Rate-limit headers for a successful answer.
    pub fn headers(&self, headers: &mut HeaderMap) {
        let Some(reservation) = self.admission.reservation() else {
            return;
        };
        let now = now_ms();
        for (metric, status) in [
            ("requests", reservation.requests),
            ("tokens", reservation.token_limit),
        ] {
            if let Some(LimitStatus {
                limit,
                remaining,
                reset_at_ms,
            }) = status
            {
                let seconds = ((reset_at_ms - now).max(0) + 999) / 1000;
                rate_limit_headers(headers, metric, limit, remaining, seconds as u64);
            }
        }
    }

    /// Charge what the request used on `provider`/`model`.
    pub fn settle(self, provider: &str, model: &str, usage: TokenUsage) {
        let cost =
            self.runtime
                .governance
                .pricing
                .cost(provider, model, usage.prompt, usage.completion);
        self.admission.settle(usage.total(), cost);
    }
}

/// For a bare model name, the provider a virtual key's `provider_configs` choose (weighted
/// among those that allow the model and whose provider serves it).
pub fn provider_for_bare_model(
    vk: &VirtualKey,
    routing: &RoutingTable,
    model: &str,
) -> Option<String> {
    let candidates: Vec<(&String, f64)> = vk
        .providers
        .iter()
        .filter(|(name, rule)| {
            rule.allows_model(model)
                && routing
                    .providers
                    .get(*name)
                    .is_some_and(|p| p.keys.iter().any(|k| k.allows_model(model)))
        })
        .map(|(name, rule)| (name, rule.weight))
        .collect();
    let total: f64 = candidates.iter().map(|(_, w)| w).sum();
    let mut point = fastrand::f64() * total;
    for (name, weight) in &candidates {
        point -= weight;
        if point < 0.0 {
            return Some((*name).clone());
        }
    }
    candidates.last().map(|(name, _)| (*name).clone())
}

/// Apply `vk`'s restrictions to every target (403 when one is not allowed), then admit the
/// request against its limits and budgets with an estimate of what it will use.
pub async fn admit(
    state: &AppState,
    runtime: &Arc<Runtime>,
    vk: &VirtualKey,
    targets: &mut [Target],
    body: &Map<String, Value>,
    body_len: usize,
    completions: bool,
) -> Result<Charge, GatewayError> {
    // The primary target's rule carries the provider-level limits and budget.
    let mut rule = None;
    for (index, target) in targets.iter_mut().enumerate() {
        let target_rule = provider_rule(vk, &target.provider.name, &target.model)?;
        if let Some(target_rule) = target_rule {
            target.allowed_keys = target_rule.key_ids.clone();
        }
        if index == 0 {
            rule = target_rule;
        }
    }
    let primary = targets
        .first()
        .ok_or_else(|| GatewayError::InvalidRequest("model: required".into()))?;
    // JSON is about four bytes per token; the body bounds the prompt from above.
    let prompt = (body_len as u64).div_ceil(4);
    let completion = if completions {
        body.get("max_completion_tokens")
            .or_else(|| body.get("max_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_COMPLETION_ESTIMATE)
    } else {
        0
    };
    let cost = runtime
        .governance
        .pricing
        .price(&primary.provider.name, &primary.model)
        .map_or(0.0, |price| price.cost(prompt, completion));
    let now = now_ms();
    let decided = strict_decisions(state, vk, rule, now).await?;
    let admission = governance::admit(
        &state.counters,
        vk,
        rule.map(|r| (primary.provider.name.as_str(), r)),
        Estimate {
            tokens: prompt.saturating_add(completion),
            cost,
        },
        now,
        &decided,
    )?;
    Ok(Charge {
        admission,
        runtime: runtime.clone(),
        prompt_estimate: prompt,
    })
}

/// Ask the owner node of each strict request limit on the request's path (cluster mode, while
/// the cluster view is fresh). Admitted counters come back with the cluster count before this
/// request; a refusal is the 429; an owner that cannot be asked leaves the limit to the gossip
/// counts (counted as a `fallback` in `bifrost_strict_admissions_total`). Token limits are
/// always gossip-counted.
async fn strict_decisions(
    state: &AppState,
    vk: &VirtualKey,
    rule: Option<&ProviderRule>,
    now: i64,
) -> Result<Vec<(CounterKey, i64)>, GatewayError> {
    let Some(cluster) = state.cluster.get() else {
        return Ok(Vec::new());
    };
    let limits = [
        vk.rate_limit
            .as_ref()
            .map(|l| ("vk", vk.counter_id.clone(), l)),
        rule.and_then(|r| {
            r.rate_limit
                .as_ref()
                .map(|l| ("provider", r.counter_id.clone(), l))
        }),
    ];
    let mut decided = Vec::new();
    for (scope, id, limit) in limits.into_iter().flatten() {
        let (ClusterLimitMode::Strict, Some((max, period))) = (limit.mode, limit.requests) else {
            continue;
        };
        if state.counters.remote().view().stale {
            // The limit's cluster_stale_policy decides in admission.
            break;
        }
        let window_start = period.window_start(now);
        let window_end = period.window_end(window_start);
        let key = CounterKey {
            scope,
            id: id.clone(),
            metric: Metric::Requests,
            window_start,
        };
        match cluster.admit_strict(&key, max, window_end).await {
            StrictOutcome::Admitted { count_before } => {
                state.metrics.gossip.strict_outcome("admitted");
                decided.push((key, count_before));
            }
            StrictOutcome::Rejected => {
                state.metrics.gossip.strict_outcome("rejected");
                return Err(governance::strict_rejection(
                    scope, &id, max, window_end, now,
                ));
            }
            StrictOutcome::Unavailable(reason) => {
                tracing::debug!(limit = %limit.id, %reason, "strict limit decided on gossip counts");
            }
        }
    }
    Ok(decided)
}
