//! Governance: virtual keys, rate limits, budgets and their hierarchy (customer → team →
//! virtual key → provider), enforced on the request path.
//!
//! - `index`: definitions compiled for lookups; `auth`: finding the key in a request;
//! - `counters`: this node's usage plus the remote view (cluster-ready);
//! - `admission`: the pure admit/settle logic; `usage`: real usage from answers;
//! - `pricing`: token prices; `flush`: spend to the store, budget resets.

pub mod admission;
pub mod auth;
pub mod counters;
pub mod flush;
pub mod index;
pub mod pricing;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use crate::config::GatewayConfig;
use crate::error::GatewayError;
use admission::{Admission, Estimate, Rejection};
use counters::{CounterKey, Metric, UsageCounters};
use index::{GovernanceIndex, ProviderRule, VirtualKey};
use pricing::PricingTable;

/// Completion tokens assumed when a request sets no `max_tokens`.
pub const DEFAULT_COMPLETION_ESTIMATE: u64 = 1024;

/// The governance part of a runtime (rebuilt with the config).
pub struct GovernanceRuntime {
    /// Compiled definitions.
    pub index: GovernanceIndex,
    /// Token prices.
    pub pricing: PricingTable,
    /// Whether inference requests need a virtual key.
    pub enforce: bool,
}

impl GovernanceRuntime {
    /// Compile the governance section of `config`.
    pub fn new(config: &GatewayConfig) -> Self {
        Self {
            index: GovernanceIndex::build(&config.governance),
            pricing: PricingTable::new(&config.governance.pricing),
            // `auth_config.disable_auth_on_inference` is ignored, as in Bifrost (config::compat).
            enforce: config.client.enforce_auth_on_inference,
        }
    }

    /// The request's virtual key: `None` when it has none and none is required; 401 when one
    /// is required and missing; 403 when it is unknown or inactive.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Arc<VirtualKey>>, GatewayError> {
        let Some(value) = auth::virtual_key_value(headers) else {
            if self.enforce {
                return Err(GatewayError::Unauthorized(
                    "a virtual key is required: send it as `x-bf-vk`, `Authorization: Bearer sk-bf-...` or `x-api-key`".into(),
                ));
            }
            return Ok(None);
        };
        match self.index.by_value.get(value) {
            Some(vk) if vk.is_active => Ok(Some(vk.clone())),
            Some(vk) => Err(GatewayError::Forbidden(format!(
                "virtual key \"{}\" is inactive",
                vk.id
            ))),
            None => Err(GatewayError::Forbidden("unknown virtual key".into())),
        }
    }
}

/// What a virtual key allows on one provider; 403 when it does not allow it at all.
pub fn provider_rule<'a>(
    vk: &'a VirtualKey,
    provider: &str,
    model: &str,
) -> Result<Option<&'a ProviderRule>, GatewayError> {
    if vk.providers.is_empty() {
        return Ok(None);
    }
    let rule = vk.providers.get(provider).ok_or_else(|| {
        GatewayError::Forbidden(format!(
            "virtual key \"{}\" may not use provider \"{provider}\"",
            vk.id
        ))
    })?;
    if !rule.allows_model(model) {
        return Err(GatewayError::Forbidden(format!(
            "virtual key \"{}\" may not use model \"{model}\" on provider \"{provider}\"",
            vk.id
        )));
    }
    Ok(Some(rule))
}

/// Admit a request for `vk` (reserving its estimate) or say why not. `decided`: counters an
/// owner node already admitted this request on (strict cluster mode), with the count before it.
pub fn admit(
    counters: &Arc<UsageCounters>,
    vk: &VirtualKey,
    provider: Option<(&str, &ProviderRule)>,
    estimate: Estimate,
    now_ms: i64,
    decided: &[(CounterKey, i64)],
) -> Result<Admission, GatewayError> {
    let decision = {
        let mut local = counters.lock();
        admission::admit_with(
            &mut local,
            counters.remote(),
            vk,
            provider,
            estimate,
            now_ms,
            decided,
        )
    };
    match decision {
        Ok(reservation) => Ok(Admission::new(counters.clone(), reservation)),
        Err(rejection) => Err(rejection_error(rejection, now_ms)),
    }
}

fn until(reset_at_ms: i64, now_ms: i64) -> Duration {
    Duration::from_millis(reset_at_ms.saturating_sub(now_ms).max(0) as u64)
}

/// The 429 for a request limit whose owner node refused the request (strict cluster mode).
pub fn strict_rejection(
    scope: &'static str,
    owner: &str,
    limit: u64,
    reset_at_ms: i64,
    now_ms: i64,
) -> GatewayError {
    rejection_error(
        Rejection::RateLimited {
            scope,
            owner: owner.to_string(),
            metric: Metric::Requests,
            limit,
            reset_at_ms,
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
            let what = match metric {
                Metric::Requests => "requests",
                Metric::Tokens => "tokens",
            };
            let whose = if scope == "vk" {
                format!("virtual key \"{owner}\"")
            } else {
                format!("virtual key and provider \"{owner}\"")
            };
            let reset_after = until(reset_at_ms, now_ms);
            GatewayError::RateLimited {
                message: format!(
                    "rate limit of {limit} {what} per window reached for {whose}; the window resets in {}s",
                    reset_after.as_secs().max(1)
                ),
                metric: what,
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
            level: level.as_str(),
            reset_after: until(reset_at_ms, now_ms),
        },
        Rejection::ClusterStale { limit_id, owner } => GatewayError::ClusterUnavailable {
            message: format!(
                "rate limit \"{limit_id}\" of \"{owner}\" cannot be enforced: this node's view of the cluster is stale (peers suspect or unreachable) and the limit's cluster_stale_policy is closed; retry shortly or on another replica"
            ),
        },
        Rejection::TooManyInFlight { vk, max } => GatewayError::RateLimited {
            message: format!("virtual key \"{vk}\" already has {max} requests in flight (max_in_flight)"),
            metric: "in_flight",
            limit: u64::from(max),
            reset_after: Duration::from_secs(1),
        },
    }
}

/// Unix time in ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
