//! The operator process: start-up checks, the health server, leader election, the controller
//! and an orderly shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kube::api::ListParams;
use kube::{Api, Client};
use tokio::sync::{oneshot, watch};

use crate::context::Context;
use crate::crd::BifrostCluster;
use crate::error::{is_not_found, Error};
use crate::http::{self, Health};
use crate::leader::{self, LeaseSettings};
use crate::metrics::Metrics;
use crate::probe::ClusterProbe;

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Watch one namespace; `None` watches all.
    pub namespace: Option<String>,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub metrics_addr: SocketAddr,
    /// Leader election; `None` reconciles at once (one replica only).
    pub leader_election: Option<LeaseSettings>,
    /// Read `/cluster/status` from a ready gateway for `status.members` and `clusterHealth`.
    pub probe_cluster_status: bool,
    /// This replica's name in Events.
    pub identity: Option<String>,
}

/// Run with the in-cluster or `KUBECONFIG` client until SIGTERM/SIGINT.
pub async fn run(options: Options) -> Result<(), Error> {
    let client = Client::try_default()
        .await
        .map_err(|e| Error::ClientConfig(e.to_string()))?;
    run_with_client(client, options, shutdown_signal()).await
}

/// Run with `client` until `shutdown` resolves.
pub async fn run_with_client(
    client: Client,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new());
    let health = Health::new(Arc::clone(&metrics));
    let listener = http::bind(options.metrics_addr).await?;
    tracing::info!(addr = %options.metrics_addr, "serving /metrics, /healthz and /readyz");

    let (stop, stopped) = watch::channel(false);
    let signal = tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            tracing::info!("shutdown requested");
            let _ = stop.send(true);
        }
    });
    let server = tokio::spawn(http::serve(
        listener,
        Arc::clone(&health),
        until(stopped.clone()),
    ));

    let result = operate(client, &options, &health, &metrics, stopped).await;

    let _ = stop.send(true);
    signal.abort();
    if tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .is_err()
    {
        tracing::warn!("metrics server did not stop within 5 s");
    }
    result
}

async fn operate(
    client: Client,
    options: &Options,
    health: &Health,
    metrics: &Arc<Metrics>,
    stopped: watch::Receiver<bool>,
) -> Result<(), Error> {
    check_crd(&client, options.namespace.as_deref()).await?;
    health.ready.store(true, Ordering::Relaxed);

    let leadership = match &options.leader_election {
        None => None,
        Some(settings) => {
            match leader::acquire(client.clone(), settings, until(stopped.clone())).await? {
                Some(leadership) => Some(leadership),
                None => return Ok(()),
            }
        }
    };
    health.leading.store(true, Ordering::Relaxed);
    metrics.leader.set(1);

    let probe = if options.probe_cluster_status {
        ClusterProbe::new(Duration::from_secs(2), Duration::from_secs(30))
    } else {
        ClusterProbe::disabled()
    };
    let ctx = Arc::new(Context::new(
        client,
        Arc::clone(metrics),
        probe,
        options.identity.clone(),
    ));

    // The controller stops on shutdown (gracefully) or when leadership is lost (at once: the
    // lease may be someone else's a moment later), whichever comes first.
    let (stop_controller, controller_stopped) = oneshot::channel::<()>();
    tracing::info!(
        namespace = options.namespace.as_deref().unwrap_or("<all>"),
        "reconciling BifrostClusters"
    );
    // Boxed, not stack-pinned: losing the lease drops it (and the reconciles in it) on the spot.
    let mut controller = Box::pin(crate::controller::run(
        Arc::clone(&ctx),
        options.namespace.clone(),
        async move {
            let _ = controller_stopped.await;
        },
    ));
    let watchdog = async move {
        match leadership {
            Some(mut leadership) => tokio::select! {
                () = leadership.lost() => (true, Some(leadership)),
                () = until(stopped) => (false, Some(leadership)),
            },
            None => {
                until(stopped).await;
                (false, None)
            }
        }
    };
    let outcome = tokio::select! {
        outcome = watchdog => Some(outcome),
        () = &mut controller => None,
    };
    let stop_leading = || {
        health.leading.store(false, Ordering::Relaxed);
        metrics.leader.set(0);
    };
    match outcome {
        Some((true, _)) => {
            // Not ready and not leading before anything else; dropping the controller cancels
            // reconciles in flight.
            stop_leading();
            drop(controller);
            ctx.probe.shutdown();
            Err(Error::LeadershipLost)
        }
        Some((false, leadership)) => {
            let _ = stop_controller.send(());
            controller.await;
            ctx.probe.shutdown();
            stop_leading();
            if let Some(leadership) = leadership {
                leadership.release().await;
            }
            Ok(())
        }
        None => {
            ctx.probe.shutdown();
            stop_leading();
            Ok(())
        }
    }
}

/// Fail fast, with instructions, when the CRD is missing.
pub async fn check_crd(client: &Client, namespace: Option<&str>) -> Result<(), Error> {
    let api: Api<BifrostCluster> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(err) if is_not_found(&err) => Err(Error::CrdNotInstalled),
        Err(err) => Err(Error::kube("list BifrostClusters (start-up check)", err)),
    }
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// SIGTERM (Kubernetes) or SIGINT (a terminal).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::*;
    use crate::testing::fake_api::FakeApi;

    fn options() -> Options {
        Options {
            namespace: None,
            metrics_addr: "127.0.0.1:0".parse().expect("addr"),
            leader_election: None,
            probe_cluster_status: false,
            identity: Some("test".into()),
        }
    }

    #[tokio::test]
    async fn a_missing_crd_stops_start_up_with_instructions() {
        let (client, _api) = FakeApi::start();
        let err = run_with_client(client, options(), std::future::pending())
            .await
            .expect_err("no CRD");
        assert!(matches!(err, Error::CrdNotInstalled), "{err}");
        assert!(
            err.to_string()
                .contains("kubectl apply -f crds/bifrostcluster.yaml"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_operator_stops_cleanly_on_shutdown() {
        let (client, api) = FakeApi::start();
        api.put(
            "/apis/bifrost.dev/v1alpha1/bifrostclusters",
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                   "metadata": {"resourceVersion": "1"}, "items": []}),
        );
        let started = Instant::now();
        let result = run_with_client(
            client,
            options(),
            tokio::time::sleep(Duration::from_millis(300)),
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }
}
