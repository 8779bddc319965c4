//! `bench`: measures bifrost-gateway's added latency, CPU per request, memory and peak
//! throughput against the mock provider (run it through `scripts/bench.sh`).

use bifrost_e2e::bench::{self, BenchArgs};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench::run(BenchArgs::parse()).await
}
