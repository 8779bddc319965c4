use std::process::ExitCode;

use bifrost_gateway::cli::Cli;
use bifrost_gateway::server::{self, ServerSettings};
use bifrost_gateway::telemetry::logging;
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
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
