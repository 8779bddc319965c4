#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bifrost_gateway::fuzz_targets::config(data));
