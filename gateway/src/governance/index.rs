//! Governance definitions compiled for the request path: virtual keys by value, their chain of
//! team and customer, parsed periods. Rebuilt whenever the definitions change.

use std::collections::HashMap;
use std::sync::Arc;

use super::counters::Scope;
use crate::config::{ClusterLimitMode, GovernanceConfig, Period, StalePolicy};

/// A rate limit with parsed windows.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// Definition id.
    pub id: String,
    /// Requests per window.
    pub requests: Option<(u64, Period)>,
    /// Tokens per window.
    pub tokens: Option<(u64, Period)>,
    /// Gossip (default) or strict enforcement across a cluster.
    pub mode: ClusterLimitMode,
    /// What to do while the cluster view is stale.
    pub stale_policy: StalePolicy,
}

/// A budget definition with its parsed period.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Definition id.
    pub id: String,
    /// USD per period.
    pub max_limit: f64,
    /// Reset period.
    pub period: Period,
}

/// Where a budget hangs (defined with the error that names it).
pub use crate::error::BudgetLevel as Level;

/// A budget applying to a request, and at which level.
#[derive(Debug, Clone)]
pub struct BudgetRef {
    /// Level in the hierarchy.
    pub level: Level,
    /// Id of the owner at that level (virtual key, team or customer id; `vk/provider`).
    pub owner: String,
    /// The budget.
    pub budget: Arc<Budget>,
}

/// A rate limit a virtual key shares with others: its team's or its customer's, counted under
/// the owner's id so every key of the team (or customer) draws on one counter.
#[derive(Debug, Clone)]
pub struct SharedLimit {
    /// [`Scope::Team`] or [`Scope::Customer`].
    pub scope: Scope,
    /// The team's or customer's id, as a counter owner.
    pub owner: Arc<str>,
    /// The limit.
    pub limit: Arc<RateLimit>,
}

/// A virtual key's rules for one provider.
#[derive(Debug, Clone)]
pub struct ProviderRule {
    /// Allowed models (`*`: all; empty: none).
    pub allowed_models: Vec<String>,
    /// Models refused even when allowed (`*`: all).
    pub blacklisted_models: Vec<String>,
    /// Allowed provider key ids (`None`: all, from `["*"]`; empty: none).
    pub key_ids: Option<Arc<[String]>>,
    /// Weight for bare model names.
    pub weight: f64,
    /// Budget for this provider.
    pub budget: Option<BudgetRef>,
    /// Rate limit for this provider.
    pub rate_limit: Option<Arc<RateLimit>>,
    /// Counter owner id, `vk/provider` (built once, shared by every request).
    pub counter_id: Arc<str>,
}

impl ProviderRule {
    /// Whether the rule allows `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.allowed_models.iter().any(|m| m == model || m == "*") && !self.blacklists(model)
    }

    /// Whether `blacklisted_models` refuses `model`.
    pub fn blacklists(&self, model: &str) -> bool {
        self.blacklisted_models
            .iter()
            .any(|m| m == model || m == "*")
    }
}

/// A compiled virtual key.
#[derive(Debug)]
pub struct VirtualKey {
    /// Id.
    pub id: String,
    /// The id as a counter owner (built once, shared by every request).
    pub counter_id: Arc<str>,
    /// Display name.
    pub name: String,
    /// Inactive keys are refused.
    pub is_active: bool,
    /// Team id, if any.
    pub team_id: Option<String>,
    /// Customer id (directly, or through the team).
    pub customer_id: Option<String>,
    /// Budgets on the path VK → team → customer (provider budgets are in `providers`).
    pub budgets: Vec<BudgetRef>,
    /// The key's own rate limit.
    pub rate_limit: Option<Arc<RateLimit>>,
    /// Its team's and then its customer's rate limits.
    pub shared_limits: Vec<SharedLimit>,
    /// Per-provider rules; empty means every provider is allowed.
    pub providers: HashMap<String, ProviderRule>,
    /// In-flight cap.
    pub max_in_flight: Option<u32>,
    /// When the key stops being accepted.
    pub expires_at: Option<Expiry>,
}

/// A virtual key's `expires_at`: as written (for the refusal) and in Unix ms.
#[derive(Debug, Clone)]
pub struct Expiry {
    /// The config's text.
    pub text: String,
    /// Unix ms; a text that does not parse (validation refuses it first) counts as expired.
    pub at_ms: i64,
}

/// All virtual keys by their secret value.
#[derive(Default)]
pub struct GovernanceIndex {
    /// Value → key.
    pub by_value: HashMap<String, Arc<VirtualKey>>,
    /// Budgets by id.
    pub budgets: HashMap<String, Arc<Budget>>,
}

impl GovernanceIndex {
    /// Compile validated definitions. References that do not resolve (only possible for data
    /// written to the store behind the gateway's back) are skipped with a warning.
    pub fn build(config: &GovernanceConfig) -> Self {
        let budgets: HashMap<String, Arc<Budget>> = config
            .budgets
            .iter()
            .filter_map(|b| match b.reset_duration.parse::<Period>() {
                Ok(period) => Some((
                    b.id.clone(),
                    Arc::new(Budget {
                        id: b.id.clone(),
                        max_limit: b.max_limit,
                        period,
                    }),
                )),
                Err(reason) => {
                    tracing::warn!(budget = %b.id, %reason, "budget skipped: bad reset_duration");
                    None
                }
            })
            .collect();
        let rate_limits: HashMap<String, Arc<RateLimit>> = config
            .rate_limits
            .iter()
            .map(|r| {
                let window = |max: Option<u64>, duration: &Option<String>| {
                    Some((max?, duration.as_deref()?.parse::<Period>().ok()?))
                };
                (
                    r.id.clone(),
                    Arc::new(RateLimit {
                        id: r.id.clone(),
                        requests: window(r.request_max_limit, &r.request_reset_duration),
                        tokens: window(r.token_max_limit, &r.token_reset_duration),
                        mode: r.cluster_mode.unwrap_or_default(),
                        stale_policy: r.cluster_stale_policy.unwrap_or_default(),
                    }),
                )
            })
            .collect();
        let teams: HashMap<&str, _> = config.teams.iter().map(|t| (t.id.as_str(), t)).collect();
        let customers: HashMap<&str, _> = config
            .customers
            .iter()
            .map(|c| (c.id.as_str(), c))
            .collect();
        let budget_ref = |level: Level, owner: &str, id: &Option<String>| {
            let id = id.as_ref()?;
            match budgets.get(id) {
                Some(budget) => Some(BudgetRef {
                    level,
                    owner: owner.to_string(),
                    budget: budget.clone(),
                }),
                None => {
                    tracing::warn!(budget = %id, owner, "unknown budget referenced; ignored");
                    None
                }
            }
        };

        let shared = |scope: Scope, owner: &str, id: &Option<String>| {
            let limit = rate_limits.get(id.as_deref()?)?.clone();
            Some(SharedLimit {
                scope,
                owner: Arc::from(owner),
                limit,
            })
        };
        let team_limits: HashMap<&str, SharedLimit> = config
            .teams
            .iter()
            .filter_map(|t| Some((t.id.as_str(), shared(Scope::Team, &t.id, &t.rate_limit_id)?)))
            .collect();
        let customer_limits: HashMap<&str, SharedLimit> = config
            .customers
            .iter()
            .filter_map(|c| {
                let limit = shared(Scope::Customer, &c.id, &c.rate_limit_id)?;
                Some((c.id.as_str(), limit))
            })
            .collect();

        let mut by_value = HashMap::with_capacity(config.virtual_keys.len());
        // A key without a value (generated on import into the store) has no credential yet.
        for vk in config.virtual_keys.iter().filter(|vk| !vk.value.is_empty()) {
            let team = vk.team_id.as_deref().and_then(|t| teams.get(t));
            let customer_id = vk
                .customer_id
                .clone()
                .or_else(|| team.and_then(|t| t.customer_id.clone()));
            let customer = customer_id.as_deref().and_then(|c| customers.get(c));
            let mut chain = Vec::new();
            chain.extend(budget_ref(Level::VirtualKey, &vk.id, &vk.budget_id));
            if let Some(team) = team {
                chain.extend(budget_ref(Level::Team, &team.id, &team.budget_id));
            }
            if let Some(customer) = customer {
                chain.extend(budget_ref(
                    Level::Customer,
                    &customer.id,
                    &customer.budget_id,
                ));
            }
            let shared_limits = [
                vk.team_id.as_deref().and_then(|t| team_limits.get(t)),
                customer_id.as_deref().and_then(|c| customer_limits.get(c)),
            ]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
            let providers = vk
                .provider_configs
                .iter()
                .map(|pc| {
                    (
                        pc.provider.clone(),
                        ProviderRule {
                            allowed_models: pc.allowed_models.clone(),
                            blacklisted_models: pc.blacklisted_models.clone(),
                            // Bifrost's `["*"]` means every key; an empty list, none.
                            key_ids: (!pc.key_ids.iter().any(|id| id == "*"))
                                .then(|| pc.key_ids.clone().into()),
                            weight: pc.weight,
                            budget: budget_ref(
                                Level::Provider,
                                &format!("{}/{}", vk.id, pc.provider),
                                &pc.budget_id,
                            ),
                            rate_limit: pc
                                .rate_limit_id
                                .as_ref()
                                .and_then(|r| rate_limits.get(r).cloned()),
                            counter_id: Arc::from(format!("{}/{}", vk.id, pc.provider)),
                        },
                    )
                })
                .collect();
            by_value.insert(
                vk.value.clone(),
                Arc::new(VirtualKey {
                    id: vk.id.clone(),
                    counter_id: Arc::from(vk.id.as_str()),
                    name: vk.name.clone(),
                    is_active: vk.is_active,
                    team_id: vk.team_id.clone(),
                    customer_id,
                    budgets: chain,
                    rate_limit: vk
                        .rate_limit_id
                        .as_ref()
                        .and_then(|r| rate_limits.get(r).cloned()),
                    shared_limits,
                    providers,
                    max_in_flight: vk.max_in_flight,
                    expires_at: vk.expires_at.as_ref().map(|text| Expiry {
                        at_ms: vk.expiry_ms().ok().flatten().unwrap_or(i64::MIN),
                        text: text.clone(),
                    }),
                }),
            );
        }
        Self { by_value, budgets }
    }
}
