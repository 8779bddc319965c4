//! `bifrost-operator`: flags, logging, then the library does the work.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bifrost_operator::leader::LeaseSettings;
use bifrost_operator::run::Options;
use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Runs Bifrost gateway clusters on Kubernetes from BifrostCluster resources.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reconcile BifrostClusters (the default).
    Run(RunArgs),
    /// Print the BifrostCluster CRD as YAML.
    Crd,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Watch only this namespace (empty: every namespace).
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    namespace: String,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Elect a leader through a Lease so several replicas can run.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "bifrost-operator")]
    lease_name: String,
    /// Namespace of the leader Lease (default: the operator's own, from POD_NAMESPACE).
    #[arg(long, env = "LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Seconds a leader's Lease stays valid without renewal.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// This replica's identity (default: POD_NAME, then the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Read /cluster/status from a ready gateway for status.members and status.clusterHealth.
    #[arg(long, env = "PROBE_CLUSTER_STATUS", default_value_t = true, action = ArgAction::Set)]
    probe_cluster_status: bool,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level or filter (RUST_LOG overrides).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => print_crd(),
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

fn print_crd() -> ExitCode {
    match bifrost_operator::crd::crd_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: cannot render the CRD: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    init_logging(args.log_format, &args.log_level);
    let options = match options(args) {
        Ok(options) => options,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bifrost_operator::run::run(options)) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = %err, kind = err.kind(), "operator stopped");
            ExitCode::FAILURE
        }
    }
}

fn options(args: RunArgs) -> Result<Options, String> {
    let identity = args
        .identity
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|id| !id.is_empty());
    let leader_election = if args.leader_election {
        let namespace = args
            .lease_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|ns| !ns.is_empty())
            .ok_or("leader election needs the Lease's namespace: set --lease-namespace (or POD_NAMESPACE), or pass --leader-election=false for a single replica")?;
        let identity = identity
            .clone()
            .ok_or("leader election needs this replica's identity: set --identity (or POD_NAME)")?;
        Some(LeaseSettings {
            name: args.lease_name,
            namespace,
            identity,
            duration: Duration::from_secs(args.lease_duration_seconds),
        })
    } else {
        None
    };
    Ok(Options {
        namespace: Some(args.namespace).filter(|ns| !ns.is_empty()),
        metrics_addr: args.metrics_addr,
        leader_election,
        probe_cluster_status: args.probe_cluster_status,
        identity,
    })
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
