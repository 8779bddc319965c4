//! Strict request limits (`mode: strict` in cluster mode): each limit's window is counted by
//! one owner node, which every other node asks before admitting. Governance defines what it
//! needs ([`StrictLimits`]); the cluster implements it over gRPC.

use futures_util::future::BoxFuture;

use super::admission::applicable_limits;
use super::counters::{CounterKey, Metric, UsageCounters};
use super::index::{ProviderRule, VirtualKey};
use crate::config::ClusterLimitMode;

/// What an owner said about a strict limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrictOutcome {
    /// Admitted; the cluster count before this request.
    Admitted {
        /// Requests admitted in the window before this one.
        count_before: i64,
    },
    /// Refused: the window is full.
    Rejected,
    /// No owner could be asked (unreachable, timed out): the caller falls back to gossip.
    Unavailable(String),
}

/// Asks a strict limit's owner node to admit one request.
pub trait StrictLimits: Send + Sync {
    /// Admit one request against `limit` in the window of `key` ending at `window_end_ms`.
    fn admit_one<'a>(
        &'a self,
        key: &'a CounterKey,
        limit: u64,
        window_end_ms: i64,
    ) -> BoxFuture<'a, StrictOutcome>;
}

/// A strict request limit its owner refused: the 429 to give.
#[derive(Debug, Clone, PartialEq)]
pub struct StrictRefusal {
    /// The refused counter.
    pub key: CounterKey,
    /// The limit.
    pub limit: u64,
    /// When the window ends (Unix ms).
    pub reset_at_ms: i64,
}

/// Ask the owner of each strict request limit on the request's path, while the cluster view
/// is fresh. Admitted counters come back with the cluster count before this request; a refusal
/// is the 429; an owner that cannot be asked leaves the limit to the gossip counts. Token
/// limits are always gossip-counted. With a stale view the limits' `cluster_stale_policy`
/// decides in admission instead.
pub async fn ask_owners(
    strict: &dyn StrictLimits,
    counters: &UsageCounters,
    vk: &VirtualKey,
    provider: Option<&ProviderRule>,
    now_ms: i64,
) -> Result<Vec<(CounterKey, i64)>, StrictRefusal> {
    let mut decided = Vec::new();
    for (scope, id, limit) in applicable_limits(vk, provider) {
        let (ClusterLimitMode::Strict, Some((max, period))) = (limit.mode, limit.requests) else {
            continue;
        };
        if counters.remote().view().stale {
            break;
        }
        let window_start = period.window_start(now_ms);
        let window_end = period.window_end(window_start);
        let key = CounterKey {
            scope,
            id: id.clone(),
            metric: Metric::Requests,
            window_start,
        };
        match strict.admit_one(&key, max, window_end).await {
            StrictOutcome::Admitted { count_before } => decided.push((key, count_before)),
            StrictOutcome::Rejected => {
                return Err(StrictRefusal {
                    key,
                    limit: max,
                    reset_at_ms: window_end,
                })
            }
            StrictOutcome::Unavailable(reason) => {
                tracing::debug!(limit = %limit.id, %reason, "strict limit decided on gossip counts");
            }
        }
    }
    Ok(decided)
}
