//! The `governance` section (Bifrost's field names): virtual keys, teams, customers, budgets,
//! rate limits, admin auth, and our pricing overrides and usage-flush settings.
//!
//! Everything here is imported into the config store at start-up; definitions are upserted,
//! live usage (budget spend, last reset) is never touched by an import.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Governance: who may call what, how fast, for how much.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GovernanceConfig {
    /// Virtual keys handed to clients.
    #[serde(default)]
    pub virtual_keys: Vec<VirtualKeyConfig>,
    /// Teams (belong to at most one customer).
    #[serde(default)]
    pub teams: Vec<TeamConfig>,
    /// Customers (top of the hierarchy).
    #[serde(default)]
    pub customers: Vec<CustomerConfig>,
    /// USD budgets, referenced by id.
    #[serde(default)]
    pub budgets: Vec<BudgetConfig>,
    /// Request/token rate limits, referenced by id.
    #[serde(default)]
    pub rate_limits: Vec<RateLimitConfig>,
    /// Admin API authentication.
    #[serde(default)]
    pub auth_config: AuthConfig,
    /// Per-model token prices that override the shipped pricing table.
    #[serde(default)]
    pub pricing: Vec<ModelPrice>,
    /// How often unflushed spend is written to the store.
    #[serde(default = "GovernanceConfig::default_flush_interval_ms")]
    pub usage_flush_interval_ms: u64,
    /// How many virtual keys get per-key usage gauges in `/metrics` (the most active ones).
    #[serde(default = "GovernanceConfig::default_usage_metrics_top_n")]
    pub usage_metrics_top_n: u32,
}

impl GovernanceConfig {
    /// Largest accepted `usage_flush_interval_ms` (an hour).
    pub const MAX_USAGE_FLUSH_INTERVAL_MS: u64 = 3_600_000;
    /// Largest accepted `usage_metrics_top_n` (each key is a set of metric series).
    pub const MAX_USAGE_METRICS_TOP_N: u32 = 10_000;

    fn default_flush_interval_ms() -> u64 {
        1000
    }
    fn default_usage_metrics_top_n() -> u32 {
        20
    }
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        Self {
            virtual_keys: Vec::new(),
            teams: Vec::new(),
            customers: Vec::new(),
            budgets: Vec::new(),
            rate_limits: Vec::new(),
            auth_config: AuthConfig::default(),
            pricing: Vec::new(),
            usage_flush_interval_ms: Self::default_flush_interval_ms(),
            usage_metrics_top_n: Self::default_usage_metrics_top_n(),
        }
    }
}

/// A virtual key: the credential a client sends instead of a provider key.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VirtualKeyConfig {
    /// Stable identifier.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Optional description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The secret clients send (`sk-bf-...`; `env.NAME` allowed). Missing or empty: generated
    /// when the key is first written to the config store (shown once by the admin API).
    #[serde(default)]
    pub value: String,
    /// Inactive keys are refused with 403.
    #[serde(default = "crate::config::client::default_true")]
    pub is_active: bool,
    /// Owning team (exclusive with `customer_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// Owning customer (exclusive with `team_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Budget for this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_id: Option<String>,
    /// Rate limit for this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_id: Option<String>,
    /// Providers this key may use, with per-provider restrictions and limits. Empty or missing:
    /// none (Bifrost 1.5's meaning; a file with `version: 1` reads it as every provider).
    #[serde(default)]
    pub provider_configs: Vec<VirtualKeyProviderConfig>,
    /// Most requests this key may have in flight at once (none: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// RFC 3339 time (`2027-01-31T00:00:00Z`, any offset) from which the key is refused
    /// with 403, as Bifrost's `expires_at`; none: it never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl VirtualKeyConfig {
    /// `expires_at` (RFC 3339, any offset) in Unix milliseconds; `None` when the key never
    /// expires, an error naming the value when it is not such a time.
    pub fn expiry_ms(&self) -> Result<Option<i64>, String> {
        let Some(expires_at) = &self.expires_at else {
            return Ok(None);
        };
        rfc3339_ms(expires_at).map(Some)
    }

    /// Largest accepted `max_in_flight`.
    pub const MAX_IN_FLIGHT: u32 = 1_000_000;
}

impl std::fmt::Debug for VirtualKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualKeyConfig")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("is_active", &self.is_active)
            .field("team_id", &self.team_id)
            .field("customer_id", &self.customer_id)
            .field("budget_id", &self.budget_id)
            .field("rate_limit_id", &self.rate_limit_id)
            .field("provider_configs", &self.provider_configs)
            .field("max_in_flight", &self.max_in_flight)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// An RFC 3339 time (any offset) in Unix ms; an error naming the text otherwise.
fn rfc3339_ms(text: &str) -> Result<i64, String> {
    text.trim()
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|err| format!("{text:?} is not an RFC 3339 time ({err})"))
}

/// What a virtual key may do with one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VirtualKeyProviderConfig {
    /// Provider name.
    pub provider: String,
    /// Models allowed on this provider; `["*"]`: all the provider serves; empty or missing:
    /// none (all with `version: 1`).
    #[serde(default)]
    pub allowed_models: Vec<String>,
    /// Provider key ids this virtual key may use; `["*"]`: every key; empty or missing: none
    /// (all with `version: 1`).
    #[serde(default)]
    pub key_ids: Vec<String>,
    /// Models refused on this provider even where `allowed_models` allows them (`*`: every
    /// model), as Bifrost's `blacklisted_models`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blacklisted_models: Vec<String>,
    /// Share of traffic when a bare model name could go to several providers; `0` or `null`
    /// (Bifrost's "not weighted"): never chosen for a bare model name, only when the request
    /// names the provider.
    #[serde(default = "default_weight", deserialize_with = "weight_or_null")]
    #[schemars(with = "Option<f64>")]
    pub weight: f64,
    /// Budget for this key's use of this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_id: Option<String>,
    /// Rate limit for this key's use of this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_id: Option<String>,
}

impl VirtualKeyProviderConfig {
    /// Largest accepted `weight` (weights are relative).
    pub const MAX_WEIGHT: f64 = 1_000_000.0;
}

fn default_weight() -> f64 {
    1.0
}

/// `null` is Bifrost's opt-out of weighted routing: weight 0 here.
fn weight_or_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(0.0))
}

/// A team of virtual keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TeamConfig {
    /// Stable identifier.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Owning customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Budget shared by the team's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_id: Option<String>,
    /// Rate limit shared by the team's keys (one counter for all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_id: Option<String>,
}

/// A customer (business unit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerConfig {
    /// Stable identifier.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Budget shared by everything under the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_id: Option<String>,
    /// Rate limit shared by everything under the customer (its teams' keys and its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_id: Option<String>,
}

/// A USD spending cap that resets periodically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BudgetConfig {
    /// Stable identifier.
    pub id: String,
    /// Cap in USD per period.
    pub max_limit: f64,
    /// Period: `1d`, `1w`, `1M`, `1Q`, `1Y` (calendar-aligned, UTC) or `<n>m`/`<n>h`; at most
    /// ten years ([`crate::config::Period::MAX_YEARS`]).
    pub reset_duration: String,
    /// Bifrost's usage carried over: USD already spent, counted when the budget is first
    /// written to the store (an existing budget keeps its own usage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_usage: Option<f64>,
    /// When that usage's period began (RFC 3339); usage from a period that has since ended
    /// counts as nothing. Default: the start of the current period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reset: Option<String>,
}

impl BudgetConfig {
    /// Largest accepted `max_limit`, in USD.
    pub const MAX_LIMIT_USD: f64 = 1e12;

    /// The definition alone, without the usage seeds (what the store compares on import).
    pub fn definition(&self) -> Self {
        Self {
            current_usage: None,
            last_reset: None,
            ..self.clone()
        }
    }

    /// `last_reset` in Unix ms; an error naming the value when it is not an RFC 3339 time.
    pub fn last_reset_ms(&self) -> Result<Option<i64>, String> {
        let Some(text) = &self.last_reset else {
            return Ok(None);
        };
        rfc3339_ms(text).map(Some)
    }
}

/// Request and token caps per window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RateLimitConfig {
    /// Stable identifier.
    pub id: String,
    /// Requests per `request_reset_duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_max_limit: Option<u64>,
    /// Request window: `1m`, `5m`, `1h`, `1d`, `1w`, `1M`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_reset_duration: Option<String>,
    /// Tokens (prompt + completion) per `token_reset_duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_max_limit: Option<u64>,
    /// Token window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_reset_duration: Option<String>,
    /// Cluster mode: `gossip` (default: every node admits against the gossiped cluster count;
    /// a small overshoot is possible) or `strict` (the limit's owner node admits every request
    /// over gRPC; exact, one network hop per request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_mode: Option<ClusterLimitMode>,
    /// Cluster mode: what to do while this node's view of the cluster is stale (peers suspect,
    /// this node on the minority side of a partition, not joined yet): `local` (default:
    /// admit up to the limit divided by the last known member count, on local counts),
    /// `open` (admit up to the whole limit on local counts) or `closed` (refuse with 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_stale_policy: Option<StalePolicy>,
}

impl RateLimitConfig {
    /// Largest accepted `request_max_limit` and `token_max_limit` (far below what the
    /// 64-bit counters hold, so sums of counts never overflow).
    pub const MAX_LIMIT: u64 = 1_000_000_000_000_000;
}

/// How a rate limit is enforced across cluster nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClusterLimitMode {
    /// Each node admits against its own count plus the others' gossiped counts.
    #[default]
    Gossip,
    /// The limit's owner (rendezvous hashing over healthy members) admits each request.
    Strict,
}

impl ClusterLimitMode {
    /// The word used in config and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gossip => "gossip",
            Self::Strict => "strict",
        }
    }
}

/// What a rate limit does while the cluster view is stale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StalePolicy {
    /// Enforce the limit divided by the last known member count, on local counts.
    #[default]
    Local,
    /// Admit on local counts against the whole limit.
    Open,
    /// Refuse with 503 until the view is fresh again.
    Closed,
}

impl StalePolicy {
    /// The word used in config and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// Admin API authentication. With nothing configured the admin API answers only on loopback.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuthConfig {
    /// Require Basic auth with `admin_username`/`admin_password`.
    #[serde(default)]
    pub is_enabled: bool,
    /// Admin user name (`env.NAME` allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_username: Option<String>,
    /// Admin password (`env.NAME` allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<String>,
    /// Bearer token accepted on the admin API (`env.NAME` allowed; env `BIFROST_ADMIN_TOKEN`
    /// also works).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// Deprecated in Bifrost and ignored, as there: accepted so files that set it load, and
    /// noted at start when true. `client.enforce_auth_on_inference` alone decides.
    #[serde(default)]
    pub disable_auth_on_inference: bool,
    /// Browser origins (`https://admin.example.com`, scheme and host and optional port) whose
    /// requests the admin API serves; any other request carrying `Origin`, or a cross-site or
    /// same-site `Sec-Fetch-Site`, is refused with 403. Empty (default): no browser page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_allowed_origins: Vec<String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("is_enabled", &self.is_enabled)
            .field("admin_username", &self.admin_username)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("disable_auth_on_inference", &self.disable_auth_on_inference)
            .field("admin_allowed_origins", &self.admin_allowed_origins)
            .finish()
    }
}

/// Token prices for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelPrice {
    /// Provider name, or `*` for any provider.
    #[serde(default = "any_provider")]
    pub provider: String,
    /// Model name as sent upstream.
    pub model: String,
    /// USD per prompt token.
    pub input_cost_per_token: f64,
    /// USD per completion token.
    pub output_cost_per_token: f64,
}

impl ModelPrice {
    /// Largest accepted `input_cost_per_token` and `output_cost_per_token`, in USD.
    pub const MAX_COST_PER_TOKEN_USD: f64 = 1000.0;
}

fn any_provider() -> String {
    "*".to_string()
}
