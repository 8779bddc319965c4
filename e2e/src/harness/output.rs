//! What a child process prints, captured line by line.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::Notify;

/// Output lines of a child process, kept for assertions.
#[derive(Clone, Default)]
pub struct Output {
    lines: Arc<Mutex<Vec<String>>>,
    changed: Arc<Notify>,
}

impl Output {
    /// Collect `stream` line by line (echoed to stderr, tagged `echo`, when
    /// `BIFROST_TEST_ECHO` is set).
    pub(super) fn capture(
        &self,
        stream: impl AsyncRead + Unpin + Send + 'static,
        echo: &'static str,
    ) {
        let output = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if std::env::var_os("BIFROST_TEST_ECHO").is_some() {
                    eprintln!("[{echo}] {line}");
                }
                output.lines.lock().expect("output lock").push(line);
                output.changed.notify_waiters();
            }
            output.changed.notify_waiters();
        });
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("output lock").clone()
    }

    /// Wait until a line contains `needle`; the line.
    pub async fn wait_for(&self, needle: &str, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.changed.notified();
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return Some(line);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// Whether any line contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.lines().iter().any(|l| l.contains(needle))
    }
}
