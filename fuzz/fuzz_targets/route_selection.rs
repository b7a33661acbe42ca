//! A route selection expression parsed and evaluated against a message body; the checks are
//! `sockway_gateway::fuzzing::route_selection`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sockway_gateway::fuzzing::route_selection(data));
