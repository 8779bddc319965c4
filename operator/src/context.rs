//! Shared state of the reconciler, built once and handed to every reconcile in an `Arc`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use kube::Client;

use crate::metrics::Metrics;
use crate::probe::ClusterProbe;
use crate::resources::apply::ChildCache;

/// Name events are reported under.
pub const REPORTER: &str = "bifrost-operator";

/// Everything a reconcile needs besides the resource.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Publishes Events on `BifrostCluster`s.
    pub recorder: Recorder,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// What was last written, to skip writes already in place.
    pub children: ChildCache,
    /// Background `/cluster/status` reader.
    pub probe: Arc<ClusterProbe>,
    /// Consecutive failures per `namespace/name`, for the retry backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    /// Requeue interval of a healthy resource (status refresh, drift backstop).
    pub resync: Duration,
}

impl Context {
    /// A context for `client`; `instance` names this operator replica in Events.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        probe: ClusterProbe,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: REPORTER.to_string(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            children: ChildCache::default(),
            probe: Arc::new(probe),
            failures: Mutex::default(),
            resync: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("resync", &self.resync)
            .finish_non_exhaustive()
    }
}
