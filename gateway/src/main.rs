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
    if cli.explain {
        return explain(cli.config.as_deref());
    }
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

/// `--check-config --explain`: the file field by field; exit 2 when it does not load.
fn explain(path: Option<&std::path::Path>) -> ExitCode {
    use bifrost_gateway::config::explain::{explain, Status};
    use bifrost_gateway::config::load::Format;
    let Some(path) = path else {
        eprintln!("bifrost-gateway: --explain needs a config file (--config or BIFROST_CONFIG)");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            eprintln!(
                "bifrost-gateway: cannot read config file {}: {error}",
                path.display()
            );
            return ExitCode::from(2);
        }
    };
    let origin = path.display().to_string();
    let env = |name: &str| std::env::var(name).ok();
    match explain(&text, Format::from_path(path), &origin, &env) {
        Ok(explanation) => {
            println!("{explanation}");
            if explanation.count(Status::Rejected) == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(error) => {
            eprintln!("bifrost-gateway: {error}");
            ExitCode::from(2)
        }
    }
}
