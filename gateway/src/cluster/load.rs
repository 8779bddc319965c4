//! A node's load over the last second, from its traffic totals (published as `node/rps` and
//! `node/error_rate`).

use std::time::{Duration, Instant};

use super::NodeReport;

/// Rates over about a second of [`NodeReport`]s.
#[derive(Default)]
pub struct LoadWindow {
    last: Option<(NodeReport, Instant)>,
}

/// Requests per second and the 5xx share over the last window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadRates {
    /// Requests per second.
    pub rps: f64,
    /// Share answered 5xx.
    pub error_rate: f64,
}

impl LoadWindow {
    /// Rates since the previous sample once a second has passed (then a new window starts).
    pub fn sample(&mut self, report: NodeReport, now: Instant) -> Option<LoadRates> {
        let Some((previous, at)) = self.last else {
            self.last = Some((report, now));
            return None;
        };
        let elapsed = now.duration_since(at);
        if elapsed < Duration::from_secs(1) {
            return None;
        }
        self.last = Some((report, now));
        let requests = report.requests.saturating_sub(previous.requests);
        let errors = report.errors.saturating_sub(previous.errors);
        Some(LoadRates {
            rps: requests as f64 / elapsed.as_secs_f64(),
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_rates_come_once_a_second() {
        let mut window = LoadWindow::default();
        let t = Instant::now();
        let report = |requests, errors| NodeReport {
            requests,
            errors,
            in_flight: 2,
            config_version: 1,
        };
        assert_eq!(
            window.sample(report(0, 0), t),
            None,
            "the first sample starts a window"
        );
        assert_eq!(
            window.sample(report(50, 1), t + Duration::from_millis(500)),
            None
        );
        let rates = window
            .sample(report(200, 10), t + Duration::from_secs(2))
            .expect("a second passed");
        assert_eq!(rates.rps, 100.0);
        assert_eq!(rates.error_rate, 0.05);
        let idle = window
            .sample(report(200, 10), t + Duration::from_secs(3))
            .expect("a second passed");
        assert_eq!((idle.rps, idle.error_rate), (0.0, 0.0));
    }
}
