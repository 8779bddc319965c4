//! Shared application state, built once at start-up: [`AppState`] is what the request path
//! reads (the swappable runtime, counters, metrics, the upstream client); its [`StoreSync`]
//! owns the durable side (store, config version, spend flush, reloads).

pub mod sync;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::governance::counters::{NoRemote, RemoteUsage, UsageCounters};
use crate::governance::flush::SpendSource;
use crate::governance::GovernanceRuntime;
use crate::routing::RoutingTable;
use crate::store::Store;
use crate::telemetry::Metrics;
pub use sync::{import_and_merge, merge_snapshot, open_store, StoreSync};

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
            config_version: state.sync.config_version(),
        }
    }

    fn newer_config_seen(&self, _version: i64) {
        if let Some(state) = self.0.upgrade() {
            state.sync.request_reload();
        }
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
            state.sync.write_spend(&source, &totals).await
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
    /// Current config and routing table (shared with [`StoreSync`], which swaps it on reload).
    pub runtime: Arc<ArcSwap<Runtime>>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Upstream HTTP client (connection pools live here).
    pub client: reqwest::Client,
    /// Shutdown state.
    pub lifecycle: Lifecycle,
    /// This node's usage counters (survive reloads).
    pub counters: Arc<UsageCounters>,
    /// Requests answered, for the load this node gossips.
    pub traffic: Traffic,
    /// The file SIGHUP reloads, if the gateway was started with one.
    pub config_path: Option<PathBuf>,
    /// The store, the config version, spend flushes and reloads.
    pub sync: Arc<StoreSync>,
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
        let client = crate::routing::client::shared(config.client.initial_pool_size as usize)?;
        let runtime = Arc::new(ArcSwap::from_pointee(Runtime::build(
            config, &metrics, None,
        )?));
        let metrics = Arc::new(metrics);
        let counters = Arc::new(UsageCounters::new(remote));
        let sync = Arc::new(StoreSync::new(
            runtime.clone(),
            metrics.clone(),
            counters.clone(),
            store,
            spend_source,
        ));
        Ok(Arc::new(Self {
            runtime,
            metrics,
            client,
            lifecycle: Lifecycle::default(),
            counters,
            traffic: Traffic::default(),
            config_path,
            sync,
            cluster: std::sync::OnceLock::new(),
        }))
    }

    /// Replace the running config; breakers of unchanged keys carry over.
    pub fn apply_config(&self, config: GatewayConfig) -> Result<(), GatewayError> {
        apply_config(&self.runtime, &self.metrics, config)
    }
}

/// Compile `config` and swap it in for the runtime in `runtime`; breakers of unchanged keys
/// carry over.
fn apply_config(
    runtime: &ArcSwap<Runtime>,
    metrics: &Metrics,
    config: GatewayConfig,
) -> Result<(), GatewayError> {
    let current = runtime.load();
    let next = Runtime::build(config, metrics, Some(&current))?;
    runtime.store(Arc::new(next));
    Ok(())
}
