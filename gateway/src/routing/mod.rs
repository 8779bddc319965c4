//! Choosing where a request goes: the routing table built from config, model addressing,
//! weighted key choice, circuit breakers, per-provider queues, upstream HTTP clients, and the
//! retry/fallback loop.

pub mod circuit;
pub mod client;
pub mod dispatch;
pub mod entra;
pub mod google;
pub mod keys;
pub mod queue;
pub mod sigv4;
pub mod sts;
pub mod table;
pub mod target;
pub mod tokens;

pub use dispatch::{dispatch, Dispatched, Reply, UpstreamBody};
pub use table::{upstream_request, AttemptAuth, Provider, RoutingTable, UpstreamKey};
pub use target::Target;
