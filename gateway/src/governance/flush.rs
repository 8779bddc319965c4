//! Writing spend to the store: due budget resets first (compare-and-set, so only one replica
//! resets a budget and no spend is lost), then this node's unflushed spend as increments, then
//! a fresh read of every budget's usage. Runs every `governance.usage_flush_interval_ms` and once
//! more after the drain on shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use super::counters::{StoredUsage, UsageCounters};
use super::index::Budget;

/// The gateway process whose spend a flush writes: node id and generation (start time, Unix
/// ms). Totals are cumulative per source, so writing them is idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpendSource {
    /// The node's name (`cluster_config.node_id`, `POD_NAME` or the hostname).
    pub node_id: String,
    /// Process start time, Unix ms.
    pub generation: i64,
}

/// Where budget usage is persisted.
pub trait UsageStore: Send + Sync + 'static {
    /// Bring budgets up to date with `source`'s cumulative spend per budget: add what exceeds
    /// the total already written for that source, atomically. Returns the USD added.
    fn sync_spend(
        &self,
        source: &SpendSource,
        totals: &[(String, f64)],
    ) -> impl Future<Output = Result<f64, String>> + Send;
    /// Every budget's usage.
    fn budget_usage(
        &self,
    ) -> impl Future<Output = Result<HashMap<String, StoredUsage>, String>> + Send;
    /// Reset a budget if its `last_reset` still equals `expected_ms`; whether it did.
    fn reset_budget(
        &self,
        id: &str,
        expected_ms: i64,
        new_ms: i64,
    ) -> impl Future<Output = Result<bool, String>> + Send;
}

/// Budget usage kept in memory only (config store disabled): lost on restart.
#[derive(Default)]
pub struct MemoryUsageStore {
    usage: Mutex<HashMap<String, StoredUsage>>,
    flushed: Mutex<HashMap<(SpendSource, String), f64>>,
}

impl MemoryUsageStore {
    /// Start every budget at zero in its current period.
    pub fn new(budgets: &HashMap<String, Arc<Budget>>, now_ms: i64) -> Self {
        let usage = budgets
            .values()
            .map(|b| {
                (
                    b.id.clone(),
                    StoredUsage {
                        current_usage: 0.0,
                        last_reset_ms: b.period.window_start(now_ms),
                    },
                )
            })
            .collect();
        Self {
            usage: Mutex::new(usage),
            flushed: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, StoredUsage>> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MemoryUsageStore {
    /// Add USD to budgets (tests and callers that have no source).
    pub fn add_budget_spend(&self, deltas: &[(String, f64)]) {
        let mut usage = self.lock();
        for (id, delta) in deltas {
            let entry = usage.entry(id.clone()).or_insert(StoredUsage {
                current_usage: 0.0,
                last_reset_ms: 0,
            });
            entry.current_usage += delta;
        }
    }
}

impl UsageStore for MemoryUsageStore {
    async fn sync_spend(
        &self,
        source: &SpendSource,
        totals: &[(String, f64)],
    ) -> Result<f64, String> {
        let mut deltas = Vec::new();
        {
            let mut flushed = self.flushed.lock().unwrap_or_else(|p| p.into_inner());
            for (id, total) in totals {
                let written = flushed.entry((source.clone(), id.clone())).or_insert(0.0);
                if *total > *written {
                    deltas.push((id.clone(), *total - *written));
                    *written = *total;
                }
            }
        }
        self.add_budget_spend(&deltas);
        Ok(deltas.iter().map(|(_, delta)| delta).sum())
    }

    async fn budget_usage(&self) -> Result<HashMap<String, StoredUsage>, String> {
        Ok(self.lock().clone())
    }

    async fn reset_budget(&self, id: &str, expected_ms: i64, new_ms: i64) -> Result<bool, String> {
        let mut usage = self.lock();
        match usage.get_mut(id) {
            Some(entry) if entry.last_reset_ms == expected_ms => {
                *entry = StoredUsage {
                    current_usage: 0.0,
                    last_reset_ms: new_ms,
                };
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// The usage store a gateway runs with.
pub enum UsageBackend {
    /// Config store disabled: usage lives in memory only.
    Memory(MemoryUsageStore),
    /// The config store (SQLite or PostgreSQL).
    Store(crate::store::Store),
}

impl UsageStore for UsageBackend {
    async fn sync_spend(
        &self,
        source: &SpendSource,
        totals: &[(String, f64)],
    ) -> Result<f64, String> {
        match self {
            UsageBackend::Memory(store) => store.sync_spend(source, totals).await,
            UsageBackend::Store(store) => store
                .sync_node_spend(&source.node_id, source.generation, totals)
                .await
                .map_err(|e| e.to_string()),
        }
    }
    async fn budget_usage(&self) -> Result<HashMap<String, StoredUsage>, String> {
        match self {
            UsageBackend::Memory(store) => store.budget_usage().await,
            UsageBackend::Store(store) => store
                .budget_usage()
                .await
                .map(|usage| {
                    usage
                        .into_iter()
                        .map(|(id, u)| {
                            (
                                id,
                                StoredUsage {
                                    current_usage: u.current_usage,
                                    last_reset_ms: u.last_reset_ms,
                                },
                            )
                        })
                        .collect()
                })
                .map_err(|e| e.to_string()),
        }
    }
    async fn reset_budget(&self, id: &str, expected_ms: i64, new_ms: i64) -> Result<bool, String> {
        match self {
            UsageBackend::Memory(store) => store.reset_budget(id, expected_ms, new_ms).await,
            UsageBackend::Store(store) => store
                .reset_budget(id, expected_ms, new_ms)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// What one flush did.
#[derive(Debug, Default, PartialEq)]
pub struct FlushReport {
    /// Budgets whose spend was written.
    pub budgets_written: usize,
    /// USD written.
    pub spend_written: f64,
    /// Budgets this node reset for a new period.
    pub resets: usize,
}

/// How long spend just written stays in what this node publishes as unflushed, when it holds
/// flushed spend (cluster mode): two flush intervals and a second, so that every other node
/// has re-read the store before it disappears from gossip, even on a loaded machine.
pub fn flushed_spend_hold_ms(flush_interval_ms: u64) -> i64 {
    i64::try_from(flush_interval_ms)
        .unwrap_or(i64::MAX)
        .saturating_mul(2)
        .saturating_add(1000)
}

/// One flush every `flush_interval_ms`. On a store error the spend stays pending and is
/// retried next time.
pub async fn flush_once<S: UsageStore>(
    counters: &UsageCounters,
    store: &S,
    source: &SpendSource,
    budgets: &HashMap<String, Arc<Budget>>,
    now_ms: i64,
    flush_interval_ms: u64,
) -> Result<FlushReport, String> {
    let started = std::time::Instant::now();
    let mut report = FlushReport::default();
    let due: Vec<(String, i64, i64)> = {
        let mut local = counters.lock();
        let hold_ms = if local.holds_flushed_spend() {
            flushed_spend_hold_ms(flush_interval_ms)
        } else {
            0
        };
        local.prune(now_ms, hold_ms);
        budgets
            .values()
            .filter_map(|b| {
                let last_reset = local.stored_period_start(&b.id)?;
                let start = b.period.window_start(now_ms);
                (start > last_reset).then(|| (b.id.clone(), last_reset, start))
            })
            .collect()
    };
    for (id, expected, start) in due {
        if store.reset_budget(&id, expected, start).await? {
            report.resets += 1;
            tracing::info!(budget = %id, "budget reset for a new period");
        }
    }

    // Everything settled so far, as cumulative totals taken under the same lock that moves
    // pending spend to flushing: the store adds what it has not seen from this process.
    let totals = counters.lock().begin_flush();
    if !totals.is_empty() {
        match store.sync_spend(source, &totals).await {
            Ok(added) => {
                report.budgets_written = totals.len();
                report.spend_written = added;
            }
            Err(error) => {
                counters.lock().flush_failed();
                return Err(error);
            }
        }
    }

    // The spend is in the store now: keep counting it until the fresh read replaces it.
    let fresh = match store.budget_usage().await {
        Ok(fresh) => fresh,
        Err(error) => {
            counters.lock().flush_written_unread();
            return Err(error);
        }
    };
    // Held from now (the write may have taken a while), not from when the flush began.
    let written_at = now_ms + started.elapsed().as_millis() as i64;
    counters.lock().flush_done(fresh, written_at);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Period;
    use crate::governance::counters::NoRemote;

    const DAY: i64 = 86_400_000;

    fn source() -> SpendSource {
        SpendSource {
            node_id: "node-a".into(),
            generation: 1,
        }
    }

    /// What `admission::settle` does with a finished request's cost.
    fn settle_spend(counters: &UsageCounters, budget: &str, cost: f64) {
        counters.lock().charge_budget(budget, cost);
    }

    #[tokio::test]
    async fn totals_are_idempotent_per_source() {
        let budgets = budget();
        let store = MemoryUsageStore::new(&budgets, 100 * DAY);
        let a = source();
        let b = SpendSource {
            node_id: "node-b".into(),
            generation: 1,
        };
        let totals = [("b".to_string(), 2.0)];
        assert_eq!(store.sync_spend(&a, &totals).await, Ok(2.0));
        assert_eq!(
            store.sync_spend(&a, &totals).await,
            Ok(0.0),
            "same total again"
        );
        assert_eq!(
            store.sync_spend(&a, &[("b".into(), 1.0)]).await,
            Ok(0.0),
            "older total"
        );
        assert_eq!(
            store.sync_spend(&b, &totals).await,
            Ok(2.0),
            "another process"
        );
        assert_eq!(store.sync_spend(&a, &[("b".into(), 2.5)]).await, Ok(0.5));
        assert_eq!(
            store.budget_usage().await.expect("usage")["b"].current_usage,
            4.5
        );
    }

    fn budget() -> HashMap<String, Arc<Budget>> {
        let period: Period = "1d".parse().expect("period");
        HashMap::from([(
            "b".to_string(),
            Arc::new(Budget {
                id: "b".into(),
                max_limit: 10.0,
                period,
            }),
        )])
    }

    #[tokio::test]
    async fn pending_spend_is_written_and_read_back_once() {
        let budgets = budget();
        let now = 100 * DAY + 5;
        let store = MemoryUsageStore::new(&budgets, now);
        let counters = UsageCounters::new(Arc::new(NoRemote));
        let usage = store.budget_usage().await.expect("usage");
        counters.lock().set_stored(usage);
        settle_spend(&counters, "b", 1.25);
        let report = flush_once(&counters, &store, &source(), &budgets, now, 0)
            .await
            .expect("flush");
        assert_eq!(report.spend_written, 1.25);
        assert_eq!(
            counters.lock().budget_spend("b", 100 * DAY),
            1.25,
            "counted once"
        );
        let again = flush_once(&counters, &store, &source(), &budgets, now, 0)
            .await
            .expect("flush");
        assert_eq!(again.budgets_written, 0);
        assert_eq!(
            store.budget_usage().await.expect("usage")["b"].current_usage,
            1.25
        );
    }

    #[tokio::test]
    async fn a_new_period_resets_before_new_spend_is_added() {
        let budgets = budget();
        let store = MemoryUsageStore::new(&budgets, 100 * DAY);
        store.add_budget_spend(&[("b".into(), 9.0)]);
        let counters = UsageCounters::new(Arc::new(NoRemote));
        let usage = store.budget_usage().await.expect("usage");
        counters.lock().set_stored(usage);
        settle_spend(&counters, "b", 0.5);
        let report = flush_once(&counters, &store, &source(), &budgets, 101 * DAY + 1, 0)
            .await
            .expect("flush");
        assert_eq!(report.resets, 1);
        let stored = store.budget_usage().await.expect("usage")["b"];
        assert_eq!(
            (stored.current_usage, stored.last_reset_ms),
            (0.5, 101 * DAY)
        );
    }

    struct FailingStore;
    impl UsageStore for FailingStore {
        async fn sync_spend(&self, _: &SpendSource, _: &[(String, f64)]) -> Result<f64, String> {
            Err("database down".into())
        }
        async fn budget_usage(&self) -> Result<HashMap<String, StoredUsage>, String> {
            Err("database down".into())
        }
        async fn reset_budget(&self, _: &str, _: i64, _: i64) -> Result<bool, String> {
            Err("database down".into())
        }
    }

    #[tokio::test]
    async fn spend_survives_a_failed_flush() {
        let counters = UsageCounters::new(Arc::new(NoRemote));
        settle_spend(&counters, "b", 2.0);
        assert!(
            flush_once(&counters, &FailingStore, &source(), &HashMap::new(), 0, 0)
                .await
                .is_err()
        );
        assert_eq!(counters.lock().unflushed_spend("b"), 2.0);
        // Pending again: the next flush writes it.
        assert_eq!(counters.lock().begin_flush(), vec![("b".to_string(), 2.0)]);
    }
}
