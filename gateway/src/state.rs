//! Shared application state, built once at start-up and handed to every handler.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::governance::counters::{NoRemote, RemoteUsage, UsageCounters};
use crate::governance::flush::{
    flush_once, FlushReport, MemoryUsageStore, SpendSource, UsageBackend, UsageStore,
};
use crate::governance::{now_ms, GovernanceRuntime};
use crate::store::{Store, StoreSnapshot};
use crate::telemetry::metrics::{StoreLabels, VirtualKeyLabels};

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
use crate::routing::RoutingTable;
use crate::telemetry::Metrics;

/// What a config file compiles to; swapped whole on reload so a request sees one consistent
/// version.
pub struct Runtime {
    /// The config as loaded.
    pub config: GatewayConfig,
    /// Providers, keys, breakers and queues.
    pub routing: RoutingTable,
    /// Virtual keys, limits, budgets, prices.
    pub governance: GovernanceRuntime,
}

impl Runtime {
    /// Compile `config`, carrying breaker state over from `previous`.
    pub fn build(
        config: GatewayConfig,
        metrics: &Metrics,
        previous: Option<&Runtime>,
    ) -> Result<Self, GatewayError> {
        let routing = RoutingTable::build(&config, metrics, previous.map(|p| &p.routing))?;
        let governance = GovernanceRuntime::new(&config);
        Ok(Self {
            config,
            routing,
            governance,
        })
    }
}

/// Requests answered and how many of them were 5xx, for the load a node gossips.
#[derive(Default)]
pub struct Traffic {
    requests: std::sync::atomic::AtomicU64,
    errors: std::sync::atomic::AtomicU64,
}

impl Traffic {
    /// Count one answered request.
    pub fn record(&self, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The cluster's view into the gateway (a weak reference: the cluster lives in the state).
pub struct ClusterHooks(std::sync::Weak<AppState>);

impl ClusterHooks {
    /// Hooks into `state`.
    pub fn new(state: &Arc<AppState>) -> Self {
        Self(Arc::downgrade(state))
    }
}

impl crate::cluster::NodeHooks for ClusterHooks {
    fn report(&self) -> crate::cluster::NodeReport {
        let Some(state) = self.0.upgrade() else {
            return crate::cluster::NodeReport::default();
        };
        crate::cluster::NodeReport {
            requests: state.traffic.requests.load(Ordering::Relaxed),
            errors: state.traffic.errors.load(Ordering::Relaxed),
            in_flight: state.metrics.in_flight.get(),
            config_version: state.config_version.load(Ordering::Acquire),
        }
    }

    fn newer_config_seen(&self, _version: i64) {
        let Some(state) = self.0.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            if let Err(error) = state.follow_store_version().await {
                tracing::warn!(%error, "reloading from the config store failed; retrying at the next flush");
            }
        });
    }

    fn write_spend(
        &self,
        source: SpendSource,
        totals: Vec<(String, f64)>,
    ) -> futures_util::future::BoxFuture<'static, Result<f64, String>> {
        let state = self.0.clone();
        Box::pin(async move {
            let state = state
                .upgrade()
                .ok_or_else(|| "the gateway is shutting down".to_string())?;
            state.usage_store.sync_spend(&source, &totals).await
        })
    }
}

/// Process lifecycle flags.
#[derive(Default)]
pub struct Lifecycle {
    draining: AtomicBool,
}

impl Lifecycle {
    /// Whether shutdown has begun (`/ready` answers 503).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Mark the process as draining.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// Everything handlers share.
pub struct AppState {
    /// Current config and routing table.
    pub runtime: ArcSwap<Runtime>,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Upstream HTTP client (connection pools live here).
    pub client: reqwest::Client,
    /// Shutdown state.
    pub lifecycle: Lifecycle,
    /// This node's usage counters (survive reloads).
    pub counters: Arc<UsageCounters>,
    /// Where spend is persisted.
    pub usage_store: UsageBackend,
    /// The config store, when enabled.
    pub store: Option<Store>,
    /// The store's config version the runtime reflects.
    pub config_version: std::sync::atomic::AtomicI64,
    /// The file SIGHUP reloads, if the gateway was started with one.
    pub config_path: Option<PathBuf>,
    /// This process as a writer of spend (node id and start time).
    pub spend_source: SpendSource,
    /// Requests answered, for the load this node gossips.
    pub traffic: Traffic,
    /// When per-process spend records were last pruned (Unix ms).
    pub node_spend_pruned_ms: std::sync::atomic::AtomicI64,
    /// Cluster membership, set once gossip has started (cluster mode only).
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl AppState {
    /// Build the state for `config` (already merged with the store's contents when there is one).
    pub fn new(
        config: GatewayConfig,
        config_path: Option<PathBuf>,
        store: Option<Store>,
    ) -> Result<Arc<Self>, GatewayError> {
        let source = crate::cluster::spend_source(&config.cluster_config);
        Self::with_remote(config, config_path, store, Arc::new(NoRemote), source)
    }

    /// [`AppState::new`] with other nodes' usage added to local counts (cluster mode).
    pub fn with_remote(
        config: GatewayConfig,
        config_path: Option<PathBuf>,
        store: Option<Store>,
        remote: Arc<dyn RemoteUsage>,
        spend_source: SpendSource,
    ) -> Result<Arc<Self>, GatewayError> {
        let metrics = Metrics::new();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(config.client.initial_pool_size as usize)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            // Providers do not redirect API calls; never follow one with a key attached.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| {
                GatewayError::Config(format!("cannot build the upstream HTTP client: {e}"))
            })?;
        let runtime = Runtime::build(config, &metrics, None)?;
        let usage_store = match &store {
            Some(store) => UsageBackend::Store(store.clone()),
            None => UsageBackend::Memory(MemoryUsageStore::new(
                &runtime.governance.index.budgets,
                now_ms(),
            )),
        };
        let state = Arc::new(Self {
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            client,
            lifecycle: Lifecycle::default(),
            counters: Arc::new(UsageCounters::new(remote)),
            usage_store,
            store,
            config_version: std::sync::atomic::AtomicI64::new(0),
            config_path,
            spend_source,
            traffic: Traffic::default(),
            node_spend_pruned_ms: std::sync::atomic::AtomicI64::new(now_ms()),
            cluster: std::sync::OnceLock::new(),
        });
        Ok(state)
    }

    /// Rebuild the runtime from the store's current contents (after an admin write, or when
    /// another replica bumped the config version). Sections that live only in the config file
    /// are kept from the running config.
    pub async fn reload_from_store(&self) -> Result<(), GatewayError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let snapshot = store.snapshot().await.map_err(|e| {
            self.metrics
                .store_errors
                .get_or_create(&StoreLabels {
                    operation: "snapshot",
                })
                .inc();
            GatewayError::Store(e.to_string())
        })?;
        let version = snapshot.config_version;
        let config = merge_snapshot(self.runtime.load().config.clone(), snapshot);
        self.apply_config(config)?;
        self.config_version
            .store(version, std::sync::atomic::Ordering::Release);
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
        if version
            != self
                .config_version
                .load(std::sync::atomic::Ordering::Acquire)
        {
            tracing::info!(version, "config store changed; reloading");
            self.reload_from_store().await?;
        }
        Ok(())
    }

    /// Read every budget's usage from the store into the counters (at start).
    pub async fn load_usage(&self) -> Result<(), String> {
        let usage = self.usage_store.budget_usage().await?;
        self.counters.lock().stored = usage;
        Ok(())
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
        // Cluster mode: spend just written stays in gossip for two flush intervals and a
        // second: by then every other node has re-read the store, even on a loaded machine.
        let hold_ms = if self.cluster.get().is_some() {
            2 * runtime.config.governance.usage_flush_interval_ms as i64 + 1000
        } else {
            0
        };
        let result = flush_once(
            &self.counters,
            &self.usage_store,
            &self.spend_source,
            &runtime.governance.index.budgets,
            now_ms(),
            hold_ms,
        )
        .await;
        self.metrics
            .usage_flush_duration
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics
                .store_errors
                .get_or_create(&StoreLabels {
                    operation: "flush_usage",
                })
                .inc();
        }
        self.publish_usage_gauges(runtime.config.governance.usage_metrics_top_n as usize);
        result
    }

    /// Per-key gauges for the `top_n` keys with the most requests (bounded cardinality).
    fn publish_usage_gauges(&self, top_n: usize) {
        let (requests, spend) = {
            let local = self.counters.lock();
            let mut by_requests: Vec<(String, u64)> = local
                .vk_requests
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            by_requests.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            by_requests.truncate(top_n);
            let spend: Vec<(String, f64)> = by_requests
                .iter()
                .map(|(k, _)| (k.clone(), local.vk_spend.get(k).copied().unwrap_or(0.0)))
                .collect();
            (by_requests, spend)
        };
        self.metrics.virtual_key_requests.clear();
        self.metrics.virtual_key_spend.clear();
        for (virtual_key, count) in requests {
            self.metrics
                .virtual_key_requests
                .get_or_create(&VirtualKeyLabels { virtual_key })
                .set(count as i64);
        }
        for (virtual_key, usd) in spend {
            self.metrics
                .virtual_key_spend
                .get_or_create(&VirtualKeyLabels { virtual_key })
                .set(usd);
        }
    }

    /// Replace the running config; breakers of unchanged keys carry over.
    pub fn apply_config(&self, config: GatewayConfig) -> Result<(), GatewayError> {
        let current = self.runtime.load();
        let runtime = Runtime::build(config, &self.metrics, Some(&current))?;
        self.runtime.store(Arc::new(runtime));
        Ok(())
    }
}
