//! `mock-provider`: serves the mock LLM provider until SIGINT or SIGTERM.

use std::io::Write;

use anyhow::Context;
use bifrost_e2e::mock::{MockConfig, MockServer};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// A mock OpenAI/Anthropic provider for bifrost's tests and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "mock-provider", version)]
struct Cli {
    #[command(flatten)]
    mock: MockConfig,

    /// Tokio worker threads (default: one per core).
    #[arg(long, env = "MOCK_THREADS", value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        runtime.worker_threads(usize::try_from(threads).context("--threads is too large")?);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    runtime.block_on(run(cli.mock))
}

async fn run(config: MockConfig) -> anyhow::Result<()> {
    let server = MockServer::bind(&config)
        .await
        .with_context(|| format!("failed to listen on {}:{}", config.host, config.port))?;
    let addr = server.local_addr()?;
    // Tests read this exact line to learn the port.
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "mock-provider listening on http://{addr}")?;
        stdout.flush()?;
    }
    tracing::info!(%addr, models = ?config.models, "mock provider started");
    server.serve(shutdown_signal()).await?;
    tracing::info!("mock provider stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "failed to listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "failed to listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("received SIGINT, shutting down"),
        () = terminate => tracing::info!("received SIGTERM, shutting down"),
    }
}
