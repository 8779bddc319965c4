//! The mock provider the benchmark points the gateway at, started with a chosen number of worker
//! threads so that on a small machine it leaves CPU for the gateway and the load generator.

use std::process::Stdio;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::harness::{binary, START_DEADLINE};

/// A running `mock-provider`, killed when dropped.
pub struct Upstream {
    _child: Child,
    // Kept open so the mock never writes into a closed pipe.
    _stdout: Lines<BufReader<ChildStdout>>,
    /// `http://127.0.0.1:<port>`
    pub base: String,
}

impl Upstream {
    /// Start `mock-provider` with `threads` tokio workers and `chunks` chunks per streamed answer.
    /// (`harness::MockProvider` always passes `--threads 2`, which cannot be overridden.)
    pub async fn start(threads: u32, chunks: u32) -> anyhow::Result<Self> {
        let path = binary("mock-provider");
        let mut child = Command::new(&path)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--threads", &threads.to_string()])
            .args(["--chunks", &chunks.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let stdout = child.stdout.take().context("mock-provider stdout is piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let announced = tokio::time::timeout(START_DEADLINE, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(base) = line.strip_prefix("mock-provider listening on ") {
                    return Ok(Some(base.trim().to_string()));
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await;
        let base = match announced {
            Ok(Ok(Some(base))) => base,
            Ok(Ok(None)) => bail!("mock-provider exited before listening"),
            Ok(Err(error)) => return Err(error).context("reading mock-provider's output"),
            Err(_) => bail!("mock-provider did not listen within {START_DEADLINE:?}"),
        };
        Ok(Self {
            _child: child,
            _stdout: lines,
            base,
        })
    }
}
