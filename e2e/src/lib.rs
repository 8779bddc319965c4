//! Multi-process tests, the mock LLM provider and load tools for `bifrost-gateway`.

pub mod bench;
pub mod fake_consul;
pub mod fake_kube;
pub mod harness;
pub mod mock;
