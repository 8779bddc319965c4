//! Per-key circuit breaker: closed → open after `failure_threshold` consecutive failures, open →
//! half-open after `timeout_seconds`, half-open → closed after `success_threshold` successful
//! probes (at most `half_open_requests` at once); a failed probe reopens.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

use crate::config::CircuitBreakerConfig;

/// Breaker states, as exported in the `circuit_breaker_state` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Requests flow.
    Closed = 0,
    /// Requests are refused until the open period ends.
    Open = 1,
    /// A few probes test whether the key has recovered.
    HalfOpen = 2,
}

#[derive(Debug)]
enum Inner {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        probes_in_flight: u32,
        successes: u32,
    },
}

/// How an attempt through the breaker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The key works.
    Success,
    /// The key failed (5xx, 429, timeout, connection error, rejected credentials).
    Failure,
    /// Says nothing about the key (the attempt was abandoned).
    Neutral,
}

/// One key's breaker.
pub struct CircuitBreaker {
    config: CircuitBreakerConfig,
    inner: Mutex<Inner>,
    gauge: Gauge,
    /// For log lines: `provider/key`.
    label: String,
}

impl CircuitBreaker {
    /// A closed breaker that reports its state into `gauge`.
    pub fn new(config: CircuitBreakerConfig, gauge: Gauge, label: String) -> Self {
        gauge.set(CircuitState::Closed as i64);
        Self {
            config,
            inner: Mutex::new(Inner::Closed {
                consecutive_failures: 0,
            }),
            gauge,
            label,
        }
    }

    /// The settings this breaker runs with.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> CircuitState {
        match *self.lock() {
            Inner::Closed { .. } => CircuitState::Closed,
            Inner::Open { .. } => CircuitState::Open,
            Inner::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Ask to send a request through this key. `None` while open (or while half-open with every
    /// probe slot taken); the permit must be completed with the outcome.
    pub fn try_acquire(self: &Arc<Self>, now: Instant) -> Option<BreakerPermit> {
        if !self.config.enabled {
            return Some(BreakerPermit::new(self.clone(), false));
        }
        let mut inner = self.lock();
        let probe = match *inner {
            Inner::Closed { .. } => false,
            Inner::Open { until } if now < until => return None,
            Inner::Open { .. } => {
                *inner = Inner::HalfOpen {
                    probes_in_flight: 1,
                    successes: 0,
                };
                self.publish(CircuitState::HalfOpen);
                true
            }
            Inner::HalfOpen {
                ref mut probes_in_flight,
                ..
            } => {
                if *probes_in_flight >= self.config.half_open_requests {
                    return None;
                }
                *probes_in_flight = probes_in_flight.saturating_add(1);
                true
            }
        };
        drop(inner);
        Some(BreakerPermit::new(self.clone(), probe))
    }

    /// When an open circuit will let a probe through (zero when not open).
    pub fn retry_after(&self, now: Instant) -> Duration {
        match *self.lock() {
            Inner::Open { until } => until.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    fn record(&self, probe: bool, outcome: Outcome, now: Instant) {
        if !self.config.enabled {
            return;
        }
        let mut inner = self.lock();
        match (&mut *inner, probe) {
            (
                Inner::HalfOpen {
                    probes_in_flight,
                    successes,
                },
                true,
            ) => {
                *probes_in_flight = probes_in_flight.saturating_sub(1);
                match outcome {
                    Outcome::Success => {
                        *successes = successes.saturating_add(1);
                        if *successes >= self.config.success_threshold {
                            *inner = Inner::Closed {
                                consecutive_failures: 0,
                            };
                            self.publish(CircuitState::Closed);
                        }
                    }
                    Outcome::Failure => {
                        *inner = self.open_until(now);
                        self.publish(CircuitState::Open);
                    }
                    Outcome::Neutral => {}
                }
            }
            (
                Inner::Closed {
                    consecutive_failures,
                },
                false,
            ) => match outcome {
                Outcome::Success => *consecutive_failures = 0,
                Outcome::Failure => {
                    *consecutive_failures = consecutive_failures.saturating_add(1);
                    if *consecutive_failures >= self.config.failure_threshold {
                        *inner = self.open_until(now);
                        self.publish(CircuitState::Open);
                    }
                }
                Outcome::Neutral => {}
            },
            // A request admitted in an earlier state finished after a transition: the state
            // already reflects newer evidence.
            _ => {}
        }
    }

    fn open_until(&self, now: Instant) -> Inner {
        Inner::Open {
            // `open_for` is at most a day: the sum cannot overflow.
            until: now + self.open_for(),
        }
    }

    /// How long the circuit stays open: `timeout_seconds`, at most
    /// [`CircuitBreakerConfig::MAX_TIMEOUT_SECONDS`] even if a larger value got past validation.
    fn open_for(&self) -> Duration {
        Duration::from_secs(
            self.config
                .timeout_seconds
                .min(CircuitBreakerConfig::MAX_TIMEOUT_SECONDS),
        )
    }

    fn publish(&self, state: CircuitState) {
        self.gauge.set(state as i64);
        match state {
            CircuitState::Open => tracing::warn!(
                key = %self.label,
                open_for_seconds = self.open_for().as_secs(),
                "circuit opened: key skipped until it recovers"
            ),
            CircuitState::HalfOpen => {
                tracing::info!(key = %self.label, "circuit half-open: probing key")
            }
            CircuitState::Closed => {
                tracing::info!(key = %self.label, "circuit closed: key recovered")
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the state inconsistent (every update is
        // a single assignment), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Permission to send one request through a breaker. Dropping it unfinished counts as
/// [`Outcome::Neutral`] so an abandoned probe frees its slot.
pub struct BreakerPermit {
    breaker: Arc<CircuitBreaker>,
    probe: bool,
    finished: bool,
}

impl BreakerPermit {
    fn new(breaker: Arc<CircuitBreaker>, probe: bool) -> Self {
        Self {
            breaker,
            probe,
            finished: false,
        }
    }

    /// Report how the request went.
    pub fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        self.breaker.record(self.probe, outcome, Instant::now());
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        if !self.finished {
            self.breaker
                .record(self.probe, Outcome::Neutral, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, successes: u32, probes: u32) -> Arc<CircuitBreaker> {
        breaker_open_for(failures, successes, probes, 10)
    }

    fn breaker_open_for(
        failures: u32,
        successes: u32,
        probes: u32,
        timeout_seconds: u64,
    ) -> Arc<CircuitBreaker> {
        Arc::new(CircuitBreaker::new(
            CircuitBreakerConfig {
                enabled: true,
                failure_threshold: failures,
                success_threshold: successes,
                timeout_seconds,
                half_open_requests: probes,
            },
            Gauge::default(),
            "test/key".into(),
        ))
    }

    fn fail(b: &Arc<CircuitBreaker>, now: Instant) {
        b.try_acquire(now)
            .expect("admitted")
            .finish(Outcome::Failure);
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker(3, 1, 1);
        let now = Instant::now();
        fail(&b, now);
        fail(&b, now);
        b.try_acquire(now).expect("closed").finish(Outcome::Success);
        fail(&b, now);
        fail(&b, now);
        assert_eq!(
            b.state(),
            CircuitState::Closed,
            "a success resets the count"
        );
        fail(&b, now);
        assert_eq!(b.state(), CircuitState::Open);
        assert!(b.try_acquire(now).is_none(), "open refuses without waiting");
        assert_eq!(b.gauge.get(), 1);
    }

    #[test]
    fn half_open_admits_limited_probes_then_closes_after_successes() {
        let b = breaker(1, 2, 1);
        let now = Instant::now();
        fail(&b, now);
        let later = now + Duration::from_secs(11);
        let probe = b.try_acquire(later).expect("probe after timeout");
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert!(b.try_acquire(later).is_none(), "only one probe at a time");
        probe.finish(Outcome::Success);
        assert_eq!(b.state(), CircuitState::HalfOpen, "needs two successes");
        b.try_acquire(later)
            .expect("second probe")
            .finish(Outcome::Success);
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.gauge.get(), 0);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = breaker(1, 1, 1);
        let now = Instant::now();
        fail(&b, now);
        let later = now + Duration::from_secs(11);
        fail(&b, later);
        assert_eq!(b.state(), CircuitState::Open);
        // Reopened at the real clock's now, for another full timeout.
        assert!(b.retry_after(Instant::now()) > Duration::from_secs(9));
    }

    #[test]
    fn an_abandoned_probe_frees_its_slot() {
        let b = breaker(1, 1, 1);
        let now = Instant::now();
        fail(&b, now);
        let later = now + Duration::from_secs(11);
        drop(b.try_acquire(later).expect("probe"));
        assert!(b.try_acquire(later).is_some(), "slot freed by drop");
    }

    #[test]
    fn a_timeout_of_u64_max_keeps_the_circuit_open_for_a_day_without_panicking() {
        let b = breaker_open_for(1, 1, 1, u64::MAX);
        let now = Instant::now();
        fail(&b, now);
        assert_eq!(b.state(), CircuitState::Open);
        let probe_time = now + Duration::from_secs(3600);
        assert!(
            b.try_acquire(probe_time).is_none(),
            "still open an hour later"
        );
        let retry_after = b.retry_after(Instant::now());
        assert!(
            retry_after > Duration::from_secs(86_000) && retry_after <= Duration::from_secs(86_400),
            "{retry_after:?}"
        );
    }

    #[test]
    fn disabled_breaker_never_opens() {
        let b = Arc::new(CircuitBreaker::new(
            CircuitBreakerConfig {
                enabled: false,
                ..CircuitBreakerConfig::default()
            },
            Gauge::default(),
            "t/k".into(),
        ));
        let now = Instant::now();
        for _ in 0..20 {
            fail(&b, now);
        }
        assert!(b.try_acquire(now).is_some());
    }
}
