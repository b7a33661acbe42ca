//! A TOML config parsed and validated; the checks are
//! `sockway_gateway::fuzzing::config`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sockway_gateway::fuzzing::config(data));
