//! `bifrost-gateway`: an OpenAI- and Anthropic-compatible LLM gateway.
//!
//! Without the default `server` feature only [`config`] is built, so other crates (the
//! operator) can embed the config types.

pub mod config;

#[cfg(feature = "server")]
#[doc(hidden)]
pub mod fuzz_targets;

#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod cluster;
#[cfg(feature = "server")]
pub mod error;
#[cfg(feature = "server")]
pub mod governance;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod providers;
#[cfg(feature = "server")]
pub mod routing;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod state;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod telemetry;
