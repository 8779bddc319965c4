//! Usage counters, designed to be shared by a cluster.
//!
//! Every number here is this node's own contribution: requests and tokens it admitted per
//! (scope, id, window), spend it has not flushed to the store yet, and estimates reserved by
//! requests still in flight. The cluster value is this node's plus the sum other nodes report,
//! which arrives through [`RemoteUsage`] (zero on a single node; gossip fills it in cluster
//! mode). Admission decisions are pure functions over a [`UsageView`]
//! (see `admission.rs`), taken and applied under one lock so concurrent requests cannot
//! overshoot.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// A budget's usage as last read from the store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredUsage {
    /// USD spent in the current period (as of the read).
    pub current_usage: f64,
    /// Start of the period that usage belongs to (Unix ms).
    pub last_reset_ms: i64,
}

/// What a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Admitted requests.
    Requests,
    /// Prompt + completion tokens (reserved estimates until corrected).
    Tokens,
}

impl Metric {
    /// `requests` or `tokens` (gossip keys, error messages, metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Requests => "requests",
            Metric::Tokens => "tokens",
        }
    }

    /// The inverse of [`Metric::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "requests" => Some(Metric::Requests),
            "tokens" => Some(Metric::Tokens),
            _ => None,
        }
    }
}

/// Whose rate limit a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A virtual key's own limit (id: the key's id).
    VirtualKey,
    /// A virtual key's limit on one provider (id: `vk/provider`).
    Provider,
    /// A team's limit, shared by its keys (id: the team's id).
    Team,
    /// A customer's limit, shared by its teams' keys and its own (id: the customer's id).
    Customer,
}

impl Scope {
    /// `vk`, `provider`, `team` or `customer` (gossip keys).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::VirtualKey => "vk",
            Scope::Provider => "provider",
            Scope::Team => "team",
            Scope::Customer => "customer",
        }
    }

    /// The inverse of [`Scope::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "vk" => Some(Scope::VirtualKey),
            "provider" => Some(Scope::Provider),
            "team" => Some(Scope::Team),
            "customer" => Some(Scope::Customer),
            _ => None,
        }
    }
}

/// One rate-limit counter: `rl/<scope>/<id>/<window-start>` in the cluster's key space.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterKey {
    /// Whose limit.
    pub scope: Scope,
    /// Owner id.
    pub id: Arc<str>,
    /// Requests or tokens.
    pub metric: Metric,
    /// Window start, Unix ms.
    pub window_start: i64,
}

/// A counter's value and when its window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    /// Requests or tokens counted in the window.
    pub value: i64,
    /// Window end (Unix ms); the counter is dropped after it.
    pub ends_at_ms: i64,
}

/// Whether the cluster's counters can be trusted right now (see `cluster::membership`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterView {
    /// Not joined yet, peers suspect, or on the small side of a partition.
    pub stale: bool,
    /// Members this node knows of (itself, live and dead peers; not those that left).
    pub known_members: usize,
}

impl ClusterView {
    /// A gateway on its own: nothing to be stale about.
    pub const ALONE: Self = Self {
        stale: false,
        known_members: 1,
    };
}

/// What other nodes report (their own unflushed spend and window counts).
pub trait RemoteUsage: Send + Sync {
    /// Sum over other nodes for a rate-limit counter.
    fn counter(&self, key: &CounterKey) -> i64;
    /// Sum over other nodes of unflushed plus reserved spend for a budget.
    fn spend(&self, budget_id: &str) -> f64;
    /// How far the sums can be trusted.
    fn view(&self) -> ClusterView {
        ClusterView::ALONE
    }
}

/// No other nodes: a single gateway.
pub struct NoRemote;

impl RemoteUsage for NoRemote {
    fn counter(&self, _key: &CounterKey) -> i64 {
        0
    }
    fn spend(&self, _budget_id: &str) -> f64 {
        0.0
    }
}

/// One virtual key's activity on this node since it started (admin usage, per-key gauges).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyActivity {
    /// Virtual key id.
    pub id: String,
    /// Requests admitted.
    pub requests: u64,
    /// USD charged.
    pub spend_usd: f64,
    /// Requests in flight now.
    pub in_flight: u32,
}

/// A budget's spend as this node publishes it to the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedSpend {
    /// Budget id.
    pub budget_id: String,
    /// Spend the store may not show the others yet: unflushed, being flushed, reserved and
    /// (while held) just flushed.
    pub unflushed: f64,
    /// Every USD settled against the budget since this process started.
    pub settled_total: f64,
}

/// This node's numbers. Admission, settlement, the flush and the gossip publisher change them
/// only through the methods below, always under [`UsageCounters::lock`].
#[derive(Default)]
pub struct LocalUsage {
    /// Rate-limit counters.
    counters: HashMap<CounterKey, WindowCount>,
    /// Spend not yet written to the store, per budget.
    pending_spend: HashMap<String, f64>,
    /// Spend being written right now (still counts until the store's value is re-read).
    flushing_spend: HashMap<String, f64>,
    /// Every USD settled against each budget since this process started (what a flush sends;
    /// the store adds the part it has not seen).
    settled_total: HashMap<String, f64>,
    /// Spend written to the store a moment ago: (written at, budget, USD). Other nodes see it
    /// in the store only at their own next re-read, so while [`Self::holds_flushed_spend`]
    /// this node keeps publishing it as unflushed until then (they may count it twice for that
    /// moment: budgets err on the side of refusing, never of overspending). Not counted
    /// locally: this node's store figure has it.
    recently_flushed: Vec<(i64, String, f64)>,
    /// Whether just-flushed spend is held for publishing (cluster mode turns it on).
    hold_flushed: bool,
    /// Estimated cost of requests in flight, per budget.
    reserved_spend: HashMap<String, f64>,
    /// Requests in flight per virtual key id.
    in_flight: HashMap<String, u32>,
    /// Budget usage as last read from the store.
    stored: HashMap<String, StoredUsage>,
    /// Requests admitted per virtual key id since start (for usage metrics).
    vk_requests: HashMap<String, u64>,
    /// USD charged per virtual key id since start (for usage metrics).
    vk_spend: HashMap<String, f64>,
}

impl LocalUsage {
    // Reads for admission.

    /// Requests of virtual key `vk_id` in flight on this node.
    pub fn in_flight(&self, vk_id: &str) -> u32 {
        self.in_flight.get(vk_id).copied().unwrap_or(0)
    }

    /// This node's count in a rate-limit window (0 when it admitted nothing there).
    pub fn window_count(&self, key: &CounterKey) -> i64 {
        self.counters.get(key).map_or(0, |w| w.value)
    }

    /// Spend counted against a budget on this node: stored (for the current period) plus
    /// [unflushed](Self::unflushed_spend).
    pub fn budget_spend(&self, budget_id: &str, period_start_ms: i64) -> f64 {
        let stored = self
            .stored
            .get(budget_id)
            .filter(|s| s.last_reset_ms >= period_start_ms)
            .map_or(0.0, |s| s.current_usage);
        stored + self.unflushed_spend(budget_id)
    }

    /// Spend of a budget the store does not have yet: pending, being flushed and reserved by
    /// requests in flight.
    pub fn unflushed_spend(&self, budget_id: &str) -> f64 {
        self.pending_spend.get(budget_id).copied().unwrap_or(0.0)
            + self.flushing_spend.get(budget_id).copied().unwrap_or(0.0)
            + self.reserved_spend.get(budget_id).copied().unwrap_or(0.0)
    }

    // Writes for admission and settlement.

    /// Add `amount` to a window, opening it (until `ends_at_ms`) if this node had no count.
    pub fn count(&mut self, key: CounterKey, ends_at_ms: i64, amount: i64) {
        let window = self.counters.entry(key).or_insert(WindowCount {
            value: 0,
            ends_at_ms,
        });
        window.value = window.value.saturating_add(amount);
    }

    /// Correct an open window by `amount` (an estimate replaced by the real figure); nothing
    /// when the window has ended and been pruned.
    pub fn correct(&mut self, key: &CounterKey, amount: i64) {
        if let Some(window) = self.counters.get_mut(key) {
            window.value = window.value.saturating_add(amount);
        }
    }

    /// Hold `cost` of a budget for a request in flight.
    pub fn reserve_spend(&mut self, budget_id: &str, cost: f64) {
        *entry(&mut self.reserved_spend, budget_id) += cost;
    }

    /// Release what [`Self::reserve_spend`] held.
    pub fn release_spend(&mut self, budget_id: &str, cost: f64) {
        if let Some(reserved) = self.reserved_spend.get_mut(budget_id) {
            *reserved = (*reserved - cost).max(0.0);
        }
    }

    /// Charge `cost` settled by a request to a budget (written at the next flush).
    pub fn charge_budget(&mut self, budget_id: &str, cost: f64) {
        *entry(&mut self.pending_spend, budget_id) += cost;
        *entry(&mut self.settled_total, budget_id) += cost;
    }

    /// A request of `vk_id` was admitted.
    pub fn request_started(&mut self, vk_id: &str) {
        let in_flight = entry(&mut self.in_flight, vk_id);
        *in_flight = in_flight.saturating_add(1);
        let requests = entry(&mut self.vk_requests, vk_id);
        *requests = requests.saturating_add(1);
    }

    /// A request of `vk_id` finished, having cost `cost`.
    pub fn request_finished(&mut self, vk_id: &str, cost: f64) {
        if let Some(count) = self.in_flight.get_mut(vk_id) {
            *count = count.saturating_sub(1);
        }
        if cost > 0.0 {
            *entry(&mut self.vk_spend, vk_id) += cost;
        }
    }

    // The flush.

    /// Budget usage read from the store (at start, and after every flush).
    pub fn set_stored(&mut self, usage: HashMap<String, StoredUsage>) {
        self.stored = usage;
    }

    /// The period start of a budget's usage as last read from the store.
    pub fn stored_period_start(&self, budget_id: &str) -> Option<i64> {
        self.stored.get(budget_id).map(|s| s.last_reset_ms)
    }

    /// Forget windows that have ended (their counts no longer limit anything) and held spend
    /// written `hold_ms` or more ago.
    pub fn prune(&mut self, now_ms: i64, hold_ms: i64) {
        self.counters.retain(|_, window| window.ends_at_ms > now_ms);
        self.recently_flushed
            .retain(|(written_at, _, _)| now_ms - written_at < hold_ms);
    }

    /// Start a flush: pending spend moves to flushing; the cumulative totals of every budget
    /// being flushed, for the store to add what it has not seen from this process.
    pub fn begin_flush(&mut self) -> Vec<(String, f64)> {
        let pending = std::mem::take(&mut self.pending_spend);
        for (id, amount) in pending {
            *self.flushing_spend.entry(id).or_insert(0.0) += amount;
        }
        self.flushing_spend
            .iter()
            .filter(|(_, amount)| **amount != 0.0)
            .map(|(id, _)| {
                let total = self.settled_total.get(id).copied().unwrap_or(0.0);
                (id.clone(), total)
            })
            .collect()
    }

    /// The write failed: the spend is pending again, for the next flush.
    pub fn flush_failed(&mut self) {
        for (id, amount) in std::mem::take(&mut self.flushing_spend) {
            *self.pending_spend.entry(id).or_insert(0.0) += amount;
        }
    }

    /// Written but not re-read: fold it into the stored figures so it is neither lost nor
    /// counted twice.
    pub fn flush_written_unread(&mut self) {
        for (id, amount) in std::mem::take(&mut self.flushing_spend) {
            if let Some(stored) = self.stored.get_mut(&id) {
                stored.current_usage += amount;
            }
        }
    }

    /// Written and re-read at `written_at_ms`: the fresh figures replace the stored ones, and
    /// the written spend is held for publishing when [`Self::holds_flushed_spend`].
    pub fn flush_done(&mut self, fresh: HashMap<String, StoredUsage>, written_at_ms: i64) {
        self.stored = fresh;
        let flushed = std::mem::take(&mut self.flushing_spend);
        if self.hold_flushed {
            self.recently_flushed.extend(
                flushed
                    .into_iter()
                    .filter(|(_, amount)| *amount != 0.0)
                    .map(|(id, amount)| (written_at_ms, id, amount)),
            );
        }
    }

    // Publishing to the cluster.

    /// Keep just-flushed spend in what this node publishes until the other nodes have
    /// re-read the store (cluster mode).
    pub fn hold_flushed_spend(&mut self) {
        self.hold_flushed = true;
    }

    /// Whether just-flushed spend is held (see [`Self::hold_flushed_spend`]).
    pub fn holds_flushed_spend(&self) -> bool {
        self.hold_flushed
    }

    /// Drop the held spend (a node leaving the cluster publishes only what is really
    /// unflushed; peers see the rest at their next read).
    pub fn forget_held_spend(&mut self) {
        self.recently_flushed.clear();
    }

    /// Every open window with this node's count.
    pub fn window_counts(&self) -> impl Iterator<Item = (&CounterKey, i64)> {
        self.counters
            .iter()
            .map(|(key, window)| (key, window.value))
    }

    /// Every budget this node has spend of that the others may not see in the store yet.
    pub fn published_spend(&self) -> Vec<PublishedSpend> {
        let mut held: HashMap<&str, f64> = HashMap::new();
        for (_, budget, amount) in &self.recently_flushed {
            *held.entry(budget.as_str()).or_default() += amount;
        }
        let budgets: BTreeSet<&str> = self
            .pending_spend
            .keys()
            .chain(self.flushing_spend.keys())
            .chain(self.reserved_spend.keys())
            .map(String::as_str)
            .chain(held.keys().copied())
            .collect();
        budgets
            .into_iter()
            .map(|budget| PublishedSpend {
                budget_id: budget.to_string(),
                unflushed: self.unflushed_spend(budget) + held.get(budget).copied().unwrap_or(0.0),
                settled_total: self.settled_total.get(budget).copied().unwrap_or(0.0),
            })
            .collect()
    }

    // Reporting.

    /// Every virtual key that sent a request since start, by id.
    pub fn key_activity(&self) -> Vec<KeyActivity> {
        let mut keys: Vec<KeyActivity> = self
            .vk_requests
            .keys()
            .map(|id| self.activity(id))
            .collect();
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        keys
    }

    /// The `n` keys with the most requests (ties by id).
    pub fn top_keys(&self, n: usize) -> Vec<KeyActivity> {
        let mut by_requests: Vec<(&String, u64)> =
            self.vk_requests.iter().map(|(k, v)| (k, *v)).collect();
        by_requests.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        by_requests
            .into_iter()
            .take(n)
            .map(|(id, _)| self.activity(id))
            .collect()
    }

    fn activity(&self, id: &str) -> KeyActivity {
        KeyActivity {
            id: id.to_string(),
            requests: self.vk_requests.get(id).copied().unwrap_or(0),
            spend_usd: self.vk_spend.get(id).copied().unwrap_or(0.0),
            in_flight: self.in_flight(id),
        }
    }
}

/// The value for `key`, inserted as the default if missing; allocates the key only then.
fn entry<'a, V: Default>(map: &'a mut HashMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// The counters of one gateway process.
pub struct UsageCounters {
    local: Mutex<LocalUsage>,
    remote: Arc<dyn RemoteUsage>,
}

impl UsageCounters {
    /// Counters that add `remote` to local numbers.
    pub fn new(remote: Arc<dyn RemoteUsage>) -> Self {
        Self {
            local: Mutex::new(LocalUsage::default()),
            remote,
        }
    }

    /// Lock the local numbers (admission reads and writes under this one lock).
    pub fn lock(&self) -> MutexGuard<'_, LocalUsage> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The remote view.
    pub fn remote(&self) -> &dyn RemoteUsage {
        self.remote.as_ref()
    }
}
