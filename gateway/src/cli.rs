//! Command-line flags (each with a `BIFROST_*` environment variable).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;

use crate::telemetry::logging::LogFormat;

/// OpenAI/Anthropic-compatible LLM gateway.
#[derive(Debug, Parser)]
#[command(name = "bifrost-gateway", version)]
pub struct Cli {
    /// Config file (JSON, or YAML by extension).
    #[arg(long, env = "BIFROST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "BIFROST_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// HTTP port (0 picks a free one; the `listening` log line says which).
    #[arg(long, env = "BIFROST_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Log line format.
    #[arg(long, env = "BIFROST_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log level or filter (`RUST_LOG` overrides).
    #[arg(long, env = "BIFROST_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Validate the config file, print the result and exit.
    #[arg(long)]
    pub check_config: bool,
    /// With --check-config: list every field of the file as honoured, differs (honoured with
    /// another meaning), ignored (not implemented) or rejected, by section, for a migration
    /// from Bifrost.
    #[arg(long, requires = "check_config")]
    pub explain: bool,
    /// Runtime worker threads (default: one per CPU core).
    #[arg(long, env = "BIFROST_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
}

impl Cli {
    /// The listen address.
    pub fn listen(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}
