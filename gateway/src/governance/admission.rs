//! The admission decision: pure logic over this node's counters plus the remote view. Checks
//! and reservations happen under one lock, so two concurrent requests can never both take the
//! last unit of a limit.
//!
//! A request is admitted while a limit has room left (`used < limit`); it then reserves one
//! request, its estimated tokens and its estimated cost, which later requests see at once.
//! When it finishes, the estimate is replaced by what it really used.

use std::collections::HashSet;
use std::sync::Arc;

use super::counters::{CounterKey, LocalUsage, Metric, RemoteUsage, Scope, UsageCounters};
use super::index::{BudgetRef, Level, ProviderRule, RateLimit, VirtualKey};
use super::pricing::usd;
use crate::config::StalePolicy;

/// What a request is expected to cost before it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Estimate {
    /// Prompt tokens plus the most completion tokens it may produce.
    pub tokens: u64,
    /// USD for those tokens.
    pub cost: f64,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// A request or token limit is used up (429).
    RateLimited {
        /// Whose limit.
        scope: Scope,
        /// Virtual key id (or `vk/provider`).
        owner: String,
        /// Requests or tokens.
        metric: Metric,
        /// The limit.
        limit: u64,
        /// When the window ends (Unix ms).
        reset_at_ms: i64,
    },
    /// A budget on the path is spent (402).
    BudgetExhausted {
        /// Where the budget hangs.
        level: Level,
        /// Owner id at that level.
        owner: String,
        /// Budget id.
        budget_id: String,
        /// USD counted so far this period.
        spent: f64,
        /// The cap.
        max_limit: f64,
        /// When the period ends (Unix ms).
        reset_at_ms: i64,
    },
    /// The key's in-flight cap is reached (429).
    TooManyInFlight {
        /// Virtual key id.
        vk: String,
        /// The cap.
        max: u32,
    },
    /// A limit with `cluster_stale_policy: closed` while the cluster view is stale (503).
    ClusterStale {
        /// Rate limit definition id.
        limit_id: String,
        /// Virtual key id (or `vk/provider`).
        owner: String,
    },
}

/// Rate-limit state for response headers (`x-ratelimit-*-requests`/`-tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitStatus {
    /// Limit per window.
    pub limit: u64,
    /// What is left after this request.
    pub remaining: u64,
    /// Window end (Unix ms).
    pub reset_at_ms: i64,
}

/// What an admitted request holds until it settles.
#[derive(Debug, Clone, Default)]
pub struct Reservation {
    /// Token counters and the estimate reserved in each.
    pub token_counters: Vec<CounterKey>,
    /// Tokens reserved per counter.
    pub tokens: i64,
    /// Budgets charged, each once.
    pub budgets: Vec<String>,
    /// Cost reserved per budget.
    pub cost: f64,
    /// Virtual key id (for the in-flight count).
    pub vk_id: String,
    /// The key's request limit, for headers.
    pub requests: Option<LimitStatus>,
    /// The key's token limit, for headers.
    pub token_limit: Option<LimitStatus>,
}

/// The rate limits on a request's path, each with the counter id it counts under: the virtual
/// key's own, its team's and customer's (shared with their other keys), then its limit on the
/// chosen provider. Admission and the strict path both walk this one list.
pub fn applicable_limits<'a>(
    vk: &'a VirtualKey,
    provider: Option<&'a ProviderRule>,
) -> impl Iterator<Item = (Scope, &'a Arc<str>, &'a RateLimit)> + 'a {
    let own = vk
        .rate_limit
        .as_deref()
        .map(|limit| (Scope::VirtualKey, &vk.counter_id, limit));
    let shared = vk
        .shared_limits
        .iter()
        .map(|shared| (shared.scope, &shared.owner, &*shared.limit));
    let on_provider = provider.and_then(|rule| {
        rule.rate_limit
            .as_deref()
            .map(|limit| (Scope::Provider, &rule.counter_id, limit))
    });
    own.into_iter().chain(shared).chain(on_provider)
}

/// Decide and, when admitted, reserve.
pub fn admit(
    local: &mut LocalUsage,
    remote: &dyn RemoteUsage,
    vk: &VirtualKey,
    provider: Option<&ProviderRule>,
    estimate: Estimate,
    now_ms: i64,
) -> Result<Reservation, Rejection> {
    admit_with(local, remote, vk, provider, estimate, now_ms, &[])
}

/// [`admit`], with some counters already decided by their owner node (strict cluster mode):
/// `decided` holds each such counter with the cluster count before this request, which
/// replaces the local-plus-gossip figure for it.
pub fn admit_with(
    local: &mut LocalUsage,
    remote: &dyn RemoteUsage,
    vk: &VirtualKey,
    provider: Option<&ProviderRule>,
    estimate: Estimate,
    now_ms: i64,
    decided: &[(CounterKey, i64)],
) -> Result<Reservation, Rejection> {
    // Spend and counts stay finite and in range whatever the estimate says.
    let estimate = Estimate {
        tokens: estimate.tokens,
        cost: usd(estimate.cost),
    };
    if let Some(max) = vk.max_in_flight {
        if local.in_flight(&vk.id) >= max {
            return Err(Rejection::TooManyInFlight {
                vk: vk.id.clone(),
                max,
            });
        }
    }

    let mut request_counters = Vec::new();
    let mut token_counters = Vec::new();
    let mut requests_status = None;
    let mut tokens_status = None;
    let view = remote.view();
    for (scope, owner, limit) in applicable_limits(vk, provider) {
        for (metric, window) in [
            (Metric::Requests, limit.requests),
            (Metric::Tokens, limit.tokens),
        ] {
            let Some((max, period)) = window else {
                continue;
            };
            let window_start = period.window_start(now_ms);
            let key = CounterKey {
                scope,
                id: owner.clone(),
                metric,
                window_start,
            };
            let local_used = local.window_count(&key);
            let owner_count = decided.iter().find(|(k, _)| *k == key).map(|(_, c)| *c);
            // A stale cluster view: the limit's policy decides what this node may admit alone.
            let (used, max) = if let Some(count) = owner_count {
                (count, max)
            } else if view.stale {
                match limit.stale_policy {
                    StalePolicy::Open => (local_used, max),
                    StalePolicy::Local => {
                        (local_used, (max / view.known_members.max(1) as u64).max(1))
                    }
                    StalePolicy::Closed => {
                        return Err(Rejection::ClusterStale {
                            limit_id: limit.id.clone(),
                            owner: owner.to_string(),
                        })
                    }
                }
            } else {
                (local_used.saturating_add(remote.counter(&key)), max)
            };
            let used = used.max(0) as u64;
            let reset_at_ms = period.window_end(window_start);
            if used >= max {
                return Err(Rejection::RateLimited {
                    scope,
                    owner: owner.to_string(),
                    metric,
                    limit: max,
                    reset_at_ms,
                });
            }
            let take = match metric {
                Metric::Requests => 1,
                Metric::Tokens => estimate.tokens,
            };
            let status = LimitStatus {
                limit: max,
                remaining: max.saturating_sub(used.saturating_add(take)),
                reset_at_ms,
            };
            if scope == Scope::VirtualKey {
                match metric {
                    Metric::Requests => requests_status = Some(status),
                    Metric::Tokens => tokens_status = Some(status),
                }
            }
            match metric {
                Metric::Requests => request_counters.push((key, reset_at_ms)),
                Metric::Tokens => token_counters.push((key, reset_at_ms)),
            }
        }
    }

    let provider_budget = provider.and_then(|rule| rule.budget.as_ref());
    let mut seen = HashSet::new();
    let mut budgets = Vec::new();
    for BudgetRef {
        level,
        owner,
        budget,
    } in vk.budgets.iter().chain(provider_budget)
    {
        if !seen.insert(budget.id.as_str()) {
            continue;
        }
        let period_start = budget.period.window_start(now_ms);
        let spent = local.budget_spend(&budget.id, period_start) + remote.spend(&budget.id);
        // A spend that is not a number (a peer's garbage) refuses rather than admits: budgets
        // err on the side of not overspending.
        if spent.is_nan() || spent >= budget.max_limit {
            return Err(Rejection::BudgetExhausted {
                level: *level,
                owner: owner.clone(),
                budget_id: budget.id.clone(),
                spent,
                max_limit: budget.max_limit,
                reset_at_ms: budget.period.window_end(period_start),
            });
        }
        budgets.push(budget.id.clone());
    }

    // Everything has room: reserve.
    for (key, ends_at_ms) in request_counters {
        local.count(key, ends_at_ms, 1);
    }
    let tokens = i64::try_from(estimate.tokens).unwrap_or(i64::MAX);
    for (key, ends_at_ms) in &token_counters {
        local.count(key.clone(), *ends_at_ms, tokens);
    }
    let token_counters: Vec<CounterKey> = token_counters.into_iter().map(|(key, _)| key).collect();
    for budget in &budgets {
        local.reserve_spend(budget, estimate.cost);
    }
    local.request_started(&vk.id);
    Ok(Reservation {
        token_counters,
        tokens,
        budgets,
        cost: estimate.cost,
        vk_id: vk.id.clone(),
        requests: requests_status,
        token_limit: tokens_status,
    })
}

/// Replace a reservation's estimates with what the request really used (`None`: it produced
/// nothing chargeable, e.g. the upstream failed).
pub fn settle(local: &mut LocalUsage, reservation: &Reservation, actual: Option<(u64, f64)>) {
    let (tokens, cost) = actual.unwrap_or((0, 0.0));
    let cost = usd(cost);
    let correction = i64::try_from(tokens)
        .unwrap_or(i64::MAX)
        .saturating_sub(reservation.tokens);
    for key in &reservation.token_counters {
        local.correct(key, correction);
    }
    for budget in &reservation.budgets {
        local.release_spend(budget, reservation.cost);
        if cost > 0.0 {
            local.charge_budget(budget, cost);
        }
    }
    local.request_finished(&reservation.vk_id, cost);
}

/// An admitted request's hold on the counters. Settle it with the real usage; dropping it
/// unsettled releases the estimates (the request still counts as one request).
pub struct Admission {
    counters: Arc<UsageCounters>,
    reservation: Option<Reservation>,
}

impl Admission {
    /// Wrap a reservation made on `counters`.
    pub fn new(counters: Arc<UsageCounters>, reservation: Reservation) -> Self {
        Self {
            counters,
            reservation: Some(reservation),
        }
    }

    /// The reservation (for headers).
    pub fn reservation(&self) -> Option<&Reservation> {
        self.reservation.as_ref()
    }

    /// Charge the real usage: `tokens` (prompt + completion) and `cost` in USD.
    pub fn settle(mut self, tokens: u64, cost: f64) {
        if let Some(reservation) = self.reservation.take() {
            settle(
                &mut self.counters.lock(),
                &reservation,
                Some((tokens, cost)),
            );
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(reservation) = self.reservation.take() {
            settle(&mut self.counters.lock(), &reservation, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Period;
    use crate::governance::counters::{ClusterView, NoRemote, StoredUsage};
    use crate::governance::index::Budget;

    const NOW: i64 = 1_795_000_000_000;

    fn vk(requests: Option<u64>, tokens: Option<u64>, budget: Option<f64>) -> VirtualKey {
        let minute: Period = "1m".parse().expect("period");
        VirtualKey {
            id: "vk1".into(),
            counter_id: Arc::from("vk1"),
            name: "test".into(),
            is_active: true,
            team_id: None,
            customer_id: None,
            budgets: budget
                .map(|max_limit| BudgetRef {
                    level: Level::VirtualKey,
                    owner: "vk1".into(),
                    budget: Arc::new(Budget {
                        id: "b1".into(),
                        max_limit,
                        period: "1d".parse().expect("period"),
                    }),
                })
                .into_iter()
                .collect(),
            rate_limit: Some(Arc::new(RateLimit {
                id: "r1".into(),
                requests: requests.map(|r| (r, minute)),
                tokens: tokens.map(|t| (t, minute)),
                mode: Default::default(),
                stale_policy: StalePolicy::Local,
            })),
            shared_limits: Vec::new(),
            providers: HashMap::new(),
            max_in_flight: Some(2),
            expires_at: None,
        }
    }

    fn estimate(tokens: u64, cost: f64) -> Estimate {
        Estimate { tokens, cost }
    }

    #[test]
    fn the_request_after_the_limit_is_refused_until_the_window_rolls_over() {
        let key = vk(Some(3), None, None);
        let mut local = LocalUsage::default();
        for _ in 0..3 {
            let r = admit(&mut local, &NoRemote, &key, None, estimate(1, 0.0), NOW).expect("room");
            settle(&mut local, &r, Some((1, 0.0)));
        }
        match admit(&mut local, &NoRemote, &key, None, estimate(1, 0.0), NOW) {
            Err(Rejection::RateLimited {
                metric: Metric::Requests,
                limit: 3,
                reset_at_ms,
                ..
            }) => {
                assert!(reset_at_ms > NOW && reset_at_ms <= NOW + 60_000)
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        assert!(admit(
            &mut local,
            &NoRemote,
            &key,
            None,
            estimate(1, 0.0),
            NOW + 60_000
        )
        .is_ok());
    }

    #[test]
    fn reserved_tokens_are_seen_by_concurrent_requests_and_corrected_after() {
        let key = vk(None, Some(1000), None);
        let mut local = LocalUsage::default();
        let first =
            admit(&mut local, &NoRemote, &key, None, estimate(600, 0.0), NOW).expect("room");
        let second =
            admit(&mut local, &NoRemote, &key, None, estimate(600, 0.0), NOW).expect("still room");
        // Both in flight hold 1200 reserved tokens: the next request is refused.
        assert!(matches!(
            admit(&mut local, &NoRemote, &key, None, estimate(1, 0.0), NOW),
            Err(Rejection::TooManyInFlight { .. }) | Err(Rejection::RateLimited { .. })
        ));
        settle(&mut local, &first, Some((100, 0.0)));
        settle(&mut local, &second, Some((100, 0.0)));
        let third = admit(&mut local, &NoRemote, &key, None, estimate(10, 0.0), NOW)
            .expect("corrected down to 200 used");
        assert_eq!(third.token_limit.map(|s| s.remaining), Some(1000 - 210));
    }

    #[test]
    fn a_budget_counts_stored_pending_and_reserved_spend() {
        let key = vk(None, None, Some(1.0));
        let mut local = LocalUsage::default();
        let period_start = "1d".parse::<Period>().expect("period").window_start(NOW);
        local.set_stored(HashMap::from([(
            "b1".into(),
            StoredUsage {
                current_usage: 0.5,
                last_reset_ms: period_start,
            },
        )]));
        let r = admit(&mut local, &NoRemote, &key, None, estimate(10, 0.3), NOW).expect("0.5 < 1");
        settle(&mut local, &r, Some((10, 0.6)));
        assert!((local.budget_spend("b1", period_start) - 1.1).abs() < 1e-9);
        match admit(&mut local, &NoRemote, &key, None, estimate(1, 0.0), NOW) {
            Err(Rejection::BudgetExhausted {
                level: Level::VirtualKey,
                budget_id,
                ..
            }) => assert_eq!(budget_id, "b1"),
            other => panic!("expected an exhausted budget, got {other:?}"),
        }
        // Stored usage from an earlier period does not count (what was pending is written).
        local.begin_flush();
        local.flush_done(
            HashMap::from([(
                "b1".into(),
                StoredUsage {
                    current_usage: 1.1,
                    last_reset_ms: period_start - 1,
                },
            )]),
            NOW,
        );
        assert_eq!(local.budget_spend("b1", period_start), 0.0);
        assert!(admit(&mut local, &NoRemote, &key, None, estimate(1, 0.0), NOW).is_ok());
    }

    #[test]
    fn the_in_flight_cap_holds_until_a_request_settles() {
        let key = vk(None, None, None);
        let mut local = LocalUsage::default();
        let a = admit(&mut local, &NoRemote, &key, None, estimate(1, 0.0), NOW).expect("1");
        let _b = admit(&mut local, &NoRemote, &key, None, estimate(1, 0.0), NOW).expect("2");
        assert!(matches!(
            admit(&mut local, &NoRemote, &key, None, estimate(1, 0.0), NOW),
            Err(Rejection::TooManyInFlight { max: 2, .. })
        ));
        settle(&mut local, &a, None);
        assert!(admit(&mut local, &NoRemote, &key, None, estimate(1, 0.0), NOW).is_ok());
    }

    #[test]
    fn ended_windows_are_pruned() {
        let key = vk(Some(5), Some(100), None);
        let mut local = LocalUsage::default();
        let r = admit(&mut local, &NoRemote, &key, None, estimate(1, 0.0), NOW).expect("room");
        settle(&mut local, &r, Some((1, 0.0)));
        assert_eq!(local.window_counts().count(), 2);
        local.prune(NOW, 0);
        assert_eq!(local.window_counts().count(), 2, "the window is still open");
        local.prune(NOW + 60_000, 0);
        assert_eq!(
            local.window_counts().count(),
            0,
            "a minute later the 1m window has ended"
        );
    }

    #[test]
    fn remote_usage_counts_against_the_limit() {
        struct Busy;
        impl RemoteUsage for Busy {
            fn counter(&self, _key: &CounterKey) -> i64 {
                5
            }
            fn spend(&self, _budget_id: &str) -> f64 {
                0.0
            }
        }
        let key = vk(Some(5), None, None);
        let mut local = LocalUsage::default();
        assert!(matches!(
            admit(&mut local, &Busy, &key, None, estimate(1, 0.0), NOW),
            Err(Rejection::RateLimited { .. })
        ));
    }

    /// Other nodes admitted 5 each, but this node cannot trust that view.
    struct Stale {
        known_members: usize,
    }
    impl RemoteUsage for Stale {
        fn counter(&self, _key: &CounterKey) -> i64 {
            5
        }
        fn spend(&self, _budget_id: &str) -> f64 {
            0.0
        }
        fn view(&self) -> ClusterView {
            ClusterView {
                stale: true,
                known_members: self.known_members,
            }
        }
    }

    fn with_policy(requests: u64, policy: StalePolicy) -> VirtualKey {
        let mut key = vk(Some(requests), None, None);
        if let Some(limit) = &mut key.rate_limit {
            Arc::make_mut(limit).stale_policy = policy;
        }
        key.max_in_flight = None;
        key
    }

    fn admitted(key: &VirtualKey, remote: &dyn RemoteUsage, attempts: usize) -> usize {
        let mut local = LocalUsage::default();
        (0..attempts)
            .filter(|_| admit(&mut local, remote, key, None, estimate(1, 0.0), NOW).is_ok())
            .count()
    }

    #[test]
    fn a_stale_view_applies_each_limits_policy() {
        let stale = Stale { known_members: 3 };
        // local: the limit split over the 3 members this node last knew, on local counts.
        assert_eq!(
            admitted(&with_policy(30, StalePolicy::Local), &stale, 50),
            10
        );
        // Never below one request per node.
        assert_eq!(admitted(&with_policy(2, StalePolicy::Local), &stale, 5), 1);
        // open: the whole limit on local counts (the remote 5 are ignored).
        assert_eq!(
            admitted(&with_policy(30, StalePolicy::Open), &stale, 50),
            30
        );
        // closed: refused, naming the limit.
        let mut local = LocalUsage::default();
        match admit(
            &mut local,
            &stale,
            &with_policy(30, StalePolicy::Closed),
            None,
            estimate(1, 0.0),
            NOW,
        ) {
            Err(Rejection::ClusterStale { limit_id, owner }) => {
                assert_eq!((limit_id.as_str(), owner.as_str()), ("r1", "vk1"))
            }
            other => panic!("expected ClusterStale, got {other:?}"),
        }
        // A fresh view counts the other nodes' 5 again.
        assert_eq!(
            admitted(&with_policy(30, StalePolicy::Closed), &FreshBusy, 50),
            25
        );
    }

    #[test]
    fn an_infinite_cost_exhausts_the_budget_with_a_finite_spend() {
        let key = vk(None, None, Some(1.0));
        let mut local = LocalUsage::default();
        let period_start = "1d".parse::<Period>().expect("period").window_start(NOW);
        let r = admit(
            &mut local,
            &NoRemote,
            &key,
            None,
            estimate(10, f64::INFINITY),
            NOW,
        )
        .expect("nothing spent yet");
        settle(&mut local, &r, Some((10, 1e308 * 10.0)));
        let spent = local.budget_spend("b1", period_start);
        assert!(spent.is_finite() && spent >= 1.0, "{spent}");
        match admit(&mut local, &NoRemote, &key, None, estimate(1, 0.0), NOW) {
            Err(Rejection::BudgetExhausted { spent, .. }) => assert!(spent.is_finite(), "{spent}"),
            other => panic!("expected an exhausted budget, got {other:?}"),
        }
    }

    #[test]
    fn a_spend_that_is_not_a_number_refuses() {
        struct Garbage;
        impl RemoteUsage for Garbage {
            fn counter(&self, _key: &CounterKey) -> i64 {
                0
            }
            fn spend(&self, _budget_id: &str) -> f64 {
                f64::NAN
            }
        }
        let key = vk(None, None, Some(1.0));
        let mut local = LocalUsage::default();
        assert!(matches!(
            admit(&mut local, &Garbage, &key, None, estimate(1, 0.0), NOW),
            Err(Rejection::BudgetExhausted { .. })
        ));
    }

    #[test]
    fn counts_and_estimates_near_the_integer_limits_saturate() {
        struct Huge;
        impl RemoteUsage for Huge {
            fn counter(&self, _key: &CounterKey) -> i64 {
                i64::MAX
            }
            fn spend(&self, _budget_id: &str) -> f64 {
                0.0
            }
        }
        let mut key = vk(None, Some(u64::MAX), None);
        key.max_in_flight = None;
        let mut local = LocalUsage::default();
        let r = admit(&mut local, &Huge, &key, None, estimate(u64::MAX, 0.0), NOW)
            .expect("i64::MAX used of u64::MAX");
        assert_eq!(r.token_limit.map(|s| s.remaining), Some(0));
        assert_eq!(r.tokens, i64::MAX);
        // This node's own count is now i64::MAX too: local plus remote saturates.
        let again = admit(&mut local, &Huge, &key, None, estimate(u64::MAX, 0.0), NOW)
            .expect("still under u64::MAX");
        assert_eq!(again.token_limit.map(|s| s.remaining), Some(0));
        settle(&mut local, &r, Some((u64::MAX, 0.0)));
        settle(&mut local, &again, Some((0, 0.0)));
    }

    struct FreshBusy;
    impl RemoteUsage for FreshBusy {
        fn counter(&self, _key: &CounterKey) -> i64 {
            5
        }
        fn spend(&self, _budget_id: &str) -> f64 {
            0.0
        }
    }
}
