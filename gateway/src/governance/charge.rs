//! A request's way through governance: [`admit`] is the one place a request with a virtual
//! key is admitted. It applies the key's provider rules to the targets, estimates what the
//! request will use, asks the owners of strict limits (cluster mode), and takes the decision
//! under the counters' lock; the [`Charge`] it returns is settled with the real usage when
//! the answer (or stream) is complete.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::admission::{self, Admission, Estimate, LimitStatus, Rejection};
use super::counters::{Metric, Scope, UsageCounters};
use super::pricing::PricingTable;
use super::strict::{ask_owners, StrictLimits, StrictRefusal};
use super::usage::TokenUsage;
use super::{now_ms, provider_rule, GovernanceRuntime, VirtualKey, DEFAULT_COMPLETION_ESTIMATE};
use crate::error::{GatewayError, LimitMetric};
use crate::routing::Target;

/// What a request may use, known before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedUsage {
    /// Prompt tokens: JSON is about four bytes per token, so the body bounds them from above.
    pub prompt: u64,
    /// The most completion tokens it may produce (`max_completion_tokens`, `max_tokens`, or
    /// [`DEFAULT_COMPLETION_ESTIMATE`]); 0 for embeddings.
    pub completion: u64,
}

impl ExpectedUsage {
    /// The estimate for a request `body` of `body_len` bytes; `completions`: whether it
    /// generates text (chat, messages) rather than embeddings.
    pub fn of(body: &Map<String, Value>, body_len: usize, completions: bool) -> Self {
        let completion = if completions {
            body.get("max_completion_tokens")
                .or_else(|| body.get("max_tokens"))
                .and_then(Value::as_u64)
                .unwrap_or(DEFAULT_COMPLETION_ESTIMATE)
        } else {
            0
        };
        Self {
            prompt: (body_len as u64).div_ceil(4),
            completion,
        }
    }
}

/// Admit a request of `vk` to `targets` (primary first, then fallbacks) or say why not: 403
/// when the key may not use a target, 429 for a used-up rate limit (strict limits asked of
/// their owner node through `strict`), 402 for a spent budget, 503 for a limit that cannot
/// be enforced on a stale cluster view. Each target learns the key ids the key allows on it.
pub async fn admit(
    governance: &GovernanceRuntime,
    counters: &Arc<UsageCounters>,
    strict: Option<&dyn StrictLimits>,
    vk: &VirtualKey,
    targets: &mut [Target],
    expected: ExpectedUsage,
) -> Result<Charge, GatewayError> {
    // The primary target's rule carries the provider-level limits and budget.
    let mut rule = None;
    for (index, target) in targets.iter_mut().enumerate() {
        let target_rule = provider_rule(vk, &target.provider.name, &target.model)?;
        target.allowed_keys = target_rule.key_ids.clone();
        if index == 0 {
            rule = Some(target_rule);
        }
    }
    let primary = targets
        .first()
        .ok_or_else(|| GatewayError::InvalidRequest("model: required".into()))?;
    let cost = governance
        .pricing
        .price(&primary.provider.name, &primary.model)
        .map_or(0.0, |price| {
            price.cost(expected.prompt, expected.completion)
        });
    let now = now_ms();
    let decided = match strict {
        Some(strict) => ask_owners(strict, counters, vk, rule, now)
            .await
            .map_err(|refusal| strict_refusal_error(refusal, now))?,
        None => Vec::new(),
    };
    let estimate = Estimate {
        tokens: expected.prompt.saturating_add(expected.completion),
        cost,
    };
    let decision = {
        let mut local = counters.lock();
        admission::admit_with(
            &mut local,
            counters.remote(),
            vk,
            rule,
            estimate,
            now,
            &decided,
        )
    };
    match decision {
        Ok(reservation) => Ok(Charge {
            admission: Admission::new(counters.clone(), reservation),
            pricing: governance.pricing.clone(),
            prompt_estimate: expected.prompt,
        }),
        Err(rejection) => Err(rejection_error(rejection, now)),
    }
}

/// An admitted request's charge, settled when the answer (or stream) is complete; dropped
/// unsettled (the upstream failed), it releases the estimates.
pub struct Charge {
    admission: Admission,
    pricing: Arc<PricingTable>,
    /// Prompt tokens assumed when the upstream reports none.
    pub prompt_estimate: u64,
}

impl Charge {
    /// The key's request and token limits after this request, for response headers.
    pub fn limits(&self) -> impl Iterator<Item = (Metric, LimitStatus)> + '_ {
        self.admission.reservation().into_iter().flat_map(|r| {
            [
                r.requests.map(|s| (Metric::Requests, s)),
                r.token_limit.map(|s| (Metric::Tokens, s)),
            ]
            .into_iter()
            .flatten()
        })
    }

    /// The model name `model` is priced by on `provider`: the name itself when it has a price
    /// (an override for an alias wins), else the key's `deployment` of it when given (the
    /// alias `sonnet` of `claude-sonnet-4@20250514` costs what Claude costs).
    pub fn priced_model<'a>(
        &self,
        provider: &str,
        model: &'a str,
        deployment: Option<&'a str>,
    ) -> &'a str {
        match deployment {
            Some(deployed) if self.pricing.price(provider, model).is_none() => deployed,
            _ => model,
        }
    }

    /// Charge what the request used on `provider`/`model` (the target that answered).
    pub fn settle(self, provider: &str, model: &str, usage: TokenUsage) {
        let cost = self
            .pricing
            .cost(provider, model, usage.prompt, usage.completion);
        self.admission.settle(usage.total(), cost);
    }
}

fn until(reset_at_ms: i64, now_ms: i64) -> Duration {
    Duration::from_millis(reset_at_ms.saturating_sub(now_ms).max(0) as u64)
}

/// The 429 for a request limit whose owner node refused the request (strict cluster mode).
fn strict_refusal_error(refusal: StrictRefusal, now_ms: i64) -> GatewayError {
    rejection_error(
        Rejection::RateLimited {
            scope: refusal.key.scope,
            owner: refusal.key.id.to_string(),
            metric: Metric::Requests,
            limit: refusal.limit,
            reset_at_ms: refusal.reset_at_ms,
        },
        now_ms,
    )
}

fn rejection_error(rejection: Rejection, now_ms: i64) -> GatewayError {
    match rejection {
        Rejection::RateLimited {
            scope,
            owner,
            metric,
            limit,
            reset_at_ms,
        } => {
            let whose = match scope {
                Scope::VirtualKey => format!("virtual key \"{owner}\""),
                Scope::Provider => format!("virtual key and provider \"{owner}\""),
                Scope::Team => format!("team \"{owner}\""),
                Scope::Customer => format!("customer \"{owner}\""),
            };
            let reset_after = until(reset_at_ms, now_ms);
            GatewayError::RateLimited {
                message: format!(
                    "rate limit of {limit} {} per window reached for {whose}; the window resets in {}s",
                    metric.as_str(),
                    reset_after.as_secs().max(1)
                ),
                metric: match metric {
                    Metric::Requests => LimitMetric::Requests,
                    Metric::Tokens => LimitMetric::Tokens,
                },
                limit,
                reset_after,
            }
        }
        Rejection::BudgetExhausted {
            level,
            owner,
            budget_id,
            spent,
            max_limit,
            reset_at_ms,
        } => GatewayError::BudgetExhausted {
            message: format!(
                "budget \"{budget_id}\" of {} \"{owner}\" is exhausted: ${spent:.4} of ${max_limit:.2} spent this period; it resets in {}s",
                level.as_str().replace('_', " "),
                until(reset_at_ms, now_ms).as_secs().max(1)
            ),
            level,
            reset_after: until(reset_at_ms, now_ms),
        },
        Rejection::ClusterStale { limit_id, owner } => GatewayError::ClusterUnavailable {
            message: format!(
                "rate limit \"{limit_id}\" of \"{owner}\" cannot be enforced: this node's view of the cluster is stale (peers suspect or unreachable) and the limit's cluster_stale_policy is closed; retry shortly or on another replica"
            ),
        },
        Rejection::TooManyInFlight { vk, max } => GatewayError::RateLimited {
            message: format!("virtual key \"{vk}\" already has {max} requests in flight (max_in_flight)"),
            metric: LimitMetric::InFlight,
            limit: u64::from(max),
            reset_after: Duration::from_secs(1),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).expect("test body")
    }

    #[test]
    fn the_estimate_takes_the_completion_cap_and_a_quarter_of_the_body() {
        let capped = body(r#"{"max_completion_tokens": 50, "max_tokens": 7}"#);
        assert_eq!(
            ExpectedUsage::of(&capped, 401, true),
            ExpectedUsage {
                prompt: 101,
                completion: 50
            }
        );
        let legacy = body(r#"{"max_tokens": 7}"#);
        assert_eq!(ExpectedUsage::of(&legacy, 8, true).completion, 7);
        assert_eq!(
            ExpectedUsage::of(&body("{}"), 8, true).completion,
            DEFAULT_COMPLETION_ESTIMATE
        );
        assert_eq!(ExpectedUsage::of(&capped, 8, false).completion, 0);
    }

    #[test]
    fn refusals_name_the_limit_and_when_it_resets() {
        let error = rejection_error(
            Rejection::RateLimited {
                scope: Scope::Provider,
                owner: "vk1/openai".into(),
                metric: Metric::Tokens,
                limit: 100,
                reset_at_ms: 30_500,
            },
            10_000,
        );
        match error {
            GatewayError::RateLimited {
                message,
                metric,
                limit,
                reset_after,
            } => {
                assert_eq!(
                    message,
                    "rate limit of 100 tokens per window reached for virtual key and provider \"vk1/openai\"; the window resets in 20s"
                );
                assert_eq!((metric, limit), (LimitMetric::Tokens, 100));
                assert_eq!(reset_after, Duration::from_millis(20_500));
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
    }
}
