//! Leader election on a `coordination.k8s.io` Lease, so two operator replicas can run and only
//! one reconciles.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
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
    client: Client,
    settings: LeaseSettings,
}

/// Wait until this replica holds the Lease, or until `stop` resolves (then `None`).
pub async fn acquire(
    client: Client,
    settings: &LeaseSettings,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Option<Leadership>, Error> {
    let lease = format!("{}/{}", settings.namespace, settings.name);
    let seconds = lease_duration(settings).as_secs();
    let manager = LeaseManagerBuilder::new(client.clone(), &settings.name)
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
            return Ok(Some(Leadership {
                state,
                task,
                lease,
                client,
                settings: settings.clone(),
            }));
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
    /// Resolves when the Lease is lost: another replica holds it, or no renewal was confirmed
    /// in time. The lease manager alone never says so while renewals time out or are refused
    /// (it logs and retries), so this reads the Lease itself: the lease is ours until its
    /// `renewTime` (stamped by our own manager, on our clock) plus its duration, and this
    /// resolves a safety margin before that moment unless a later renewal is confirmed.
    pub async fn lost(&mut self) {
        let duration = lease_duration(&self.settings);
        let poll = (duration / 10).clamp(Duration::from_millis(100), Duration::from_secs(2));
        let margin = poll * 2;
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        // Until a renewal is confirmed: the lease was renewed at the latest just now.
        let mut valid_until = SystemTime::now() + duration;
        let mut checks = tokio::time::interval(poll);
        loop {
            let left = valid_until
                .checked_sub(margin)
                .and_then(|stop_at| stop_at.duration_since(SystemTime::now()).ok())
                .unwrap_or_default();
            if left.is_zero() {
                tracing::warn!(lease = %self.lease, "lost leadership: no renewal of the lease confirmed before it expires");
                return;
            }
            tokio::select! {
                changed = self.state.changed() => {
                    if changed.is_err() || !*self.state.borrow_and_update() {
                        tracing::warn!(lease = %self.lease, "lost leadership");
                        return;
                    }
                }
                () = tokio::time::sleep(left) => {}
                checked = async {
                    checks.tick().await;
                    tokio::time::timeout(poll, api.get_opt(&self.settings.name)).await
                } => match checked {
                    Ok(Ok(Some(lease))) => match held_until(&lease, &self.settings.identity) {
                        Some(until) => valid_until = valid_until.max(until),
                        None => {
                            tracing::warn!(lease = %self.lease, holder = ?lease.spec.and_then(|s| s.holder_identity), "lost leadership: another replica holds the lease");
                            return;
                        }
                    },
                    Ok(Ok(None)) => {
                        tracing::warn!(lease = %self.lease, "lost leadership: the lease was deleted");
                        return;
                    }
                    Ok(Err(error)) => tracing::debug!(lease = %self.lease, %error, "reading the lease failed"),
                    Err(_) => tracing::debug!(lease = %self.lease, "reading the lease timed out"),
                },
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

fn lease_duration(settings: &LeaseSettings) -> Duration {
    Duration::from_secs(settings.duration.as_secs().max(2))
}

/// When `lease` stops being `identity`'s: its renewal time plus its duration; `None` when
/// someone else (or nobody) holds it.
fn held_until(lease: &Lease, identity: &str) -> Option<SystemTime> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let renewed: SystemTime = spec.renew_time.as_ref()?.0.into();
    let seconds = u64::try_from(spec.lease_duration_seconds?).ok()?;
    renewed.checked_add(Duration::from_secs(seconds))
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

    const LEASE_PATH: &str =
        "/apis/coordination.k8s.io/v1/namespaces/operators/leases/bifrost-operator";

    /// Lead with a 3 s lease, break the API for the Lease with `fault`, and check that `lost`
    /// resolves before the lease's last stored renewal expires, on this clock.
    async fn leadership_ends_before_the_lease_expires(fault: impl FnOnce(&FakeApi)) {
        let (client, api) = FakeApi::start();
        let settings = LeaseSettings {
            duration: Duration::from_secs(3),
            ..settings("replica-a")
        };
        let mut leadership = tokio::time::timeout(
            Duration::from_secs(10),
            acquire(client, &settings, std::future::pending()),
        )
        .await
        .expect("leads within 10 s")
        .expect("no error")
        .expect("leader");
        // Let the manager renew at least once, then cut it off.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        fault(&api);
        let started = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(10), leadership.lost())
            .await
            .expect("leadership is given up while the API is broken");
        let now = SystemTime::now();
        let lease: Lease =
            serde_json::from_value(api.get(LEASE_PATH).expect("lease stored")).expect("a Lease");
        let expires = held_until(&lease, "replica-a").expect("the stored lease is still ours");
        assert!(
            now < expires,
            "gave up {:?} after its lease expired (after {:?} of faults)",
            now.duration_since(expires).unwrap_or_default(),
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_leader_whose_renewals_hang_stops_before_its_lease_expires() {
        leadership_ends_before_the_lease_expires(|api| {
            for method in ["GET", "PATCH", "PUT", "POST"] {
                api.hang(method, "/leases");
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_leader_whose_renewals_fail_stops_before_its_lease_expires() {
        leadership_ends_before_the_lease_expires(|api| {
            for method in ["GET", "PATCH", "PUT", "POST"] {
                api.fail(method, "/leases", 503);
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_leader_whose_token_is_revoked_stops_before_its_lease_expires() {
        leadership_ends_before_the_lease_expires(|api| {
            for method in ["GET", "PATCH", "PUT", "POST"] {
                api.fail(method, "/leases", 401);
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_leader_stops_when_another_replica_holds_the_lease() {
        let (client, api) = FakeApi::start();
        let mut leadership = tokio::time::timeout(
            Duration::from_secs(10),
            acquire(client, &settings("replica-a"), std::future::pending()),
        )
        .await
        .expect("leads within 10 s")
        .expect("no error")
        .expect("leader");
        let mut lease = api.get(LEASE_PATH).expect("lease stored");
        lease["spec"]["holderIdentity"] = serde_json::json!("replica-b");
        api.put(LEASE_PATH, lease);
        // Renewals are refused from now on, so only reading the Lease can tell.
        api.fail("PATCH", "/leases", 409);
        api.fail("PUT", "/leases", 409);
        tokio::time::timeout(Duration::from_secs(5), leadership.lost())
            .await
            .expect("sees the other holder within a few polls");
    }
}
