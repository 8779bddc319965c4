//! Shared application state, built once at start-up and handed to every handler.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::routing::RoutingTable;
use crate::telemetry::Metrics;

/// What a config file compiles to; swapped whole on reload so a request sees one consistent
/// version.
pub struct Runtime {
    /// The config as loaded.
    pub config: GatewayConfig,
    /// Providers, keys, breakers and queues.
    pub routing: RoutingTable,
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
    /// The file SIGHUP reloads, if the gateway was started with one.
    pub config_path: Option<PathBuf>,
}

impl AppState {
    /// Build the state for `config`.
    pub fn new(
        config: GatewayConfig,
        config_path: Option<PathBuf>,
    ) -> Result<Arc<Self>, GatewayError> {
        let metrics = Metrics::new();
        let routing = RoutingTable::build(&config, &metrics, None)?;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(config.client.initial_pool_size as usize)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| {
                GatewayError::Config(format!("cannot build the upstream HTTP client: {e}"))
            })?;
        Ok(Arc::new(Self {
            runtime: ArcSwap::from_pointee(Runtime { config, routing }),
            metrics,
            client,
            lifecycle: Lifecycle::default(),
            config_path,
        }))
    }

    /// Replace the running config; breakers of unchanged keys carry over.
    pub fn apply_config(&self, config: GatewayConfig) -> Result<(), GatewayError> {
        let current = self.runtime.load();
        let routing = RoutingTable::build(&config, &self.metrics, Some(&current.routing))?;
        self.runtime.store(Arc::new(Runtime { config, routing }));
        Ok(())
    }
}
