//! Multi-process tests, the mock LLM provider and load tools for `bifrost-gateway`.

pub mod bench;
pub mod harness;
pub mod mock;
