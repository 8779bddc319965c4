//! Prometheus metrics of the operator (prefix `bifrost_operator_`), one registry per process.

use std::time::Duration;

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::resources::apply::Outcome;

/// Labels naming an error kind ([`crate::error::Error::kind`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `conflict`, `forbidden`, `invalid_config`, ...
    pub kind: &'static str,
}

/// Labels of a write to a child.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// Child kind (`StatefulSet`, ...).
    pub kind: String,
    /// `created`, `updated` or `deleted`.
    pub outcome: &'static str,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    /// Reconciles run.
    pub reconciliations: Counter,
    /// Failed reconciles by error kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile duration.
    pub duration: Histogram,
    /// Children created, updated or deleted.
    pub writes: Family<WriteLabels, Counter>,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bifrost_operator");
        let reconciliations = Counter::default();
        registry.register(
            "reconciliations",
            "BifrostCluster reconciles run",
            reconciliations.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error kind",
            errors.clone(),
        );
        // 1 ms .. ~16 s
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        let writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "child_writes",
            "Children created, updated or deleted",
            writes.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        Self {
            registry,
            reconciliations,
            errors,
            duration,
            writes,
            leader,
        }
    }

    /// Count one reconcile.
    pub fn reconciled(&self, took: Duration, error_kind: Option<&'static str>) {
        self.reconciliations.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(kind) = error_kind {
            self.errors.get_or_create(&ErrorLabels { kind }).inc();
        }
    }

    /// Count a write to a child.
    pub fn wrote(&self, kind: &str, outcome: Outcome) {
        let outcome = match outcome {
            Outcome::Unchanged => return,
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Deleted => "deleted",
        };
        self.writes
            .get_or_create(&WriteLabels {
                kind: kind.to_string(),
                outcome,
            })
            .inc();
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            tracing::warn!("encoding metrics failed");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_errors_and_writes_are_exported() {
        let metrics = Metrics::new();
        metrics.reconciled(Duration::from_millis(3), None);
        metrics.reconciled(Duration::from_millis(5), Some("forbidden"));
        metrics.wrote("StatefulSet", Outcome::Created);
        metrics.wrote("StatefulSet", Outcome::Unchanged);
        let text = metrics.encode();
        assert!(
            text.contains("bifrost_operator_reconciliations_total 2"),
            "{text}"
        );
        assert!(
            text.contains("bifrost_operator_reconcile_errors_total{kind=\"forbidden\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("bifrost_operator_reconcile_duration_seconds_count 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "bifrost_operator_child_writes_total{kind=\"StatefulSet\",outcome=\"created\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("bifrost_operator_leader 0"), "{text}");
    }
}
