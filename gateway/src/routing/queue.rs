//! Per-provider concurrency: `concurrency` requests in flight, up to `buffer_size` waiting.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ConcurrencyConfig;

/// Admission to one provider.
pub struct ProviderQueue {
    slots: Arc<Semaphore>,
    waiting: AtomicU32,
    buffer_size: u32,
    drop_excess: bool,
}

/// The provider is saturated and the request was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

impl ProviderQueue {
    /// A queue for `config`; with `drop_excess`, nothing waits.
    pub fn new(config: &ConcurrencyConfig, drop_excess: bool) -> Self {
        Self {
            // At least one slot (with none, waiters would wait forever) and no more than the
            // semaphore holds (it panics beyond), whatever got past validation.
            slots: Arc::new(Semaphore::new(
                usize::try_from(config.concurrency)
                    .unwrap_or(usize::MAX)
                    .clamp(1, Semaphore::MAX_PERMITS),
            )),
            waiting: AtomicU32::new(0),
            buffer_size: config.buffer_size,
            drop_excess,
        }
    }

    /// A slot, at once if one is free, else after waiting in the buffer.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, QueueFull> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.drop_excess {
            return Err(QueueFull);
        }
        let position = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _leave = WaitingGuard(&self.waiting);
        if position >= self.buffer_size {
            return Err(QueueFull);
        }
        // The semaphore is never closed, so acquiring only fails if it were.
        self.slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| QueueFull)
    }
}

struct WaitingGuard<'a>(&'a AtomicU32);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(concurrency: u32, buffer_size: u32, drop_excess: bool) -> ProviderQueue {
        ProviderQueue::new(
            &ConcurrencyConfig {
                concurrency,
                buffer_size,
            },
            drop_excess,
        )
    }

    #[tokio::test]
    async fn drop_excess_rejects_when_every_slot_is_taken() {
        let q = queue(1, 10, true);
        let held = q.admit().await.expect("first slot");
        assert_eq!(q.admit().await.err(), Some(QueueFull));
        drop(held);
        assert!(q.admit().await.is_ok());
    }

    #[tokio::test]
    async fn a_concurrency_of_zero_still_admits_one_request() {
        let q = queue(0, 0, false);
        let held = tokio::time::timeout(std::time::Duration::from_secs(1), q.admit())
            .await
            .expect("admitted without waiting")
            .expect("slot");
        drop(held);
        let _ = queue(u32::MAX, u32::MAX, false);
    }

    #[tokio::test]
    async fn waiting_beyond_the_buffer_is_rejected() {
        let q = Arc::new(queue(1, 1, false));
        let held = q.admit().await.expect("slot");
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.admit().await.is_ok() })
        };
        // Let the waiter take its place in the buffer.
        while q.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            q.admit().await.err(),
            Some(QueueFull),
            "buffer of one is full"
        );
        drop(held);
        assert!(
            waiter.await.expect("waiter task"),
            "the waiter gets the freed slot"
        );
    }
}
