//! Prometheus metrics. One registry per process, owned by [`Metrics`] in the app state.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a finished inference request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route template, e.g. `/v1/chat/completions`.
    pub route: &'static str,
    /// Provider that served (or last failed) the request; `none` before one was chosen.
    pub provider: String,
    /// Model as sent upstream.
    pub model: String,
    /// HTTP status returned to the caller.
    pub status: u16,
}

/// Labels with just the route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route template.
    pub route: &'static str,
}

/// Labels of one upstream attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// Provider name.
    pub provider: String,
    /// `success`, `client_error`, `retryable_status`, `timeout`, `connect_error`.
    pub outcome: &'static str,
}

/// Labels naming a provider.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// Provider name.
    pub provider: String,
}

/// Labels of a fallback from one provider to the next.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    /// Provider that failed.
    pub from: String,
    /// Provider tried next.
    pub to: String,
}

/// Labels naming one upstream key.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabels {
    /// Provider name.
    pub provider: String,
    /// Key name (never its value).
    pub key: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 us .. ~100 s.
    Histogram::new([
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
        1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    ])
}

fn overhead_histogram() -> Histogram {
    // 5 us .. 100 ms: the gateway's own work.
    Histogram::new([
        0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
        0.025, 0.1,
    ])
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// Finished inference requests.
    pub requests: Family<RequestLabels, Counter>,
    /// Whole request latency until the response head is sent (streams: time to first byte).
    pub request_duration: HistogramFamily<RouteLabels>,
    /// Request latency minus time spent waiting on upstreams and backoff.
    pub overhead_duration: HistogramFamily<RouteLabels>,
    /// Upstream attempts by outcome.
    pub upstream_attempts: Family<AttemptLabels, Counter>,
    /// Retries on the same provider.
    pub retries: Family<ProviderLabels, Counter>,
    /// Moves to the next provider in the fallback list.
    pub fallbacks: Family<FallbackLabels, Counter>,
    /// Circuit breaker state per key: 0 closed, 1 open, 2 half-open.
    pub circuit_state: Family<KeyLabels, Gauge>,
    /// Requests rejected because a provider's queue was full.
    pub queue_rejections: Family<ProviderLabels, Counter>,
    /// Inference requests being handled (streams count until they end).
    pub in_flight: Gauge<i64, AtomicI64>,
    /// Config reloads by result.
    pub config_reloads: Family<ReloadLabels, Counter>,
    /// Requests refused by governance.
    pub governance_rejections: Family<RejectionLabels, Counter>,
    /// Requests admitted per virtual key on this node since start (top N keys only).
    pub virtual_key_requests: Family<VirtualKeyLabels, Gauge>,
    /// USD charged per virtual key on this node since start (top N keys only).
    pub virtual_key_spend: Family<VirtualKeyLabels, Gauge<f64, AtomicU64>>,
    /// Store operations that failed.
    pub store_errors: Family<StoreLabels, Counter>,
    /// Time to flush spend to the store.
    pub usage_flush_duration: Histogram,
    /// Gossip traffic, dropped packets and members (cluster mode).
    pub gossip: GossipMetrics,
    /// Client connections: open, refused at the cap, closed by a timeout.
    pub listener: ListenerMetrics,
}

/// Labels of a listener timeout.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimeoutLabels {
    /// `header`, `body` or `idle`.
    pub timeout: &'static str,
}

/// The HTTP listener's metrics (cheap to clone: every clone updates the same series).
#[derive(Clone, Debug, Default)]
pub struct ListenerMetrics {
    /// Client connections open now.
    pub open: Gauge,
    /// Connections closed at once because `server.max_connections` were open.
    pub refused: Counter,
    /// Connections closed or requests failed by a listener timeout.
    pub timeouts: Family<TimeoutLabels, Counter>,
}

impl ListenerMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_connections",
            "Client HTTP connections open now",
            self.open.clone(),
        );
        registry.register(
            "http_connections_refused",
            "Client connections closed on accept because server.max_connections were open",
            self.refused.clone(),
        );
        registry.register(
            "http_timeouts",
            "Client connections closed (header, idle) or requests answered 408 (body) by a server timeout",
            self.timeouts.clone(),
        );
    }

    /// The counter of one kind of timeout.
    pub fn timeout(&self, timeout: &'static str) -> Counter {
        self.timeouts
            .get_or_create(&TimeoutLabels { timeout })
            .clone()
    }
}

/// Labels of a dropped gossip packet.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GossipDropLabels {
    /// `auth` (failed decryption or authentication) or `address` (outside
    /// `allowed_address_space`).
    pub reason: &'static str,
}

/// Labels of gossip bytes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `sent` or `received`.
    pub direction: &'static str,
}

/// Labels of a member count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberStateLabels {
    /// `alive`, `suspect` or `dead`.
    pub state: &'static str,
}

/// The cluster's metrics, handed to the gossip transport and the health check (cheap to clone:
/// every clone updates the same series).
#[derive(Clone, Debug, Default)]
pub struct GossipMetrics {
    /// Gossip packets dropped on receive, by reason.
    pub packets_dropped: Family<GossipDropLabels, Counter>,
    /// Gossip bytes on the wire (sealed), by direction.
    pub bytes: Family<DirectionLabels, Counter>,
    /// Members by state, this node included.
    pub members: Family<MemberStateLabels, Gauge>,
    /// gRPC calls from peers refused by authentication, by reason.
    pub grpc_rejected: Family<GrpcRejectionLabels, Counter>,
    /// Strict-mode admissions by outcome.
    pub strict: Family<OutcomeLabels, Counter>,
    /// Publish rounds: this node's counters written to its gossip state (every 100 ms).
    pub publish_rounds: Counter,
    /// Seconds since the stalest live peer's heartbeat advanced here.
    pub convergence_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
}

/// Labels of a strict-mode admission.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `admitted`, `rejected` or `fallback` (owner unreachable: decided on gossip counts).
    pub outcome: &'static str,
}

/// Labels of a refused gRPC call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcRejectionLabels {
    /// `missing` (no token), `malformed`, `stale` (clock skew or replay) or `bad_signature`
    /// (wrong cluster key).
    pub reason: &'static str,
}

impl GossipMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "gossip_packets_dropped",
            "Gossip packets dropped on receive: reason auth (wrong key, other cluster, tampered), address (outside allowed_address_space) or parse (not a chitchat message)",
            self.packets_dropped.clone(),
        );
        registry.register(
            "gossip_bytes",
            "Gossip bytes on the wire, by direction",
            self.bytes.clone(),
        );
        registry.register(
            "cluster_members",
            "Cluster members this node knows, by state, itself included",
            self.members.clone(),
        );
        registry.register(
            "grpc_requests_rejected",
            "gRPC calls from peers refused as unauthenticated: reason missing, malformed, stale or bad_signature (wrong cluster key)",
            self.grpc_rejected.clone(),
        );
        registry.register(
            "strict_admissions",
            "Strict-mode rate-limit decisions: outcome admitted, rejected (by the owner) or fallback (owner unreachable; gossip counts decided)",
            self.strict.clone(),
        );
        registry.register(
            "gossip_publish_rounds",
            "Rounds in which this node wrote its counters into its gossip state",
            self.publish_rounds.clone(),
        );
        registry.register(
            "cluster_convergence_lag_seconds",
            "Seconds since the stalest live peer's heartbeat last advanced on this node (how old the oldest peer state it holds is)",
            self.convergence_lag.clone(),
        );
    }

    /// Count one strict-mode decision.
    pub fn strict_outcome(&self, outcome: &'static str) {
        self.strict.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Count one strict-mode fallback to gossip counts.
    pub fn strict_fallback(&self) {
        self.strict_outcome("fallback");
    }

    /// Count one refused gRPC call.
    pub fn grpc_rejected(&self, reason: &'static str) {
        self.grpc_rejected
            .get_or_create(&GrpcRejectionLabels { reason })
            .inc();
    }

    /// gRPC calls refused so far, every reason together.
    pub fn grpc_rejected_total(&self) -> u64 {
        ["missing", "malformed", "stale", "bad_signature"]
            .into_iter()
            .map(|reason| {
                self.grpc_rejected
                    .get_or_create(&GrpcRejectionLabels { reason })
                    .get()
            })
            .sum()
    }

    /// Count one dropped packet.
    pub fn dropped(&self, reason: &'static str) {
        self.packets_dropped
            .get_or_create(&GossipDropLabels { reason })
            .inc();
    }

    /// Count `len` gossip bytes `sent` or `received`.
    pub fn bytes(&self, direction: &'static str, len: usize) {
        self.bytes
            .get_or_create(&DirectionLabels { direction })
            .inc_by(len as u64);
    }

    /// Set the member counts.
    pub fn set_members(&self, alive: usize, suspect: usize, dead: usize) {
        for (state, count) in [("alive", alive), ("suspect", suspect), ("dead", dead)] {
            self.members
                .get_or_create(&MemberStateLabels { state })
                .set(count as i64);
        }
    }

    /// Packets dropped for `reason` so far.
    pub fn dropped_total(&self, reason: &'static str) -> u64 {
        self.packets_dropped
            .get_or_create(&GossipDropLabels { reason })
            .get()
    }

    /// Bytes `sent` or `received` so far.
    pub fn bytes_total(&self, direction: &'static str) -> u64 {
        self.bytes
            .get_or_create(&DirectionLabels { direction })
            .get()
    }
}

/// Labels of a governance rejection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    /// `unauthorized`, `forbidden`, `rate_limit`, `in_flight` or `budget`.
    pub reason: &'static str,
    /// For budgets and limits: `virtual_key`, `provider`, `team`, `customer`, or `requests`/`tokens`.
    pub detail: &'static str,
}

/// Labels naming a virtual key.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VirtualKeyLabels {
    /// Virtual key id.
    pub virtual_key: String,
}

/// Labels naming a store operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// What was attempted.
    pub operation: &'static str,
}

/// Labels of a config reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `success` or `failure`.
    pub result: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered under the `bifrost` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bifrost");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Inference requests by route, provider, model and status",
            requests.clone(),
        );
        let request_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Request latency until the response head (streams: first byte)",
            request_duration.clone(),
        );
        let overhead_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(overhead_histogram);
        registry.register(
            "gateway_overhead_seconds",
            "Request latency minus time waiting on upstreams and retry backoff",
            overhead_duration.clone(),
        );
        let upstream_attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "upstream_attempts",
            "Upstream attempts by provider and outcome",
            upstream_attempts.clone(),
        );
        let retries = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "upstream_retries",
            "Retries on the same provider",
            retries.clone(),
        );
        let fallbacks = Family::<FallbackLabels, Counter>::default();
        registry.register(
            "fallbacks",
            "Moves from a failed provider to the next fallback",
            fallbacks.clone(),
        );
        let circuit_state = Family::<KeyLabels, Gauge>::default();
        registry.register(
            "circuit_breaker_state",
            "Circuit breaker state per upstream key: 0 closed, 1 open, 2 half-open",
            circuit_state.clone(),
        );
        let queue_rejections = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "queue_rejections",
            "Requests rejected with 429 because a provider's concurrency and buffer were full",
            queue_rejections.clone(),
        );
        let in_flight = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "in_flight_requests",
            "Inference requests being handled, open streams included",
            in_flight.clone(),
        );
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Config reloads (SIGHUP) by result",
            config_reloads.clone(),
        );
        let governance_rejections = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "governance_rejections",
            "Inference requests refused by governance, by reason",
            governance_rejections.clone(),
        );
        let virtual_key_requests = Family::<VirtualKeyLabels, Gauge>::default();
        registry.register(
            "virtual_key_requests",
            "Requests admitted per virtual key on this node since start (the most active keys only)",
            virtual_key_requests.clone(),
        );
        let virtual_key_spend = Family::<VirtualKeyLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "virtual_key_spend_usd",
            "USD charged per virtual key on this node since start (the most active keys only)",
            virtual_key_spend.clone(),
        );
        let store_errors = Family::<StoreLabels, Counter>::default();
        registry.register(
            "store_errors",
            "Config store operations that failed",
            store_errors.clone(),
        );
        let usage_flush_duration = overhead_histogram();
        registry.register(
            "usage_flush_duration_seconds",
            "Time to write spend to the config store and read usage back",
            usage_flush_duration.clone(),
        );
        let gossip = GossipMetrics::default();
        gossip.register(&mut registry);
        let listener = ListenerMetrics::default();
        listener.register(&mut registry);
        Self {
            registry,
            gossip,
            listener,
            requests,
            request_duration,
            overhead_duration,
            upstream_attempts,
            retries,
            fallbacks,
            circuit_state,
            queue_rejections,
            in_flight,
            config_reloads,
            governance_rejections,
            virtual_key_requests,
            virtual_key_spend,
            store_errors,
            usage_flush_duration,
        }
    }

    /// Count a governance refusal (other errors are ignored).
    pub fn governance_rejection(&self, error: &crate::error::GatewayError) {
        use crate::error::{GatewayError, LimitMetric};
        let (reason, detail) = match error {
            GatewayError::Unauthorized(_) => ("unauthorized", ""),
            GatewayError::Forbidden(_) => ("forbidden", ""),
            GatewayError::RateLimited {
                metric: LimitMetric::InFlight,
                ..
            } => ("in_flight", ""),
            GatewayError::RateLimited { metric, .. } => ("rate_limit", metric.as_str()),
            GatewayError::BudgetExhausted { level, .. } => ("budget", level.as_str()),
            _ => return,
        };
        self.governance_rejections
            .get_or_create(&RejectionLabels { reason, detail })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
