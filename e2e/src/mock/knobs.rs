//! Behaviour knobs that tests may change while the server runs (`POST /mock/config`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::config::MockConfig;

/// The knobs, shared by all requests; each request reads them once through [`Knobs::snapshot`].
#[derive(Debug)]
pub struct Knobs {
    latency_ms: AtomicU64,
    jitter_ms: AtomicU64,
    chunks: AtomicU32,
    chunk_delay_ms: AtomicU64,
    fail_percent: AtomicU32,
    fail_next: AtomicU64,
    /// Only read when a request fails, so a lock costs nothing on the happy path.
    fail_statuses: Mutex<Vec<StatusCode>>,
}

/// What one request uses of the knobs, read once when it is admitted.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub latency: Duration,
    pub chunks: usize,
    pub chunk_delay: Duration,
}

/// A partial update of the knobs; absent fields keep their value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnobsUpdate {
    pub latency_ms: Option<u64>,
    pub jitter_ms: Option<u64>,
    pub chunks: Option<u32>,
    pub chunk_delay_ms: Option<u64>,
    pub fail_percent: Option<u32>,
    pub fail_statuses: Option<Vec<u16>>,
    /// The next N inference requests fail with the first fail status, whatever the percentage.
    pub fail_next: Option<u64>,
}

/// The current knob values, as `GET`/`POST /mock/config` report them.
#[derive(Debug, Serialize)]
pub struct KnobsView {
    pub latency_ms: u64,
    pub jitter_ms: u64,
    pub chunks: u32,
    pub chunk_delay_ms: u64,
    pub fail_percent: u32,
    pub fail_statuses: Vec<u16>,
    pub fail_next: u64,
}

impl Knobs {
    /// Knobs at their start-up values. `--fail-status` values are range-checked by clap; a value
    /// that is still no status falls back to 500.
    pub fn new(config: &MockConfig) -> Self {
        Self {
            latency_ms: AtomicU64::new(config.latency_ms),
            jitter_ms: AtomicU64::new(config.jitter_ms),
            chunks: AtomicU32::new(config.chunks.max(1)),
            chunk_delay_ms: AtomicU64::new(config.chunk_delay_ms),
            fail_percent: AtomicU32::new(config.fail_percent.min(100)),
            fail_next: AtomicU64::new(0),
            fail_statuses: Mutex::new(
                parse_statuses(&config.fail_statuses)
                    .unwrap_or_else(|_| vec![StatusCode::INTERNAL_SERVER_ERROR]),
            ),
        }
    }

    /// Reads what a request needs; the jitter is drawn here.
    pub fn snapshot(&self) -> Pace {
        let latency = self.latency_ms.load(Relaxed);
        let jitter = self.jitter_ms.load(Relaxed);
        let jitter = if jitter == 0 {
            0
        } else {
            fastrand::u64(0..=jitter)
        };
        Pace {
            latency: Duration::from_millis(latency.saturating_add(jitter)),
            chunks: self.chunks.load(Relaxed) as usize,
            chunk_delay: Duration::from_millis(self.chunk_delay_ms.load(Relaxed)),
        }
    }

    /// Decides whether this request fails: a pending `fail_next` first, then the percentage.
    pub fn draw_failure(&self) -> Option<StatusCode> {
        if self
            .fail_next
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return Some(
                self.statuses()
                    .first()
                    .copied()
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            );
        }
        let percent = self.fail_percent.load(Relaxed);
        if percent == 0 || fastrand::u32(0..100) >= percent {
            return None;
        }
        let statuses = self.statuses();
        Some(match statuses.len() {
            0 => StatusCode::INTERNAL_SERVER_ERROR,
            len => statuses[fastrand::usize(0..len)],
        })
    }

    /// Applies `update` whole or, when any field is out of range, not at all.
    pub fn apply(&self, update: &KnobsUpdate) -> Result<(), String> {
        if update.chunks == Some(0) {
            return Err("chunks must be at least 1".to_owned());
        }
        if update.fail_percent.is_some_and(|percent| percent > 100) {
            return Err("fail_percent must be within 0..=100".to_owned());
        }
        let statuses = update
            .fail_statuses
            .as_deref()
            .map(parse_statuses)
            .transpose()?;
        if statuses.as_ref().is_some_and(Vec::is_empty) {
            return Err("fail_statuses must not be empty".to_owned());
        }

        let store = |atomic: &AtomicU64, value: Option<u64>| {
            if let Some(value) = value {
                atomic.store(value, Relaxed);
            }
        };
        store(&self.latency_ms, update.latency_ms);
        store(&self.jitter_ms, update.jitter_ms);
        store(&self.chunk_delay_ms, update.chunk_delay_ms);
        if let Some(chunks) = update.chunks {
            self.chunks.store(chunks, Relaxed);
        }
        if let Some(percent) = update.fail_percent {
            self.fail_percent.store(percent, Relaxed);
        }
        if let Some(statuses) = statuses {
            *self.statuses() = statuses;
        }
        // After the statuses, so `fail_next` uses the statuses sent alongside it.
        store(&self.fail_next, update.fail_next);
        Ok(())
    }

    /// The current values.
    pub fn view(&self) -> KnobsView {
        KnobsView {
            latency_ms: self.latency_ms.load(Relaxed),
            jitter_ms: self.jitter_ms.load(Relaxed),
            chunks: self.chunks.load(Relaxed),
            chunk_delay_ms: self.chunk_delay_ms.load(Relaxed),
            fail_percent: self.fail_percent.load(Relaxed),
            fail_statuses: self.statuses().iter().map(StatusCode::as_u16).collect(),
            fail_next: self.fail_next.load(Relaxed),
        }
    }

    fn statuses(&self) -> std::sync::MutexGuard<'_, Vec<StatusCode>> {
        self.fail_statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Checks that every status is an error status (400-599).
fn parse_statuses(statuses: &[u16]) -> Result<Vec<StatusCode>, String> {
    statuses
        .iter()
        .map(|&code| match StatusCode::from_u16(code) {
            Ok(status) if (400..=599).contains(&code) => Ok(status),
            _ => Err(format!("fail status {code} is not within 400..=599")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_next_uses_the_first_status_then_stops() {
        let knobs = Knobs::new(&MockConfig::default());
        let update = KnobsUpdate {
            fail_statuses: Some(vec![503, 429]),
            fail_next: Some(2),
            ..KnobsUpdate::default()
        };
        knobs.apply(&update).expect("valid update");
        assert_eq!(knobs.draw_failure(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(knobs.draw_failure(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(knobs.draw_failure(), None);
    }

    #[test]
    fn full_fail_percent_always_fails_with_a_listed_status() {
        let config = MockConfig {
            fail_percent: 100,
            fail_statuses: vec![429, 529],
            ..MockConfig::default()
        };
        let knobs = Knobs::new(&config);
        for _ in 0..100 {
            let status = knobs.draw_failure().expect("every request fails").as_u16();
            assert!(status == 429 || status == 529, "{status}");
        }
    }

    #[test]
    fn an_invalid_update_changes_nothing() {
        let knobs = Knobs::new(&MockConfig::default());
        let update = KnobsUpdate {
            latency_ms: Some(50),
            fail_statuses: Some(vec![200]),
            ..KnobsUpdate::default()
        };
        assert!(knobs.apply(&update).is_err());
        assert_eq!(knobs.view().latency_ms, 0);
        assert_eq!(knobs.view().fail_statuses, [500]);
    }
}
