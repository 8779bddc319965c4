use std::process::ExitCode;

use bifrost_gateway::cli::Cli;
use bifrost_gateway::server::{self, ServerSettings};
use bifrost_gateway::telemetry::logging;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.worker_threads.filter(|t| *t > 0) {
        runtime.worker_threads(threads);
    }
    match runtime.enable_all().build() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(error) => {
            eprintln!("bifrost-gateway: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    logging::init(cli.log_format, &cli.log_level);
    let loaded = match server::load_config(cli.config.as_ref()) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("bifrost-gateway: {error}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        for field in &loaded.unknown_fields {
            println!("warning: unknown field {field} is ignored");
        }
        for warning in &loaded.warnings {
            println!("warning: {warning}");
        }
        println!("config OK: {} provider(s)", loaded.config.providers.len());
        return ExitCode::SUCCESS;
    }
    let settings = ServerSettings {
        listen: cli.listen(),
        config_path: cli.config.clone(),
    };
    match server::run(settings, loaded).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "gateway stopped");
            eprintln!("bifrost-gateway: {error}");
            ExitCode::FAILURE
        }
    }
}
