//! `bifrost-operator`: runs Bifrost gateways on Kubernetes from `BifrostCluster` resources.
//!
//! `crd` defines the resource; `resources` turns one into its children with pure builders and
//! writes them with server-side apply; `controller` watches, reconciles and retries; `status`,
//! `peers` and `probe` report what is running; `run` is the process (leader election, health
//! server).

pub mod context;
pub mod controller;
pub mod crd;
pub mod error;
pub mod events;
pub mod http;
pub mod instance;
pub mod leader;
pub mod metrics;
pub mod peers;
pub mod probe;
pub mod resources;
pub mod run;
pub mod status;

#[cfg(test)]
mod testing;

pub use error::Error;
