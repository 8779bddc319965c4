//! Usage counters, designed to be shared by a cluster.
//!
//! Every number here is this node's own contribution: requests and tokens it admitted per
//! (scope, id, window), spend it has not flushed to the store yet, and estimates reserved by
//! requests still in flight. The cluster value is this node's plus the sum other nodes report,
//! which arrives through [`RemoteUsage`] (zero on a single node; gossip fills it in cluster
//! mode). Admission decisions are pure functions over a [`UsageView`]
//! (see `admission.rs`), taken and applied under one lock so concurrent requests cannot
//! overshoot.

use std::collections::HashMap;
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

/// One rate-limit counter: `rl/<scope>/<id>/<window-start>` in the cluster's key space.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterKey {
    /// `vk` or `provider` (a virtual key's use of one provider: id is `vk/provider`).
    pub scope: &'static str,
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

/// This node's numbers.
#[derive(Default)]
pub struct LocalUsage {
    /// Rate-limit counters.
    pub counters: HashMap<CounterKey, WindowCount>,
    /// Spend not yet written to the store, per budget.
    pub pending_spend: HashMap<String, f64>,
    /// Spend being written right now (still counts until the store's value is re-read).
    pub flushing_spend: HashMap<String, f64>,
    /// Every USD settled against each budget since this process started (what a flush sends;
    /// the store adds the part it has not seen).
    pub settled_total: HashMap<String, f64>,
    /// Spend written to the store at most `hold` ago: (written at, budget, USD). Other nodes
    /// see it in the store only at their own next re-read, so this node keeps gossiping it as
    /// unflushed until then (they may count it twice for that moment: budgets err on the side
    /// of refusing, never of overspending). Not counted locally: this node's store figure has it.
    pub recently_flushed: Vec<(i64, String, f64)>,
    /// Estimated cost of requests in flight, per budget.
    pub reserved_spend: HashMap<String, f64>,
    /// Requests in flight per virtual key id.
    pub in_flight: HashMap<String, u32>,
    /// Budget usage as last read from the store.
    pub stored: HashMap<String, StoredUsage>,
    /// Requests admitted per virtual key id since start (for usage metrics).
    pub vk_requests: HashMap<String, u64>,
    /// USD charged per virtual key id since start (for usage metrics).
    pub vk_spend: HashMap<String, f64>,
}

impl LocalUsage {
    /// Spend counted against a budget on this node: stored (for the current period) plus
    /// unflushed, being flushed and reserved.
    pub fn budget_spend(&self, budget_id: &str, period_start_ms: i64) -> f64 {
        let stored = self
            .stored
            .get(budget_id)
            .filter(|s| s.last_reset_ms >= period_start_ms)
            .map_or(0.0, |s| s.current_usage);
        stored
            + self.pending_spend.get(budget_id).copied().unwrap_or(0.0)
            + self.flushing_spend.get(budget_id).copied().unwrap_or(0.0)
            + self.reserved_spend.get(budget_id).copied().unwrap_or(0.0)
    }

    /// Forget windows that have ended (their counts no longer limit anything).
    pub fn prune(&mut self, now_ms: i64) {
        self.counters.retain(|_, window| window.ends_at_ms > now_ms);
    }
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
