//! Process lifecycle: bind, serve, drain on SIGTERM, reload on SIGHUP. Listener setup and
//! shutdown live here (and in [`listener`]) only, so a future supervisor can reuse them.

pub mod listener;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{GatewayConfig, LoadedConfig, ServerConfig};
use crate::error::GatewayError;
use crate::state::AppState;
use crate::telemetry::metrics::ReloadLabels;

/// What the command line decided.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Config file (reloaded on SIGHUP).
    pub config_path: Option<PathBuf>,
}

/// Load the config named by `path`, or the empty default without one.
pub fn load_config(path: Option<&PathBuf>) -> Result<LoadedConfig, crate::config::ConfigError> {
    match path {
        Some(path) => GatewayConfig::load_file(path),
        None => Ok(LoadedConfig {
            config: GatewayConfig::default(),
            unknown_fields: Vec::new(),
            warnings: Vec::new(),
        }),
    }
}

fn warn_unknown_fields(loaded: &LoadedConfig) {
    for field in &loaded.unknown_fields {
        tracing::warn!(field = %field, "unknown config field ignored");
    }
    for warning in &loaded.warnings {
        tracing::warn!(%warning, "config warning");
    }
}

/// Run the gateway until SIGTERM/SIGINT and a drain.
pub async fn run(settings: ServerSettings, loaded: LoadedConfig) -> Result<(), GatewayError> {
    warn_unknown_fields(&loaded);
    if settings.config_path.is_none() {
        tracing::warn!(
            "no config file given (--config or BIFROST_CONFIG): running with no providers"
        );
    }
    let store = crate::state::open_store(&loaded.config).await?;
    let (config, version) = match &store {
        Some(store) => crate::state::import_and_merge(loaded.config, store).await?,
        None => (loaded.config, 0),
    };
    let providers = config.providers.len();
    let cluster_config = config.cluster_config.clone();
    let gossip_usage = Arc::new(crate::cluster::GossipUsage::default());
    let state = if cluster_config.enabled {
        let source = crate::cluster::spend_source(&cluster_config);
        AppState::with_remote(
            config,
            settings.config_path.clone(),
            store,
            gossip_usage.clone(),
            source,
        )?
    } else {
        AppState::new(config, settings.config_path.clone(), store)?
    };
    state.sync.set_config_version(version);
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| GatewayError::Bind {
            what: "cannot listen on",
            addr: settings.listen,
            reason: e.to_string(),
            setting: "--port / BIFROST_PORT",
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| GatewayError::Config(format!("listener has no address: {e}")))?;
    if let Err(error) = state.sync.load_usage().await {
        return Err(GatewayError::Config(format!(
            "cannot read budget usage from the store: {error}"
        )));
    }
    tracing::info!(
        "{}",
        crate::http::admin::describe_admin_auth(
            &state.runtime.load().config.governance.auth_config
        )
    );
    if cluster_config.enabled {
        // Other nodes see flushed spend only at their next store read: keep publishing it
        // until then.
        state.counters.lock().hold_flushed_spend();
        let cluster_settings =
            crate::cluster::ClusterSettings::new(&cluster_config, local, state.sync.spend_source())
                .await;
        let cluster = crate::cluster::Cluster::start(
            cluster_settings,
            state.counters.clone(),
            gossip_usage,
            state.metrics.gossip.clone(),
            Arc::new(crate::state::ClusterHooks::new(&state)),
        )
        .await?;
        let _ = state.cluster.set(cluster);
    }
    tracing::info!(http_addr = %local, providers, version = env!("CARGO_PKG_VERSION"), "listening");
    serve(listener, state).await
}

/// Serve on `listener` until a termination signal, then: `/ready` turns 503 at once, the
/// listener stays open for `server.shutdown_delay_seconds`, closes, connections with nothing in
/// flight are closed, and in-flight requests and streams get `server.drain_timeout_seconds` to
/// finish.
pub async fn serve(listener: TcpListener, state: Arc<AppState>) -> Result<(), GatewayError> {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let signals = tokio::spawn(handle_signals(state.clone(), stop_tx));

    let flusher = tokio::spawn(state.sync.clone().run(stop_rx.clone()));
    let (close_tx, close_rx) = watch::channel(false);
    let app = crate::http::router(state.clone());
    let limits_state = state.clone();
    let limits =
        move || listener::ConnectionLimits::from(&limits_state.runtime.load().config.server);
    let mut server = tokio::spawn(listener::serve_http(
        listener,
        app,
        limits,
        state.metrics.listener.clone(),
        close_rx,
    ));

    tokio::select! {
        result = &mut server => {
            signals.abort();
            flusher.abort();
            if let Some(cluster) = state.cluster.get() {
                cluster.shutdown(&state.counters).await;
            }
            return match result {
                Ok(()) => Ok(()),
                Err(e) => Err(GatewayError::Config(format!("HTTP server task failed: {e}"))),
            };
        }
        _ = stop_rx.wait_for(|stop| *stop) => {}
    }
    let server_config = state.runtime.load().config.server.clone();
    let shutdown_delay = shutdown_delay(&server_config);
    if !shutdown_delay.is_zero() {
        tracing::info!(
            shutdown_delay_seconds = shutdown_delay.as_secs(),
            "not ready; still accepting connections before closing the listener"
        );
        tokio::time::sleep(shutdown_delay).await;
    }
    let _ = close_tx.send(true);
    let drain_timeout = drain_timeout(&server_config);
    tracing::info!(
        in_flight = state.metrics.in_flight.get(),
        drain_timeout_seconds = drain_timeout.as_secs(),
        "draining: listener closed, finishing in-flight requests"
    );
    match tokio::time::timeout(drain_timeout, &mut server).await {
        Ok(_) => tracing::info!("drained; exiting"),
        Err(_) => {
            tracing::warn!(
                in_flight = state.metrics.in_flight.get(),
                "drain timeout reached; closing remaining connections"
            );
            server.abort();
        }
    }
    signals.abort();
    flusher.abort();
    // Spend of the drained requests reaches the store before the process exits.
    match state.sync.flush_usage().await {
        Ok(report) => tracing::info!(
            budgets = report.budgets_written,
            usd = report.spend_written,
            "final usage flush done"
        ),
        Err(error) => tracing::error!(%error, "final usage flush failed; unflushed spend is lost"),
    }
    // Gossip runs through the drain so limits stay shared until the last request.
    if let Some(cluster) = state.cluster.get() {
        cluster.shutdown(&state.counters).await;
    }
    Ok(())
}

/// How long the listener stays open after SIGTERM: `shutdown_delay_seconds`, at most
/// [`ServerConfig::MAX_SHUTDOWN_DELAY_SECONDS`] whatever got past validation, so a
/// termination signal always ends the process.
fn shutdown_delay(server: &ServerConfig) -> Duration {
    Duration::from_secs(
        server
            .shutdown_delay_seconds
            .min(ServerConfig::MAX_SHUTDOWN_DELAY_SECONDS),
    )
}

/// How long in-flight requests may finish after the listener closed: `drain_timeout_seconds`,
/// at most [`ServerConfig::MAX_DRAIN_TIMEOUT_SECONDS`].
fn drain_timeout(server: &ServerConfig) -> Duration {
    Duration::from_secs(
        server
            .drain_timeout_seconds
            .min(ServerConfig::MAX_DRAIN_TIMEOUT_SECONDS),
    )
}

async fn handle_signals(state: Arc<AppState>, stop: watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!(
            "cannot install signal handlers; SIGTERM/SIGHUP will not be handled gracefully"
        );
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!(signal = "SIGTERM", "shutdown requested"); break; }
            _ = int.recv() => { tracing::info!(signal = "SIGINT", "shutdown requested"); break; }
            _ = hup.recv() => reload(&state).await,
        }
    }
    state.lifecycle.begin_drain();
    let _ = stop.send(true);
}

/// Reload the config file (and import it into the store); a bad file leaves the running
/// config in place.
pub async fn reload(state: &AppState) {
    let Some(path) = &state.config_path else {
        tracing::warn!("SIGHUP ignored: the gateway was started without a config file");
        return;
    };
    let result = GatewayConfig::load_file(path)
        .map_err(|e| e.to_string())
        .and_then(|loaded| {
            warn_unknown_fields(&loaded);
            let providers = loaded.config.providers.len();
            state
                .apply_config(loaded.config)
                .map_err(|e| e.to_string())?;
            Ok(providers)
        });
    match result {
        Ok(providers) => {
            state
                .metrics
                .config_reloads
                .get_or_create(&ReloadLabels { result: "success" })
                .inc();
            tracing::info!(path = %path.display(), providers, "config reloaded");
        }
        Err(error) => {
            state
                .metrics
                .config_reloads
                .get_or_create(&ReloadLabels { result: "failure" })
                .inc();
            tracing::error!(path = %path.display(), %error, "config reload failed; keeping the running config");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_delay_and_drain_of_u64_max_end_within_an_hour() {
        let server = ServerConfig {
            shutdown_delay_seconds: u64::MAX,
            drain_timeout_seconds: u64::MAX,
            ..ServerConfig::default()
        };
        assert_eq!(shutdown_delay(&server), Duration::from_secs(3600));
        assert_eq!(drain_timeout(&server), Duration::from_secs(3600));
        let defaults = ServerConfig::default();
        assert_eq!(shutdown_delay(&defaults), Duration::ZERO);
        assert_eq!(drain_timeout(&defaults), Duration::from_secs(60));
    }
}
