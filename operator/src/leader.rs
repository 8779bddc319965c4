//! Leader election on a `coordination.k8s.io` Lease, so two operator replicas can run and only
//! one reconciles.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::Error;

/// Where the Lease lives and who we are.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// Lease name.
    pub name: String,
    /// Lease namespace (the operator's own).
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
}

/// Held leadership; dropping it without [`Leadership::release`] lets the lease expire.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
    lease: String,
}

/// Wait until this replica holds the Lease, or until `stop` resolves (then `None`).
pub async fn acquire(
    client: Client,
    settings: &LeaseSettings,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Option<Leadership>, Error> {
    let lease = format!("{}/{}", settings.namespace, settings.name);
    let seconds = settings.duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client, &settings.name)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(seconds)
        .with_grace((seconds / 3).max(1))
        .with_field_manager(format!("bifrost-operator-lease-{}", settings.identity))
        .build()
        .await
        .map_err(|source| Error::LeaderElection {
            lease: lease.clone(),
            source,
        })?;
    let (mut state, task) = manager.watch().await;
    tracing::info!(%lease, identity = %settings.identity, "waiting for leadership");
    tokio::pin!(stop);
    loop {
        if *state.borrow_and_update() {
            tracing::info!(%lease, "became leader");
            return Ok(Some(Leadership { state, task, lease }));
        }
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    let source = match task.await {
                        Ok(Err(err)) => err,
                        _ => LeaseManagerError::InconsistentState("lease manager stopped".into()),
                    };
                    return Err(Error::LeaderElection { lease, source });
                }
            }
            () = &mut stop => {
                drop(state);
                task.abort();
                return Ok(None);
            }
        }
    }
}

impl Leadership {
    /// Resolves when the Lease is lost (another replica took over, or the API is unreachable
    /// for longer than the lease).
    pub async fn lost(&mut self) {
        loop {
            if self.state.changed().await.is_err() || !*self.state.borrow_and_update() {
                tracing::warn!(lease = %self.lease, "lost leadership");
                return;
            }
        }
    }

    /// Give the Lease up so a standby replica takes over at once (bounded by 5 s).
    pub async fn release(self) {
        drop(self.state);
        let abort = self.task.abort_handle();
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(Ok(_))) => tracing::info!(lease = %self.lease, "released leadership"),
            Ok(Ok(Err(err))) => {
                tracing::warn!(lease = %self.lease, error = %err, "releasing the lease failed; it expires by itself")
            }
            Ok(Err(_)) | Err(_) => {
                abort.abort();
                tracing::warn!(lease = %self.lease, "releasing the lease timed out; it expires by itself")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fake_api::FakeApi;

    fn settings(identity: &str) -> LeaseSettings {
        LeaseSettings {
            name: "bifrost-operator".into(),
            namespace: "operators".into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
        }
    }

    #[tokio::test]
    async fn a_free_lease_is_taken_and_released() {
        let (client, api) = FakeApi::start();
        let leadership = tokio::time::timeout(
            Duration::from_secs(10),
            acquire(client, &settings("replica-a"), std::future::pending()),
        )
        .await
        .expect("leads within 10 s")
        .expect("no error")
        .expect("leader");
        let lease = api
            .get("/apis/coordination.k8s.io/v1/namespaces/operators/leases/bifrost-operator")
            .expect("lease stored");
        assert_eq!(lease["spec"]["holderIdentity"], "replica-a");
        leadership.release().await;
    }

    #[tokio::test]
    async fn waiting_for_leadership_ends_on_shutdown() {
        let (client, api) = FakeApi::start();
        api.put(
            "/apis/coordination.k8s.io/v1/namespaces/operators/leases/bifrost-operator",
            serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "bifrost-operator", "namespace": "operators", "resourceVersion": "1"},
                "spec": {"holderIdentity": "replica-b", "leaseDurationSeconds": 3600,
                         "acquireTime": "2099-01-01T00:00:00.000000Z", "renewTime": "2099-01-01T00:00:00.000000Z"}}),
        );
        let result = tokio::time::timeout(
            Duration::from_secs(5),
            acquire(
                client,
                &settings("replica-a"),
                tokio::time::sleep(Duration::from_millis(300)),
            ),
        )
        .await
        .expect("returns on shutdown");
        assert!(matches!(result, Ok(None)), "standby until shutdown");
    }
}
