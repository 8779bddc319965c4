//! The gateway and its durable state: opening and seeding the config store at start, following
//! the store's config version (admin writes here or on another replica), writing spend and
//! applying budget resets. [`StoreSync`] is what the periodic sync loop, the admin API and the
//! cluster hooks talk to; the request path never waits on it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{watch, Notify};

use super::{apply_config, Runtime};
use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::governance::counters::UsageCounters;
use crate::governance::flush::{
    flush_once, FlushReport, MemoryUsageStore, SpendSource, UsageBackend, UsageStore,
};
use crate::governance::now_ms;
use crate::store::{Store, StoreSnapshot};
use crate::telemetry::metrics::{StoreLabels, VirtualKeyLabels};
use crate::telemetry::Metrics;

/// Open the config store when `config_store.enabled`, with the encryption key from
/// `BIFROST_ENCRYPTION_KEY` or the config's `encryption_key`.
pub async fn open_store(config: &GatewayConfig) -> Result<Option<Store>, GatewayError> {
    if !config.config_store.enabled {
        return Ok(None);
    }
    let key = std::env::var("BIFROST_ENCRYPTION_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .or_else(|| config.encryption_key.clone());
    Store::open(&config.config_store, key.as_deref())
        .await
        .map(Some)
        .map_err(|e| GatewayError::Store(e.to_string()))
}

/// Import the file's providers and governance into the store (definitions only; live usage is
/// never reset) and return the config the gateway runs: the file's settings with the store's
/// providers and governance entities.
pub async fn import_and_merge(
    config: GatewayConfig,
    store: &Store,
) -> Result<(GatewayConfig, i64), GatewayError> {
    store
        .import(&config.providers, &config.governance)
        .await
        .map_err(|e| GatewayError::Store(e.to_string()))?;
    let snapshot = store
        .snapshot()
        .await
        .map_err(|e| GatewayError::Store(e.to_string()))?;
    let version = snapshot.config_version;
    Ok((merge_snapshot(config, snapshot), version))
}

/// The file's config with providers and governance entities replaced by the store's.
pub fn merge_snapshot(mut config: GatewayConfig, snapshot: StoreSnapshot) -> GatewayConfig {
    config.providers = snapshot.providers;
    let stored = snapshot.governance;
    config.governance.virtual_keys = stored.virtual_keys;
    config.governance.teams = stored.teams;
    config.governance.customers = stored.customers;
    config.governance.budgets = stored.budgets;
    config.governance.rate_limits = stored.rate_limits;
    config
}

/// Store handles, the config version the runtime reflects, and this process as a writer of
/// spend.
pub struct StoreSync {
    runtime: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    counters: Arc<UsageCounters>,
    store: Option<Store>,
    usage_store: UsageBackend,
    config_version: AtomicI64,
    spend_source: SpendSource,
    /// When per-process spend records were last pruned (Unix ms).
    node_spend_pruned_ms: AtomicI64,
    /// Set when a peer runs a newer config version; the sync loop reloads at once.
    reload_wanted: Notify,
}

impl StoreSync {
    /// Sync for the runtime in `runtime`: spend goes to `store` (in memory without one, lost
    /// on restart) under `spend_source`.
    pub fn new(
        runtime: Arc<ArcSwap<Runtime>>,
        metrics: Arc<Metrics>,
        counters: Arc<UsageCounters>,
        store: Option<Store>,
        spend_source: SpendSource,
    ) -> Self {
        let usage_store = match &store {
            Some(store) => UsageBackend::Store(store.clone()),
            None => UsageBackend::Memory(MemoryUsageStore::new(
                &runtime.load().governance.index.budgets,
                now_ms(),
            )),
        };
        Self {
            runtime,
            metrics,
            counters,
            store,
            usage_store,
            config_version: AtomicI64::new(0),
            spend_source,
            node_spend_pruned_ms: AtomicI64::new(now_ms()),
            reload_wanted: Notify::new(),
        }
    }

    /// The config store, when enabled.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// This process as a writer of spend (node id and start time).
    pub fn spend_source(&self) -> &SpendSource {
        &self.spend_source
    }

    /// The store config version the runtime reflects.
    pub fn config_version(&self) -> i64 {
        self.config_version.load(Ordering::Acquire)
    }

    /// Record that the runtime reflects store config `version` (at start).
    pub fn set_config_version(&self, version: i64) {
        self.config_version.store(version, Ordering::Release);
    }

    /// Ask the sync loop to follow the store's config version now (a peer runs a newer one).
    /// Requests coalesce; one that arrives while the loop is busy is served right after.
    pub fn request_reload(&self) {
        self.reload_wanted.notify_one();
    }

    /// Flush spend every `governance.usage_flush_interval_ms`, following the store's config
    /// version after each flush and whenever [`Self::request_reload`] asks, until `stop`.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut next_flush = tokio::time::Instant::now() + self.flush_interval();
        loop {
            let flush_due = tokio::select! {
                _ = tokio::time::sleep_until(next_flush) => true,
                _ = self.reload_wanted.notified() => false,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            if flush_due {
                if let Err(error) = self.flush_usage().await {
                    tracing::warn!(%error, "usage flush failed; spend stays pending and is retried");
                }
                if let Err(error) = self.follow_store_version().await {
                    tracing::warn!(%error, "checking the config store for changes failed");
                }
                self.prune_node_spend().await;
                next_flush = tokio::time::Instant::now() + self.flush_interval();
            } else if let Err(error) = self.follow_store_version().await {
                tracing::warn!(%error, "reloading from the config store failed; retrying at the next flush");
            }
        }
    }

    fn flush_interval(&self) -> Duration {
        Duration::from_millis(
            self.runtime
                .load()
                .config
                .governance
                .usage_flush_interval_ms,
        )
    }

    /// Rebuild the runtime from the store's current contents (after an admin write, or when
    /// another replica bumped the config version). Sections that live only in the config file
    /// are kept from the running config.
    pub async fn reload_from_store(&self) -> Result<(), GatewayError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let snapshot = store.snapshot().await.map_err(|e| {
            self.count_store_error("snapshot");
            GatewayError::Store(e.to_string())
        })?;
        let version = snapshot.config_version;
        let config = merge_snapshot(self.runtime.load().config.clone(), snapshot);
        apply_config(&self.runtime, &self.metrics, config)?;
        self.set_config_version(version);
        Ok(())
    }

    /// Reload when another replica (or an admin write elsewhere) changed the store.
    pub async fn follow_store_version(&self) -> Result<(), GatewayError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let version = store
            .config_version()
            .await
            .map_err(|e| GatewayError::Store(e.to_string()))?;
        if version != self.config_version() {
            tracing::info!(version, "config store changed; reloading");
            self.reload_from_store().await?;
        }
        Ok(())
    }

    /// Read every budget's usage from the store into the counters (at start).
    pub async fn load_usage(&self) -> Result<(), String> {
        let usage = self.usage_store.budget_usage().await?;
        self.counters.lock().set_stored(usage);
        Ok(())
    }

    /// Write a gateway process's cumulative spend totals to the store (idempotent per
    /// process): a survivor does it for a dead node.
    pub async fn write_spend(
        &self,
        source: &SpendSource,
        totals: &[(String, f64)],
    ) -> Result<f64, String> {
        self.usage_store.sync_spend(source, totals).await
    }

    /// Forget per-process spend records older than a week, at most once an hour (their spend
    /// is in the budgets; the records only guard against writing it twice).
    pub async fn prune_node_spend(&self) {
        const HOUR_MS: i64 = 3_600_000;
        let Some(store) = &self.store else {
            return;
        };
        let now = now_ms();
        let last = self.node_spend_pruned_ms.load(Ordering::Acquire);
        if now - last < HOUR_MS {
            return;
        }
        self.node_spend_pruned_ms.store(now, Ordering::Release);
        match store.prune_node_spend(7 * 24 * HOUR_MS).await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "pruned week-old per-process spend records"),
            Err(error) => tracing::warn!(%error, "cannot prune per-process spend records"),
        }
    }

    /// Write unflushed spend to the store, apply due budget resets, refresh usage gauges.
    pub async fn flush_usage(&self) -> Result<FlushReport, String> {
        let started = std::time::Instant::now();
        let runtime = self.runtime.load();
        let result = flush_once(
            &self.counters,
            &self.usage_store,
            &self.spend_source,
            &runtime.governance.index.budgets,
            now_ms(),
            runtime.config.governance.usage_flush_interval_ms,
        )
        .await;
        self.metrics
            .usage_flush_duration
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.count_store_error("flush_usage");
        }
        self.publish_usage_gauges(runtime.config.governance.usage_metrics_top_n as usize);
        result
    }

    fn count_store_error(&self, operation: &'static str) {
        self.metrics
            .store_errors
            .get_or_create(&StoreLabels { operation })
            .inc();
    }

    /// Per-key gauges for the `top_n` keys with the most requests (bounded cardinality).
    fn publish_usage_gauges(&self, top_n: usize) {
        let top = self.counters.lock().top_keys(top_n);
        self.metrics.virtual_key_requests.clear();
        self.metrics.virtual_key_spend.clear();
        for key in top {
            self.metrics
                .virtual_key_requests
                .get_or_create(&VirtualKeyLabels {
                    virtual_key: key.id.clone(),
                })
                .set(key.requests as i64);
            self.metrics
                .virtual_key_spend
                .get_or_create(&VirtualKeyLabels {
                    virtual_key: key.id,
                })
                .set(key.spend_usd);
        }
    }
}
