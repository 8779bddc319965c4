//! Waiting for a condition with a deadline: every wait in the tests ends, and a failed one says
//! what it waited for and what it saw last.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How often a wait looks unless told otherwise.
const DEFAULT_POLL: Duration = Duration::from_millis(50);

/// When a wait gives up, and how often it looks until then. `Copy`, so one deadline can bound
/// several waits in a row (every node of a cluster within one convergence deadline).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    within: Duration,
    every: Duration,
}

impl Deadline {
    /// `within` from now, looking every 50 ms.
    pub fn after(within: Duration) -> Self {
        Self::since(Instant::now(), within)
    }

    /// `within` from `start`, an instant already past (when a node was signalled, say),
    /// looking every 50 ms.
    pub fn since(start: Instant, within: Duration) -> Self {
        Self {
            at: start + within,
            within,
            every: DEFAULT_POLL,
        }
    }

    /// Look every `every` instead.
    pub fn polling_every(self, every: Duration) -> Self {
        Self { every, ..self }
    }

    fn passed(&self) -> bool {
        Instant::now() > self.at
    }
}

/// Call `observe` until `done` holds for what it returned, pausing between calls as `deadline`
/// says; the observation `done` accepted. Once the deadline has passed, panics naming `what`
/// was awaited and the last observation.
pub async fn wait_until<T: Debug>(
    what: &str,
    deadline: Deadline,
    mut observe: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    loop {
        let seen = observe().await;
        if done(&seen) {
            return seen;
        }
        assert!(
            !deadline.passed(),
            "timed out after {:?} waiting for {what}; last observed: {seen:#?}",
            deadline.within
        );
        tokio::time::sleep(deadline.every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_returns_the_observation_that_satisfied_it() {
        let mut calls = 0;
        let seen = wait_until(
            "the third call",
            Deadline::after(Duration::from_secs(5)).polling_every(Duration::from_millis(1)),
            async || {
                calls += 1;
                calls
            },
            |calls| *calls == 3,
        )
        .await;
        assert_eq!(seen, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for a number over 10; last observed: 7")]
    async fn a_wait_past_its_deadline_names_what_it_awaited_and_what_it_saw_last() {
        wait_until(
            "a number over 10",
            Deadline::after(Duration::from_millis(20)).polling_every(Duration::from_millis(5)),
            async || 7,
            |n| *n > 10,
        )
        .await;
    }
}
